"""The native core ``licensor._core`` and its pure-Python twin ``licensor._fallback`` are interchangeable:
the same public names and signatures, and -- on random, mutated and garbage inputs -- the same return
value (floats bit for bit) or the same exception type with the same message.

This needs both cores in one process. In the ``LICENSOR_PURE_PYTHON=1`` pass only the twin is loaded, and
the single test defined for that case checks that the native module was indeed never imported.
"""

from __future__ import annotations

import ast
import inspect
import math
import os
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import licensor
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from licensor import _fallback, _impl
from licensor.errors import LicensorError

from . import _curve as curve

BOTH_LOADED = "rust" in _impl.implementations()


if not BOTH_LOADED:

    def test_without_the_native_core_there_is_no_twin_to_compare_and_it_was_never_imported() -> None:
        assert _impl.IMPLEMENTATION == "python"
        assert set(_impl.implementations()) == {"python"}
        assert "licensor._core" not in sys.modules
        assert _impl.implementations()["python"] is _fallback

else:
    RUST: ModuleType = _impl.implementations()["rust"]
    PY: ModuleType = _impl.implementations()["python"]

    # --- outcomes, compared exactly ----------------------------------------------------------------------

    def normalise(value: object) -> object:
        """A form in which ``==`` means identical: types kept, floats by their bits, errors by type/message."""
        if isinstance(value, BaseException):
            return ("raised", type(value), str(value), value.args)
        if isinstance(value, bool):
            return ("bool", value)
        if isinstance(value, float):
            return ("float", type(value), value.hex())
        if isinstance(value, (list, tuple)):
            return (type(value), [normalise(item) for item in value])
        return (type(value), value)

    def outcome(call: Callable[[], object]) -> object:
        try:
            return normalise(call())
        except Exception as error:
            return normalise(error)

    def assert_agree(name: str, *args: object) -> object:
        rust = outcome(lambda: getattr(RUST, name)(*args))
        python = outcome(lambda: getattr(PY, name)(*args))
        assert rust == python, f"{name}{args!r}: rust {rust!r} != python {python!r}"
        return python

    # --- (a) names and signatures ------------------------------------------------------------------------

    STUB = os.path.join(os.path.dirname(licensor.__file__), "_core.pyi")

    def _stub_tree() -> ast.Module:
        with open(STUB, encoding="utf-8") as handle:
            return ast.parse(handle.read())

    def _stub_all() -> list[str]:
        for node in _stub_tree().body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                return list(ast.literal_eval(node.value))
        raise AssertionError("_core.pyi has no __all__")

    def parameters(function: Callable[..., Any]) -> list[tuple[str, str, object]]:
        return [(p.name, p.kind.name, p.default) for p in inspect.signature(function).parameters.values()]

    FUNCTIONS = [
        "generate_seed",
        "public_key",
        "sign",
        "verify",
        "verify_batch",
        "encode_token",
        "decode_token",
        "decode_tokens",
        "fingerprint_score",
    ]
    METHODS = ["add", "remove", "best_match", "duplicates", "__len__", "__contains__"]

    def test_both_cores_export_the_same_public_names_as_the_contract() -> None:
        assert sorted(RUST.__all__) == sorted(PY.__all__)
        assert len(set(RUST.__all__)) == len(RUST.__all__)
        assert sorted(PY.__all__) == sorted(_stub_all())
        for name in PY.__all__:
            assert hasattr(RUST, name) and hasattr(PY, name), name
            assert callable(getattr(RUST, name)) == callable(getattr(PY, name)), name
        assert RUST.MAX_TOKEN_LENGTH == PY.MAX_TOKEN_LENGTH == 262_144
        assert type(RUST.MAX_TOKEN_LENGTH) is type(PY.MAX_TOKEN_LENGTH) is int

    def test_every_function_covers_the_exported_names() -> None:
        assert sorted([*FUNCTIONS, "FingerprintIndex", "Signer", "MAX_TOKEN_LENGTH"]) == sorted(PY.__all__)

    @pytest.mark.parametrize("name", FUNCTIONS)
    def test_function_has_the_same_parameter_names_kinds_and_defaults_in_both_cores(name: str) -> None:
        assert parameters(getattr(RUST, name)) == parameters(getattr(PY, name))

    @pytest.mark.parametrize("name", FUNCTIONS)
    def test_function_has_the_parameter_names_of_the_contract(name: str) -> None:
        stub = next(n for n in _stub_tree().body if isinstance(n, ast.FunctionDef) and n.name == name)
        assert [a.arg for a in stub.args.args] == [p[0] for p in parameters(getattr(RUST, name))]

    def test_fingerprint_index_is_constructed_with_the_same_parameters_in_both_cores() -> None:
        assert (
            parameters(RUST.FingerprintIndex)
            == parameters(PY.FingerprintIndex)
            == [("weights", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty)]
        )

    @pytest.mark.parametrize("method", METHODS)
    def test_fingerprint_index_method_has_the_same_parameters_in_both_cores(method: str) -> None:
        rust = parameters(getattr(RUST.FingerprintIndex, method))
        python = parameters(getattr(PY.FingerprintIndex, method))
        assert rust == python
        stub_class = next(n for n in _stub_tree().body if isinstance(n, ast.ClassDef) and n.name == "FingerprintIndex")
        stub = next(n for n in stub_class.body if isinstance(n, ast.FunctionDef) and n.name == method)
        stub_names = [a.arg for a in [*stub.args.posonlyargs, *stub.args.args]]
        assert stub_names == [p[0] for p in python]

    SIGNER_METHODS = ["public_key", "sign", "encode_token"]

    def test_signer_is_constructed_with_the_same_parameters_in_both_cores() -> None:
        assert parameters(RUST.Signer) == parameters(PY.Signer) == [("seed", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty)]

    @pytest.mark.parametrize("method", SIGNER_METHODS)
    def test_signer_method_has_the_same_parameters_in_both_cores_and_the_contract(method: str) -> None:
        rust = parameters(getattr(RUST.Signer, method))
        python = parameters(getattr(PY.Signer, method))
        assert rust == python
        stub_class = next(n for n in _stub_tree().body if isinstance(n, ast.ClassDef) and n.name == "Signer")
        stub = next(n for n in stub_class.body if isinstance(n, ast.FunctionDef) and n.name == method)
        assert [a.arg for a in [*stub.args.posonlyargs, *stub.args.args]] == [p[0] for p in python]

    def test_keyword_arguments_work_alike() -> None:
        seed = bytes(32)
        key = PY.public_key(seed)
        for module in (RUST, PY):
            assert module.public_key(seed=seed) == key
            assert module.verify(public_key=key, message=b"", signature=module.sign(seed=seed, message=b"")) is True
            assert len(module.FingerprintIndex(weights={})) == 0

    # --- strategies ----------------------------------------------------------------------------------------

    SEEDS = [bytes([i]) * 32 for i in range(4)]
    KEYS = [PY.public_key(seed) for seed in SEEDS]

    def _interesting_points() -> list[bytes]:
        secret = curve.Secret.from_seed(SEEDS[0])
        with_torsion = [curve.encode(curve.add(curve.mul(secret.scalar, curve.B), t)) for t in curve.TORSION[1:]]
        non_canonical = [((curve.P + i) | (s << 255)).to_bytes(32, "little") for i in range(19) for s in (0, 1)]
        sign_on_zero_x = [(1 | (1 << 255)).to_bytes(32, "little"), (curve.P - 1 | (1 << 255)).to_bytes(32, "little")]
        return [*curve.SMALL_ORDER_ENCODINGS, *with_torsion, *non_canonical, *sign_on_zero_x, *KEYS]

    POINTS = _interesting_points()
    SCALARS = [0, 1, curve.L - 1, curve.L, curve.L + 1, 2**253 - 1, 2**255, 2**256 - 1]

    lengths = st.one_of(st.sampled_from([32, 64]), st.integers(0, 70))
    random_bytes = lengths.flatmap(lambda n: st.binary(min_size=n, max_size=n))
    messages = st.binary(max_size=48)

    @st.composite
    def signed_items(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
        """A valid (key, message, signature), often with one byte of it changed."""
        which = draw(st.integers(0, len(SEEDS) - 1))
        message = draw(messages)
        key, signature = KEYS[which], PY.sign(SEEDS[which], message)
        mutation = draw(st.sampled_from(["none", "none", "none", "key", "message", "signature", "s-plus-l", "other-key"]))
        if mutation == "key":
            position, value = draw(st.integers(0, 31)), draw(st.integers(0, 255))
            key = key[:position] + bytes([value]) + key[position + 1 :]
        elif mutation == "message":
            message = message + draw(st.binary(min_size=1, max_size=3))
        elif mutation == "signature":
            position, value = draw(st.integers(0, 63)), draw(st.integers(0, 255))
            signature = signature[:position] + bytes([value]) + signature[position + 1 :]
        elif mutation == "s-plus-l":
            signature = curve.add_l_to_s(signature)
        elif mutation == "other-key":
            key = KEYS[(which + 1) % len(KEYS)]
        return key, message, signature

    @st.composite
    def edge_items(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
        """Small-order, non-canonical and torsioned points as A and R, with edge-case S values."""
        key = draw(st.sampled_from(POINTS))
        r = draw(st.sampled_from(POINTS))
        s = draw(st.one_of(st.sampled_from(SCALARS), st.integers(0, 2**256 - 1)))
        return key, draw(messages), r + s.to_bytes(32, "little")

    random_items = st.tuples(random_bytes, messages, random_bytes)
    items = st.one_of(signed_items(), edge_items(), random_items)

    garbage = st.one_of(
        st.none(),
        st.integers(-5, 5),
        st.floats(allow_nan=True),
        st.text(max_size=5),
        st.binary(max_size=40).map(bytearray),
        st.binary(max_size=40).map(memoryview),
        st.lists(st.integers(0, 255), max_size=4),
        st.builds(object),
    )

    # --- (b) Ed25519 ---------------------------------------------------------------------------------------

    @settings(max_examples=400, deadline=None)
    @given(item=items)
    def test_verify_agrees_on_valid_mutated_edge_and_random_inputs(item: tuple[bytes, bytes, bytes]) -> None:
        result = assert_agree("verify", *item)
        assert result == ("bool", RUST.verify(*item))

    @settings(max_examples=150, deadline=None)
    @given(item=items, position=st.integers(0, 2), bad=garbage)
    def test_verify_agrees_on_arguments_of_the_wrong_type(item: tuple[bytes, bytes, bytes], position: int, bad: object) -> None:
        args = list(item)
        args[position] = bad
        result = assert_agree("verify", *args)
        assert result[0] == "raised" and result[1] is TypeError  # type: ignore[index]

    @settings(max_examples=120, deadline=None)
    @given(batch=st.lists(items, max_size=80))
    def test_verify_batch_agrees_and_equals_verify_of_each_item(batch: list[tuple[bytes, bytes, bytes]]) -> None:
        result = assert_agree("verify_batch", batch)
        assert result == normalise([PY.verify(*item) for item in batch])

    @settings(max_examples=60, deadline=None)
    @given(
        batch=st.lists(items, min_size=1, max_size=10),
        position=st.integers(0, 9),
        bad=st.one_of(garbage, st.tuples(random_bytes, messages), st.lists(random_bytes, min_size=3, max_size=3)),
    )
    def test_verify_batch_agrees_on_malformed_items(batch: list[object], position: int, bad: object) -> None:
        batch.insert(position % (len(batch) + 1), bad)
        result = assert_agree("verify_batch", batch)
        assert result[0] == "raised"  # type: ignore[index]

    @settings(max_examples=200, deadline=None)
    @given(seed=st.one_of(st.binary(min_size=32, max_size=32), random_bytes, garbage), message=st.one_of(messages, garbage))
    def test_sign_and_public_key_agree_and_are_deterministic(seed: object, message: object) -> None:
        assert_agree("public_key", seed)
        assert_agree("sign", seed, message)

    # --- (b) tokens ----------------------------------------------------------------------------------------

    KIND_CHARS = "abcz019"
    KID_CHARS = "aZ09_-k"
    TOKEN_CHARS = "abcAZ09_-.=+/ \n\x00\x7f\x80\u00e9\u2603\U0001f600\ud800\udfff"

    kinds = st.one_of(
        st.text(alphabet=KIND_CHARS, min_size=1, max_size=8),
        st.text(alphabet=KIND_CHARS + "A.-_\u00e9\ud800 ", max_size=10),
    )
    kids = st.one_of(
        st.text(alphabet=KID_CHARS, min_size=1, max_size=64),
        st.text(alphabet=KID_CHARS + ".=+/ \u00e9\ud800", max_size=66),
        st.sampled_from(["k" * 64, "k" * 65, ""]),
    )
    seeds = st.one_of(st.sampled_from(SEEDS), st.binary(min_size=30, max_size=34), garbage)
    payloads = st.one_of(st.binary(max_size=80), garbage)

    @settings(max_examples=300, deadline=None)
    @given(kind=st.one_of(kinds, garbage), kid=st.one_of(kids, garbage), payload=payloads, seed=seeds)
    def test_encode_token_agrees_and_makes_equal_tokens_for_equal_inputs(
        kind: object, kid: object, payload: object, seed: object
    ) -> None:
        assert_agree("encode_token", kind, kid, payload, seed)

    @pytest.mark.parametrize("size", [196_537, 196_538, 196_539, 196_540, 196_541])
    @pytest.mark.parametrize("kid", ["k", "k1", "k12"])
    def test_encode_token_agrees_at_the_length_limit(size: int, kid: str) -> None:
        assert_agree("encode_token", "a", kid, bytes(size), SEEDS[0])
        signed = [outcome(lambda: module.Signer(SEEDS[0]).encode_token("a", kid, bytes(size))) for module in (RUST, PY)]
        assert signed[0] == signed[1] == outcome(lambda: PY.encode_token("a", kid, bytes(size), SEEDS[0]))

    @settings(max_examples=200, deadline=None)
    @given(seed=seeds)
    def test_signer_is_refused_alike_for_a_bad_seed_and_keeps_its_public_key(seed: object) -> None:
        made = [outcome(lambda: module.Signer(seed)) for module in (RUST, PY)]
        refused = [entry for entry in made if entry[0] == "raised"]  # type: ignore[index]
        assert refused == [] or refused == made == [normalise_refusal(PY.public_key, seed)] * 2
        if not refused:
            assert isinstance(seed, bytes)
            assert RUST.Signer(seed).public_key() == PY.Signer(seed).public_key() == PY.public_key(seed)

    def normalise_refusal(function: Callable[..., object], *args: object) -> object:
        return outcome(lambda: function(*args))

    @settings(max_examples=300, deadline=None)
    @given(
        kind=st.one_of(kinds, garbage),
        kid=st.one_of(kids, garbage),
        payload=payloads,
        seed=st.sampled_from(SEEDS),
        message=st.one_of(messages, garbage),
    )
    def test_a_kept_signer_agrees_with_the_one_shot_functions_in_both_cores(
        kind: object, kid: object, payload: object, seed: bytes, message: object
    ) -> None:
        expected_token = outcome(lambda: PY.encode_token(kind, kid, payload, seed))
        expected_signature = outcome(lambda: PY.sign(seed, message))
        for module in (RUST, PY):
            signer = module.Signer(seed)
            for _ in range(2):  # the same key, used again
                assert outcome(lambda: signer.encode_token(kind, kid, payload)) == expected_token, module.__name__
                assert outcome(lambda: signer.sign(message)) == expected_signature, module.__name__

    def test_a_signer_shows_no_seed() -> None:
        seed = bytes(range(32))
        for module in (RUST, PY):
            shown = repr(module.Signer(seed)) + str(module.Signer(seed))
            assert seed.hex() not in shown and repr(seed) not in shown

    KEYRINGS = [
        {"k1": KEYS[0], "k2": KEYS[1], "k3": KEYS[0]},
        {"k1": KEYS[0], "k2": KEYS[1]},
        {"k1": KEYS[1], "k2": KEYS[0]},
        {},
        {"k1": KEYS[0][:31], "k2": KEYS[1] + b"\x00", "k3": curve.SMALL_ORDER_ENCODINGS[0]},
        {"k1": bytearray(KEYS[0]), "k2": None, "k3": "key"},
    ]

    @st.composite
    def tokens(draw: st.DrawFn, kind_choices: tuple[str, ...] = ("lf1", "ls1", "a", "abcdefgh")) -> str:
        """A token made by the twin, often changed by one edit, relabelled or extended."""
        kind = draw(st.sampled_from(kind_choices))
        kid = draw(st.sampled_from(["k1", "k2", "k3"]))
        seed = draw(st.sampled_from(SEEDS[:2]))
        token: str = PY.encode_token(kind, kid, draw(st.binary(max_size=40)), seed)
        how = draw(st.sampled_from(["as-is", "as-is", "replace", "insert", "delete", "truncate", "relabel", "append"]))
        position = draw(st.integers(0, len(token) - 1))
        char = draw(st.sampled_from(TOKEN_CHARS))
        if how == "replace":
            token = token[:position] + char + token[position + 1 :]
        elif how == "insert":
            token = token[:position] + char + token[position:]
        elif how == "delete":
            token = token[:position] + token[position + 1 :]
        elif how == "truncate":
            token = token[:position]
        elif how == "relabel":
            token = draw(st.sampled_from(["lf1", "ls1", "LF1", ""])) + token[token.index(".") :]
        elif how == "append":
            token = token + draw(st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=4))
        return token

    any_text = st.text(
        alphabet=st.one_of(st.characters(codec="utf-8"), st.characters(categories=["Cs"]), st.sampled_from(TOKEN_CHARS)),
        max_size=120,
    )
    token_inputs = st.one_of(tokens(), tokens(), tokens(), any_text)

    def own_kind_or(kinds_strategy: st.SearchStrategy[Any]) -> Callable[[str], st.SearchStrategy[Any]]:
        """Usually the kind the token claims (so decoding gets past the kind check), sometimes another."""

        def choose(token: str) -> st.SearchStrategy[Any]:
            claimed = token.split(".")[0]
            if not (claimed.isascii() and claimed.isalnum() and claimed.islower() and len(claimed) <= 8):
                claimed = "lf1"
            return st.one_of(st.just(claimed), st.just(claimed), st.just(claimed), kinds_strategy)

        return choose

    decode_cases = token_inputs.flatmap(lambda t: st.tuples(st.just(t), own_kind_or(kinds)(t), st.sampled_from(KEYRINGS)))

    @settings(max_examples=400, deadline=None)
    @given(case=decode_cases)
    def test_decode_token_agrees_on_valid_mutated_and_random_text(case: tuple[str, str, dict[str, object]]) -> None:
        assert_agree("decode_token", *case)

    @settings(max_examples=100, deadline=None)
    @given(
        token=st.one_of(token_inputs, garbage), kind=st.one_of(kinds, garbage), keys=st.one_of(st.sampled_from(KEYRINGS), garbage)
    )
    def test_decode_token_agrees_on_arguments_of_the_wrong_type(token: object, kind: object, keys: object) -> None:
        assert_agree("decode_token", token, kind, keys)

    @settings(max_examples=120, deadline=None)
    @given(
        batch=st.lists(st.one_of(tokens(("lf1",)), tokens(("lf1",)), token_inputs), max_size=70),
        kind=st.sampled_from(["lf1", "lf1", "lf1", "ls1", "LF1"]),
        keys=st.sampled_from(KEYRINGS[:5]),
    )
    def test_decode_tokens_agrees_and_equals_decode_token_of_each(batch: list[str], kind: str, keys: dict[str, object]) -> None:
        result = assert_agree("decode_tokens", batch, kind, keys)
        if result[0] != "raised":  # type: ignore[index]
            assert result == (list, [outcome(lambda t=t: PY.decode_token(t, kind, keys)) for t in batch])  # type: ignore[misc]

    @settings(max_examples=40, deadline=None)
    @given(batch=st.lists(tokens(), max_size=8), position=st.integers(0, 8), bad=garbage, keys=st.sampled_from(KEYRINGS))
    def test_decode_tokens_agrees_on_a_token_of_the_wrong_type_or_a_bad_key(
        batch: list[object], position: int, bad: object, keys: dict[str, object]
    ) -> None:
        batch.insert(position % (len(batch) + 1), bad)
        assert_agree("decode_tokens", batch, "lf1", keys)

    @pytest.mark.parametrize(
        "token",
        [
            "x" * 262_144,
            "x" * 262_145,
            "\u00e9" * 262_144,
            "\u00e9" * 262_145,
            "\u00e9" * 140_000,  # more than 262144 UTF-8 bytes, fewer characters
            "\U0001f600" * 70_000,
            "\ud800" * 262_145,
            "a." * 131_072,
        ],
        ids=lambda t: f"{len(t)}x{t[0]!a}",
    )
    def test_decode_token_agrees_on_long_text_around_the_limit(token: str) -> None:
        assert_agree("decode_token", token, "a", {})
        assert_agree("decode_tokens", [token, token[:10]], "a", {})

    # --- (b) fingerprints ----------------------------------------------------------------------------------

    NAMES = ["a", "b", "c", "d", ""]
    VALUES = ["1", "2"]
    weight_values = st.one_of(
        st.sampled_from([0, 0.0, -0.0, 1, 0.1, 0.2, 0.3, 0.7, 1e6, 1_000_000, 5e-324, 3.0, 1 / 3]),
        st.floats(min_value=0, max_value=1e6),
        st.floats(),
        st.integers(-2, 2_000_000),
        st.sampled_from([10**400, -(10**400), 2**1024, 1_000_000.0000001, math.nan, math.inf]),
    )
    bad_weight_values = st.one_of(st.none(), st.text(max_size=3), st.builds(object), st.binary(max_size=2))
    small_maps = st.dictionaries(st.sampled_from(NAMES), st.sampled_from(VALUES), max_size=5)
    valid_weight_values = st.one_of(
        st.sampled_from([0, 0.0, -0.0, 1, 0.1, 0.2, 0.3, 0.7, 1e6, 1_000_000, 5e-324, 3.0, 1 / 3]),
        st.floats(min_value=0, max_value=1e6),
        st.integers(0, 1_000_000),
    )
    weight_maps = st.one_of(
        st.dictionaries(st.sampled_from([*NAMES, "e"]), valid_weight_values, max_size=5),
        st.dictionaries(st.sampled_from([*NAMES, "e"]), valid_weight_values, max_size=5),
        st.dictionaries(st.sampled_from([*NAMES, "e"]), weight_values, max_size=4),
    )

    @settings(max_examples=300, deadline=None)
    @given(stored=small_maps, presented=small_maps, weights=weight_maps)
    def test_fingerprint_score_agrees_bit_for_bit(
        stored: dict[str, str], presented: dict[str, str], weights: dict[str, object]
    ) -> None:
        assert_agree("fingerprint_score", stored, presented, weights)

    odd_strings = st.sampled_from(["\ud800", "\udfff", "\U0001f600", "\u00e9", "\x00"])

    @settings(max_examples=200, deadline=None)
    @given(
        stored=st.one_of(
            small_maps,
            st.dictionaries(
                st.one_of(st.sampled_from(NAMES), odd_strings, st.integers(0, 2)),
                st.one_of(st.sampled_from(VALUES), odd_strings, st.none()),
                max_size=3,
            ),
            garbage,
        ),
        presented=st.one_of(
            small_maps,
            st.dictionaries(
                st.one_of(st.sampled_from(NAMES), odd_strings),
                st.one_of(st.sampled_from(VALUES), odd_strings, st.integers()),
                max_size=3,
            ),
            garbage,
        ),
        weights=st.one_of(
            weight_maps,
            st.dictionaries(
                st.one_of(st.sampled_from(NAMES), odd_strings, st.integers(0, 2)),
                st.one_of(weight_values, bad_weight_values),
                max_size=3,
            ),
            garbage,
        ),
    )
    def test_fingerprint_score_agrees_on_bad_strings_weights_and_types(
        stored: object, presented: object, weights: object
    ) -> None:
        assert_agree("fingerprint_score", stored, presented, weights)

    IDS = ["a", "b", "c", "B", "aa", "\u00e9", "\uffff", "\U0001f600", ""]
    thresholds = st.one_of(
        st.sampled_from([5e-324, 0.1, 0.25, 1 / 3, 0.5, 2 / 3, 0.75, 1.0, 1]),
        st.floats(min_value=0, max_value=1, exclude_min=True),
        st.sampled_from([0, 0.0, -0.0, -0.1, 1.5, 1.0000000000000002, math.nan, math.inf, 10**400, True, "0.5", None]),
    )
    operations = st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.one_of(st.sampled_from(IDS), odd_strings), st.one_of(small_maps, small_maps, garbage)),
            st.tuples(st.just("remove"), st.one_of(st.sampled_from(IDS), odd_strings, st.none())),
            st.tuples(st.just("best_match"), small_maps, thresholds),
            st.tuples(st.just("duplicates"), thresholds),
            st.tuples(st.just("__len__")),
            st.tuples(st.just("__contains__"), st.one_of(st.sampled_from(IDS), odd_strings, st.integers())),
        ),
        max_size=30,
    )
    index_weights = st.dictionaries(
        st.sampled_from(NAMES),
        st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.7, 1.0, 2.5, 1e6, 5e-324, 1 / 3]),
        max_size=5,
    )

    @settings(max_examples=250, deadline=None)
    @given(weights=index_weights, ops=operations)
    def test_fingerprint_index_agrees_after_random_add_and_remove_sequences(
        weights: dict[str, float], ops: list[tuple[Any, ...]]
    ) -> None:
        rust_index, python_index = RUST.FingerprintIndex(weights), PY.FingerprintIndex(weights)
        for op in [*ops, ("duplicates", 5e-324), ("best_match", {"a": "1", "b": "1"}, 5e-324), ("__len__",)]:
            name, *args = op
            rust = outcome(lambda: getattr(rust_index, name)(*args))
            python = outcome(lambda: getattr(python_index, name)(*args))
            assert rust == python, f"{op!r} after {ops!r}: rust {rust!r} != python {python!r}"

    @settings(max_examples=100, deadline=None)
    @given(
        weights=st.one_of(
            weight_maps,
            garbage,
            st.dictionaries(st.one_of(odd_strings, st.integers()), st.one_of(weight_values, bad_weight_values), max_size=2),
        )
    )
    def test_fingerprint_index_constructor_agrees_on_bad_weights(weights: object) -> None:
        rust = outcome(lambda: len(RUST.FingerprintIndex(weights)))
        python = outcome(lambda: len(PY.FingerprintIndex(weights)))
        assert rust == python

    # --- both cores raise licensor.errors classes (the client's, re-exported) --------------------------------

    def test_both_cores_raise_the_very_same_error_classes() -> None:
        import licensor.errors
        import licensor_client.errors

        for module in (RUST, PY):
            with pytest.raises(LicensorError) as raised:
                module.public_key(b"short")
            assert type(raised.value) is licensor.errors.InvalidInputError is licensor_client.errors.InvalidInputError

    # --- disagreements found while writing this suite (kept failing until the cores agree) ----------------

    class _FloatThatSaysOtherwise(float):
        """A float subclass whose ``__float__`` disagrees with its value (as some proxies do)."""

        def __float__(self) -> float:
            return 5e6

    def test_a_float_subclass_weight_is_read_alike() -> None:
        weights = {"a": _FloatThatSaysOtherwise(0.5)}
        assert_agree("fingerprint_score", {"a": "1"}, {"a": "1"}, weights)

    def test_a_float_subclass_threshold_is_read_alike() -> None:
        rust_index, python_index = RUST.FingerprintIndex({}), PY.FingerprintIndex({})
        for index in (rust_index, python_index):
            index.add("x", {"a": "1"})
        threshold = _FloatThatSaysOtherwise(0.5)
        assert outcome(lambda: rust_index.best_match({"a": "1"}, threshold)) == outcome(
            lambda: python_index.best_match({"a": "1"}, threshold)
        )

    class _ListItemsMapping(Mapping[str, str]):
        """A Mapping whose ``items()`` yields ``[key, value]`` lists rather than tuples."""

        def __init__(self, data: dict[str, str]) -> None:
            self._data = data

        def __getitem__(self, key: str) -> str:
            return self._data[key]

        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(self._data)

        def __len__(self) -> int:
            return len(self._data)

        def items(self):  # type: ignore[no-untyped-def, override]
            return [[key, value] for key, value in self._data.items()]

    class _TripleItemsMapping(_ListItemsMapping):
        """A Mapping whose ``items()`` yields ``(key, value, extra)`` triples."""

        def items(self):  # type: ignore[no-untyped-def, override]
            return [(key, value, "extra") for key, value in self._data.items()]

    @pytest.mark.parametrize("mapping_class", [_ListItemsMapping, _TripleItemsMapping], ids=["list-pairs", "triples"])
    def test_a_mapping_whose_items_are_not_2_tuples_is_read_alike(mapping_class: type[_ListItemsMapping]) -> None:
        assert_agree("fingerprint_score", mapping_class({"a": "1"}), {"a": "1"}, {})

    class _CallbackMapping(Mapping[str, str]):
        """A Mapping that runs a callback whenever it is read (as a lazy or logging wrapper might)."""

        def __init__(self, data: dict[str, str], callback: Callable[[], object]) -> None:
            self._data, self._callback = data, callback

        def __getitem__(self, key: str) -> str:
            return self._data[key]

        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(self._data)

        def __len__(self) -> int:
            return len(self._data)

        def items(self):  # type: ignore[no-untyped-def, override]
            self._callback()
            return list(self._data.items())

    REENTRANT = {
        "len-while-adding": lambda index, seen: index.add("b", _CallbackMapping({"x": "1"}, lambda: seen.append(len(index)))),
        "contains-while-adding": lambda index, seen: index.add(
            "b", _CallbackMapping({"x": "1"}, lambda: seen.append("a" in index))
        ),
        "add-while-matching": lambda index, seen: index.best_match(
            _CallbackMapping({"x": "1"}, lambda: seen.append(index.add("c", {"x": "1"}))), 0.5
        ),
        "remove-while-matching": lambda index, seen: index.best_match(
            _CallbackMapping({"x": "1"}, lambda: seen.append(index.remove("a"))), 0.5
        ),
    }

    @pytest.mark.parametrize("case", sorted(REENTRANT))
    def test_an_index_used_from_inside_a_mapping_it_is_reading_behaves_alike(case: str) -> None:
        observed = []
        for module in (RUST, PY):
            index = module.FingerprintIndex({})
            index.add("a", {"x": "1"})
            seen: list[object] = []
            result = outcome(lambda: REENTRANT[case](index, seen))
            observed.append((result, seen, len(index)))
        assert observed[0] == observed[1], f"rust {observed[0]!r} != python {observed[1]!r}"
