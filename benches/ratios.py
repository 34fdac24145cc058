"""Native speed-ups from a pytest-benchmark JSON file: ``python benches/ratios.py .bench/latest.json``.

Prints one table: for each operation (benchmark group) the median time of the ``rust`` core and of the
``python`` core (pytest-benchmark's ``stats.median``, seconds per call), the speed-up python/rust, and for the
batch rows also the medians per item (``extra_info["items"]``). A derived row compares the native batch, per
item, with one pure-Python ``verify``. Ratios with an acceptance threshold are marked PASS or FAIL.

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


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} BENCHMARK_JSON", file=sys.stderr)
        return EXIT_MISSING
    try:
        medians, items = _load(argv[1])
    except (OSError, ValueError) as error:
        print(f"ratios: cannot read {argv[1]}: {error}", file=sys.stderr)
        return EXIT_MISSING

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

    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        return "  ".join(cells).rstrip()

    print(line(header))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print(line(row))
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
