"""``licensor admin``: one command per admin operation of the running code, generated from the declarations.

As stripe-cli builds its commands from its API description, the commands are built from the operation
registry the gateway itself serves (:func:`licensor.gateway.app.build_api` over the installed plugins, built in
this process without a server or a store; no validator is compiled), so every operation under ``/v1/admin/`` of
licensor and of every installed backend or plugin has a command, and none drifts from the API.

Naming, deterministic and unique:

- The **group** is the operation's tag, lower-cased with ``-`` for anything but letters and digits, written as
  its collection is in the URLs: a tag ``credential`` whose operations' paths have a segment ``credentials``
  makes the group ``credentials``; a tag with no such segment stays as it is (``tenant``, ``example``).
- The **verb** is the operation id without the group's noun (singular or plural, its first occurrence), with
  ``-`` for ``_``: ``list_credentials`` → ``list``, ``reissue_credential`` → ``reissue``, ``lease_usage`` →
  ``usage``, ``answer_activation_request`` → ``answer-request``; an id that is only the noun gets the method's
  verb (GET ``get``, POST ``create``, PUT ``replace``, PATCH ``update``, DELETE ``delete``). When two operations
  of a group would get one verb, each of them is named by its whole operation id instead.

Inputs:

- A **path parameter** that follows the group's own collection segment (``{id}`` of ``/v1/admin/credentials/{id}``
  in the group ``credentials``) is the positional argument ``ID``; any other is the flag
  ``--<segment before it, singular>-<name>``: ``{id}`` of ``/v1/admin/licenses/{id}/credentials`` is
  ``--license-id``.
- Each **query parameter** and each top-level **body property** is ``--<name>`` (``_`` written ``-``): an
  integer or a number is checked as one, a boolean is ``--name``/``--no-name``, an enumeration of strings takes
  one of its values, a string is taken as it is, and anything else (objects, arrays) is JSON text. A property
  that may be null also has ``--no-<name>``, which sends null (clears it). ``--body-json JSON`` or ``--body-file
  PATH`` (``-``: standard input) gives a whole body, whose top-level fields the flags replace. A name that
  another input (or one of these options) has already is prefixed with ``query-`` or ``body-``.
- An operation that changes state takes ``--idempotency-key KEY``.
- An operation's :class:`~licensor.operations.SecretInput` field is never a flag: it is read from standard input
  (asked for without echo on a terminal). Its :class:`~licensor.operations.SecretOutput` field is written to a
  new file of mode 0600 (``--out FILE``, default the declaration's file; an existing file is never overwritten,
  and is refused before the gateway is asked) and left out of the printed answer; ``--out -`` prints it.

The help of a command is the operation's summary and description; of a flag, the schema's description and type.
Every command prints the gateway's JSON answer. An API error prints ``error: CODE: message`` and exits 1; a usage
problem (a bad or missing argument, no token, an unreachable gateway, a file that may not be written) exits 2.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from licensor.cli.errors import ApiError, UsageError

if TYPE_CHECKING:
    import pluggy

    from licensor.operations import Operation

DEFAULT_URL = "http://127.0.0.1:8080"
ADMIN_PREFIX = "/v1/admin/"

_METHOD_VERBS = {"GET": "get", "POST": "create", "PUT": "replace", "PATCH": "update", "DELETE": "delete"}
_RESERVED = frozenset({"--help", "--body-json", "--body-file", "--out", "--idempotency-key"})
_PATH_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ID_PATTERN = re.compile(r"\^([a-z]{3})_\[")


# --- the table ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Input:
    """One input of a command: where it goes in the request (``path``, ``query``, ``body``), the API's name for
    it, and how it is given (``option`` None: the positional argument)."""

    place: str
    name: str
    option: str | None
    schema: dict[str, Any]
    required: bool
    description: str = ""

    @property
    def dest(self) -> str:
        return f"{self.place}.{self.name}"


@dataclass(frozen=True)
class AdminCommand:
    """``licensor admin GROUP VERB``: one admin operation and its inputs."""

    group: str
    verb: str
    operation: Operation
    inputs: tuple[Input, ...]


def admin_operations(plugins: pluggy.PluginManager | None = None) -> list[Operation]:
    """The operations under ``/v1/admin/`` of the gateway the installed plugins (or ``plugins``) make, in the
    order the gateway registers them. Builds no server, opens no store, compiles no validator."""
    from licensor.gateway.app import build_api
    from licensor.plugins import collect_backends, plugin_manager

    manager = plugins if plugins is not None else plugin_manager()
    api = build_api(collect_backends(manager), manager)
    return [operation for operation in api.operations if operation.path.startswith(ADMIN_PREFIX)]


def admin_commands(operations: Iterable[Operation]) -> list[AdminCommand]:
    """One command per operation, named by the rule of this module's docstring.

    :raises ValueError: two operations whose commands cannot be told apart (not possible for operations with
        distinct ids)."""
    operations = list(operations)
    groups = _group_names(operations)
    named: dict[tuple[str, str], list[Operation]] = {}
    for operation in operations:
        group = groups[operation.tag]
        named.setdefault((group, _verb(operation, group, _words(operation.tag))), []).append(operation)
    table: dict[tuple[str, str], AdminCommand] = {}
    for (group, verb), same in named.items():
        for operation in same:
            name = verb if len(same) == 1 else "-".join(_words(operation.operation_id))
            if (group, name) in table:
                raise ValueError(f"two admin operations are `licensor admin {group} {name}`")
            table[group, name] = AdminCommand(group, name, operation, _inputs(operation, group, operation.tag))
    return list(table.values())


def _words(text: str) -> list[str]:
    """The lower-case words of a name: ``list_credentials``, ``lease-usage``, ``listWidgets``."""
    return [word for word in re.split(r"[^a-z0-9]+", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text).lower()) if word]


def _group_names(operations: Sequence[Operation]) -> dict[str, str]:
    """Tag -> group: the tag, in its plural when its operations' paths write it so."""
    groups = {}
    for tag in dict.fromkeys(operation.tag for operation in operations):
        name = "-".join(_words(tag)) or "other"
        segments = {segment for operation in operations if operation.tag == tag for segment in operation.path.split("/")}
        groups[tag] = f"{name}s" if not name.endswith("s") and f"{name}s" in segments else name
    return groups


