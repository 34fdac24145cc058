"""Malformed and huge inputs never crash the interpreter: every core function answers, or raises a documented
licensor.errors error or TypeError (KeyError for ``remove``); an exception raised by the caller's own mapping
or sequence propagates unchanged. Nothing else escapes -- in particular no Rust panic (``PanicException``,
a BaseException) and no RuntimeError."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import textwrap
import threading
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType

import pytest
from licensor import _impl
from licensor.errors import InvalidInputError, LicensorError, MalformedTokenError, TokenError

SEED = bytes(range(32))
MAX = 262_144
DOCUMENTED = (LicensorError, TypeError)


def outcome(call: Callable[[], object]) -> object:
    """What ``call`` returns, or the exception it raises -- any exception, so a panic is caught and shown."""
    try:
        return call()
    except BaseException as error:
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        return error


def assert_documented_refusal(call: Callable[[], object], *expected: type[BaseException]) -> BaseException:
    error = outcome(call)
    assert isinstance(error, BaseException), f"expected a refusal, got {error!r}"
    assert isinstance(error, expected or DOCUMENTED), f"{type(error).__module__}.{type(error).__name__}: {error}"
    return error


class Boom(Exception):
    """The caller's own failure, which must come out of the core unchanged."""


class FrozenMapping(Mapping[str, object]):
    """A custom collections.abc.Mapping (not a dict)."""

    def __init__(self, data: Mapping[str, object]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> object:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class RaisingItemsMapping(FrozenMapping):
    def items(self):  # type: ignore[no-untyped-def, override]
        raise Boom("items() failed")

    def get(self, key, default=None):  # type: ignore[no-untyped-def, override]
        raise Boom("get() failed")


class RaisingIterMapping(FrozenMapping):
    def __iter__(self) -> Iterator[str]:
        raise Boom("__iter__ failed")


class LoggingDict(dict):  # type: ignore[type-arg]
    """A dict subclass that overrides nothing but counts item reads."""

    reads = 0

    def items(self):  # type: ignore[no-untyped-def, override]
        type(self).reads += 1
        return super().items()


class RaisingSequence(Sequence[object]):
    def __init__(self, good: Sequence[object], fail_at: int) -> None:
        self._good, self._fail_at = list(good), fail_at

    def __getitem__(self, index):  # type: ignore[no-untyped-def, override]
        if isinstance(index, int) and index == self._fail_at:
            raise Boom("__getitem__ failed")
        return self._good[index]

    def __len__(self) -> int:
        return len(self._good)


# --- huge inputs -------------------------------------------------------------------------------------------


def test_a_50_mb_message_is_signed_and_verified(core: ModuleType) -> None:
    message = bytes(range(256)) * (50 * 1024 * 1024 // 256)
    assert len(message) == 50 * 1024 * 1024
    key = core.public_key(SEED)
    signature = core.sign(SEED, message)
    assert len(signature) == 64
    assert core.verify(key, message, signature) is True
    assert core.verify(key, message[:-1] + b"\x01", signature) is False
    assert core.verify_batch([(key, message, signature), (key, b"", signature)]) == [True, False]


def test_a_50_mb_payload_is_refused_as_too_long_a_token(core: ModuleType) -> None:
    assert_documented_refusal(lambda: core.encode_token("a", "k", bytes(50 * 1024 * 1024), SEED), InvalidInputError)


def test_huge_public_keys_and_signatures_are_simply_invalid(core: ModuleType) -> None:
    huge = bytes(10 * 1024 * 1024)
    assert core.verify(huge, b"m", huge) is False
    assert core.verify_batch([(huge, b"m", huge)] * 3) == [False, False, False]


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("x" * (MAX + 1), id="max-plus-one-ascii"),
        pytest.param("." * (MAX + 1), id="max-plus-one-dots"),
        pytest.param("\u00e9" * 1_000_000, id="million-non-ascii"),
        pytest.param("\U0001f600" * 1_000_000, id="million-astral"),
        pytest.param("\ud800" * 1_000_000, id="million-surrogates"),
        pytest.param("a" * 50_000_000, id="fifty-million-ascii"),
        pytest.param("lf1.k1." + "A" * (MAX - 100) + "." + "A" * 84, id="just-under-max-with-a-63-byte-signature"),
    ],
)
def test_huge_token_text_is_malformed(core: ModuleType, token: str) -> None:
    error = assert_documented_refusal(lambda: core.decode_token(token, "lf1", {"k1": core.public_key(SEED)}), MalformedTokenError)
    assert error.code == "TOKEN_MALFORMED"  # type: ignore[attr-defined]
    results = core.decode_tokens([token] * 100, "lf1", {})
    assert len(results) == 100 and all(type(r) is MalformedTokenError for r in results)


