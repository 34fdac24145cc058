"""Coverage-guided fuzz targets (atheris, libFuzzer) for the parsers of what arrives from outside: signed tokens,
license files, credential files and activation request files.

    python tests/fuzz/targets.py seeds DIR              # DIR/<target>/: seed files made by the code itself
    python tests/fuzz/targets.py TARGET [libFuzzer flags and corpus directories]

A crash is any exception other than the parser's documented errors, or the native core and its pure-Python twin
disagreeing (on the payload, or on the error's class and code). Every target that reaches the token codec runs it on
both cores and compares. Signed documents are fuzzed two ways, told apart by the input's first byte: the token's text
as it arrives (the codec: a mutated token never verifies), and a fuzzed payload signed with the tenant's (or the
device's) key, so that the document readers behind the signature check are reached too.

``make test`` runs each target for a few seconds (tests/fuzz/test_fuzz_targets.py); ``make fuzz`` for minutes.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atheris

# The packages of the parsers are instrumented, but not their modules that parse nothing: instrumenting every
# module loaded took 1.5 s per start.
PACKAGES = ["licensor", "licensor_client", "licensor_activation"]
NOT_PARSERS = [
    *(f"licensor_client.{name}" for name in ("client", "wizard", "updates", "http", "state", "machine", "releases", "clock")),
    *(f"licensor.{name}" for name in ("backend", "operations", "hookspecs", "batching", "store", "license", "verdict")),
    *(f"licensor_activation.{name}" for name in ("routes", "activations", "presenters")),
]
with atheris.instrument_imports(include=PACKAGES, exclude=NOT_PARSERS):
    from licensor import Licensed, _impl
    from licensor.errors import InvalidInputError, TokenError, ValidationError
    from licensor.fingerprint import hash_components, match_rule, product_salt
    from licensor.model import canonical_json
    from licensor_activation.backend import license_file
    from licensor_activation.device_requests import _validate_document
    from licensor_client.activation import DeviceKey, device_public_key, device_request, read_license_file, verify_license_file
    from licensor_client.leases import CredentialFileError, read_credential_file, read_lease_token
    from licensor_client.tokens import document_of


CORES = _impl.implementations()
assert set(CORES) == {"rust", "python"}, f"the fuzz targets compare both cores; loaded: {sorted(CORES)} (make build)"
TENANT = "ten_01JBZ8Q3V6N2K4M7P9R1T5W8XC"
PRODUCT = "cad"
KID = "key_01JBZ8Q3V6N2K4M7P9R1T5W8XE"
SEED = bytes(range(32))
KEYS = {KID: _impl.public_key(SEED)}
DEVICE = DeviceKey(bytes(range(100, 132)))
NOW_S = 1_795_000_000
KINDS = ("lf1", "ls1", "dv1", "en1", "rs1", "", "LF1", "toolongkind")
AS_TEXT, SIGNED_PAYLOAD = 0, 1  # the first byte's low bit: the token's text, or a payload to sign


class Disagreement(AssertionError):
    """The native core and its pure-Python twin answered the same input differently."""


def _outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """("ok", result) or ("error", class name, code) for the documented errors; anything else propagates (a crash)."""
    try:
        return ("ok", call())
    except (TokenError, InvalidInputError) as error:
        return ("error", type(error).__name__, error.code)


def _decode_on_both(token: str, kind: str, keys: dict[str, bytes]) -> tuple[Any, ...]:
    """The payload (or the error) of ``token``, the same on both cores, single and batched, or a Disagreement."""
    outcomes = {name: _outcome(lambda core=core: core.decode_token(token, kind, keys)) for name, core in CORES.items()}
    if outcomes["rust"] != outcomes["python"]:
        raise Disagreement(f"decode_token({token!r}, {kind!r}): {outcomes}")
    for name, core in CORES.items():
        batched = _outcome(lambda core=core: core.decode_tokens([token], kind, keys))
        if batched[0] == "ok":
            (item,) = batched[1]
            batched = ("ok", item) if isinstance(item, bytes) else ("error", type(item).__name__, item.code)
        if batched != outcomes[name]:
            raise Disagreement(f"decode_tokens([{token!r}], {kind!r}) on {name}: {batched}, single: {outcomes[name]}")
    return outcomes["rust"]


def _text(data: bytes) -> str:
    """The bytes as a token's text: UTF-8 where they are, lone surrogates where they are not (as a str may hold)."""
    return data.decode("utf-8", errors="surrogateescape")