def _verb(operation: Operation, group: str, tag_words: list[str]) -> str:
    words = _words(operation.operation_id)
    nouns = sorted({tuple(group.split("-")), tuple(_singular(group).split("-")), tuple(tag_words)}, key=len, reverse=True)
    for start in range(len(words)):
        for noun in nouns:
            if noun and tuple(words[start : start + len(noun)]) == noun:
                rest = words[:start] + words[start + len(noun) :]
                return "-".join(rest) or _METHOD_VERBS.get(operation.method, operation.method.lower())
    return "-".join(words)


def _singular(segment: str) -> str:
    if segment.endswith("ies"):
        return segment[:-3] + "y"
    if segment.endswith("sses"):
        return segment[:-2]
    return segment[:-1] if segment.endswith("s") else segment


def _inputs(operation: Operation, group: str, tag: str) -> tuple[Input, ...]:
    inputs: list[Input] = []
    taken = set(_RESERVED)

    def option(place: str, name: str) -> str:
        flag = "--" + "-".join(_words(name))
        if flag in taken:
            flag = f"--{place}-{flag[2:]}"
        taken.add(flag)
        return flag

    segments = operation.path.split("/")
    positional = False
    own = {group, "-".join(_words(tag))}
    for index, segment in enumerate(segments):
        match = _PATH_PARAMETER.fullmatch(segment)
        if match is None:
            continue
        name, before = match.group(1), segments[index - 1]
        schema = {"type": "string", **({"pattern": p} if (p := operation.path_patterns.get(name)) else {})}
        if not positional and before in own:
            positional = True
            inputs.append(Input("path", name, None, schema, True))
        else:
            inputs.append(Input("path", name, option("path", f"{_singular(before)}-{name}"), schema, True))
    for param in operation.query:
        inputs.append(Input("query", param.name, option("query", param.name), param.schema, param.required, param.description))
    request = operation.request_schema or {}
    required = set(request.get("required", ()))
    secret = operation.secret_input.field if operation.secret_input is not None else None
    for name, schema in request.get("properties", {}).items():
        if name != secret:
            inputs.append(Input("body", name, option("body", name), schema, name in required, schema.get("description", "")))
    return tuple(inputs)


