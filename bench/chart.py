"""chart.png: throughput and the tail (p99) per scenario at each concurrency, service beside limit,
labelled with service ÷ limit; and the network mode's latency, labelled with round trips per request.
"""

from pathlib import Path
from typing import Any

from bench.report import Result, find

COLORS = {"service": "#d9534f", "limit": "#5b8def"}


def _bars(ax: Any, runs: list[Result], scenarios: list[str], targets: list[str], conns: int, key: str) -> list[Any]:
    """One bar per scenario and target; returns each target's bar containers."""
    width = 0.8 / max(len(targets), 1)
    containers = []
    for index, target in enumerate(targets):
        values = []
        for scenario in scenarios:
            run = find(runs, target, scenario, conns)
            values.append(run[key] if run and run[key] is not None else 0.0)
        positions = [i + (index - (len(targets) - 1) / 2) * width for i in range(len(scenarios))]
        containers.append(ax.bar(positions, values, width, label=target, color=COLORS.get(target)))
    ax.set_xticks(range(len(scenarios)), scenarios, rotation=30)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return containers


def _service_over_limit(runs: list[Result], scenarios: list[str], conns: int, key: str) -> list[str]:
    labels = []
    for scenario in scenarios:
        service, limit = find(runs, "service", scenario, conns), find(runs, "limit", scenario, conns)
        labels.append(f"{service[key] / limit[key]:.2f}x" if service and limit and limit[key] else "")
    return labels


def draw(results: Result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: list[Result] = results["runs"]
    connections: list[int] = results["meta"]["connections"]
    network: list[Result] = (results.get("network") or {}).get("runs", [])
    network_conns = sorted({run["connections"] for run in network})
    scenarios = list(dict.fromkeys(run["scenario"] for run in runs))
    targets = list(dict.fromkeys(run["target"] for run in runs))
    columns = max(len(connections), len(network_conns), 1)
    rows = 3 if network else 2
    figure, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.2 * rows), squeeze=False)
    for column, conns in enumerate(connections):
        ax = axes[0][column]
        bars = _bars(ax, runs, scenarios, targets, conns, "rps")
        if "service" in targets:
            ax.bar_label(bars[targets.index("service")], _service_over_limit(runs, scenarios, conns, "rps"), fontsize=8)
        ax.set_ylabel("requests/s")
        ax.set_title(f"throughput, {conns} connections (label: service ÷ limit)")
        ax = axes[1][column]
        bars = _bars(ax, runs, scenarios, targets, conns, "p99_ms")
        if "service" in targets:
            labels = _service_over_limit(runs, scenarios, conns, "p99_ms")
            ax.bar_label(bars[targets.index("service")], labels, fontsize=8)
        ax.set_ylabel("p99 latency (ms)")
        ax.set_title(f"tail: p99, {conns} connections (label: service p99 ÷ limit p99)")
    if network:
        rtt = results["network"]["rtt_ms"]
        net_scenarios = list(dict.fromkeys(run["scenario"] for run in network))
        net_targets = list(dict.fromkeys(run["target"] for run in network))
        for column, conns in enumerate(network_conns):
            ax = axes[2][column]
            bars = _bars(ax, network, net_scenarios, net_targets, conns, "p50_ms")
            for container, target in zip(bars, net_targets, strict=True):
                labels = []
                for scenario in net_scenarios:
                    run = find(network, target, scenario, conns)
                    labels.append(f"{run['round_trips_per_request']:.2f}" if run else "")
                    if run:  # p99 as a tick above the p50 bar
                        ax.plot(
                            [container[len(labels) - 1].get_x() + container[len(labels) - 1].get_width() / 2],
                            [run["p99_ms"]],
                            marker="_",
                            color="black",
                            markersize=10,
                        )
                ax.bar_label(container, labels, fontsize=7)
            ax.set_ylabel("latency (ms): bar p50, tick p99")
            ax.set_title(f"network +{rtt:g} ms/round trip, {conns} conn. (label: round trips/req)")
    for row in axes:
        for ax in row:
            if not ax.has_data():
                ax.set_visible(False)
    figure.suptitle(f"todo-api: service vs limit app ({results['meta']['mode']} run)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
