"""Turn the runner's results into results.json, results.md and chart.png.

The chart is drawn by chart.py. Kept apart from the runner so a results.json can be re-rendered
(`python -m bench.report DIR`) without running the load again.
"""

import json
import sys
from pathlib import Path
from typing import Any

Result = dict[str, Any]
# Share of the machine used by processes other than the benchmark above which a run is flagged.
DISTURBED_PCT = 10


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def find(runs: list[Result], target: str, scenario: str, connections: int) -> Result | None:
    for run in runs:
        if (run["target"], run["scenario"], run["connections"]) == (target, scenario, connections):
            return run
    return None


def ratios(runs: list[Result]) -> list[Result]:
    """service ÷ limit for every scenario and concurrency both targets ran: requests/s, and p99 as a
    multiple of the limit's p99 in the same pair of runs (the tail)."""
    out = []
    for run in runs:
        if run["target"] != "service":
            continue
        limit = find(runs, "limit", run["scenario"], run["connections"])
        if limit and limit["rps"]:
            out.append(
                {
                    "scenario": run["scenario"],
                    "connections": run["connections"],
                    "service_rps": run["rps"],
                    "limit_rps": limit["rps"],
                    "ratio": run["rps"] / limit["rps"],
                    "service_p99_ms": run["p99_ms"],
                    "limit_p99_ms": limit["p99_ms"],
                    "p99_ratio": run["p99_ms"] / limit["p99_ms"] if limit["p99_ms"] else None,
                }
            )
    return out


def network_pairs(network: Result) -> list[Result]:
    """Network mode, service beside limit: p50/p99, p50 as a multiple of the limit's, round trips."""
    runs: list[Result] = network.get("runs", [])
    out = []
    for run in runs:
        limit = find(runs, "limit", run["scenario"], run["connections"])
        if run["target"] != "service" or limit is None:
            continue
        out.append(
            {
                "scenario": run["scenario"],
                "connections": run["connections"],
                "service_p50_ms": run["p50_ms"],
                "service_p99_ms": run["p99_ms"],
                "limit_p50_ms": limit["p50_ms"],
                "limit_p99_ms": limit["p99_ms"],
                "p50_ratio": run["p50_ms"] / limit["p50_ms"] if limit["p50_ms"] else None,
                "service_round_trips": run["round_trips_per_request"],
                "limit_round_trips": limit["round_trips_per_request"],
            }
        )
    return out