def test_the_longest_token_is_decoded(core: ModuleType) -> None:
    token = core.encode_token("a", "k1", bytes(196_539), SEED)
    assert len(token) == MAX
    assert core.decode_token(token, "a", {"k1": core.public_key(SEED)}) == bytes(196_539)
    assert core.decode_tokens([token] * 20, "a", {"k1": core.public_key(SEED)}) == [bytes(196_539)] * 20


@pytest.mark.parametrize("text", ["a" * 1_000_000, "\u00e9" * 1_000_000, "\ud800" * 1_000])
def test_huge_kind_and_kid_arguments_are_invalid_input(core: ModuleType, text: str) -> None:
    assert_documented_refusal(lambda: core.encode_token(text, "k", b"", SEED), InvalidInputError)
    assert_documented_refusal(lambda: core.encode_token("a", text, b"", SEED), InvalidInputError)
    assert_documented_refusal(lambda: core.decode_token("a.b.c.d", text, {}), InvalidInputError)
    assert_documented_refusal(lambda: core.decode_tokens([], text, {}), InvalidInputError)


def test_a_fingerprint_index_holds_megabyte_component_values(core: ModuleType) -> None:
    value = "v" * 1_000_000
    near = value[:-1] + "w"
    index = core.FingerprintIndex({"big": 2.0})
    index.add("a", {"big": value, "small": "1"})
    index.add("b", {"big": near, "small": "1"})
    index.add("c", {"big": value, "small": "2"})
    assert index.best_match({"big": value, "small": "1"}, 1.0) == ("a", 1.0)
    assert index.best_match({"big": near, "small": "2"}, 0.5) == ("b", 2.0 / 3.0)
    assert index.duplicates(0.5) == [("a", "c", 2.0 / 3.0)]
    assert core.fingerprint_score({"big": value}, {"big": near}, {}) == 0.0
    assert core.fingerprint_score({"big": value}, {"big": value}, {}) == 1.0
    index.add("\u00e9" * 1_000_000, {"big": value})
    assert len(index) == 4
    index.remove("\u00e9" * 1_000_000)
    assert len(index) == 3


def test_a_fingerprint_with_ten_thousand_components(core: ModuleType) -> None:
    fingerprint = {f"c{i}": str(i) for i in range(10_000)}
    presented = {**fingerprint, "c0": "changed"}
    index = core.FingerprintIndex({})
    index.add("wide", fingerprint)
    assert index.best_match(presented, 0.9999) == ("wide", 9_999 / 10_000)
    assert core.fingerprint_score(fingerprint, presented, {}) == 9_999 / 10_000


def test_batches_of_many_items_are_answered_item_by_item(core: ModuleType) -> None:
    garbage = [(b"", b"", b""), (b"k" * 32, b"m", b"s" * 64), (bytes(32), b"", bytes(64))] * 5_000
    assert core.verify_batch(garbage) == [False] * 15_000
    key = core.public_key(SEED)
    good = [(key, b"%d" % i, core.sign(SEED, b"%d" % i)) for i in range(1_000)]
    mixed = good + garbage[:1_000]
    assert core.verify_batch(mixed) == [True] * 1_000 + [False] * 1_000


# --- mapping subclasses and custom mappings ----------------------------------------------------------------


MAPPING_KINDS: list[Callable[[dict[str, object]], Mapping[str, object]]] = [
    collections.OrderedDict,
    lambda d: collections.defaultdict(lambda: "default", d),
    LoggingDict,
    FrozenMapping,
    types.MappingProxyType,
    lambda d: collections.ChainMap({}, d),
]
MAPPING_IDS = ["OrderedDict", "defaultdict", "dict-subclass", "abc-Mapping", "MappingProxyType", "ChainMap"]