def _signed(kind: str, kid: str, seed: bytes, payload: bytes) -> str | None:
    """``payload`` signed as a token of ``kind`` on both cores (the same token), or None when it cannot be one."""
    tokens = {name: _outcome(lambda core=core: core.encode_token(kind, kid, payload, seed)) for name, core in CORES.items()}
    if tokens["rust"] != tokens["python"]:
        raise Disagreement(f"encode_token({kind!r}, {kid!r}, {payload!r}): {tokens}")
    return tokens["rust"][1] if tokens["rust"][0] == "ok" else None


# --- the targets ------------------------------------------------------------------------------------------------
def fuzz_token(data: bytes) -> None:
    """The codec: any text as a token of any kind (valid or not) under the tenant's keys; a verified payload is read
    as a document."""
    if len(data) < 1:
        return
    kind = KINDS[data[0] % len(KINDS)]
    result = _decode_on_both(_text(data[1:]), kind, KEYS)
    if result[0] == "ok":
        _outcome(lambda: document_of(result[1]))


def fuzz_license_file(data: bytes) -> None:
    """A license file: its text as it arrives, or a fuzzed document signed by the tenant, read and verified by the
    client (TokenError and its LicenseFileRejectedError are the documented refusals)."""
    if len(data) < 1:
        return
    if data[0] & 1 == AS_TEXT:
        token = _text(data[1:])
        _decode_on_both(token, "lf1", KEYS)
    else:
        signed = _signed("lf1", KID, SEED, data[1:])
        if signed is None:
            return
        token = signed
    file = _outcome(lambda: read_license_file(token, KEYS, tenant=TENANT, product=PRODUCT))
    if file[0] == "ok":
        fingerprint = file[1].fingerprint
        _outcome(
            lambda: verify_license_file(
                token, KEYS, tenant=TENANT, product=PRODUCT, device_key=DEVICE.key_id, fingerprint=fingerprint, now=NOW_S
            )
        )
    # The lease token's reader is the same kind of parser: the payload signed as ls1 too.
    if data[0] & 1 == SIGNED_PAYLOAD and (lease := _signed("ls1", KID, SEED, data[1:])) is not None:
        _outcome(lambda: read_lease_token(lease, KEYS, tenant=TENANT, product=PRODUCT))


def fuzz_credential_file(data: bytes) -> None:
    """A credential file's bytes (as imported; never read as a path). CredentialFileError is the refusal; a file
    that is read holds what its reader promises."""
    try:
        credential = read_credential_file(data)
    except CredentialFileError:
        return
    assert credential.server.startswith(("http://", "https://")) and not credential.server.endswith("/"), credential
    assert credential.keys and all(len(key) == 32 for key in credential.keys.values()), credential
    assert credential.credential_id.startswith("crd_") and credential.credential_id not in repr(credential).replace(
        credential.credential_id, ""
    ), "the credential's secret in its repr"


def fuzz_request_file(data: bytes) -> None:
    """An activation request file (a dv1 token whose key id is the device's public key): its text as it arrives, or
    a fuzzed document signed by the device; then the activation backend's validation of the document."""
    if len(data) < 1:
        return
    if data[0] & 1 == AS_TEXT:
        token = _text(data[1:])
    else:
        signed = _signed("dv1", DEVICE.key_id, DEVICE.seed, data[1:])
        if signed is None:
            return
        token = signed
    kid = token.split(".", 2)[1] if token.count(".") == 3 else ""
    key = _outcome(lambda: device_public_key(kid))[1] if kid.isascii() else None
    result = _decode_on_both(token, "dv1", {kid: key} if key else {})
    if result[0] != "ok":
        return
    document = _outcome(lambda: document_of(result[1]))
    if document[0] == "ok":
        try:
            _validate_document(document[1], token)
        except ValidationError:
            pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "token": fuzz_token,
    "license_file": fuzz_license_file,
    "credential_file": fuzz_credential_file,
    "request_file": fuzz_request_file,
}


