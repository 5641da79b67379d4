"""Turn the runner's results into results.json, results.md and chart.png.

Kept apart from run.py so a results.json can be re-rendered (`python -m bench.report DIR`) without
running the load again.
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


def _find(runs: list[Result], target: str, scenario: str, connections: int) -> Result | None:
    for run in runs:
        if (run["target"], run["scenario"], run["connections"]) == (target, scenario, connections):
            return run
    return None


def ratios(runs: list[Result]) -> list[Result]:
    """service req/s ÷ limit req/s for every scenario and concurrency both targets ran."""
    out = []
    for run in runs:
        if run["target"] != "service":
            continue
        limit = _find(runs, "limit", run["scenario"], run["connections"])
        if limit and limit["rps"]:
            out.append(
                {
                    "scenario": run["scenario"],
                    "connections": run["connections"],
                    "service_rps": run["rps"],
                    "limit_rps": limit["rps"],
                    "ratio": run["rps"] / limit["rps"],
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


def _scaling(scaling: Result) -> list[str]:
    lines: list[str] = []
    if scaling.get("list_by_size"):
        lines += [
            "### List latency by tasks per user (1 connection)",
            "",
            "| target | tasks | req/s | p50 ms | p95 ms | p99 ms | non-2xx |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['target']} | {r['tasks']} | {_num(r['rps'])} | {_ms(r['p50_ms'])} | {_ms(r['p95_ms'])} | "
            f"{_ms(r['p99_ms'])} | {r['non2xx']} |"
            for r in scaling["list_by_size"]
        ]
        lines.append("")
    for tasks, plan in scaling.get("explain", {}).items():
        lines += [f"EXPLAIN (ANALYZE, BUFFERS) of the list query for the user with {tasks} tasks:", "", "```"]
        lines += plan
        lines += ["```", ""]
    if scaling.get("create_by_rows"):
        lines += [
            "### Create latency by table size (1 connection)",
            "",
            "| target | rows in table | req/s | p50 ms | p95 ms | p99 ms | non-2xx |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['target']} | {r['table_rows']:,} | {_num(r['rps'])} | {_ms(r['p50_ms'])} | {_ms(r['p95_ms'])} | "
            f"{_ms(r['p99_ms'])} | {r['non2xx']} |"
            for r in scaling["create_by_rows"]
        ]
        lines.append("")
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


def markdown(results: Result) -> str:
    meta = results["meta"]
    lines = [
        "# todo-api benchmark",
        "",
        f"{meta['mode']} run, {meta['started']}, {meta['elapsed_s']:.0f} s in all. "
        f"{meta['duration_s']:g} s per measured run, connections {', '.join(map(str, meta['connections']))}.",
        "",
    ]
    lines += [f"- {note}" for note in meta["notes"]]
    disturbed = [run for run in results["runs"] if (run.get("other_cpu_pct") or 0) > DISTURBED_PCT]
    if disturbed:
        worst = max(run["other_cpu_pct"] for run in disturbed)
        lines.append(
            f"- **Warning: other processes used more than {DISTURBED_PCT}% of the machine during {len(disturbed)} "
            f"of {len(results['runs'])} runs (up to {worst:.0f}%)**: those figures are disturbed; "
            "rerun on a quiet machine (column 'other CPU %')."
        )
    lines.append("")
    if results["ratios"]:
        lines += [
            "## Service ÷ limit (requests/s)",
            "",
            "| scenario | conns | service req/s | limit req/s | ratio |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['scenario']} | {r['connections']} | {_num(r['service_rps'])} | {_num(r['limit_rps'])} | "
            f"{r['ratio']:.2f} |"
            for r in results["ratios"]
        ]
        lines.append("")
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


def chart(results: Result, path: Path) -> None:
    """Requests/s and p99 per scenario, one column per concurrency, service beside limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: list[Result] = results["runs"]
    connections: list[int] = results["meta"]["connections"]
    scenarios = list(dict.fromkeys(run["scenario"] for run in runs))
    targets = list(dict.fromkeys(run["target"] for run in runs))
    colors = {"service": "#d9534f", "limit": "#5b8def"}
    figure, axes = plt.subplots(2, len(connections), figsize=(6 * len(connections), 8), squeeze=False)
    width = 0.8 / max(len(targets), 1)
    for column, conns in enumerate(connections):
        for row, (key, label) in enumerate((("rps", "requests/s"), ("p99_ms", "p99 latency (ms)"))):
            ax = axes[row][column]
            for index, target in enumerate(targets):
                values = []
                for scenario in scenarios:
                    run = _find(runs, target, scenario, conns)
                    values.append(run[key] if run and run[key] is not None else 0.0)
                positions = [i + (index - (len(targets) - 1) / 2) * width for i in range(len(scenarios))]
                bars = ax.bar(positions, values, width, label=target, color=colors.get(target))
                if key == "rps" and target == "service":
                    labels = []
                    for scenario in scenarios:
                        service, limit = _find(runs, "service", scenario, conns), _find(runs, "limit", scenario, conns)
                        labels.append(
                            f"{service['rps'] / limit['rps']:.2f}x" if service and limit and limit["rps"] else ""
                        )
                    ax.bar_label(bars, labels, fontsize=8)
            ax.set_xticks(range(len(scenarios)), scenarios, rotation=30)
            ax.set_ylabel(label)
            ax.set_title(f"{label}, {conns} connections")
            ax.grid(axis="y", alpha=0.3)
            ax.legend()
    figure.suptitle(f"todo-api: service vs limit app ({results['meta']['mode']} run)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results: Result, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    results["ratios"] = ratios(results["runs"])
    (directory / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (directory / "results.md").write_text(markdown(results))
    if results["runs"]:
        chart(results, directory / "chart.png")


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
    write(json.loads((folder / "results.json").read_text()), folder)
