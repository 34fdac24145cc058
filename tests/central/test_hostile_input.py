"""Hostile requests get the error contract too: from the HTTP layer, for content types and duplicate keys, and
no answer ever repeats a header that was sent.

The raw cases go over a plain socket to the real gateway on 127.0.0.1, since an HTTP client library would
refuse to send them.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from typing import Any

import orjson
import pytest
from licensor.gateway import api
from licensor.gateway.protocol import HTTP_LAYER_ERRORS

from .conftest import Gateway, Tenant

SECRET = "sk_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0ZZ"  # looks like a secret; must never come back


async def raw_exchange(gateway: Gateway, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as is; the status, headers and body of the answer (the connection is closed after it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.client.port)
    try:
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def with_secret(line: bytes, *extra: bytes) -> bytes:
    return (
        line
        + b"\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + SECRET.encode()
        + b"\r\nX-Api-Key: "
        + SECRET.encode()
        + b"".join(b"\r\n" + header for header in extra)
        + b"\r\n\r\n"
    )


HTTP_LAYER_CASES = {
    "HEADER_TOO_LARGE": with_secret(b"GET /healthz HTTP/1.1", b"X-Big: " + SECRET.encode() * 3000),
    "TOO_MANY_HEADERS": with_secret(b"GET /healthz HTTP/1.1", *(b"X-%d: %s" % (n, SECRET.encode()) for n in range(1000))),
    "REQUEST_LINE_TOO_LONG": with_secret(b"GET /v1/keys?tenant=" + SECRET.encode() * 3000 + b" HTTP/1.1"),
    "INVALID_REQUEST_TARGET": with_secret(b"GET /v1/" + SECRET.encode() + b"\xff\x01 HTTP/1.1"),
    "INVALID_METHOD": with_secret(b"G\x01T /healthz HTTP/1.1"),
    "INVALID_REQUEST_LINE": with_secret(b"GET /healthz HTTP/9." + SECRET.encode()),
    "INVALID_HEADER": with_secret(b"GET /healthz HTTP/1.1", b"X-Nul: a\x00" + SECRET.encode()),
    "MALFORMED_HTTP": with_secret(b"POST /v1/check HTTP/1.1", b"Content-Length: " + SECRET.encode()),
}
# The code comes from the kind of error, never from the bytes sent: these name other codes in their excerpt.
MISLEADING = {b"Content-Length: Too many headers": "MALFORMED_HTTP", b"Content-Length: 1x-header": "MALFORMED_HTTP"}


@pytest.mark.parametrize("header", sorted(MISLEADING))
async def test_the_code_of_an_http_layer_error_does_not_depend_on_what_was_sent(gateway: Gateway, header: bytes) -> None:
    status, _, body = await raw_exchange(gateway, with_secret(b"POST /v1/check HTTP/1.1", header))
    assert (status, json.loads(body)["error"]["code"]) == (400, MISLEADING[header])


@pytest.mark.parametrize("code", sorted(HTTP_LAYER_CASES))
async def test_an_error_of_the_http_layer_answers_json_with_its_code_and_repeats_nothing(gateway: Gateway, code: str) -> None:
    status, headers, body = await raw_exchange(gateway, HTTP_LAYER_CASES[code])
    assert (status, json.loads(body)) == (
        HTTP_LAYER_ERRORS[code][0],
        {"error": {"code": code, "message": HTTP_LAYER_ERRORS[code][1]}},
    )
    assert headers["Content-Type"].startswith("application/json")
    assert SECRET not in body.decode("latin-1") and SECRET not in str(headers)
    # The gateway is unharmed.
    assert (await gateway.call("GET", "/healthz")).status == 200


def test_every_http_layer_code_has_a_case() -> None:
    assert set(HTTP_LAYER_CASES) == set(HTTP_LAYER_ERRORS)


async def test_no_answer_of_any_operation_repeats_a_header_that_was_sent(gateway: Gateway, tenant: Tenant) -> None:
    """Every operation of the document, with a secret in its headers and its path, is answered (whatever the
    answer) without the secret anywhere in it."""
    document = (await gateway.call("GET", "/openapi.json")).body
    seen = 0
    for path, methods in document["paths"].items():
        filled = path.replace("{", "").replace("}", "")  # e.g. /v1/admin/products/id: a path of no object
        for method in methods:
            for token in (tenant.admin_token, SECRET):
                headers = {
                    "X-Api-Key": SECRET,
                    "Cookie": f"session={SECRET}",  # (X-Request-Id comes back by design)
                    "Content-Type": "application/json",
                }
                sent_path = filled + f"?q={SECRET}" if method.upper() == "GET" else filled
                # Secrets in the values of the body (a field's name may be named back: it is not a secret).
                body = {"key": SECRET, "license_key": SECRET, "name": [SECRET], "code": {"x": SECRET}, "features": [SECRET] * 2}
                answer = await gateway.call(method.upper(), sent_path, token=token, headers=headers, data=orjson.dumps(body))
                assert SECRET not in answer.text and SECRET not in str(dict(answer.headers)), (method, path, answer.text)
                seen += 1
    assert seen >= 2 * 60


# --- content types ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
        "application/jsonp",
        "multipart/form-data; boundary=x",
    ],
)
async def test_a_json_body_not_sent_as_json_is_a_415(tenant: Tenant, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    body = orjson.dumps({"code": "app", "name": "App"})
    answer = await tenant.call("POST", "/v1/admin/products", data=body, headers=headers)
    assert (answer.status, answer.code) == (415, "UNSUPPORTED_MEDIA_TYPE"), answer.text
    check = orjson.dumps({"tenant": tenant.id, "product": "app", "license_key": "7C03-FGRD-4E3B-Z9DP-14HA-9TJE-SJJW"})
    for _ in range(2):  # the second time too: an answer kept for an identical body must not be given either
        answer = await tenant.call("POST", "/v1/check", data=check, headers=headers, token=None)
        assert (answer.status, answer.code) == (415, "UNSUPPORTED_MEDIA_TYPE"), answer.text
    assert (await tenant.ok("GET", "/v1/admin/products"))["data"] == []


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON; charset=UTF-8"]
)
async def test_json_is_taken_with_or_without_its_utf8_charset(tenant: Tenant, content_type: str) -> None:
    answer = await tenant.call(
        "POST", "/v1/admin/products", data=orjson.dumps({"code": "app", "name": "App"}), headers={"Content-Type": content_type}
    )
    assert answer.status == 201, answer.text


async def test_an_empty_body_needs_no_content_type(tenant: Tenant) -> None:
    product = await tenant.product("app")
    policy = await tenant.policy(product["id"])
    license = await tenant.license(policy["id"])
    answer = await tenant.call("POST", f"/v1/admin/licenses/{license['id']}/suspend", data=b"")
    assert answer.status == 200 and answer.body["state"] == "suspended", answer.text


# --- duplicate keys -----------------------------------------------------------------------------------
async def test_a_body_naming_a_key_twice_is_a_400_and_changes_nothing(tenant: Tenant) -> None:
    json_headers = {"Content-Type": "application/json"}
    answer = await tenant.call(
        "POST", "/v1/admin/products", data=b'{"code":"app","name":"A","code":"other"}', headers=json_headers
    )
    assert (answer.status, answer.code) == (400, "DUPLICATE_KEY"), answer.text
    assert (await tenant.ok("GET", "/v1/admin/products"))["data"] == []
    product = await tenant.product("app")
    policy = await tenant.policy(product["id"])
    license = await tenant.license(policy["id"])
    check: dict[str, Any] = {"tenant": tenant.id, "product": "app", "license_key": license["key"]}
    assert (await tenant.call("POST", "/v1/check", json=check, token=None)).body["verdict"]["code"] == "VALID"
    # Two parsers could take different license keys from this body: it is refused, not read either way.
    raw = orjson.dumps(check)[:-1] + b',"license_key":"WRONG-KEY"}'
    answer = await tenant.call("POST", "/v1/check", data=raw, headers=json_headers, token=None)
    assert (answer.status, answer.code) == (400, "DUPLICATE_KEY"), answer.text


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"code":"a","name":"b","description":[' + b"[[]]," * 3000 + b"1]}",
        b"[" + b"{}," * 5000 + b"{}]",
    ],
)
async def test_a_body_of_more_than_4096_objects_and_arrays_is_refused_before_it_is_parsed(tenant: Tenant, raw: bytes) -> None:
    answer = await tenant.call("POST", "/v1/admin/products", data=raw, headers={"Content-Type": "application/json"})
    assert (answer.status, answer.code) == (400, "TOO_MANY_VALUES"), answer.text


# --- bodies sent in ways the gateway does not read --------------------------------------------------------
async def test_a_compressed_body_is_a_415_and_is_never_inflated(tenant: Tenant) -> None:
    bomb = zlib.compress(orjson.dumps({"code": "app", "name": "x" * 1_000_000}))  # 1 MB from about 1 kB
    answer = await tenant.call(
        "POST", "/v1/admin/products", data=bomb, headers={"Content-Type": "application/json", "Content-Encoding": "deflate"}
    )
    assert (answer.status, answer.code) == (415, "UNSUPPORTED_MEDIA_TYPE"), answer.text


async def test_a_body_whose_chunks_break_half_way_is_a_400_not_a_wait(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.client.port)
    try:
        writer.write(
            b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n'
        )
        await writer.drain()
        await asyncio.sleep(0.2)  # the handler is reading the body when the broken chunk comes
        writer.write(b"zz\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        body = await reader.readexactly(length)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 400") and json.loads(body)["error"]["code"] == "MALFORMED_BODY", (head, body)


async def test_a_body_sent_too_slowly_is_a_408(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "BODY_READ_TIMEOUT_S", 0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.client.port)
    try:
        writer.write(b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 408"), head
