"""The speed goals' plot: ``python benches/plot.py .bench/latest.json .bench/report.png``.

Reads the ``goals`` benchmark's medians (``benches/test_bench_goals.py``: series -> concurrency -> requests/s
and p99) from a pytest-benchmark JSON file and draws two panels side by side, requests/s and p99 latency
against concurrency (log scale), one line per series, with the goal rows of every speed-goal benchmark
(``goals``, ``writes``) printed under them. Exit status: 0 when written, 2 when the file holds no goals results.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: a file only
import matplotlib.pyplot as plt

EXIT_MISSING = 2


def _goal_infos(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    return [dict(b.get("extra_info") or {}) for b in data.get("benchmarks", []) if b.get("group") in ("goals", "writes")]


def _goal_line(row: dict[str, Any]) -> str:
    measured, target, unit = row.get("measured"), row.get("target"), row.get("unit", "x")
    shown = "-" if measured is None else (f"{measured:.1f} {unit}" if unit != "x" else f"{measured:.2f}x")
    bound = ("<= " if row.get("at_most") else ">= ") + (f"{target:g} {unit}" if unit != "x" else f"{target:g}x")
    verdict = (
        "missing" if row.get("met") is None else ("report" if row.get("report") else ("met" if row.get("met") else "NOT met"))
    )
    return f"{row.get('goal')}: {shown} (goal {bound}) {verdict}"


def draw(infos: list[dict[str, Any]], out: str) -> None:
    figure, (rps_axes, p99_axes) = plt.subplots(1, 2, figsize=(13, 7.5))
    for info in infos:
        for name, by_concurrency in (info.get("series") or {}).items():
            points = sorted((int(c), figures) for c, figures in by_concurrency.items() if figures.get("rps"))
            xs = [c for c, _ in points]
            rps_axes.plot(xs, [f["rps"] for _, f in points], marker="o", label=name)
            p99_axes.plot(xs, [f["p99_ms"] for _, f in points], marker="o", label=name)
    for axes, title, unit in ((rps_axes, "requests/s", "requests/s"), (p99_axes, "p99 latency", "ms")):
        axes.set_xscale("log", base=2)
        axes.set_xlabel("concurrent connections")
        axes.set_ylabel(unit)
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
    lines = [_goal_line(row) for info in infos for row in info.get("goals", [])]
    figure.text(0.01, 0.01, "\n".join(lines), fontsize=8, family="monospace", va="bottom")
    figure.subplots_adjust(bottom=0.12 + 0.022 * len(lines), wspace=0.25)
    figure.suptitle("licensor make bench: medians of one run on 127.0.0.1 (ratios count, not absolute figures)")
    figure.savefig(out, dpi=110)
    plt.close(figure)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} BENCHMARK_JSON OUT_PNG", file=sys.stderr)
        return EXIT_MISSING
    infos = _goal_infos(argv[1])
    if not infos:
        print(f"plot: no speed-goal results in {argv[1]}", file=sys.stderr)
        return EXIT_MISSING
    draw(infos, argv[2])
    print(f"plot: wrote {argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
