"""The tutorial of docs/plugins.md works when copied: its files, taken from the page's text, make a distribution
that installs next to licensor and passes its own conformance test on both stores."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "plugins.md"
FILE_BLOCK = re.compile(r"^```\w+ file=(\S+)\n(.*?)^```$", re.S | re.M)


def tutorial_files() -> dict[str, str]:
    """Path -> text of every code block of the page that names its file (```python file=...)."""
    return {path: text for path, text in FILE_BLOCK.findall(PAGE.read_text())}


def test_the_tutorial_names_its_files() -> None:
    assert set(tutorial_files()) == {
        "pyproject.toml",
        "licensor_office_hours/__init__.py",
        "tests/test_office_hours.py",
    }


def test_the_tutorials_backend_installs_and_passes_its_conformance_test(tmp_path: Path) -> None:
    distribution = tmp_path / "licensor-office-hours"
    for path, text in tutorial_files().items():
        (distribution / path).parent.mkdir(parents=True, exist_ok=True)
        (distribution / path).write_text(text)
    site = tmp_path / "site"
    # Installed for real (a wheel built by its own build backend, entry point and all), but into a directory of
    # its own: the gateway processes of the rest of the suite must not load it.
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site)]
    subprocess.run([*install, str(distribution)], check=True, capture_output=True, timeout=120)
    assert (site / "licensor_office_hours" / "__init__.py").is_file()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("PYTEST_XDIST_WORKER", None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(distribution / "tests")],
        cwd=distribution,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    summary = run.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))  # type: ignore[union-attr]
    assert passed >= 2 * 9 and "skipped" not in summary and "failed" not in summary, summary  # every test on both stores