@pytest.mark.parametrize("make", MAPPING_KINDS, ids=MAPPING_IDS)
def test_mapping_subclasses_and_custom_mappings_score_like_dicts(
    core: ModuleType, make: Callable[[dict[str, object]], Mapping[str, object]]
) -> None:
    stored, presented, weights = {"disk": "d", "mac": "m", "board": "b"}, {"disk": "d", "mac": "x"}, {"disk": 2.0, "mac": 0.5}
    expected = core.fingerprint_score(stored, presented, weights)
    assert expected == 2.0 / 3.5
    assert core.fingerprint_score(make(stored), make(presented), make(weights)) == expected  # type: ignore[arg-type]
    index = core.FingerprintIndex(make(weights))  # type: ignore[arg-type]
    index.add("dev", make(stored))
    assert index.best_match(make(presented), 0.5) == ("dev", expected)


@pytest.mark.parametrize("make", MAPPING_KINDS, ids=MAPPING_IDS)
def test_mapping_subclasses_and_custom_mappings_hold_public_keys(
    core: ModuleType, make: Callable[[dict[str, object]], Mapping[str, object]]
) -> None:
    keys = make({"k1": core.public_key(SEED)})
    token = core.encode_token("lf1", "k1", b"payload", SEED)
    assert core.decode_token(token, "lf1", keys) == b"payload"
    assert core.decode_tokens([token, token], "lf1", keys) == [b"payload", b"payload"]
    unknown = core.encode_token("lf1", "k2", b"payload", SEED)
    assert_documented_refusal(lambda: core.decode_token(unknown, "lf1", keys), TokenError)


def test_a_dict_subclass_is_read_through_its_own_items(core: ModuleType) -> None:
    LoggingDict.reads = 0
    core.fingerprint_score(LoggingDict({"a": "1"}), {"a": "1"}, {})
    assert LoggingDict.reads == 1


@pytest.mark.parametrize("mapping_class", [RaisingItemsMapping, RaisingIterMapping])
def test_an_exception_from_the_callers_mapping_propagates_unchanged(core: ModuleType, mapping_class: type[FrozenMapping]) -> None:
    broken = mapping_class({"a": "1"})
    index = core.FingerprintIndex({})
    calls: list[Callable[[], object]] = [
        lambda: core.fingerprint_score(broken, {}, {}),
        lambda: core.fingerprint_score({}, broken, {}),
        lambda: core.fingerprint_score({}, {}, broken),
        lambda: core.FingerprintIndex(broken),
        lambda: index.add("x", broken),
        lambda: index.best_match(broken, 0.5),
    ]
    for call in calls:
        error = outcome(call)
        assert type(error) is Boom, error
    assert len(index) == 0


def test_an_exception_from_the_callers_key_lookup_propagates_unchanged(core: ModuleType) -> None:
    token = core.encode_token("lf1", "k1", b"p", SEED)
    broken = RaisingItemsMapping({})
    assert type(outcome(lambda: core.decode_token(token, "lf1", broken))) is Boom
    assert type(outcome(lambda: core.decode_tokens([token], "lf1", broken))) is Boom
    # A token refused before any key is looked up never reaches the mapping.
    assert type(outcome(lambda: core.decode_token("not a token", "lf1", broken))) is MalformedTokenError


def test_an_exception_from_the_callers_sequence_propagates_unchanged(core: ModuleType) -> None:
    key = core.public_key(SEED)
    items = RaisingSequence([(key, b"", core.sign(SEED, b""))] * 3, fail_at=1)
    assert type(outcome(lambda: core.verify_batch(items))) is Boom
    tokens = RaisingSequence([core.encode_token("lf1", "k1", b"", SEED)] * 3, fail_at=2)
    assert type(outcome(lambda: core.decode_tokens(tokens, "lf1", {"k1": key}))) is Boom


def test_a_mapping_whose_items_are_not_pairs_is_refused_without_a_crash(core: ModuleType) -> None:
    class NotIterableItems(FrozenMapping):
        def items(self):  # type: ignore[no-untyped-def, override]
            return 42

    assert_documented_refusal(lambda: core.fingerprint_score(NotIterableItems({"a": "1"}), {}, {}), TypeError)
    assert_documented_refusal(lambda: core.FingerprintIndex(NotIterableItems({})), TypeError)


# --- threads -----------------------------------------------------------------------------------------------


