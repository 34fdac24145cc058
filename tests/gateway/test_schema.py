"""licensor.schema: validation that names the first problem at the cost of finding it, and strict JSON.

The cost bound itself is measured against the running gateway (tests/gateway/test_worst_case_cost.py); here
are the answers: which problem is named, where, with which kind, and that no message repeats a value.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from licensor.errors import MalformedRequestError, ValidationError
from licensor.gateway.check import CHECK_REQUEST_SCHEMA
from licensor.schema import MAX_CONTAINERS, MAX_NESTING, Schema, SchemaProblem, compiled, read_json

CHECK = Schema(CHECK_REQUEST_SCHEMA)


def test_a_long_list_of_distinct_objects_is_refused_by_its_length_first() -> None:
    features = [{"feature": n, "padding": [n, {"n": n}]} for n in range(5000)]
    assert CHECK.problem({"product": "app", "features": features}) == SchemaProblem(
        "features", "invalid", "must contain less than or equal to 64 items"
    )


def test_unique_items_are_told_apart_by_value_not_by_identity() -> None:
    schema = Schema({"type": "array", "items": {"type": "object"}, "uniqueItems": True, "maxItems": 100})
    assert schema.problem([{"a": [n, {"b": n}]} for n in range(100)]) is None
    problem = schema.problem([{"a": [1, {"b": 2}]}, {"a": [1, {"b": 2}]}])
    assert problem is not None and problem.kind == "invalid" and "unique" in problem.message
    assert schema.problem([{"a": 1}, {"a": True}]) is None  # true is not 1 in JSON


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"features": ["a"]}, SchemaProblem("product", "missing", "is required")),
        ({"product": "app", "colour": "red"}, SchemaProblem("colour", "unknown", "is not a field of this request")),
        ({"product": 5}, SchemaProblem("product", "type", "must be a string")),
        ({"product": "app", "features": ["ok", 7]}, SchemaProblem("features.1", "type", "must be a string")),
        ({"product": "app", "features": "draw"}, SchemaProblem("features", "type", "must be an array")),
        ("app", SchemaProblem("(body)", "type", "must be an object")),
    ],
)
def test_the_problem_is_named_with_its_place_and_kind(body: Any, expected: SchemaProblem) -> None:
    assert CHECK.problem(body) == expected


def test_a_pattern_is_anchored_as_json_schema_means_it() -> None:
    # ECMA-262: "$" is the end of the string, not "before a final newline" as in Python.
    problem = CHECK.problem({"product": "app\n"})
    assert problem is not None and (problem.location, problem.kind) == ("product", "invalid")


def test_a_whole_number_is_an_integer_however_written_and_a_huge_one_is_out_of_range() -> None:
    schema = Schema({"type": "object", "properties": {"seats": {"type": "integer", "minimum": 1, "maximum": 1000}}})
    assert schema.problem({"seats": 3}) is None and schema.problem({"seats": 3.0}) is None  # JSON Schema's reading
    assert schema.problem({"seats": 3.5}) == SchemaProblem("seats", "type", "must be an integer")
    problem = schema.problem({"seats": 1e30})
    assert problem is not None and (problem.location, problem.kind) == ("seats", "invalid") and "1000" in problem.message
    assert schema.problem({"seats": True}) == SchemaProblem("seats", "type", "must be an integer")


def test_any_of_names_the_problem_of_the_branch_of_the_values_type() -> None:
    schema = Schema({"type": "object", "properties": {"note": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "null"}]}}})
    assert schema.problem({"note": None}) is None
    assert schema.problem({"note": {"x": 1}}) == SchemaProblem("note", "type", "must be a string or null")
    problem = schema.problem({"note": "long"})
    assert problem is not None and (problem.location, problem.kind) == ("note", "invalid") and "3" in problem.message


def test_no_message_repeats_a_value_of_the_request() -> None:
    secret = "sk_live_" + "Q" * 40
    bodies = [
        {"product": secret},
        {"product": "app", "license_key": secret * 5},
        {"product": "app", "nonce": secret + " x"},
        {"product": "app", "features": [secret, secret]},
        {"product": "app", "fingerprint": {"cpu": secret + "!"}},
        {"product": "app", "subject": [secret]},
        {"product": "app", "tenant": secret},
    ]
    for body in bodies:
        problem = CHECK.problem(body)
        assert problem is not None and secret not in problem.message and secret not in problem.location, body


def test_an_unknown_field_with_a_huge_name_is_shown_shortened() -> None:
    problem = CHECK.problem({"product": "app", "x" * 10_000: 1})
    assert problem is not None and problem.kind == "unknown" and len(problem.location) < 100


def test_validate_raises_the_gateways_codes() -> None:
    for body, code in (
        ({"features": []}, "MISSING_FIELD"),
        ({"product": "app", "x": 1}, "UNKNOWN_FIELD"),
        ({"product": 1}, "WRONG_TYPE"),
        ({"product": "UPPER"}, "INVALID_FIELD"),
    ):
        with pytest.raises(ValidationError) as refused:
            CHECK.validate(body)
        assert refused.value.code == code and refused.value.http_status == 422
    with pytest.raises(ValidationError) as refused:
        CHECK.validate({"product": 1}, where="query parameter", code_prefix="PARAMETER")
    assert refused.value.message.startswith("query parameter product:")


def test_a_format_that_would_go_unchecked_is_refused_when_compiled() -> None:
    with pytest.raises(ValueError, match="uuid"):
        Schema({"type": "string", "format": "uuid"})
    assert Schema({"type": "string", "format": "date-time"}).problem("2026-02-02T25:00:00Z") is not None


@pytest.mark.parametrize("keyword", ["prefixItems", "unevaluatedProperties", "dependentRequired", "maxitems"])
def test_a_keyword_that_would_go_unchecked_is_refused_when_compiled(keyword: str) -> None:
    with pytest.raises(ValueError, match=keyword):
        Schema({"type": "object", "properties": {"list": {"type": "array", keyword: 2}}})


def test_equal_schemas_are_compiled_once() -> None:
    assert compiled({"type": "string", "maxLength": 3}) is compiled({"maxLength": 3, "type": "string"})


# --- strict JSON ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    [b'{"a":1,"a":2}', b'{"a":{"b":1,"b":1}}', b'[{"x":"1:2","x":"3"}]', b'{"k\\"":1,"k\\"":2}', b'{"a":1,"\\u0061":2}'],
    ids=["top", "nested", "colons-in-strings", "escaped-quote", "escaped-name"],
)
def test_an_object_naming_a_key_twice_is_refused(raw: bytes) -> None:
    with pytest.raises(MalformedRequestError) as refused:
        read_json(raw)
    assert (refused.value.code, refused.value.http_status) == ("DUPLICATE_KEY", 400)


@pytest.mark.parametrize("raw", [b'{"a":"1:2","b":"::"}', b'{"t":"12:00","u":{"v":"a:b"}}', b'[":",{"a":":"}]', b'{"a\\":":1}'])
def test_colons_inside_strings_are_no_keys(raw: bytes) -> None:
    assert read_json(raw) == orjson.loads(raw)


def test_a_nul_escape_is_refused_but_a_written_backslash_u_is_text() -> None:
    for raw in (b'{"a":"x\\u0000"}', b'{"\\u0000":1}', b'["\\\\\\u0000"]'):
        with pytest.raises(ValidationError) as refused:
            read_json(raw)
        assert refused.value.code == "INVALID_CHARACTER"
    assert read_json(b'{"a":"\\\\u0000"}') == {"a": "\\u0000"}  # a backslash, then the letters u0000


def test_brackets_inside_strings_are_not_counted_as_values() -> None:
    raw = b'{"text": "' + b"[{" * (MAX_CONTAINERS) + b'", "list": [[]]}'
    assert read_json(raw) == {"text": "[{" * MAX_CONTAINERS, "list": [[]]}
    with pytest.raises(MalformedRequestError) as refused:
        read_json(b"[" + b"[]," * MAX_CONTAINERS + b"[]]")
    assert refused.value.code == "TOO_MANY_VALUES"


def test_nesting_is_bounded() -> None:
    assert read_json(b"[" * MAX_NESTING + b"]" * MAX_NESTING) is not None
    for raw in (b"[" * (MAX_NESTING + 1) + b"]" * (MAX_NESTING + 1), b'{"a":' * 2000 + b"1" + b"}" * 2000):
        with pytest.raises(MalformedRequestError) as refused:
            read_json(raw)
        assert refused.value.code == "NESTING_TOO_DEEP"


# An object as its list of members, so that a key may come twice; the oracle is the standard library's parser.
_KEYS = st.sampled_from(["a", "b", "c:", ':"', "\\", "é"])
_SCALARS = st.one_of(st.integers(-5, 5), st.text(alphabet='ab:"\\{}[],', max_size=4), st.booleans(), st.none())
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.lists(st.tuples(_KEYS, inner), max_size=4).map(lambda m: ("obj", m))),
    max_leaves=12,
)


def _text(value: Any) -> str:
    if isinstance(value, tuple):  # ("obj", members)
        return "{" + ",".join(f"{json.dumps(k)}:{_text(v)}" for k, v in value[1]) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_text(item) for item in value) + "]"
    return json.dumps(value)


def _has_duplicate(value: Any) -> bool:
    if isinstance(value, tuple):
        keys = [k for k, _ in value[1]]
        return len(keys) != len(set(keys)) or any(_has_duplicate(v) for _, v in value[1])
    return isinstance(value, list) and any(_has_duplicate(item) for item in value)


@given(_VALUES)
def test_a_duplicate_key_is_found_exactly_when_there_is_one(value: Any) -> None:
    raw = _text(value).encode()
    if _has_duplicate(value):
        with pytest.raises(MalformedRequestError):
            read_json(raw)
    else:
        assert read_json(raw) == json.loads(raw)
