"""``licensor._impl`` chooses the core: the native one unless ``LICENSOR_PURE_PYTHON=1`` (or it cannot be
imported), exposes the chosen core's objects, and whichever core runs, errors are licensor.errors classes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from types import ModuleType

import licensor.errors
import pytest
from licensor import _fallback, _impl
from licensor.errors import (
    BadSignatureError,
    InvalidInputError,
    MalformedTokenError,
    UnknownKeyError,
    WrongTokenKindError,
)
from licensor.testing import check_expected_implementation

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PURE = os.environ.get("LICENSOR_PURE_PYTHON") == "1"
CORE_NAMES = [name for name in _impl.__all__ if name not in ("IMPLEMENTATION", "implementations")]


def _fresh_interpreter(code: str, **env: str) -> dict[str, object]:
    """Run ``code`` (which prints one JSON line) in a new interpreter with ``env`` on top of ours."""
    environment = {k: v for k, v in os.environ.items() if k not in ("LICENSOR_PURE_PYTHON", "LICENSOR_EXPECT_IMPLEMENTATION")}
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=environment,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


PROBE = """
    import importlib.util, json, sys
    from licensor import _impl
    _impl.verify(bytes(32), b"", bytes(64))
    print(json.dumps({
        "implementation": _impl.IMPLEMENTATION,
        "core_imported": "licensor._core" in sys.modules,
        "implementations": sorted(_impl.implementations()),
    }))
"""


def _native_module_exists() -> bool:
    # find_spec locates licensor._core without importing it (it imports only the licensor package).
    return importlib.util.find_spec("licensor._core") is not None


def test_implementation_is_rust_or_python() -> None:
    assert _impl.IMPLEMENTATION in ("rust", "python")


def test_this_process_loaded_the_native_module_exactly_when_it_uses_the_rust_core() -> None:
    assert (_impl.IMPLEMENTATION == "rust") == ("licensor._core" in sys.modules)


def test_with_licensor_pure_python_set_this_process_uses_python_and_never_imported_the_native_module() -> None:
    if PURE:
        assert _impl.IMPLEMENTATION == "python"
        assert "licensor._core" not in sys.modules
        assert set(_impl.implementations()) == {"python"}
    else:
        assert _impl.IMPLEMENTATION == ("rust" if _native_module_exists() else "python")


def test_licensor_pure_python_1_forces_the_python_core_in_a_fresh_interpreter() -> None:
    seen = _fresh_interpreter(PROBE, LICENSOR_PURE_PYTHON="1")
    assert seen == {"implementation": "python", "core_imported": False, "implementations": ["python"]}


@pytest.mark.parametrize("value", [None, "0", "", "true", "yes"])
def test_only_the_value_1_forces_the_python_core(value: str | None) -> None:
    env = {} if value is None else {"LICENSOR_PURE_PYTHON": value}
    seen = _fresh_interpreter(PROBE, **env)
    if _native_module_exists():
        assert seen == {"implementation": "rust", "core_imported": True, "implementations": ["python", "rust"]}
    else:
        assert seen == {"implementation": "python", "core_imported": False, "implementations": ["python"]}


def test_the_expected_implementation_when_given_is_the_loaded_one() -> None:
    expected = os.environ.get("LICENSOR_EXPECT_IMPLEMENTATION")
    assert expected in (None, _impl.IMPLEMENTATION)
    if PURE:
        assert expected in (None, "python")


def test_the_makefile_sets_the_expected_implementation_for_both_passes() -> None:
    with open(os.path.join(REPO, "Makefile"), encoding="utf-8") as handle:
        makefile = handle.read()
    passes = {line.split("_PASS := ", 1)[0]: line.split(" := ", 1)[1] for line in makefile.splitlines() if "_PASS := " in line}
    assert "LICENSOR_EXPECT_IMPLEMENTATION=rust" in passes["NATIVE"] and "LICENSOR_PURE_PYTHON" not in passes["NATIVE"]
    assert "LICENSOR_PURE_PYTHON=1" in passes["PYTHON"] and "LICENSOR_EXPECT_IMPLEMENTATION=python" in passes["PYTHON"]
    runs = [line.strip() for line in makefile.splitlines() if "$(PYTEST) $(SUITES)" in line]
    # Both parts of both passes (the parallel one and the one of tests that run alone) run on their core.
    for name in ("NATIVE", "PYTHON"):
        mine = [run for run in runs if run.startswith(f"$({name}_PASS) ")]
        assert any("$(PARALLEL)" in run for run in mine) and any("$(ALONE)" in run for run in mine), (name, runs)
    assert len(runs) == 4, runs


def test_a_pass_on_the_wrong_core_is_refused_not_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "python" if _impl.IMPLEMENTATION == "rust" else "rust"
    monkeypatch.setenv("LICENSOR_EXPECT_IMPLEMENTATION", wrong)
    with pytest.raises(RuntimeError, match=f"expected the {wrong} core, but {_impl.IMPLEMENTATION} is loaded"):
        check_expected_implementation()
    monkeypatch.setenv("LICENSOR_EXPECT_IMPLEMENTATION", _impl.IMPLEMENTATION)
    check_expected_implementation()


def test_implementations_always_offers_python_and_rust_only_when_loaded() -> None:
    found = _impl.implementations()
    assert found["python"] is _fallback
    if _impl.IMPLEMENTATION == "rust":
        assert set(found) == {"python", "rust"}
        assert found["rust"] is sys.modules["licensor._core"]
    else:
        assert set(found) == {"python"}


@pytest.mark.parametrize("name", CORE_NAMES)
def test_each_module_level_name_of_impl_is_the_selected_cores_object(name: str) -> None:
    selected = _impl.implementations()[_impl.IMPLEMENTATION]
    assert getattr(_impl, name) is getattr(selected, name)


def test_impl_exports_every_core_name() -> None:
    assert sorted(CORE_NAMES) == sorted(_fallback.__all__)


def test_seed_errors_are_exactly_the_licensor_errors_class(core: ModuleType) -> None:
    with pytest.raises(InvalidInputError) as raised:
        core.public_key(b"x")
    assert type(raised.value) is licensor.errors.InvalidInputError
    assert raised.value.code == "INVALID_INPUT"
    assert raised.value.http_status == 400


def test_token_errors_are_exactly_the_licensor_errors_classes(core: ModuleType) -> None:
    seed = bytes(32)
    keys = {"k1": core.public_key(seed)}
    good = core.encode_token("lf1", "k1", b"p", seed)
    cases = [
        ("lf1.k1", MalformedTokenError),
        (core.encode_token("lf1", "k2", b"p", seed), UnknownKeyError),
        (core.encode_token("ls1", "k1", b"p", seed), WrongTokenKindError),
        ("ls1" + core.encode_token("lf1", "k1", b"p", seed)[3:], BadSignatureError),
    ]
    for token, cls in cases:
        with pytest.raises(cls) as raised:
            core.decode_token(token, "ls1" if cls is BadSignatureError else "lf1", keys)
        assert type(raised.value) is cls
        assert raised.value.http_status == 401
    results = core.decode_tokens([good, "lf1.k1"], "lf1", keys)
    assert type(results[1]) is MalformedTokenError


def test_impl_functions_raise_the_same_classes_as_the_core_they_come_from() -> None:
    with pytest.raises(InvalidInputError):
        _impl.public_key(b"x")
    with pytest.raises(MalformedTokenError):
        _impl.decode_token("x", "lf1", {})
    with pytest.raises(InvalidInputError):
        _impl.FingerprintIndex({}).duplicates(0)
