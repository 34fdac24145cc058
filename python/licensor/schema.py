"""JSON Schema validation whose cost is linear in the instance, and strict reading of JSON bodies.

Every schema licensor validates against (request bodies and query parameters of every operation, the
backends' policy options, device-signed documents) goes through :class:`Schema`. It is compiled once by
fastjsonschema, whose generated code checks the cheap limits of a value before its contents (``maxItems``
before ``uniqueItems`` and ``items``, ``maxLength`` before ``pattern``, the set of keys before their values),
hashes items for ``uniqueItems`` instead of comparing every pair, and stops at the first error: naming the
error costs no more than finding it. Keywords (and formats) that fastjsonschema would silently ignore are
refused when the schema is compiled, so a plugin's schema cannot mean more than is checked. Formats are
asserted (``date-time`` must be a real RFC 3339 time), as fastjsonschema does. A schema may give its own
message for what its keywords refuse (``"x-message"``), where the keyword's would not help the caller.

:func:`read_json` parses a body strictly: one reading only (a duplicate key is refused, since two parsers
could disagree on which value counts), bounded nesting, no NUL character in any string.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Literal

import fastjsonschema
import orjson
from fastjsonschema.draft07 import CodeGeneratorDraft07

from licensor.errors import MalformedRequestError, ValidationError

__all__ = ["MAX_NESTING", "Schema", "SchemaProblem", "compiled", "read_json"]

MAX_NESTING = 32
"""How deep a JSON body may nest (objects and arrays)."""
MAX_CONTAINERS = 4096
"""How many objects and arrays a JSON body may hold. Each is an object the garbage collector tracks, so a body
of tens of thousands of tiny arrays costs far more to parse and to collect than its size suggests; counting the
brackets first costs almost nothing."""

# What fastjsonschema checks (draft 7), plus annotations it rightly ignores. Anything else is refused.
_ASSERTIONS = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "dependencies",
        "items",
        "additionalItems",
        "minItems",
        "maxItems",
        "uniqueItems",
        "contains",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "if",
        "then",
        "else",
        "$ref",
        "definitions",
    }
)
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"}
)
_FORMATS = frozenset(CodeGeneratorDraft07.FORMAT_REGEXS) | {"regex"}  # the formats fastjsonschema checks
_SCHEMA_MAPS = ("properties", "patternProperties", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf")
_SUBSCHEMAS = ("additionalProperties", "propertyNames", "additionalItems", "contains", "not", "if", "then", "else")

ProblemKind = Literal["unknown", "missing", "type", "invalid"]
_CODE_KINDS = {"unknown": "UNKNOWN", "missing": "MISSING", "invalid": "INVALID"}
_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
    "null": "null",
}
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}
_MAX_SHOWN = 64  # characters of a field name shown in a message; the rest is elided


@dataclass(frozen=True)
class SchemaProblem:
    """The first thing wrong with an instance: where (``features.0``, or ``(body)`` for the whole), what kind
    of problem (an unknown field, a missing one, a wrong type, or a value outside its rules) and a message that
    never repeats a value of the instance (only field names, shortened)."""

    location: str
    kind: ProblemKind
    message: str


class Schema:
    """A JSON Schema (draft 7 keywords) compiled for validation in linear time.

    :raises ValueError: the schema uses a keyword this validator does not check (a draft 2019-09/2020-12
        keyword such as ``prefixItems`` or ``unevaluatedProperties``, or a misspelt one).
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        _refuse_unknown_keywords(schema, "#")
        self.schema = schema
        self._check = fastjsonschema.compile(schema, use_default=False)
        for branch in _branches(schema):  # compiled now, not on the first request that needs one named
            compiled(branch)

    def problem(self, instance: Any) -> SchemaProblem | None:
        """The first problem of ``instance``, or None when it is valid."""
        try:
            self._check(instance)
        except fastjsonschema.JsonSchemaValueException as error:
            return _problem_of(error)
        return None

    def validate(self, instance: Any, *, where: str = "field", code_prefix: str = "FIELD") -> None:
        """Refuse an invalid ``instance``.

        :raises ValidationError: ``WRONG_TYPE``, or ``UNKNOWN_``/``MISSING_``/``INVALID_`` + ``code_prefix``,
            with the message ``"{where} {location}: {problem}"``.
        """
        problem = self.problem(instance)
        if problem is not None:
            code = "WRONG_TYPE" if problem.kind == "type" else f"{_CODE_KINDS[problem.kind]}_{code_prefix}"
            raise ValidationError(f"{where} {problem.location}: {problem.message}", code=code)