def test_concurrent_batches_from_many_threads_each_get_their_own_answers(core: ModuleType) -> None:
    key = core.public_key(SEED)
    results: dict[int, object] = {}

    def work(n: int) -> None:
        items = [(key, b"%d-%d" % (n, i), core.sign(SEED, b"%d-%d" % (n, i if i % 7 else i + 1))) for i in range(150)]
        tokens = [core.encode_token("lf1", "k1", b"%d" % i, SEED) for i in range(50)] + ["bad"]
        results[n] = (
            core.verify_batch(items) == [i % 7 != 0 for i in range(150)],
            [type(r) for r in core.decode_tokens(tokens, "lf1", {"k1": key})] == [bytes] * 50 + [MalformedTokenError],
        )

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {n: (True, True) for n in range(6)}


# --- nothing crashes the interpreter -----------------------------------------------------------------------

FUZZ = r"""
import json, random, sys
from collections.abc import Mapping
from licensor import _impl
from licensor.errors import LicensorError

class Boom(Exception):
    pass

class M(Mapping):
    def __init__(self, d): self.d = d
    def __getitem__(self, k): return self.d[k]
    def __iter__(self): return iter(self.d)
    def __len__(self): return len(self.d)

class Raising(M):
    def items(self): raise Boom("items")
    def get(self, k, default=None): raise Boom("get")

rng = random.Random(20240917)
seed = bytes(32)
core = _impl.implementations()[sys.argv[1]]
key = core.public_key(seed)
token = core.encode_token("lf1", "k1", b"p", seed)
pool = [
    None, 0, -1, 2**70, 10**400, 0.5, float("nan"), float("inf"), -0.0, True, "", "a", "lf1", "k1", "\ud800",
    "\u00e9" * 3, "x" * (262_145), token, token[:-1] + "\ud800", b"", b"x" * 31, seed, key, key + b"\0",
    bytes(64), b"\xff" * 64, bytearray(seed), memoryview(seed), [], [token], [(key, b"", bytes(64))],
    [(key, b"")], [[key, b"", bytes(64)]], (), (key, b"", bytes(64)), {}, {"k1": key}, {"a": "1"},
    {"a": 0.5}, {"a": -1}, {"a": "\ud800"}, {"\ud800": "1"}, {1: 2}, {"k1": None}, {"k1": "key"},
    M({"a": "1"}), M({"k1": key}), Raising({}), object(), Boom, iter([1]), range(3), set(), frozenset([token]),
]
functions = {
    "generate_seed": 0, "public_key": 1, "sign": 2, "verify": 3, "verify_batch": 1, "encode_token": 4,
    "decode_token": 3, "decode_tokens": 3, "fingerprint_score": 3,
}
unexpected = []
calls = 0
for name, arity in functions.items():
    for _ in range(1500 if arity else 3):
        args = [rng.choice(pool) for _ in range(arity)]
        calls += 1
        try:
            getattr(core, name)(*args)
        except (LicensorError, TypeError, Boom):
            pass
        except Exception as error:
            unexpected.append([name, repr(args)[:200], type(error).__name__, str(error)[:200]])
index = core.FingerprintIndex({})
for _ in range(3000):
    method = rng.choice(["add", "remove", "best_match", "duplicates", "__len__", "__contains__", "new"])
    arity = {"add": 2, "remove": 1, "best_match": 2, "duplicates": 1, "__len__": 0, "__contains__": 1, "new": 1}[method]
    args = [rng.choice(pool) for _ in range(arity)]
    calls += 1
    try:
        if method == "new":
            core.FingerprintIndex(*args)
        else:
            getattr(index, method)(*args)
    except (LicensorError, TypeError, Boom):
        pass
    except KeyError:
        if method != "remove":
            unexpected.append([method, repr(args)[:200], "KeyError", ""])
    except Exception as error:
        unexpected.append([method, repr(args)[:200], type(error).__name__, str(error)[:200]])
print(json.dumps({"calls": calls, "unexpected": unexpected}))
"""


def test_thousands_of_garbage_calls_never_crash_the_interpreter_nor_raise_anything_undocumented(core: ModuleType) -> None:
    implementation = next(name for name, module in _impl.implementations().items() if module is core)
    environment = dict(os.environ)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FUZZ), implementation],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, f"interpreter died ({done.returncode}): {done.stderr[-2000:]}"
    assert "PanicException" not in done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["calls"] == 8 * 1500 + 3 + 3000
    assert report["unexpected"] == []
