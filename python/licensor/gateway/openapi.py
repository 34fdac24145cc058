"""The OpenAPI 3.1 document, generated from the declared operations, and a readable page of it at /docs."""

from __future__ import annotations

import html
from typing import Any

from licensor import __version__
from licensor.gateway.api import Api
from licensor.operations import ByBody, Operation, OptionalToken

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"}, "message": {"type": "string"}},
            "required": ["code", "message"],
            "additionalProperties": False,
        }
    },
    "required": ["error"],
    "additionalProperties": False,
}

_ERROR_TEXT = {
    400: (
        "Malformed request (MALFORMED_JSON, DUPLICATE_KEY, NESTING_TOO_DEEP, UNKNOWN_PARAMETER, INVALID_PARAMETER, "
        "INVALID_CURSOR, ...)"
    ),
    401: "No valid API token (UNAUTHENTICATED, TOKEN_MALFORMED, TOKEN_INVALID, TOKEN_REVOKED)",
    403: "The token's role may not do this (FORBIDDEN)",
    404: "No such object for this tenant",
    409: "Conflicts with existing data or the object's state",
    413: "Body larger than the operation takes: its requestBody's x-max-body-bytes, else 64 KiB (PAYLOAD_TOO_LARGE)",
    415: "A body not sent as Content-Type: application/json, UTF-8 (UNSUPPORTED_MEDIA_TYPE)",
    422: (
        "Breaks the schema or a rule (UNKNOWN_FIELD, MISSING_FIELD, WRONG_TYPE, INVALID_FIELD, REFERENCE_NOT_FOUND, "
        "IDEMPOTENCY_KEY_REUSED, ...)"
    ),
    429: (
        "A rate limit refuses the request (RATE_LIMITED): per client address, tenant, unknown license keys or tokens, "
        "or a license's activations; Retry-After says when to retry"
    ),
    502: "A backend answered what it does not declare (BACKEND_VERDICT_UNDECLARED): a bug of its plugin",
    503: "The database is unavailable (STORE_UNAVAILABLE) or its disk is full (STORE_FULL); retry after Retry-After",
}


_SELF_AUTHENTICATED_TEXT = {
    401: "The body does not authenticate the request (the operation's description says how it must)",
    403: "The credential in the body may not do this (the code says why)",
}


def _error_response(status: int, self_authenticated: bool = False) -> dict[str, Any]:
    text = _SELF_AUTHENTICATED_TEXT.get(status, _ERROR_TEXT[status]) if self_authenticated else _ERROR_TEXT[status]
    return {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _operation(op: Operation) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    for name in op.path_patterns:
        parameters.append(
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": op.path_patterns[name]}}
        )
    for param in op.query:
        parameters.append(
            {
                "name": param.name,
                "in": "query",
                "required": param.required,
                "schema": param.schema,
                "description": param.description,
            }
        )
    if op.changes_state:
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
                "description": "Repeats with the same key and body get the first answer; another body gets 422.",
            }
        )
    success: dict[str, Any] = {"description": "Success"}
    if op.response_schema is not None:
        success["content"] = {op.response_content_type: {"schema": op.response_schema}}
    responses: dict[str, Any] = {str(op.status): success}
    # Every operation's pipeline refuses unknown query parameters and unexpected bodies (400) and bodies over
    # its limit (413); a body must be JSON (415); changes take an Idempotency-Key, which may be malformed (400) or
    # reused (422); every request counts against its client address's rate limit (429).
    statuses = set(op.errors) | {400, 413, 429, 503}
    if op.query or op.request_schema is not None or op.changes_state:
        statuses.add(422)
    if op.request_schema is not None:
        statuses.add(415)
    if op.path_patterns:
        statuses.add(404)
    # An operation that takes no token but authenticates by its body (a device's signature).
    self_authenticated = isinstance(op.auth, ByBody) and op.roles is None
    if op.roles is not None or self_authenticated:
        statuses |= {401, 403}
    for status in sorted(statuses):
        responses[str(status)] = _error_response(status, self_authenticated)
    document: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": parameters,
        "responses": responses,
    }
    if op.description:
        document["description"] = op.description
    if op.request_schema is not None:
        document["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": op.request_schema}},
            "x-max-body-bytes": op.max_body_bytes,
        }
    document["security"] = (
        [] if op.roles is None else [{}, {"bearer": []}] if isinstance(op.auth, OptionalToken) else [{"bearer": []}]
    )
    if op.roles is not None:
        document["x-roles"] = sorted(op.roles)
    if self_authenticated:
        assert isinstance(op.auth, ByBody)
        document["x-authenticated-by"] = op.auth.carried_in
    # The flows of `licensor admin` that keep a secret off the command line and the screen.
    if op.secret_input is not None:
        document["x-secret-input"] = {"field": op.secret_input.field, "prompt": op.secret_input.prompt}
    if op.secret_output is not None:
        document["x-secret-output"] = {"field": op.secret_output.field, "default_file": op.secret_output.default_file}
    return document


def build_document(api: Api, server_url: str | None = None) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in api.operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "licensor",
            "version": __version__,
            "description": "Self-hosted software-licensing gateway: License Central admin API and license plane.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API token: tok_<id>.<secret>"}},
        },
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    add_links(document)
    return document


