"""The report's verdicts: ratios pair runs of the same scenario and concurrency, and the targets
table judges the worst figure of each kind, so one bad scenario cannot hide behind good ones."""

from typing import Any

from bench.report import markdown, network_pairs, ratios


def _run(target: str, scenario: str, connections: int, rps: float, p99: float, **extra: Any) -> dict[str, Any]:
    return {
        "target": target,
        "scenario": scenario,
        "connections": connections,
        "rps": rps,
        "p50_ms": p99 / 4,
        "p95_ms": p99 / 2,
        "p99_ms": p99,
        "errors": 0,
        "non2xx": 0,
        "statuses": {},
        "statements_per_request": 1.0,
        "transactions_per_request": None,
        "rss_mib": 100.0,
        **extra,
    }


def _network(target: str, scenario: str, connections: int, p50: float, trips: float) -> dict[str, Any]:
    return {
        **_run(target, scenario, connections, 300.0, p50 * 3),
        "p50_ms": p50,
        "round_trips_per_request": trips,
        "answered_messages_per_request": trips,
        "added_delay_ms": 2.1,
        "connections_opened": 0,
    }


def _results(settings: str = "shipped defaults") -> dict[str, Any]:
    runs = [
        _run("service", "list", 50, 700.0, 30.0),
        _run("limit", "list", 50, 1000.0, 20.0),
        _run("service", "get", 50, 900.0, 12.0),
        _run("limit", "get", 50, 1000.0, 12.0),
        _run("service", "get", 200, 650.0, 100.0),
        _run("limit", "get", 200, 1000.0, 80.0),
    ]
    network = [
        _network("service", "get", 1, 2.5, 2.0),
        _network("limit", "get", 1, 2.4, 1.0),
        _network("service", "list", 1, 2.6, 1.0),
        _network("limit", "list", 1, 2.5, 1.0),
    ]
    results: dict[str, Any] = {
        "meta": {
            "mode": "full",
            "started": "2026-01-01T00:00:00+00:00",
            "elapsed_s": 1.0,
            "duration_s": 8,
            "connections": [50, 200],
            "settings": settings,
            "notes": [],
        },
        "contract": {"service": [{"check": "401", "ok": True, "detail": ""}]},
        "runs": runs,
        "scaling": {},
        "network": {"rtt_ms": 2.0, "runs": network},
    }
    results["ratios"] = ratios(runs)
    return results


def _targets(text: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in text.split("## Targets", 1)[1].split("\n## ", 1)[0].splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[2] in {"yes", "**no**"}:
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_ratios_pair_the_same_scenario_and_concurrency() -> None:
    by_key = {(r["scenario"], r["connections"]): r for r in ratios(_results()["runs"])}
    assert by_key[("list", 50)]["ratio"] == 0.7
    assert by_key[("list", 50)]["p99_ratio"] == 1.5
    assert by_key[("get", 200)]["ratio"] == 0.65
    assert by_key[("get", 200)]["p99_ratio"] == 1.25


def test_network_pairs_carry_both_round_trip_counts() -> None:
    pairs = {p["scenario"]: p for p in network_pairs(_results()["network"])}
    assert pairs["get"]["service_round_trips"] == 2.0
    assert pairs["get"]["limit_round_trips"] == 1.0
    assert round(pairs["list"]["p50_ratio"], 2) == 1.04


def test_targets_judge_the_worst_figure() -> None:
    targets = _targets(markdown(_results()))
    assert targets["throughput >= 0.65x the limit, 50 connections"] == ("0.70 (list, 50 conns)", "yes")
    assert targets["p99 <= 1.5x the limit's p99, 50 connections"] == ("1.50 (list, 50 conns)", "yes")
    assert targets["throughput >= 0.6x the limit, 200 connections"] == ("0.65 (get, 200 conns)", "yes")
    # One scenario with two round trips fails the network target, whatever the others do.
    assert targets["network: 1.0 round trip per request (<= 1.05)"] == ("2.00 (get, 1 conns)", "**no**")
    assert targets["zero errors and zero non-2xx throughout"] == ("0", "yes")


def test_a_tuned_run_says_its_figures_do_not_count() -> None:
    text = markdown(_results("tuned"))
    assert "(tuned)" in text.splitlines()[2]
    assert "**Tuned run: these figures do not count against the targets.**" in text
