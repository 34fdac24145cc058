"""Native speed-ups from a pytest-benchmark JSON file: ``python benches/ratios.py .bench/latest.json``.

Prints one table: for each operation (benchmark group) the median time of the ``rust`` core and of the
``python`` core (pytest-benchmark's ``stats.median``, seconds per call), the speed-up python/rust, and for the
batch rows also the medians per item (``extra_info["items"]``). A derived row compares the native batch, per
item, with one pure-Python ``verify``. Ratios with an acceptance threshold are marked PASS or FAIL.

A second table, for the load benchmark (``benches/test_bench_load.py``, group ``load_check``): the medians its
``extra_info`` holds of the bare aiohttp handler's and ``/v1/check``'s requests/s and p99 latency, their ratio
check/bare, and PASS or FAIL against the goal (0.60).

A third table, for the speed goals (``benches/test_bench_goals.py``, group ``goals``, and the writes benchmark
``benches/test_bench_writes.py``, group ``writes``): requests/s, p99 and server CPU per request of each series at
each concurrency, then one row per goal of the scale issue: measured, goal, met or not. Goals are reported,
not enforced by the exit status (the lead judges them on a quiet machine); only missing figures are.
``benches/plot.py`` draws the same figures into ``.bench/report.png``.

Each table is printed and checked only when the file holds any of its benchmarks (so a run of only the load
benchmark, or only the core ones, is judged on what it ran); a file with neither is missing results.

Exit status: 0 when every threshold passes; 1 when one fails; 2 when results are missing (for instance the
benchmarks ran without the native module, so there is no ``rust`` core to compare) or the file is unusable.
Standard library only.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

OPERATIONS = ("sign", "verify", "verify_batch_64", "verify_batch_1024", "decode_token", "best_match_10000")
# operation -> the least acceptable python/rust ratio
THRESHOLDS = {"sign": 1.5, "verify": 2.0, "best_match_10000": 30.0}
DERIVED = "verify_batch_1024 per item vs python verify"
DERIVED_THRESHOLD = 4.0
CORES = ("rust", "python")

EXIT_FAIL = 1
EXIT_MISSING = 2

LOAD_GROUP = "load_check"
LOAD_GOAL = 0.60  # the least acceptable check rps / bare rps
LOAD_FIELDS = ("bare_rps", "bare_p99_ms", "check_rps", "check_p99_ms", "ratio")


def _core_of(bench: dict[str, Any]) -> str | None:
    params = bench.get("params") or {}
    named = params.get("core") if isinstance(params, dict) else None
    if isinstance(named, str):
        return named
    param = bench.get("param")
    if isinstance(param, str):
        return param
    found = re.search(r"\[(rust|python)\]$", str(bench.get("name", "")))
    return found.group(1) if found else None


def _items_of(operation: str, bench: dict[str, Any]) -> int | None:
    items = (bench.get("extra_info") or {}).get("items")
    if isinstance(items, int) and items > 0:
        return items
    found = re.fullmatch(r"verify_batch_(\d+)", operation)
    return int(found.group(1)) if found else None


def _load(path: str) -> tuple[dict[tuple[str, str], float], dict[str, int]]:
    """(operation, core) -> median seconds, and operation -> items per call for the batch operations."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    medians: dict[tuple[str, str], float] = {}
    items: dict[str, int] = {}
    for bench in data.get("benchmarks", []):
        operation, core = bench.get("group"), _core_of(bench)
        median = (bench.get("stats") or {}).get("median")
        if operation not in OPERATIONS or core not in CORES or not isinstance(median, (int, float)):
            continue
        medians[(operation, core)] = float(median)
        if operation.startswith("verify_batch_"):
            count = _items_of(operation, bench)
            if count:
                items[operation] = count
    return medians, items


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}" if seconds / scale < 100 else f"{seconds / scale:.0f} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _load_runs(path: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, extra_info) of every load benchmark (group ``load_check``) in the file."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    return [
        (str(bench.get("name", LOAD_GROUP)), dict(bench.get("extra_info") or {}))
        for bench in data.get("benchmarks", [])
        if bench.get("group") == LOAD_GROUP
    ]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        return "  ".join(cells).rstrip()

    print(line(header))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print(line(row))