@functools.lru_cache(maxsize=256)
def _compiled_json(schema_json: bytes) -> Schema:
    return Schema(orjson.loads(schema_json))


def compiled(schema: dict[str, Any]) -> Schema:
    """``Schema(schema)``, compiled once for every equal schema (compiling takes about a millisecond)."""
    return _compiled_json(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))


def _branches(schema: Any) -> list[dict[str, Any]]:
    """Every branch of an anyOf anywhere in ``schema``."""
    found: list[dict[str, Any]] = []
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found += [branch for branch in item.get("anyOf", ()) if isinstance(branch, dict)]
            stack += [value for key, value in item.items() if key not in ("enum", "const", "default", "examples")]
        elif isinstance(item, list):
            stack += item
    return found


def _refuse_unknown_keywords(schema: Any, at: str) -> None:
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise ValueError(f"the schema at {at} is not an object")
    for keyword, value in schema.items():
        if keyword not in _ASSERTIONS and keyword not in _ANNOTATIONS and not keyword.startswith("x-"):
            raise ValueError(f"the schema keyword {keyword!r} at {at} is not supported (draft 7 keywords only)")
        if keyword == "format" and value not in _FORMATS:  # an unknown format would go unchecked
            raise ValueError(f"the format {value!r} at {at} is not checked (known: {', '.join(sorted(_FORMATS))})")
        if keyword in _SCHEMA_MAPS:
            for name, subschema in value.items():
                _refuse_unknown_keywords(subschema, f"{at}/{keyword}/{name}")
        elif keyword in _SCHEMA_LISTS or (keyword == "items" and isinstance(value, list)):
            for index, subschema in enumerate(value):
                _refuse_unknown_keywords(subschema, f"{at}/{keyword}/{index}")
        elif keyword in _SUBSCHEMAS or keyword == "items":
            _refuse_unknown_keywords(value, f"{at}/{keyword}")
        elif keyword == "dependencies":
            for name, dependency in value.items():
                if isinstance(dependency, dict):
                    _refuse_unknown_keywords(dependency, f"{at}/dependencies/{name}")


def _shown(name: str) -> str:
    return name if len(name) <= _MAX_SHOWN else name[:_MAX_SHOWN] + "…"


def _location(name: str, *more: str) -> str:
    # fastjsonschema names a value "data", "data.field", "data.list[3]", "data.map.{key}".
    path = re.sub(r"\[(\d+)\]", r".\1", name[len("data") :]).lstrip(".")
    parts = [part for part in (path, *more) if part]
    return _shown(".".join(parts)) if parts else "(body)"


def _problem_of(error: fastjsonschema.JsonSchemaValueException) -> SchemaProblem:
    problem = _named_problem(error)
    definition = error.definition
    if isinstance(definition, dict) and isinstance(definition.get("x-message"), str):
        # A schema's own words for what its keywords refuse ("send license_key with tenant, or subject").
        return SchemaProblem(_location(error.name or "data"), problem.kind, definition["x-message"])
    return problem


def _named_problem(error: fastjsonschema.JsonSchemaValueException) -> SchemaProblem:
    rule, definition, value = error.rule, error.definition or {}, error.value
    name = error.name or "data"
    if rule == "required":
        missing = next(field for field in definition["required"] if field not in value)
        return SchemaProblem(_location(name, missing), "missing", "is required")
    if rule == "additionalProperties" and definition.get("additionalProperties") is False:
        known = definition.get("properties", {})
        patterns = [re.compile(pattern) for pattern in definition.get("patternProperties", {})]
        unknown = next(key for key in value if key not in known and not any(p.search(key) for p in patterns))
        return SchemaProblem(_location(name, unknown), "unknown", "is not a field of this request")
    if rule == "type":
        return _type_problem(name, definition.get("type"))
    if rule in ("anyOf", "oneOf"):
        branches = definition[rule]
        fitting = [branch for branch in branches if _admits(branch, value)]
        if not fitting:  # of none of the types allowed
            return _type_problem(name, [t for branch in branches for t in _types(branch)])
        if len(fitting) == 1 and rule == "anyOf":  # the one branch of its type tells what is wrong
            inner = compiled(fitting[0]).problem(value)
            if inner is not None:
                location = _location(name) if inner.location == "(body)" else _location(name, inner.location)
                return SchemaProblem(location, inner.kind, inner.message)
    if rule == "propertyNames":
        return SchemaProblem(_location(name), "invalid", "has a property name outside its rules")
    message = error.message[len(name) :].strip() if error.message.startswith(name) else error.message
    return SchemaProblem(_location(name), "invalid", message)