# --- seeds: real files, made by the code that makes them ------------------------------------------------------------
def seeds() -> dict[str, list[bytes]]:
    fingerprint = hash_components({"machine_id": "m-1", "board": "b-1", "disk": "d-1"}, product_salt(TENANT, PRODUCT))
    licensed = Licensed(
        {
            "id": "lic_01JBZ8Q3V6N2K4M7P9R1T5W8XF",
            "expires_at": (NOW_S + 86_400 * 365) * 1_000_000,
            "maintenance_until": None,
            "overrides": canonical_json({"features": {"render": 5}}),
            "generation": 4,
        },
        {"code": PRODUCT},
        {"features": canonical_json([{"code": "draw"}]), "seats": 2},
        {"match_preset": "medium"},
    )
    activation = {
        "id": "act_01JBZ8Q3V6N2K4M7P9R1T5W8XG",
        "device_key": DEVICE.key_id,
        "fingerprint": canonical_json(fingerprint),
        "generation": 3,
        "checkpoint_at": (NOW_S + 86_400 * 30) * 1_000_000,
        "lapses_at": (NOW_S + 86_400 * 37) * 1_000_000,
        "mode": "online",
    }
    lf1 = license_file(KID, SEED, TENANT, licensed, activation, match_rule("medium"), NOW_S * 1_000_000)
    lf1_payload = _payload(lf1)
    requests = [
        device_request(
            DEVICE,
            "activate",
            tenant=TENANT,
            product=PRODUCT,
            fingerprint=fingerprint,
            now=NOW_S,
            license_key="7C03-FGRD-4E3B-Z9DP-14HA-9TJE-SJJW",
            device_name="build-01",
        ),
        device_request(
            DEVICE,
            "checkin",
            tenant=TENANT,
            product=PRODUCT,
            fingerprint=fingerprint,
            now=NOW_S,
            activation=activation["id"],
            generation=3,
        ),
    ]
    request_payloads = [_payload(request) for request in requests]
    # The credential file as licensor_cloud.credentials.create_credential writes it.
    credential = {
        "format": "licensor-credential-1",
        "server": "https://licenses.example.com",
        "tenant": TENANT,
        "product": PRODUCT,
        "license": "lic_01JBZ8Q3V6N2K4M7P9R1T5W8XF",
        "credential": "crd_01JBZ8Q3V6N2K4M7P9R1T5W8XH." + base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("="),
        "label": "build farm",
        "keys": {KID: base64.urlsafe_b64encode(KEYS[KID]).decode().rstrip("=")},
    }
    return {
        "token": [bytes([KINDS.index("lf1")]) + lf1.encode(), bytes([KINDS.index("dv1")]) + requests[0].encode()],
        "license_file": [bytes([AS_TEXT]) + lf1.encode(), bytes([SIGNED_PAYLOAD]) + lf1_payload],
        "credential_file": [canonical_json(credential).encode(), canonical_json({**credential, "label": None}).encode()],
        "request_file": [bytes([AS_TEXT]) + r.encode() for r in requests]
        + [bytes([SIGNED_PAYLOAD]) + p for p in request_payloads],
    }


def _payload(token: str) -> bytes:
    text = token.split(".")[2]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def write_seeds(directory: Path) -> None:
    for target, files in seeds().items():
        (directory / target).mkdir(parents=True, exist_ok=True)
        for n, content in enumerate(files):
            (directory / target / f"seed-{n}").write_bytes(content)
        # Every seed is parsed as expected before any fuzzing: a target that refuses its own seeds fuzzes nothing.
        for content in files:
            TARGETS[target](content)


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "seeds":
        write_seeds(Path(sys.argv[2]))
        return
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} seeds DIR | {{{','.join(TARGETS)}}} [libFuzzer flags] [corpus directories]")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
