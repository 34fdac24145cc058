"""The coverage-guided fuzz targets of tests/fuzz/targets.py (atheris) run for a bounded time each, as processes of
their own, from seeds the code made: zero crashes (an undocumented exception, or the two cores disagreeing), and
executions did happen.

``LICENSOR_ATHERIS_SECONDS`` sets the time per target (``make test``: 2 s; ``make fuzz``: 120 s) and
``LICENSOR_ATHERIS_CORPUS`` a directory that keeps the corpus between runs (``make fuzz``: .venv/fuzz-corpus; by
default a temporary one). A crash leaves its input as ``crash-*`` in the corpus directory: replay it with
``python tests/fuzz/targets.py TARGET FILE``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("targets.py")
TARGETS = ("token", "license_file", "credential_file", "request_file")
SECONDS = int(os.environ.get("LICENSOR_ATHERIS_SECONDS", "2"))
LEAST_EXECUTIONS = 200  # far under what 2 s gives here (thousands), far over a harness that fails at once


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    kept = os.environ.get("LICENSOR_ATHERIS_CORPUS")
    directory = Path(kept) if kept else tmp_path_factory.mktemp("corpus")
    seeded = subprocess.run([sys.executable, str(HARNESS), "seeds", str(directory)], capture_output=True, text=True, timeout=120)
    assert seeded.returncode == 0, seeded.stderr
    return directory


@pytest.mark.parametrize("target", TARGETS)
def test_fuzzing_the_parser_finds_no_crash(corpus: Path, target: str) -> None:
    artifacts = corpus / "artifacts"
    artifacts.mkdir(exist_ok=True)
    run = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            target,
            f"-max_total_time={SECONDS}",
            "-print_final_stats=1",
            f"-artifact_prefix={artifacts}/{target}-",
            "-rss_limit_mb=1024",
            str(corpus / target),
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,  # a hang of the harness itself, not of an input (libFuzzer times inputs out at 1200 s)
    )
    output = run.stderr + run.stdout
    crashes = sorted(path.name for path in artifacts.glob(f"{target}-*"))
    assert run.returncode == 0 and not crashes, f"{target}: exit {run.returncode}, {crashes}\n{output[-4000:]}"
    executed = re.search(r"stat::number_of_executed_units: (\d+)", output)
    assert executed is not None, output[-4000:]
    coverage = re.findall(r"DONE\s+cov: (\d+)", output)
    print(f"\n{target}: {int(executed.group(1))} executions in {SECONDS} s, coverage {coverage}")
    assert int(executed.group(1)) >= LEAST_EXECUTIONS, output[-4000:]