def _load_table(runs: list[tuple[str, dict[str, Any]]]) -> int:
    """Print the load table; its exit status (0, EXIT_FAIL or EXIT_MISSING)."""
    header = ("load benchmark", "bare rps", "bare p99", "check rps", "check p99", "check/bare", "goal", "result")
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    failed: list[str] = []
    missing: list[str] = []
    for name, info in runs:
        values = {field: _number(info.get(field)) for field in LOAD_FIELDS}
        bare_rps, check_rps = values["bare_rps"], values["check_rps"]
        ratio = values["ratio"] if values["ratio"] is not None else _ratio(check_rps, bare_rps)
        goal = _number(info.get("goal")) or LOAD_GOAL
        if ratio is None or any(values[field] is None for field in LOAD_FIELDS if field != "ratio"):
            missing.append(name)
            result = "MISSING"
        elif ratio >= goal:
            result = "PASS"
        else:
            failed.append(f"{name}: check/bare {ratio:.2f} < {goal:.2f}")
            result = "FAIL"

        def ms(value: float | None) -> str:
            return "-" if value is None else _duration(value / 1e3)

        rows.append(
            (
                name,
                "-" if bare_rps is None else f"{bare_rps:.0f}/s",
                ms(values["bare_p99_ms"]),
                "-" if check_rps is None else f"{check_rps:.0f}/s",
                ms(values["check_p99_ms"]),
                "-" if ratio is None else f"{ratio:.2f}",
                f">= {goal:.2f}",
                result,
            )
        )
        per_round = info.get("ratios_per_round")
        rounds = (
            ", ".join(f"{value:.2f}" for value in per_round if _number(value) is not None) if isinstance(per_round, list) else "-"
        )
        notes.append(
            f"{name}: medians over {info.get('rounds', '?')} alternating rounds of {info.get('seconds_per_run', '?')} s "
            f"per server, {info.get('concurrency', '?')} connections, core {info.get('core', '?')}; "
            f"check/bare per round: {rounds}"
        )
        distinct_rps, distinct_ratio = _number(info.get("distinct_rps")), _number(info.get("distinct_ratio"))
        if distinct_rps is not None and distinct_ratio is not None:
            notes.append(
                f"{name}: every request distinct (no kept answer, the full pipeline; not judged): {distinct_rps:.0f}/s, "
                f"p99 {ms(_number(info.get('distinct_p99_ms')))}, check/bare {distinct_ratio:.2f}, server CPU "
                f"{_number(info.get('distinct_server_cpu_us')) or 0:.0f} us per request"
            )
        bare_cpu, check_cpu = _number(info.get("bare_server_cpu_us")), _number(info.get("check_server_cpu_us"))
        if bare_cpu is not None and check_cpu is not None and check_cpu > 0:
            notes.append(
                f"{name}: server CPU per request (median): bare {bare_cpu:.0f} us, check {check_cpu:.0f} us "
                f"(bare/check {bare_cpu / check_cpu:.2f})"
            )

    _print_table(header, rows)
    print("\nrequests/s and p99 latency of a bare aiohttp JSON handler and of /v1/check, one process each, on 127.0.0.1.")
    for note in notes:
        print(note)

    if missing:
        print(f"\nratios: incomplete load results for: {', '.join(missing)}", file=sys.stderr)
        return EXIT_MISSING
    if failed:
        print("\nratios: load below goal: " + "; ".join(failed), file=sys.stderr)
        return EXIT_FAIL
    return 0


GOALS_GROUPS = ("goals", "writes")


