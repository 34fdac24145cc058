"""Fingerprint matching on every core: fingerprint_score and FingerprintIndex (add, remove, len, contains,
best_match, duplicates), with the argument checks of ``_core.pyi``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from types import ModuleType

import pytest
from licensor.errors import InvalidInputError

WEIGHTS = {"disk": 2.0, "mac": 0.5}


# --- fingerprint_score -------------------------------------------------------------------------------------


def test_score_is_the_weighted_share_of_stored_components_presented_with_an_equal_value(core: ModuleType) -> None:
    stored = {"board": "b", "disk": "d", "mac": "m"}
    presented = {"board": "b", "disk": "x", "mac": "m"}
    # board (1.0, missing weight) and mac (0.5) match, disk (2.0) does not: 1.5 / 3.5.
    assert core.fingerprint_score(stored, presented, WEIGHTS) == 1.5 / 3.5


def test_score_is_a_float_from_zero_to_one(core: ModuleType) -> None:
    stored = {"a": "1", "b": "2"}
    assert core.fingerprint_score(stored, stored, {}) == 1.0
    assert core.fingerprint_score(stored, {"a": "x", "b": "y"}, {}) == 0.0
    for presented in ({}, {"a": "1"}, stored):
        assert type(core.fingerprint_score(stored, presented, {})) is float


def test_a_component_without_a_weight_weighs_one(core: ModuleType) -> None:
    stored = {"a": "1", "b": "2", "c": "3", "d": "4"}
    presented = {"a": "1", "b": "2", "c": "3", "d": "x"}
    assert core.fingerprint_score(stored, presented, {}) == 0.75
    assert core.fingerprint_score(stored, presented, {"a": 1.0, "d": 1.0}) == 0.75
    assert core.fingerprint_score(stored, presented, {"d": 3.0}) == 3.0 / 6.0


def test_weights_of_components_absent_from_stored_change_nothing(core: ModuleType) -> None:
    stored = {"a": "1", "b": "2"}
    presented = {"a": "1", "z": "9"}
    assert core.fingerprint_score(stored, presented, {"z": 1000.0, "y": 0.0}) == 0.5


def test_empty_stored_fingerprint_scores_zero(core: ModuleType) -> None:
    assert core.fingerprint_score({}, {}, {}) == 0.0
    assert core.fingerprint_score({}, {"a": "1"}, {"a": 1.0}) == 0.0


def test_empty_presented_fingerprint_scores_zero(core: ModuleType) -> None:
    assert core.fingerprint_score({"a": "1"}, {}, {}) == 0.0


def test_extra_presented_components_are_ignored(core: ModuleType) -> None:
    stored = {"a": "1", "b": "2", "c": "3"}
    presented = {"a": "1", "b": "x"}
    base = core.fingerprint_score(stored, presented, WEIGHTS)
    extra = {**presented, "disk": "d", "mac": "m", "zz": "1", "": ""}
    assert core.fingerprint_score(stored, extra, WEIGHTS) == base == 1.0 / 3.0


def test_all_zero_weights_score_zero_even_on_a_perfect_match(core: ModuleType) -> None:
    stored = {"disk": "d", "mac": "m"}
    assert core.fingerprint_score(stored, stored, {"disk": 0.0, "mac": 0}) == 0.0


def test_a_zero_weight_component_neither_helps_nor_hurts(core: ModuleType) -> None:
    stored = {"a": "1", "b": "2", "c": "3"}
    assert core.fingerprint_score(stored, {"a": "1", "b": "2"}, {"c": 0.0}) == 1.0
    assert core.fingerprint_score(stored, {"c": "3"}, {"c": 0.0}) == 0.0
    assert core.fingerprint_score(stored, {"c": "3", "a": "1"}, {"c": 0.0}) == 0.5


def test_values_must_be_exactly_equal_to_match(core: ModuleType) -> None:
    stored = {"a": "Value"}
    for presented in ("value", "Value ", " Value", "Valu", "Value\x00", ""):
        assert core.fingerprint_score(stored, {"a": presented}, {}) == 0.0
    assert core.fingerprint_score(stored, {"a": "Value"}, {}) == 1.0
    assert core.fingerprint_score({"\u00e9": "\U0001f600"}, {"\u00e9": "\U0001f600"}, {}) == 1.0
    assert core.fingerprint_score({"e\u0301": "x"}, {"\u00e9": "x"}, {}) == 0.0  # no normalisation


def test_sums_run_in_the_stored_fingerprints_order(core: ModuleType) -> None:
    weights = {"x": 0.1, "y": 0.2, "z": 0.3}
    forward = {"x": "1", "y": "1", "z": "1"}
    backward = {"z": "1", "y": "1", "x": "1"}
    # (0.1 + 0.2) + 0.3 != (0.3 + 0.2) + 0.1 in floating point, so the order shows in the result.
    assert core.fingerprint_score(forward, {"z": "1"}, weights) == 0.3 / ((0.1 + 0.2) + 0.3) == 0.4999999999999999
    assert core.fingerprint_score(backward, {"z": "1"}, weights) == 0.3 / ((0.3 + 0.2) + 0.1) == 0.5
    matched = 0.1 + 0.2
    assert core.fingerprint_score(forward, {"x": "1", "y": "1"}, weights) == matched / ((0.1 + 0.2) + 0.3)


def test_weights_may_be_ints_and_the_bounds_zero_and_one_million(core: ModuleType) -> None:
    stored = {"a": "1", "b": "2"}
    assert core.fingerprint_score(stored, {"a": "1"}, {"a": 3, "b": 1}) == 0.75
    assert core.fingerprint_score(stored, {"a": "1"}, {"a": 1_000_000, "b": 0}) == 1.0
    assert core.fingerprint_score(stored, {"a": "1"}, {"a": 1e6, "b": 1e6}) == 0.5
    assert core.fingerprint_score(stored, {"a": "1"}, {"a": 5e-324, "b": 0.0}) == 1.0


def test_custom_mappings_are_accepted(core: ModuleType) -> None:
    class Frozen(Mapping[str, object]):
        def __init__(self, data: dict[str, object]) -> None:
            self._data = data

        def __getitem__(self, key: str) -> object:
            return self._data[key]

        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(self._data)

        def __len__(self) -> int:
            return len(self._data)

    score = core.fingerprint_score(Frozen({"disk": "d", "mac": "m"}), Frozen({"mac": "m"}), Frozen({"disk": 2.0, "mac": 0.5}))
    assert score == 0.5 / 2.5


INVALID_WEIGHT_VALUES = [
    pytest.param(-1.0, id="negative"),
    pytest.param(-1, id="negative-int"),
    pytest.param(-5e-324, id="tiny-negative"),
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="-inf"),
    pytest.param(1_000_000.0000001, id="just-over-1e6"),
    pytest.param(1_000_001, id="int-over-1e6"),
    pytest.param(1e300, id="1e300"),
    pytest.param(2**1023, id="2**1023"),
    pytest.param(10**400, id="10**400"),
    pytest.param(-(10**400), id="-10**400"),
]

WRONG_TYPE_WEIGHT_VALUES = [
    pytest.param("0.5", id="str"),
    pytest.param(None, id="None"),
    pytest.param([1.0], id="list"),
    pytest.param(b"1", id="bytes"),
    pytest.param(Decimal("0.5"), id="Decimal"),
    pytest.param(1j, id="complex"),
]


@pytest.mark.parametrize("weight", INVALID_WEIGHT_VALUES)
def test_weight_out_of_range_raises_invalid_input_error(core: ModuleType, weight: object) -> None:
    with pytest.raises(InvalidInputError) as raised:
        core.fingerprint_score({"a": "1"}, {"a": "1"}, {"a": weight})
    assert raised.value.code == "INVALID_INPUT"
    with pytest.raises(InvalidInputError):
        core.fingerprint_score({}, {}, {"unused": weight})  # checked even when no component uses it
    with pytest.raises(InvalidInputError):
        core.FingerprintIndex({"a": weight})


@pytest.mark.parametrize("weight", WRONG_TYPE_WEIGHT_VALUES)
def test_weight_that_is_not_a_number_raises_type_error(core: ModuleType, weight: object) -> None:
    with pytest.raises(TypeError):
        core.fingerprint_score({"a": "1"}, {"a": "1"}, {"a": weight})
    with pytest.raises(TypeError):
        core.FingerprintIndex({"a": weight})


@pytest.mark.parametrize(
    ("stored", "presented", "weights"),
    [
        pytest.param({1: "a"}, {}, {}, id="int-component"),
        pytest.param({"a": 1}, {}, {}, id="int-value"),
        pytest.param({"a": b"x"}, {}, {}, id="bytes-value"),
        pytest.param({}, {"a": None}, {}, id="presented-None-value"),
        pytest.param({}, {}, {1: 1.0}, id="int-weight-name"),
        pytest.param([("a", "1")], {}, {}, id="stored-list"),
        pytest.param({}, None, {}, id="presented-None"),
        pytest.param({}, {}, None, id="weights-None"),
        pytest.param("a=1", {}, {}, id="stored-str"),
    ],
)
def test_non_string_mappings_raise_type_error(core: ModuleType, stored: object, presented: object, weights: object) -> None:
    with pytest.raises(TypeError):
        core.fingerprint_score(stored, presented, weights)


@pytest.mark.parametrize(
    ("stored", "presented", "weights"),
    [
        pytest.param({"\ud800": "1"}, {}, {}, id="stored-component"),
        pytest.param({"a": "\ud800"}, {}, {}, id="stored-value"),
        pytest.param({}, {"\udfff": "1"}, {}, id="presented-component"),
        pytest.param({"a": "1"}, {"a": "1\ud800"}, {}, id="presented-value"),
        pytest.param({}, {}, {"\ud800": 1.0}, id="weights-component"),
    ],
)
def test_lone_surrogate_strings_raise_invalid_input_error(
    core: ModuleType, stored: object, presented: object, weights: object
) -> None:
    with pytest.raises(InvalidInputError):
        core.fingerprint_score(stored, presented, weights)


# --- FingerprintIndex: contents ----------------------------------------------------------------------------


def test_new_index_is_empty(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    assert len(index) == 0
    assert "a" not in index
    assert index.best_match({"a": "1"}, 1e-9) is None
    assert index.duplicates(1e-9) == []


def test_add_stores_and_len_and_contains_follow(core: ModuleType) -> None:
    index = core.FingerprintIndex(WEIGHTS)
    assert index.add("dev-1", {"disk": "d"}) is None
    index.add("dev-2", {"disk": "e"})
    index.add("", {})
    assert len(index) == 3
    assert "dev-1" in index and "dev-2" in index and "" in index
    assert "dev-3" not in index


def test_add_under_a_stored_id_replaces_its_fingerprint(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    index.add("dev", {"a": "old"})
    index.add("dev", {"a": "new"})
    assert len(index) == 1
    assert index.best_match({"a": "old"}, 1e-9) is None
    assert index.best_match({"a": "new"}, 1.0) == ("dev", 1.0)


def test_remove_forgets_the_id(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    for i in range(5):
        index.add(f"dev-{i}", {"a": str(i)})
    assert index.remove("dev-2") is None
    assert len(index) == 4
    assert "dev-2" not in index
    assert index.best_match({"a": "2"}, 1e-9) is None
    for i in (0, 1, 3, 4):
        assert index.best_match({"a": str(i)}, 1.0) == (f"dev-{i}", 1.0)


def test_removing_an_id_that_is_not_stored_raises_key_error(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    with pytest.raises(KeyError) as raised:
        index.remove("ghost")
    assert raised.value.args == ("ghost",)
    index.add("dev", {"a": "1"})
    index.remove("dev")
    with pytest.raises(KeyError):
        index.remove("dev")
    assert len(index) == 0


def test_contains_of_a_non_string_is_false_not_an_error(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    index.add("1", {"a": "1"})
    assert 1 not in index
    assert None not in index
    assert b"1" not in index
    assert "1" in index


def test_a_rejected_add_leaves_the_index_as_it_was(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    index.add("dev", {"a": "1"})
    for bad in ({"a": "\ud800"}, {"a": 2}, [("a", "2")]):
        with pytest.raises((InvalidInputError, TypeError)):
            index.add("dev", bad)
    assert len(index) == 1
    assert index.best_match({"a": "1"}, 1.0) == ("dev", 1.0)


@pytest.mark.parametrize(
    ("action", "error"),
    [
        pytest.param(lambda i: i.add("\ud800", {"a": "1"}), InvalidInputError, id="add-id"),
        pytest.param(lambda i: i.add("x", {"\ud800": "1"}), InvalidInputError, id="add-component"),
        pytest.param(lambda i: i.add("x", {"a": "\udc00"}), InvalidInputError, id="add-value"),
        pytest.param(lambda i: i.remove("\ud800"), InvalidInputError, id="remove-id"),
        pytest.param(lambda i: i.best_match({"\ud800": "1"}, 0.5), InvalidInputError, id="best-match-component"),
        pytest.param(lambda i: i.best_match({"a": "\ud800"}, 0.5), InvalidInputError, id="best-match-value"),
        pytest.param(lambda i: i.add(1, {"a": "1"}), TypeError, id="add-int-id"),
        pytest.param(lambda i: i.add("x", None), TypeError, id="add-None-fingerprint"),
        pytest.param(lambda i: i.remove(None), TypeError, id="remove-None"),
        pytest.param(lambda i: i.best_match(None, 0.5), TypeError, id="best-match-None"),
    ],
)
def test_index_arguments_are_checked(core: ModuleType, action, error: type[Exception]) -> None:  # type: ignore[no-untyped-def]
    index = core.FingerprintIndex({})
    index.add("a", {"a": "1"})
    with pytest.raises(error):
        action(index)
    assert len(index) == 1


def test_lone_surrogate_is_never_a_stored_id(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    index.add("a", {"a": "1"})
    assert "\ud800" not in index


def test_index_weights_are_validated(core: ModuleType) -> None:
    with pytest.raises(InvalidInputError):
        core.FingerprintIndex({"\ud800": 1.0})
    with pytest.raises(TypeError):
        core.FingerprintIndex(None)
    with pytest.raises(TypeError):
        core.FingerprintIndex([("a", 1.0)])


# --- FingerprintIndex: best_match --------------------------------------------------------------------------


def test_best_match_returns_the_best_scoring_id_and_its_score(core: ModuleType) -> None:
    index = core.FingerprintIndex(WEIGHTS)
    index.add("one", {"board": "b", "disk": "d", "mac": "m"})
    index.add("two", {"board": "b", "disk": "x", "mac": "m"})
    index.add("three", {"cpu": "c"})
    presented = {"board": "b", "disk": "d", "mac": "z"}
    match = index.best_match(presented, 0.1)
    assert type(match) is tuple
    assert match == ("one", 3.0 / 3.5)
    assert index.best_match({"board": "b", "disk": "x", "mac": "m"}, 0.1) == ("two", 1.0)


def test_best_match_scores_are_those_of_fingerprint_score_with_the_index_weights(core: ModuleType) -> None:
    weights = {"a": 0.1, "b": 0.7, "c": 3.0, "d": 0.0}
    stored = [
        {"a": "1", "b": "2", "c": "3", "d": "4"},
        {"c": "3", "b": "2", "a": "x"},
        {"d": "4", "e": "5"},
        {"b": "2"},
    ]
    presented_list = [{"a": "1"}, {"b": "2", "c": "3"}, {"d": "4", "e": "5", "a": "1"}, {"c": "3", "a": "x", "e": "9"}]
    for presented in presented_list:
        for fingerprint in stored:
            index = core.FingerprintIndex(weights)
            index.add("only", fingerprint)
            expected = core.fingerprint_score(fingerprint, presented, weights)
            match = index.best_match(presented, 5e-324)
            if expected == 0.0:
                assert match is None
            else:
                assert match == ("only", expected)
                assert math.copysign(1.0, match[1]) == 1.0


def test_best_match_ties_go_to_the_id_that_sorts_first(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    for id_ in ("m", "b", "z", "a", "B"):
        index.add(id_, {"k": "v"})
    index.add("0-worse", {"k": "v", "other": "x"})
    assert index.best_match({"k": "v"}, 0.5) == ("B", 1.0)  # "B" < "a" by code point
    index.remove("B")
    assert index.best_match({"k": "v"}, 0.5) == ("a", 1.0)
    index.remove("a")
    assert index.best_match({"k": "v"}, 0.5) == ("b", 1.0)


def test_best_match_tie_break_compares_code_points_beyond_the_bmp(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    for id_ in ("\U0001f600", "\uffff", "\u00e9", "z"):
        index.add(id_, {"k": "v"})
    assert index.best_match({"k": "v"}, 1.0) == ("z", 1.0)
    index.remove("z")
    assert index.best_match({"k": "v"}, 1.0) == ("\u00e9", 1.0)
    index.remove("\u00e9")
    # By code point U+FFFF < U+1F600 (in UTF-16 code units the order would be the other way round).
    assert index.best_match({"k": "v"}, 1.0) == ("\uffff", 1.0)


def test_best_match_respects_the_threshold_inclusively(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    index.add("half", {"a": "1", "b": "2"})
    assert index.best_match({"a": "1"}, 0.5) == ("half", 0.5)
    assert index.best_match({"a": "1"}, 0.5000000000000001) is None
    assert index.best_match({"a": "1"}, 1) is None
    assert index.best_match({"a": "1", "b": "2"}, 1) == ("half", 1.0)


def test_best_match_below_threshold_falls_back_to_the_next_best_above_it(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    index.add("a", {"x": "1", "y": "2", "z": "3"})
    index.add("b", {"x": "1", "q": "0", "r": "0", "s": "0"})
    assert index.best_match({"x": "1", "y": "2"}, 0.5) == ("a", 2.0 / 3.0)
    assert index.best_match({"x": "1", "y": "2"}, 0.7) is None


def test_fingerprints_sharing_nothing_never_match(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    index.add("a", {"x": "1"})
    index.add("zero", {"x": "1"})
    assert index.best_match({"x": "2"}, 5e-324) is None
    index2 = core.FingerprintIndex({"x": 0.0})
    index2.add("a", {"x": "1"})
    assert index2.best_match({"x": "1"}, 5e-324) is None  # all-zero weights score 0.0


INVALID_THRESHOLDS = [
    pytest.param(0, id="0"),
    pytest.param(0.0, id="0.0"),
    pytest.param(-0.0, id="-0.0"),
    pytest.param(-0.1, id="-0.1"),
    pytest.param(1.5, id="1.5"),
    pytest.param(1.0000000000000002, id="just-over-1"),
    pytest.param(2, id="2"),
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="-inf"),
    pytest.param(10**400, id="10**400"),
]


@pytest.mark.parametrize("threshold", INVALID_THRESHOLDS)
def test_threshold_outside_zero_exclusive_to_one_raises_invalid_input_error(core: ModuleType, threshold: object) -> None:
    index = core.FingerprintIndex({})
    with pytest.raises(InvalidInputError):
        index.best_match({}, threshold)
    with pytest.raises(InvalidInputError):
        index.duplicates(threshold)
    index.add("a", {"x": "1"})
    index.add("b", {"x": "1"})
    with pytest.raises(InvalidInputError):
        index.best_match({"x": "1"}, threshold)
    with pytest.raises(InvalidInputError):
        index.duplicates(threshold)


@pytest.mark.parametrize("threshold", ["0.5", None, b"1", [0.5], Decimal("0.5")])
def test_threshold_that_is_not_a_number_raises_type_error(core: ModuleType, threshold: object) -> None:
    index = core.FingerprintIndex({})
    index.add("a", {"x": "1"})
    with pytest.raises(TypeError):
        index.best_match({"x": "1"}, threshold)
    with pytest.raises(TypeError):
        index.duplicates(threshold)


@pytest.mark.parametrize("threshold", [5e-324, 1e-9, 0.5, 1, 1.0])
def test_thresholds_in_zero_exclusive_to_one_are_accepted(core: ModuleType, threshold: float) -> None:
    index = core.FingerprintIndex({})
    index.add("a", {"x": "1"})
    index.add("b", {"x": "1"})
    assert index.best_match({"x": "1"}, threshold) == ("a", 1.0)
    assert index.duplicates(threshold) == [("a", "b", 1.0)]


# --- FingerprintIndex: duplicates --------------------------------------------------------------------------


def test_duplicates_score_is_the_lower_of_the_two_directions(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    index.add("y", {"a": "1", "b": "2", "c": "3", "d": "4"})
    index.add("x", {"a": "1", "b": "2"})
    index.add("z", {"e": "5"})
    # y presented to x scores 1.0; x presented to y scores 0.5: the pair scores 0.5.
    assert core.fingerprint_score({"a": "1", "b": "2"}, {"a": "1", "b": "2", "c": "3", "d": "4"}, {}) == 1.0
    assert index.duplicates(0.5) == [("x", "y", 0.5)]
    assert index.duplicates(0.6) == []


def test_duplicates_are_pairs_with_a_before_b_sorted_by_a_then_b(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    for id_ in ("d", "c", "b", "a", "B"):
        index.add(id_, {"shared": "1"})
    pairs = index.duplicates(1.0)
    ids = sorted(["d", "c", "b", "a", "B"])
    assert pairs == [(a, b, 1.0) for i, a in enumerate(ids) for b in ids[i + 1 :]]
    assert all(a < b for a, b, _ in pairs)
    assert all(type(pair) is tuple for pair in pairs)


def test_duplicates_use_the_index_weights_and_respect_the_threshold(core: ModuleType) -> None:
    index = core.FingerprintIndex(WEIGHTS)
    index.add("p", {"disk": "d", "mac": "m", "board": "b"})
    index.add("q", {"disk": "d", "mac": "x", "board": "x"})
    index.add("r", {"disk": "e", "mac": "m", "board": "b"})
    # p~q share disk: min(2/3.5, 2/3.5); p~r share mac and board: 1.5/3.5 both ways; q~r share nothing.
    assert index.duplicates(0.1) == [("p", "q", 2.0 / 3.5), ("p", "r", 1.5 / 3.5)]
    assert index.duplicates(2.0 / 3.5) == [("p", "q", 2.0 / 3.5)]
    assert index.duplicates(0.6) == []


def test_duplicates_forget_removed_and_replaced_fingerprints(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    index.add("a", {"x": "1"})
    index.add("b", {"x": "1"})
    index.add("c", {"x": "1"})
    index.remove("b")
    assert index.duplicates(1.0) == [("a", "c", 1.0)]
    index.add("c", {"x": "2"})
    assert index.duplicates(5e-324) == []


def test_duplicates_never_pair_an_id_with_itself_or_twice(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    index.add("a", {"x": "1", "y": "2", "z": "3"})
    index.add("b", {"x": "1", "y": "2", "z": "3"})
    assert index.duplicates(5e-324) == [("a", "b", 1.0)]


def test_fingerprints_sharing_only_a_component_name_are_not_duplicates(core: ModuleType) -> None:
    index = core.FingerprintIndex({})
    index.add("a", {"x": "1", "y": "v"})
    index.add("b", {"x": "2", "z": "v"})  # same value "v" under another component
    assert index.duplicates(5e-324) == []