def _runs_table(runs: list[Result]) -> list[str]:
    lines = [
        "| scenario | conns | target | req/s | p50 ms | p95 ms | p99 ms | errors | non-2xx "
        "| stmts/req | xacts/req | RSS MiB | server CPU % | other CPU % |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        statuses = ", ".join(f"{code}x{count}" for code, count in sorted(run["statuses"].items()))
        non2xx = f"{run['non2xx']}" + (f" ({statuses})" if statuses else "")
        if run.get("exhausted"):
            non2xx += " ⚠ delete pool ran out"
        lines.append(
            f"| {run['scenario']} | {run['connections']} | {run['target']} | {_num(run['rps'])} | "
            f"{_ms(run['p50_ms'])} | {_ms(run['p95_ms'])} | {_ms(run['p99_ms'])} | {run['errors']} | {non2xx} | "
            f"{_num(run['statements_per_request'], 2)} | {_num(run['transactions_per_request'], 2)} | "
            f"{_num(run['rss_mib'], 1)} | {_num(run.get('server_cpu_pct'))} | {_num(run.get('other_cpu_pct'))} |"
        )
    return lines


def _one_connection_table(title: str, key: str, rows: list[Result] | None) -> list[str]:
    """A scaling table: latency at 1 connection (no queueing) as `key` grows."""
    if not rows:
        return []
    lines = [
        f"### {title} (1 connection)",
        "",
        f"| target | {key.replace('_', ' ')} | req/s | p50 ms | p95 ms | p99 ms | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['target']} | {r[key]:,} | {_num(r['rps'])} | {_ms(r['p50_ms'])} | {_ms(r['p95_ms'])} | "
        f"{_ms(r['p99_ms'])} | {r['non2xx']} |"
        for r in rows
    ]
    return [*lines, ""]


def _scaling(scaling: Result) -> list[str]:
    lines = _one_connection_table("List latency by tasks per user", "tasks", scaling.get("list_by_size"))
    if scaling.get("list_sql"):
        lines += [
            "The service's own list statement (backend.crud, compiled for asyncpg as the service compiles it):",
            "",
            "```sql",
            scaling["list_sql"],
            "```",
            "",
        ]
    for tasks, plan in scaling.get("explain", {}).items():
        lines += [f"EXPLAIN (ANALYZE, BUFFERS) of that statement for the user with {tasks} tasks:", "", "```"]
        lines += plan
        lines += ["```", ""]
    lines += _one_connection_table("Create latency by table size", "table_rows", scaling.get("create_by_rows"))
    if scaling.get("workers"):
        lines += [
            "### Workers (no pinning: servers, wrk and PostgreSQL share both cores)",
            "",
            "| target | workers | scenario | conns | req/s | p50 ms | p99 ms | non-2xx | RSS MiB |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['target']} | {r['workers']} | {r['scenario']} | {r['connections']} | {_num(r['rps'])} | "
            f"{_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {r['non2xx']} | {_num(r['rss_mib'], 1)} |"
            for r in scaling["workers"]
        ]
        lines.append("")
    return lines


def _network(network: Result) -> list[str]:
    if not network.get("runs"):
        return []
    lines = [
        f"## Network mode ({network['rtt_ms']:g} ms added per round trip by bench/proxy.py)",
        "",
        "Both apps reach PostgreSQL through the delay proxy, which also counts round trips: client bursts the "
        "server answers (see bench/README.md). Round trips per request are those counts divided by the requests "
        "served (wrk's completed requests plus the one in flight per connection).",
        "",
        "| scenario | conns | service p50 ms | limit p50 ms | p50 ratio | service p99 ms | limit p99 ms "
        "| service round trips/req | limit round trips/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {p['scenario']} | {p['connections']} | {_ms(p['service_p50_ms'])} | {_ms(p['limit_p50_ms'])} | "
        f"{_num(p['p50_ratio'], 2)} | {_ms(p['service_p99_ms'])} | {_ms(p['limit_p99_ms'])} | "
        f"{p['service_round_trips']:.2f} | {p['limit_round_trips']:.2f} |"
        for p in network_pairs(network)
    ]
    lines += [
        "",
        "| scenario | conns | target | req/s | p50 ms | p95 ms | p99 ms | errors | non-2xx | round trips/req "
        "| Sync+Flush+Query/req | measured added delay ms | connections opened | server CPU % | other CPU % |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['scenario']} | {r['connections']} | {r['target']} | {_num(r['rps'])} | {_ms(r['p50_ms'])} | "
        f"{_ms(r['p95_ms'])} | {_ms(r['p99_ms'])} | {r['errors']} | {r['non2xx']} | "
        f"{r['round_trips_per_request']:.2f} | {r['answered_messages_per_request']:.2f} | "
        f"{r['added_delay_ms']:.2f} | {r['connections_opened']} | {_num(r.get('server_cpu_pct'))} | "
        f"{_num(r.get('other_cpu_pct'))} |"
        for r in network["runs"]
    ]
    return [*lines, ""]


def _worst(what: str, items: list[Result], key: str, bar: float, *, floor: bool = False) -> tuple[str, str, bool]:
    """The worst of `items` against `bar` (a floor for throughput ratios, else a ceiling)."""
    worst = (min if floor else max)(items, key=lambda item: item[key])
    value = worst[key]
    where = f"{value:.2f} ({worst['scenario']}, {worst['connections']} conns)"
    return what, where, value >= bar if floor else value <= bar


def _targets(results: Result) -> list[str]:
    """Issue 11's bars against the worst figure of each kind; they count only on a shipped-defaults run."""
    rows: list[tuple[str, str, bool]] = []
    by_conns: dict[int, list[Result]] = {}
    for ratio in results["ratios"]:
        by_conns.setdefault(ratio["connections"], []).append(ratio)
    for conns, items in sorted(by_conns.items()):
        bar = 0.65 if conns <= 50 else 0.6
        rows.append(_worst(f"throughput >= {bar}x the limit, {conns} connections", items, "ratio", bar, floor=True))
        tails = [item for item in items if item.get("p99_ratio") is not None]
        if tails:
            rows.append(_worst(f"p99 <= 1.5x the limit's p99, {conns} connections", tails, "p99_ratio", 1.5))
    pairs = network_pairs(results.get("network") or {})
    if pairs:
        rows.append(_worst("network: 1.0 round trip per request (<= 1.05)", pairs, "service_round_trips", 1.05))
        single = [p for p in pairs if p["connections"] == 1 and p["p50_ratio"] is not None]
        if single:
            rows.append(_worst("network: p50 at 1 connection <= 1.15x the limit's", single, "p50_ratio", 1.15))
    runs = [*results["runs"], *(results.get("network") or {}).get("runs", [])]
    failed = sum(run["errors"] + run["non2xx"] for run in runs)
    rows.append(("zero errors and zero non-2xx throughout", f"{failed:,}", failed == 0))
    shipped = results["meta"].get("settings", "shipped defaults") == "shipped defaults"
    lines = [
        "## Targets (issue 11: shipped defaults, one pinned worker, ratios against the limit app)",
        "",
        *([] if shipped else ["**Tuned run: these figures do not count against the targets.**", ""]),
        "| target | worst measured | met |",
        "|---|---:|:---:|",
    ]
    lines += [f"| {what} | {worst} | {'yes' if met else '**no**'} |" for what, worst, met in rows]
    return [*lines, ""]


def markdown(results: Result) -> str:
    meta = results["meta"]
    lines = [
        "# todo-api benchmark",
        "",
        f"{meta['mode']} run ({meta.get('settings', 'shipped defaults')}), {meta['started']}, "
        f"{meta['elapsed_s']:.0f} s in all. "
        f"{meta['duration_s']:g} s per measured run, connections {', '.join(map(str, meta['connections']))}.",
        "",
    ]
    lines += [f"- {note}" for note in meta["notes"]]
    every_run = [*results["runs"], *(results.get("network") or {}).get("runs", [])]
    disturbed = [run for run in every_run if (run.get("other_cpu_pct") or 0) > DISTURBED_PCT]
    if disturbed:
        worst = max(run["other_cpu_pct"] for run in disturbed)
        lines.append(
            f"- **Warning: other processes used more than {DISTURBED_PCT}% of the machine during {len(disturbed)} "
            f"of {len(every_run)} runs (up to {worst:.0f}%)**: those figures are disturbed; "
            "rerun on a quiet machine (column 'other CPU %')."
        )
    lines.append("")
    lines += _targets(results)
    if results["ratios"]:
        lines += [
            "## Service ÷ limit (requests/s, and p99 as a multiple of the limit's p99 in the same pair of runs)",
            "",
            "| scenario | conns | service req/s | limit req/s | ratio | service p99 ms | limit p99 ms | p99 ratio |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['scenario']} | {r['connections']} | {_num(r['service_rps'])} | {_num(r['limit_rps'])} | "
            f"{r['ratio']:.2f} | {_ms(r.get('service_p99_ms'))} | {_ms(r.get('limit_p99_ms'))} | "
            f"{_num(r.get('p99_ratio'), 2)} |"
            for r in results["ratios"]
        ]
        lines.append("")
    lines += _network(results.get("network") or {})
    lines += ["## All runs", "", *_runs_table(results["runs"]), ""]
    tops = [
        run for run in results["runs"] if run.get("top_statements") and run["connections"] == min(meta["connections"])
    ]
    if tops:
        lines += ["## Statements seen (pg_stat_statements, calls per run)", ""]
        for run in tops:
            lines.append(
                f"- **{run['target']} / {run['scenario']}**: "
                + "; ".join(f"{calls}x `{query[:90]}`" for calls, query in run["top_statements"][:4])
            )
        lines.append("")
    scaling = _scaling(results.get("scaling", {}))
    if scaling:
        lines += ["## Scaling", "", *scaling]
    failed = [(target, check) for target, checks in results["contract"].items() for check in checks if not check["ok"]]
    lines += ["## Contract check before the load", ""]
    if failed:
        lines += [f"- ✗ {target}: {check['check']}: {check['detail']}" for target, check in failed]
    else:
        lines += [f"- ✓ {target}: all {len(checks)} checks passed" for target, checks in results["contract"].items()]
    lines.append("")
    return "\n".join(lines)


def write(results: Result, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    results["ratios"] = ratios(results["runs"])
    (directory / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (directory / "results.md").write_text(markdown(results))
    if results["runs"]:
        from bench import chart  # matplotlib only when there is something to draw

        chart.draw(results, directory / "chart.png")


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
    write(json.loads((folder / "results.json").read_text()), folder)