def _goal_runs(path: str) -> list[tuple[str, dict[str, Any]]]:
    """(group, extra_info) of the speed-goal benchmarks (groups ``goals`` and ``writes``) in the file."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    return [
        (str(bench.get("group")), dict(bench.get("extra_info") or {}))
        for bench in data.get("benchmarks", [])
        if bench.get("group") in GOALS_GROUPS
    ]


def _goal_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "us":
        return f"{value:.1f} us"
    if unit == "ms":
        return f"{value:.2f} ms"
    return f"{value:.2f}x"


def _goals_table(runs: list[tuple[str, dict[str, Any]]]) -> int:
    """Print the speed-goal tables; EXIT_MISSING when a goal has no figure, else 0 (goals are reported)."""
    missing: list[str] = []
    for group, info in runs:
        series = info.get("series") or {}
        if series:
            header = ("series", *(f"{c} conn." for c in info.get("concurrency", [])))
            rows = []
            for name, by_concurrency in series.items():
                for field, show in (
                    ("rps", lambda v: f"{v:.0f}/s"),
                    ("p99_ms", lambda v: _duration(v / 1e3)),
                    ("server_cpu_us", lambda v: f"{v:.0f} us"),
                    ("server_cpu_share", lambda v: f"{v:.2f}"),
                ):
                    cells = []
                    for concurrency in info.get("concurrency", []):
                        value = _number((by_concurrency.get(str(concurrency)) or {}).get(field))
                        cells.append("-" if value is None else show(value))
                    rows.append((f"{name} {field.replace('_', ' ')}", *cells))
            _print_table(header, rows)
            print(
                f"\n{group}: medians over {info.get('rounds', '?')} rounds of {info.get('seconds_per_run', '?')} s per run; "
                "server cpu us = CPU of the series' server processes per request; server cpu share = the cores they kept busy.\n"
            )
        for line in info.get("notes", []):
            print(f"{group}: {line}")
    header = ("goal", "measured", "goal", "result")
    rows = []
    for _, info in runs:
        for row in info.get("goals", []):
            measured, target, unit = _number(row.get("measured")), _number(row.get("target")), str(row.get("unit", "x"))
            if measured is None or target is None:
                missing.append(str(row.get("goal")))
                result = "MISSING"
            elif row.get("report"):
                result = "report"
            else:
                result = "met" if row.get("met") else "NOT MET"
            bound = "<=" if row.get("at_most") else ">="
            rows.append((str(row.get("goal")), _goal_value(measured, unit), f"{bound} {_goal_value(target, unit)}", result))
    if rows:
        print()
        _print_table(header, rows)
    if missing:
        print(f"\nratios: speed goals without a figure: {', '.join(missing)}", file=sys.stderr)
        return EXIT_MISSING
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} BENCHMARK_JSON", file=sys.stderr)
        return EXIT_MISSING
    try:
        medians, items = _load(argv[1])
        load_runs = _load_runs(argv[1])
        goal_runs = _goal_runs(argv[1])
    except (OSError, ValueError, AttributeError) as error:
        print(f"ratios: cannot read {argv[1]}: {error}", file=sys.stderr)
        return EXIT_MISSING
    if not medians and not load_runs and not goal_runs:
        print(f"ratios: no results of the core or load benchmarks in {argv[1]}", file=sys.stderr)
        return EXIT_MISSING
    statuses = []
    if medians:
        statuses.append(_core_table(medians, items))
    if load_runs:
        if medians:
            print()
        statuses.append(_load_table(load_runs))
    if goal_runs:
        if medians or load_runs:
            print()
        statuses.append(_goals_table(goal_runs))
    if EXIT_MISSING in statuses:
        return EXIT_MISSING
    if EXIT_FAIL in statuses:
        return EXIT_FAIL
    return 0


def _core_table(medians: dict[tuple[str, str], float], items: dict[str, int]) -> int:
    """Print the native speed-ups table; its exit status (0, EXIT_FAIL or EXIT_MISSING)."""
    header = ("operation", "rust", "python", "rust/item", "python/item", "python/rust", "threshold", "result")
    rows: list[tuple[str, ...]] = []
    failed: list[str] = []
    missing: list[str] = []

    def verdict(name: str, ratio: float | None, threshold: float | None) -> tuple[str, str]:
        if threshold is None:
            if ratio is None:
                missing.append(name)
                return "-", "MISSING"
            return "-", "-"
        if ratio is None:
            missing.append(name)
            return f">= {threshold:.1f}x", "MISSING"
        if ratio >= threshold:
            return f">= {threshold:.1f}x", "PASS"
        failed.append(f"{name}: {ratio:.2f}x < {threshold:.1f}x")
        return f">= {threshold:.1f}x", "FAIL"

    for operation in OPERATIONS:
        rust, python = medians.get((operation, "rust")), medians.get((operation, "python"))
        ratio = _ratio(python, rust)
        count = items.get(operation)
        rust_item = rust / count if rust is not None and count else None
        python_item = python / count if python is not None and count else None
        threshold, result = verdict(operation, ratio, THRESHOLDS.get(operation))
        rows.append(
            (
                operation if not count else f"{operation} ({count} items)",
                _duration(rust),
                _duration(python),
                _duration(rust_item) if count else "",
                _duration(python_item) if count else "",
                f"{ratio:.2f}x" if ratio is not None else "-",
                threshold,
                result,
            )
        )

    # One native batch of 1024, per item, against one pure-Python verify call.
    batch = medians.get(("verify_batch_1024", "rust"))
    batch_items = items.get("verify_batch_1024", 1024)
    rust_per_item = batch / batch_items if batch is not None else None
    python_verify = medians.get(("verify", "python"))
    ratio = _ratio(python_verify, rust_per_item)
    threshold, result = verdict(DERIVED, ratio, DERIVED_THRESHOLD)
    rows.append(
        (
            DERIVED,
            "",
            "",
            _duration(rust_per_item),
            _duration(python_verify),
            f"{ratio:.2f}x" if ratio is not None else "-",
            threshold,
            result,
        )
    )

    _print_table(header, rows)
    print(
        "\nmedian time per call (pytest-benchmark stats.median); python/rust = native speed-up."
        f"\nlast row: rust/item = rust verify_batch_1024 median / {batch_items}, python/item = python verify median."
    )

    if not any(core == "rust" for _, core in medians):
        print(
            "\nratios: no rust results: the benchmarks ran without the native module (built? LICENSOR_PURE_PYTHON?)",
            file=sys.stderr,
        )
        return EXIT_MISSING
    if missing:
        print(f"\nratios: missing results for: {', '.join(missing)}", file=sys.stderr)
        return EXIT_MISSING
    if failed:
        print("\nratios: below threshold: " + "; ".join(failed), file=sys.stderr)
        return EXIT_FAIL
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