# --- the parser -----------------------------------------------------------------------------------------
class _Paragraphs(argparse.HelpFormatter):
    """Wraps each paragraph of a description (argparse's default joins them into one)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(
            textwrap.fill(" ".join(paragraph.split()), width, initial_indent=indent, subsequent_indent=indent)
            for paragraph in text.split("\n\n")
        )


def add_parser(commands: Any, table: Sequence[AdminCommand]) -> None:
    """``licensor admin`` with the options of the client and a command per entry of ``table``."""
    admin = commands.add_parser(
        "admin",
        help="call the admin API of a running gateway",
        formatter_class=_Paragraphs,
        description="Call the admin API of a running gateway and print its JSON answer: one command per admin "
        "operation of licensor and of the installed backends (`licensor admin GROUP --help` lists a group's "
        "commands).\n\nOn an API error it prints `error: CODE: message` and exits 1; when the gateway cannot be "
        "reached, or no token is given, it exits 2.",
    )
    admin.add_argument(
        "--url",
        default=os.environ.get("LICENSOR_URL", DEFAULT_URL),
        help=f"the gateway's address (default: $LICENSOR_URL or {DEFAULT_URL})",
    )
    admin.add_argument(
        "--token-file",
        metavar="PATH",
        help="a file holding an API token (make serve writes var/admin-token); default: $LICENSOR_TOKEN",
    )
    admin.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer (default 30)")
    groups = admin.add_subparsers(dest="group", required=True, metavar="GROUP")
    by_group: dict[str, list[AdminCommand]] = {}
    for command in table:
        by_group.setdefault(command.group, []).append(command)
    for group, members in sorted(by_group.items()):
        verbs = ", ".join(command.verb for command in members)
        parser = groups.add_parser(
            group, help=verbs, description=f"The {group} operations: {verbs}.", formatter_class=_Paragraphs
        )
        verb_parsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
        for command in members:
            _add_command(verb_parsers, command)


def _add_command(verb_parsers: Any, command: AdminCommand) -> None:
    operation = command.operation
    summary = operation.summary.rstrip(".")
    paragraphs = [f"{summary}.", operation.description]
    if operation.secret_input is not None:
        paragraphs.append(
            f"The {operation.secret_input.field} is read from standard input (asked for, without echo, on a "
            "terminal), never from the command line, so it stays out of the shell's history and the process list."
        )
    if operation.secret_output is not None:
        paragraphs.append(
            f"The answer's {operation.secret_output.field} is written to a new file of mode 0600 (--out), never over an "
            "existing one (refused before the gateway is asked), and left out of the printed answer."
        )
    roles = f", roles {', '.join(sorted(operation.roles))}" if operation.roles else ""
    paragraphs.append(f"{operation.method} {operation.path} (operation {operation.operation_id}{roles})")
    parser = verb_parsers.add_parser(
        command.verb,
        help=(summary[:1].lower() + summary[1:]).replace("%", "%%"),
        description="\n\n".join(p for p in paragraphs if p),
        formatter_class=_Paragraphs,
        argument_default=argparse.SUPPRESS,
    )
    parser.set_defaults(handler=run, admin_command=command)
    for spec in command.inputs:
        _add_input(parser, spec)
    if operation.request_schema is not None:
        whole = parser.add_mutually_exclusive_group()
        whole.add_argument("--body-json", metavar="JSON", help="the whole body, a JSON object (the flags replace its fields)")
        whole.add_argument("--body-file", metavar="PATH", help="the whole body from a JSON file ('-': standard input)")
    if operation.changes_state:
        parser.add_argument("--idempotency-key", metavar="KEY", help="a repeat with the same key and body gets the first answer")
    if operation.secret_output is not None:
        default = operation.secret_output.default_file
        field = operation.secret_output.field
        parser.add_argument(
            "--out",
            metavar="FILE",
            default=default,
            help=(
                f"where to write the {field}: a new file, mode 0600, never overwritten (default {default}); "
                "'-' prints the whole answer instead, secret included"
            ).replace("%", "%%"),
        )


def _unwrap(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the schema without its null alternative, whether null is allowed)."""
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and any(o == {"type": "null"} for o in options):
            rest = [o for o in options if o != {"type": "null"}]
            return (rest[0] if len(rest) == 1 else {key: rest}), True
    kind = schema.get("type")
    if isinstance(kind, list) and "null" in kind:
        rest = [k for k in kind if k != "null"]
        return {**schema, "type": rest[0] if len(rest) == 1 else rest}, True
    return schema, False


def _json_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r}") from None