# Body fields that name an object by another of its values than its id: field -> (the created object's id prefix, the
# value's pointer in it). And the secrets a created object's answer hands over for later requests, by name.
_NAMED_BY = {"license_key": ("lic", "/key"), "product": ("prd", "/code")}
_HANDED_OVER = frozenset({"lease_secret"})


def _prefix(pattern: Any) -> str | None:
    """The id prefix an id's pattern fixes (``^prd_[...]$`` -> ``prd``), if any."""
    if isinstance(pattern, str) and len(pattern) > 5 and pattern.startswith("^") and pattern[4] == "_":
        return pattern[1:4]
    return None


def _produced(schema: Any, pointer: str = "", depth: int = 0) -> tuple[dict[str, str], dict[str, str]]:
    """Where a created object's answer holds ids (their pattern -> JSON pointer) and named strings (name -> JSON
    pointer), two levels deep, the shallowest first."""
    by_pattern: dict[str, str] = {}
    by_name: dict[str, str] = {}
    if not isinstance(schema, dict) or depth > 2:
        return by_pattern, by_name
    nested = []
    for name, sub in schema.get("properties", {}).items():
        if not isinstance(sub, dict):
            continue
        if _prefix(sub.get("pattern")):
            by_pattern.setdefault(sub["pattern"], f"{pointer}/{name}")
        if sub.get("type") == "string":
            by_name.setdefault(name, f"{pointer}/{name}")
        nested.append(_produced(sub, f"{pointer}/{name}", depth + 1))
    for patterns, names in nested:
        by_pattern = {**patterns, **by_pattern}
        by_name = {**names, **by_name}
    return by_pattern, by_name


def _request_fields(
    target: dict[str, Any], by_pattern: dict[str, str], by_name: dict[str, str], made: str | None
) -> dict[str, str]:
    """The body fields of ``target`` a created object's answer fills in: name -> runtime expression."""
    body_schema = target.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    fields: dict[str, str] = {}
    for name, field in body_schema.get("properties", {}).items():
        pattern = field.get("pattern") if isinstance(field, dict) else None
        if pattern in by_pattern:
            fields[name] = f"$response.body#{by_pattern[pattern]}"
        elif name in by_name and (_prefix(pattern) or name in _HANDED_OVER):  # a credential file's credential, ...
            fields[name] = f"$response.body#{by_name[name]}"
        elif name in _NAMED_BY and _NAMED_BY[name][0] == made:
            fields[name] = f"$response.body#{_NAMED_BY[name][1]}"
    return fields


def add_links(document: dict[str, Any]) -> None:
    """OpenAPI links from each operation that creates something (201) to every operation that takes what it made:
    a path parameter or a body field with the pattern of an id in the answer, a credential or lease secret the answer
    hands over, or a license's key and a product's code. Clients and stateful testers (schemathesis) follow them:
    create a product, then a policy of it, a license of that, a credential of the license, a lease with the
    credential, a heartbeat of the lease, ..."""
    operations = [op for methods in document["paths"].values() for op in methods.values()]
    for source in operations:
        created = source["responses"].get("201", {}).get("content", {}).get("application/json", {}).get("schema")
        by_pattern, by_name = _produced(created)
        made = _prefix(created.get("properties", {}).get("id", {}).get("pattern")) if isinstance(created, dict) else None
        links: dict[str, Any] = {}
        for target in operations:
            if target is source:
                continue
            parameters = {
                f"path.{p['name']}": f"$response.body#{by_pattern[p['schema']['pattern']]}"
                for p in target.get("parameters", [])
                if p["in"] == "path" and p["schema"].get("pattern") in by_pattern
            }
            body = _request_fields(target, by_pattern, by_name, made)
            if not parameters and not body:
                continue
            link: dict[str, Any] = {"operationId": target["operationId"]}
            if parameters:
                link["parameters"] = parameters
            if body:
                link["requestBody"] = body  # merged into the body generated for the target
            links[target["operationId"]] = link
        if links:
            source["responses"]["201"]["links"] = links


def render_docs(document: dict[str, Any]) -> str:
    """The OpenAPI document as one server-rendered HTML page (no scripts, nothing fetched)."""
    rows = []
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            roles = ", ".join(op.get("x-roles", [])) or (
                f"authenticated by its {op['x-authenticated-by']}" if op.get("x-authenticated-by") else "public"
            )
            statuses = ", ".join(op["responses"])
            rows.append(
                f"<section id='{html.escape(op['operationId'])}'><h3><code>{method.upper()} {html.escape(path)}</code></h3>"
                f"<p>{html.escape(op['summary'])}. {html.escape(op.get('description', ''))}</p>"
                f"<p><b>Roles:</b> {html.escape(roles)} &middot; <b>Responses:</b> {html.escape(statuses)}</p></section>"
            )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>licensor API</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "section{border-top:1px solid #ddd;padding:.5rem 0}code{font-size:1.05em}</style></head><body>"
        f"<h1>licensor API {html.escape(document['info']['version'])}</h1>"
        "<p>The machine-readable document is at <a href='/openapi.json'>/openapi.json</a>. Errors are "
        '<code>{"error": {"code", "message"}}</code>.</p>' + "".join(rows) + "</body></html>"
    )