def _types(schema: Any) -> list[str]:
    declared = schema.get("type") if isinstance(schema, dict) else None
    return [declared] if isinstance(declared, str) else list(declared or ())


def _admits(schema: Any, value: Any) -> bool:
    """Whether ``schema`` (a branch of anyOf/oneOf) allows values of ``value``'s JSON type at all."""
    types = _types(schema)
    if not types:
        return not (isinstance(schema, dict) and "const" in schema and type(schema["const"]) is not type(value))
    if isinstance(value, bool):
        return "boolean" in types
    return any(isinstance(value, _PYTHON_TYPES[t]) for t in types if t in _PYTHON_TYPES)


def _type_problem(name: str, expected: Any) -> SchemaProblem:
    names = [expected] if isinstance(expected, str) else [t for t in expected or () if isinstance(t, str)]
    shown = " or ".join(_TYPE_NAMES.get(n, n) for n in names) or "of another type"
    return SchemaProblem(_location(name), "type", f"must be {shown}")


# --- strict JSON ----------------------------------------------------------------------------------------
# A JSON string: a quote, then anything but a quote or a backslash, or a backslash and one character, then the
# closing quote. Possessive, and with the closing quote optional, so that it never fails once started: one pass
# over any input, however many unterminated strings it holds (it also runs before the body is known to be JSON).
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
# A NUL is written \u0000; it is an escape (not a literal backslash followed by "u0000") when the backslash is
# preceded by an even run of backslashes. JSON has no other way to carry one (raw control characters are
# refused by the parser).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def read_json(raw: bytes) -> Any:
    """The value of a JSON text, read strictly.

    :raises MalformedRequestError: ``MALFORMED_JSON`` (not JSON, or not UTF-8), ``NESTING_TOO_DEEP`` (deeper
        than :data:`MAX_NESTING`), ``TOO_MANY_VALUES`` (more than :data:`MAX_CONTAINERS` objects and arrays),
        ``DUPLICATE_KEY`` (an object names a key twice).
    :raises ValidationError: ``INVALID_CHARACTER``: a string (or key) holds a NUL character.
    """
    containers = _containers(raw)
    if containers > MAX_CONTAINERS and _containers(_STRING.sub(b"", raw)) > MAX_CONTAINERS:
        raise MalformedRequestError(f"the body holds more than {MAX_CONTAINERS} objects and arrays", code="TOO_MANY_VALUES")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        if "depth limit" in str(error):  # orjson stops at 1024 levels, far beyond MAX_NESTING
            raise MalformedRequestError(f"the body nests deeper than {MAX_NESTING} levels", code="NESTING_TOO_DEEP") from None
        raise MalformedRequestError("the body is not valid JSON", code="MALFORMED_JSON") from None
    if containers:
        depth, members = _shape(value)
        if depth > MAX_NESTING:
            raise MalformedRequestError(f"the body nests deeper than {MAX_NESTING} levels", code="NESTING_TOO_DEEP")
        # Each member of an object is written with one colon; colons inside strings only add to the raw count.
        # So equal counts prove no key was given twice; otherwise count the colons outside strings.
        if raw.count(b":") != members and _STRING.sub(b"", raw).count(b":") != members:
            raise MalformedRequestError("an object in the body names a key twice", code="DUPLICATE_KEY")
    if b"\\u0000" in raw and _NUL_ESCAPE.search(raw):
        raise ValidationError("a field contains a NUL character", code="INVALID_CHARACTER")
    return value


def _containers(raw: bytes) -> int:
    return raw.count(b"{") + raw.count(b"[")


def _shape(value: Any) -> tuple[int, int]:
    """How many levels of objects and arrays ``value`` nests (counted up to one past :data:`MAX_NESTING`), and
    how many object members it has (all of them when it nests no deeper than that)."""
    depth, members = 0, 0
    frontier = [value] if isinstance(value, (dict, list)) else []
    while frontier:
        depth += 1
        if depth > MAX_NESTING:
            break
        children: list[Any] = []
        for item in frontier:
            if isinstance(item, dict):
                members += len(item)
                children.extend(item.values())
            else:
                children.extend(item)
        frontier = [child for child in children if isinstance(child, (dict, list))]
    return depth, members