def _hint(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if schema.get("format") == "date-time":
        return "a time, RFC 3339 (2027-01-31T00:00:00Z)"
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and (match := _ID_PATTERN.match(pattern)):
        return f"{match.group(1)}_…"
    if kind in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        bounds = f" {low}-{high}" if low is not None and high is not None else f" ≥ {low}" if low is not None else ""
        return f"{'an integer' if kind == 'integer' else 'a number'}{bounds}"
    if kind == "string":
        if isinstance(pattern, str):
            return f"matching {pattern}"
        low, high = schema.get("minLength"), schema.get("maxLength")
        return f"{low or 0}-{high} characters" if high is not None else ""
    if kind == "object":
        names = ", ".join(schema.get("properties", {}))
        return f"a JSON object ({names})" if names else "a JSON object"
    if kind == "array":
        items = schema.get("items", {})
        names = ", ".join(items.get("properties", {})) if isinstance(items, dict) else ""
        if names:
            return f"a JSON array of objects ({names})"
        return (
            f"a JSON array of {items['type']}s"
            if isinstance(items, dict) and isinstance(items.get("type"), str)
            else "a JSON array"
        )
    return ""


def _add_input(parser: argparse.ArgumentParser, spec: Input) -> None:
    schema, nullable = _unwrap(spec.schema)
    hint = _hint(schema)
    text = "; ".join(part for part in (spec.description.rstrip("."), hint) if part).replace("%", "%%")  # help is %-formatted
    if spec.option is None:
        parser.add_argument(spec.dest, metavar=spec.name.upper(), help=text or None)
        return
    if spec.required:
        text = f"{text} (required)" if text else "required"
    kind = schema.get("type")
    # A required query parameter is checked here; required body fields may come from --body-json instead.
    must = spec.required and spec.place != "body"
    clearable = nullable and kind != "boolean" and not must
    target: Any = parser.add_mutually_exclusive_group() if clearable else parser
    if kind == "boolean":
        target.add_argument(spec.option, dest=spec.dest, action=argparse.BooleanOptionalAction, required=must, help=text)
        return
    enum = schema.get("enum")
    convert: Callable[[str], Any]
    choices: list[str] | None = None
    metavar: str | None = spec.option[2:].upper().replace("-", "_")
    if isinstance(enum, list) and enum and all(isinstance(value, str) for value in enum):
        convert, choices, metavar = str, enum, None
    elif kind == "integer":
        convert, metavar = int, "N"
    elif kind == "number":
        convert, metavar = float, "NUMBER"
    elif kind == "string":
        convert = str
        metavar = "TIME" if schema.get("format") == "date-time" else metavar
    else:
        convert, metavar = _json_text, "JSON"
    target.add_argument(
        spec.option, dest=spec.dest, type=convert, choices=choices, metavar=metavar, required=must, help=text or None
    )
    if clearable:
        target.add_argument(
            "--no-" + spec.option[2:], dest=spec.dest, action="store_const", const=None, help="send null (clears it)"
        )


# --- running a command ----------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    """Run ``args.admin_command`` with the inputs of ``args``, print the answer; 0 when the gateway agreed.

    :raises UsageError: a missing required input, an unreadable body file, no secret on standard input, an
        ``--out`` file that exists, no token, an unreachable gateway (exit 2).
    :raises ApiError: the gateway's refusal (exit 1)."""
    command: AdminCommand = args.admin_command
    operation = command.operation
    given = vars(args)
    path = operation.path
    query: dict[str, Any] = {}
    body: dict[str, Any] | None = None if operation.request_schema is None else _whole_body(args)
    for spec in command.inputs:
        if spec.dest not in given:
            continue
        value = given[spec.dest]
        if spec.place == "path":
            path = path.replace("{" + spec.name + "}", urllib.parse.quote(str(value), safe=""))
        elif spec.place == "query":
            query[spec.name] = ("true" if value else "false") if isinstance(value, bool) else value
        elif body is not None:
            body[spec.name] = value
    if body is not None:
        secret = operation.secret_input
        if secret is not None and secret.field not in body:
            if getattr(args, "body_file", None) == "-":
                raise UsageError(f"the {secret.field} is read from standard input, which --body-file - has taken")
            body[secret.field] = _read_secret(secret.field, secret.prompt)
        missing = [
            spec.option or spec.name
            for spec in command.inputs
            if spec.place == "body" and spec.required and spec.name not in body
        ]
        if missing:
            raise UsageError(f"`licensor admin {command.group} {command.verb}` needs {', '.join(missing)}")
    headers = {"Idempotency-Key": args.idempotency_key} if getattr(args, "idempotency_key", None) else {}
    needs_token = operation.roles is not None
    output = operation.secret_output
    if output is None or args.out == "-":
        answer = request(args, operation.method, path, body, query, headers=headers, needs_token=needs_token)
    else:
        answer = _answer_to_file(args, output.field, args.out, operation.method, path, body, query, headers, needs_token)
    if answer is not None:
        print(json.dumps(answer, indent=2))
    return 0


def _whole_body(args: argparse.Namespace) -> dict[str, Any]:
    text, source = getattr(args, "body_json", None), "--body-json"
    if text is None and getattr(args, "body_file", None) is not None:
        source = args.body_file
        try:
            if source == "-":
                text = sys.stdin.read()
            else:
                with open(source, encoding="utf-8") as handle:
                    text = handle.read()
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"cannot read the body file {source}: {error}") from None
    if text is None:
        return {}
    try:
        body = json.loads(text)
    except ValueError as error:
        raise UsageError(f"the body ({source}) is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise UsageError(f"the body ({source}) must be a JSON object")
    return body


def _read_secret(field: str, prompt: str) -> str:
    """The secret from standard input: its first line, or, on a terminal, what is typed at ``prompt``."""
    if sys.stdin.isatty():
        value = getpass.getpass(prompt)
    else:
        value = sys.stdin.readline()
    value = value.strip()
    if not value:
        raise UsageError(f"no {field} on standard input (it is read from there, never from the command line)")
    return value


def _answer_to_file(
    args: argparse.Namespace,
    field: str,
    out: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    query: dict[str, Any],
    headers: dict[str, str],
    needs_token: bool,
) -> Any:
    """Ask the gateway, writing the answer's ``field`` to the new file ``out`` (mode 0600) and returning the answer
    without it. The file is created first, so no secret is made that cannot be saved; a refusal removes it."""
    descriptor = _create_secret_file(out, field)
    try:
        answer = request(args, method, path, body, query, headers=headers, needs_token=needs_token)
    except BaseException:
        os.close(descriptor)
        os.unlink(out)
        raise
    if not isinstance(answer, dict) or field not in answer:
        os.close(descriptor)
        os.unlink(out)
        print(f"licensor: the answer has no {field}: nothing written to {out}", file=sys.stderr)
        return answer
    value = answer[field]
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write((value if isinstance(value, str) else json.dumps(value, indent=2)) + "\n")
    except OSError as error:
        os.unlink(out)
        raise UsageError(f"cannot write {out}: {error.strerror}; the gateway made the change, but its {field} is lost") from None
    shown = {key: item for key, item in answer.items() if key != field}
    return {**shown, f"{field}_written_to": out}


def _create_secret_file(path: str, field: str) -> int:
    """A new file at ``path``, mode 0600, open for writing.

    :raises UsageError: anything exists at ``path``, or it cannot be created."""
    try:
        return os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise UsageError(
            f"{path} exists already: the {field.replace('_', ' ')} is never written over a file (choose another "
            "--out, or remove it)"
        ) from None
    except OSError as error:
        raise UsageError(f"cannot create {path}: {error.strerror}") from None


# --- the HTTP client ------------------------------------------------------------------------------------
def token(args: argparse.Namespace, *, required: bool = True) -> str | None:
    """The API token: the ``--token-file``'s, else ``LICENSOR_TOKEN``'s.

    :raises UsageError: the file cannot be read or is empty; no token at all when ``required``."""
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as handle:
                found = handle.read().strip()
        except OSError as error:
            raise UsageError(f"cannot read the token file {args.token_file}: {error.strerror}") from None
        if not found:
            raise UsageError(f"the token file {args.token_file} is empty")
        return found
    found = os.environ.get("LICENSOR_TOKEN", "").strip()
    if not found and required:
        raise UsageError("no API token: pass --token-file PATH (make serve writes var/admin-token) or set LICENSOR_TOKEN")
    return found or None


def request(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    query: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    needs_token: bool = True,
) -> Any:
    """``method path`` on the gateway at ``--url`` with the token; the decoded JSON answer (None: no content).

    :raises ApiError: the gateway refused: ``CODE: message`` of its error body.
    :raises UsageError: a malformed ``--url``, no token, no connection, no answer within ``--timeout``."""
    base = args.url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"--url must start with http:// or https://, not {args.url!r}")
    params = {k: v for k, v in (query or {}).items() if v is not None}
    url = base + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
    sent = {"Accept": "application/json", **(headers or {})}
    bearer = token(args, required=needs_token)
    if bearer is not None:
        sent["Authorization"] = f"Bearer {bearer}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    prepared = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(prepared, timeout=args.timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            detail = json.loads(raw)["error"]
            raise ApiError(f"{detail['code']}: {detail['message']}") from None
        except (ValueError, KeyError, TypeError):
            text = raw.decode(errors="replace").strip()[:200]
            raise ApiError(f"HTTP {error.code} from {base}: {text or error.reason}") from None
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, ConnectionRefusedError):
            raise UsageError(
                f"cannot connect to {base}: connection refused (is the gateway running? `make serve` "
                "or `licensor serve` starts it)"
            ) from None
        raise UsageError(f"cannot reach {base}: {reason}") from None
    except TimeoutError:
        raise UsageError(f"no answer from {base} within {args.timeout:g} s") from None
    except OSError as error:
        raise UsageError(f"cannot reach {base}: {error}") from None
    return json.loads(raw) if raw.strip() else None
