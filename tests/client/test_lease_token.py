"""The SDK's reading of cloud credential files and its offline verification of ``ls1`` lease tokens: only a
well-formed credential file is imported (and its secret never shows), only a genuine lease token of this tenant,
product and device is read, and its verdict follows the clock and the features the lease was checked out for
(first failure first). Every test runs on both core implementations."""

from __future__ import annotations

import base64
import pathlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from licensor import _impl, tokens
from licensor.errors import (
    BadSignatureError,
    LicensorError,
    MalformedTokenError,
    TokenError,
    UnknownKeyError,
    WrongTokenKindError,
)
from licensor.model import canonical_json
from licensor.tokens import read_document, sign_document
from licensor.verdict import Code
from licensor_client.leases import (
    CLOCK_SKEW_S,
    CREDENTIAL_FILE_FORMAT,
    LEASE_TOKEN_KIND,
    CredentialFile,
    CredentialFileError,
    LeaseTokenRejectedError,
    read_credential_file,
    read_lease_token,
    verify_lease_token,
)

NOW = 1_795_000_000  # seconds; the lease was renewed now
TTL = 900
TENANT = "ten_01JBZ8Q3V6N2K4M7P9R1T5W8XC"
OTHER_TENANT = "ten_01JBZ8Q3V6N2K4M7P9R1T5W8XD"
PRODUCT = "cad"
LICENSE = "lic_01JBZ8Q3V6N2K4M7P9R1T5W8XF"
LEASE = "lse_01JBZ8Q3V6N2K4M7P9R1T5W8XG"
CREDENTIAL_ID = "crd_01JBZ8Q3V6N2K4M7P9R1T5W8XH"
SECRET = base64.urlsafe_b64encode(bytes(range(50, 82))).decode().rstrip("=")  # 43 characters
CREDENTIAL = f"{CREDENTIAL_ID}.{SECRET}"
DEVICE = "vm-42.example"
KID = "key_01JBZ8Q3V6N2K4M7P9R1T5W8XE"
SEED = bytes(range(32))
OTHER_TENANT_SEED = bytes(range(1, 33))
KEYS = {KID: _impl.public_key(SEED)}
OTHER_KINDS = ["lf1", "en1", "rs1", "dv1"]


@pytest.fixture(autouse=True)
def implementation(core: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """Signing and verifying go through ``core`` (the native or the pure-Python implementation)."""
    monkeypatch.setattr(tokens, "core", core)
    yield core


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --- credential files ------------------------------------------------------------------------------------------


def credential_document(**changes: Any) -> dict[str, Any]:
    document = {
        "format": CREDENTIAL_FILE_FORMAT,
        "server": "https://licensing.example.com/",
        "tenant": TENANT,
        "product": PRODUCT,
        "license": LICENSE,
        "credential": CREDENTIAL,
        "label": "office",
        "keys": {KID: _b64(KEYS[KID]), "key_01JBZ8Q3V6N2K4M7P9R1T5W8XJ": _b64(_impl.public_key(OTHER_TENANT_SEED))},
    }
    document.update(changes)
    return document


def credential_text(**changes: Any) -> str:
    return orjson.dumps(credential_document(**changes), option=orjson.OPT_INDENT_2).decode() + "\n"


def test_a_credential_file_reads_back_from_text_bytes_or_a_path(tmp_path: pathlib.Path) -> None:
    expected = CredentialFile(
        "https://licensing.example.com",
        TENANT,
        PRODUCT,
        LICENSE,
        CREDENTIAL,
        "office",
        {KID: KEYS[KID], "key_01JBZ8Q3V6N2K4M7P9R1T5W8XJ": _impl.public_key(OTHER_TENANT_SEED)},
    )
    path = tmp_path / "office.licensor-credential"
    path.write_text(credential_text())
    for source in (credential_text(), credential_text().encode(), path, str(path)):
        read = read_credential_file(source)
        assert read == expected, source
    assert read.credential_id == CREDENTIAL_ID
    assert read.server == "https://licensing.example.com"  # the trailing slash goes: paths are appended to it


def test_a_credential_file_without_label_or_with_unknown_extra_fields_is_read() -> None:
    assert read_credential_file(credential_text(label=None)).label is None
    document = credential_document(comment="from a later CLI")
    del document["label"]
    assert read_credential_file(orjson.dumps(document).decode()).label is None


def test_the_secret_never_shows_in_a_repr() -> None:
    read = read_credential_file(credential_text())
    for shown in (repr(read), str(read), repr([read]), f"{read}"):
        assert SECRET not in shown and CREDENTIAL not in shown
        assert TENANT in shown and LICENSE in shown


def _without(name: str) -> dict[str, Any]:
    document = credential_document()
    del document[name]
    return document


MALFORMED_FILES: dict[str, Any] = {
    "not-json": '{"format": ',
    "empty": "{}",
    "not-an-object": b"[1, 2]",
    "a-string": "{" + '""',
    **{f"no-{name}": _without(name) for name in ("format", "server", "tenant", "product", "license", "credential", "keys")},
    "another-format": credential_document(format="licensor-credential-2"),
    "format-not-text": credential_document(format=1),
    "server-not-a-url": credential_document(server="licensing.example.com"),
    "server-ftp": credential_document(server="ftp://licensing.example.com"),
    "server-with-space": credential_document(server="https://licensing example.com"),
    "server-not-text": credential_document(server=["https://x"]),
    "tenant-not-an-id": credential_document(tenant="ten_123"),
    "tenant-of-another-kind": credential_document(tenant=LICENSE),
    "tenant-with-newline": credential_document(tenant=TENANT + "\n"),
    "product-empty": credential_document(product=""),
    "product-upper-case": credential_document(product="CAD"),
    "product-null": credential_document(product=None),
    "license-not-an-id": credential_document(license="lic_x"),
    "credential-without-secret": credential_document(credential=CREDENTIAL_ID),
    "credential-with-short-secret": credential_document(credential=CREDENTIAL[:-1]),
    "credential-with-long-secret": credential_document(credential=CREDENTIAL + "A"),
    "credential-with-padding": credential_document(credential=CREDENTIAL[:-1] + "="),
    "credential-with-newline": credential_document(credential=CREDENTIAL + "\n"),
    "credential-of-another-kind": credential_document(credential="lic" + CREDENTIAL[3:]),
    "credential-id-lower-case": credential_document(credential=CREDENTIAL_ID.lower() + "." + SECRET),
    "credential-id-with-letter-u": credential_document(credential=CREDENTIAL_ID[:-1] + "U." + SECRET),
    "credential-secret-not-base64url": credential_document(credential=f"{CREDENTIAL_ID}.{SECRET[:-1]}+"),
    "credential-not-text": credential_document(credential=123),
    "label-not-text": credential_document(label=5),
    "keys-empty": credential_document(keys={}),
    "keys-a-list": credential_document(keys=[_b64(KEYS[KID])]),
    "key-not-text": credential_document(keys={KID: list(KEYS[KID])}),
    "key-too-short": credential_document(keys={KID: _b64(KEYS[KID][:31])}),
    "key-too-long": credential_document(keys={KID: _b64(KEYS[KID] + b"\0")}),
    "key-padded": credential_document(keys={KID: _b64(KEYS[KID]) + "="}),
    "key-standard-base64": credential_document(keys={KID: base64.b64encode(b"\xfb" * 32).decode().rstrip("=")}),
    "key-non-canonical-last-char": credential_document(keys={KID: _b64(b"\0" * 32)[:-1] + "B"}),
    "key-id-with-dot": credential_document(keys={"key.1": _b64(KEYS[KID])}),
    "key-id-empty": credential_document(keys={"": _b64(KEYS[KID])}),
}


@pytest.mark.parametrize("document", MALFORMED_FILES.values(), ids=MALFORMED_FILES.keys())
def test_a_malformed_credential_file_is_refused_with_its_code_and_without_showing_the_secret(document: Any) -> None:
    text = document if isinstance(document, (str, bytes)) else orjson.dumps(document).decode()
    with pytest.raises(CredentialFileError) as refused:
        read_credential_file(text)
    assert refused.value.code == "CREDENTIAL_FILE_MALFORMED"
    assert isinstance(refused.value, ValueError) and isinstance(refused.value, LicensorError)
    assert SECRET not in str(refused.value)
    # No chained error carries the text along (a JSON error would quote it).
    assert refused.value.__cause__ is None and (refused.value.__context__ is None or refused.value.__suppress_context__)


def test_a_credential_file_that_cannot_be_read_is_an_os_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_credential_file(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        read_credential_file(str(tmp_path / "missing"))


# --- lease tokens ----------------------------------------------------------------------------------------------


def lease_document(**changes: Any) -> dict[str, Any]:
    """The payload of a lease token as the cloud backend signs it (SPEC: ls1 lease token)."""
    document = {
        "tenant": TENANT,
        "product": PRODUCT,
        "license": LICENSE,
        "lease": LEASE,
        "credential": CREDENTIAL_ID,
        "device": DEVICE,
        "features": ["draw", "render"],
        "entitlements": [
            {"feature": "draw", "quantity": None},
            {"feature": "render", "quantity": 4},
            {"feature": "export", "quantity": None},
        ],
        "terms": {"seats": 2, "expires_at": None},
        "iat": NOW,
        "exp": NOW + TTL,
        "heartbeat_interval": 300,
        "renewal": 7,
    }
    document.update(changes)
    return document


def lease_token(kind: str = LEASE_TOKEN_KIND, *, seed: bytes = SEED, kid: str = KID, **changes: Any) -> str:
    return sign_document(kind, kid, seed, lease_document(**changes))


TOKEN = lease_token()


def verdict(
    token: str = TOKEN,
    *,
    keys: dict[str, bytes] = KEYS,
    tenant: str = TENANT,
    product: str = PRODUCT,
    device_id: str | None = DEVICE,
    features: tuple[str, ...] = ("draw",),
    now: float = NOW + 60,
) -> Code:
    return verify_lease_token(token, keys, tenant=tenant, product=product, device_id=device_id, features=features, now=now).code


def raised_by(call: Callable[[], object]) -> BaseException | None:
    try:
        call()
    except BaseException as error:
        return error
    return None


def _flip(token: str, position: int, bit: int) -> str:
    return token[:position] + chr(ord(token[position]) ^ (1 << bit)) + token[position + 1 :]


def _kid_neighbours(kid: str, public_key: bytes) -> dict[str, bytes]:
    """``kid`` and every key id one bit away from it (in the key id alphabet), all naming ``public_key``: a flipped
    key id then still finds a key, and the flip must be caught by the signature."""
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
    keys = {kid: public_key}
    for position in range(len(kid)):
        for bit in range(8):
            flipped = _flip(kid, position, bit)
            if set(flipped) <= alphabet:
                keys[flipped] = public_key
    return keys


def test_a_genuine_lease_token_is_valid_and_reads_back_as_signed() -> None:
    assert verdict() is Code.VALID
    lease = read_lease_token(TOKEN, KEYS, tenant=TENANT, product=PRODUCT)
    assert (lease.tenant, lease.product, lease.license_id, lease.lease_id, lease.credential_id, lease.device_id) == (
        TENANT,
        PRODUCT,
        LICENSE,
        LEASE,
        CREDENTIAL_ID,
        DEVICE,
    )
    assert lease.features == ("draw", "render")
    assert lease.entitlements == {"draw": None, "render": 4, "export": None}
    assert lease.terms == {"seats": 2, "expires_at": None}
    assert (lease.issued_at, lease.expires_at, lease.heartbeat_interval, lease.renewal) == (NOW, NOW + TTL, 300, 7)
    assert lease.token == TOKEN and TOKEN.startswith(f"{LEASE_TOKEN_KIND}.{KID}.")


def test_the_token_may_come_with_the_whitespace_of_a_file_around_it() -> None:
    assert verdict(f"  {TOKEN}\n") is Code.VALID
    assert read_lease_token(TOKEN + "\n", KEYS, tenant=TENANT, product=PRODUCT).token == TOKEN


def test_extra_fields_of_a_later_issuer_do_not_make_a_token_malformed() -> None:
    assert verdict(lease_token(region="eu", flags={"x": 1})) is Code.VALID


# --- the verdict at each boundary, first failure first ---------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "code"),
    [
        (NOW - CLOCK_SKEW_S - 1, Code.NOT_YET_VALID),
        (NOW - CLOCK_SKEW_S - 0.001, Code.NOT_YET_VALID),
        (NOW - CLOCK_SKEW_S, Code.VALID),  # a device clock behind the gateway's by the allowed skew
        (NOW, Code.VALID),
        (NOW + TTL - 0.001, Code.VALID),
        (NOW + TTL, Code.LEASE_EXPIRED),  # the lease was not renewed before its expiry
        (NOW + TTL + 10**6, Code.LEASE_EXPIRED),
    ],
    ids=[
        "behind-by-more-than-the-skew",
        "behind-by-a-hair-more-than-the-skew",
        "behind-by-the-skew",
        "issued",
        "just-before-expiry",
        "at-expiry",
        "long-after",
    ],
)
def test_the_clock_decides_between_not_yet_valid_valid_and_lease_expired(now: float, code: Code) -> None:
    assert verdict(now=now) is code


def test_a_feature_the_lease_was_not_checked_out_for_is_not_entitled_even_if_the_license_grants_it() -> None:
    assert verdict(features=()) is Code.VALID
    assert verdict(features=("draw", "render")) is Code.VALID
    assert verdict(features=("export",)) is Code.FEATURE_NOT_ENTITLED  # in entitlements, but not checked out
    assert verdict(features=("draw", "print")) is Code.FEATURE_NOT_ENTITLED
    assert verdict(lease_token(features=[]), features=("draw",)) is Code.FEATURE_NOT_ENTITLED


def test_the_first_failure_decides() -> None:
    assert verdict(now=NOW - CLOCK_SKEW_S - 1, features=("print",)) is Code.NOT_YET_VALID
    assert verdict(now=NOW + TTL, features=("print",)) is Code.LEASE_EXPIRED
    assert verdict(lease_token(exp=NOW - 1), now=NOW) is Code.LEASE_EXPIRED  # an expiry before the issue time
    for now in (NOW - 10**6, NOW + TTL + 10**6):  # another device's token is refused whatever the clock says
        with pytest.raises(LeaseTokenRejectedError) as rejected:
            verdict(device_id="vm-43.example", now=now, features=("print",))
        assert rejected.value.code == "DEVICE_MISMATCH"


def test_another_devices_lease_is_refused_and_no_device_means_any() -> None:
    with pytest.raises(LeaseTokenRejectedError) as rejected:
        verdict(device_id=DEVICE.upper())
    assert rejected.value.code == "DEVICE_MISMATCH" and isinstance(rejected.value, TokenError)
    assert verdict(device_id=None) is Code.VALID


# --- not a genuine lease token of this tenant ------------------------------------------------------------------


def test_every_single_bit_flip_of_every_character_of_the_token_is_rejected() -> None:
    keys = _kid_neighbours(KID, KEYS[KID])  # a flipped key id still names the tenant's key
    assert len(keys) > 1 and verdict(keys=keys) is Code.VALID
    refused: dict[str, int] = {}
    for position in range(len(TOKEN)):
        for bit in range(8):
            flipped = _flip(TOKEN, position, bit)
            error = raised_by(lambda: verdict(flipped, keys=keys))
            assert isinstance(error, TokenError), (position, bit, flipped, error)
            refused[type(error).__name__] = refused.get(type(error).__name__, 0) + 1
    assert sum(refused.values()) == len(TOKEN) * 8
    assert refused["BadSignatureError"] > len(TOKEN)  # most flips reach the signature check, which refuses them
    assert "LeaseTokenRejectedError" not in refused  # a flip never yields a genuinely signed document


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    device=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=200),  # printable, no space
    features=st.lists(st.text("abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=20), max_size=5, unique=True),
    renewal=st.integers(0, 2**53),
    data=st.data(),
)
def test_any_single_bit_flip_of_any_lease_token_is_rejected(
    device: str, features: list[str], renewal: int, data: st.DataObject
) -> None:
    token = lease_token(device=device, features=features, renewal=renewal)
    assert verdict(token, device_id=device, features=tuple(features)) is Code.VALID
    position = data.draw(st.integers(0, len(token) - 1), label="position")
    bit = data.draw(st.integers(0, 7), label="bit")
    with pytest.raises(TokenError):
        verdict(_flip(token, position, bit), device_id=device, features=tuple(features))


def test_a_token_signed_with_another_tenants_key_is_rejected() -> None:
    forged = lease_token(seed=OTHER_TENANT_SEED)  # the same key id, another tenant's key
    with pytest.raises(BadSignatureError):
        verdict(forged)
    with pytest.raises(UnknownKeyError):  # the other tenant's own key id: not among this tenant's keys
        verdict(lease_token(seed=OTHER_TENANT_SEED, kid="key_01JBZ8Q3V6N2K4M7P9R1T5W8XJ"))
    with pytest.raises(BadSignatureError):  # the genuine token checked against another tenant's key under the kid
        verdict(keys={KID: _impl.public_key(OTHER_TENANT_SEED)})
    with pytest.raises(UnknownKeyError):
        verdict(keys={})


@pytest.mark.parametrize("kind", [*OTHER_KINDS, "ls2", "ls"])
def test_a_token_of_another_kind_with_the_same_document_and_key_is_rejected(kind: str) -> None:
    other = lease_token(kind)
    with pytest.raises(WrongTokenKindError):
        verdict(other)
    # The signature covers the kind: putting "ls1" in front of the other kind's token does not verify either.
    with pytest.raises(BadSignatureError):
        verdict(LEASE_TOKEN_KIND + other[len(kind) :])


@pytest.mark.parametrize("kind", OTHER_KINDS)
def test_a_lease_token_is_no_other_kind_of_document(kind: str) -> None:
    with pytest.raises(WrongTokenKindError):
        read_document(TOKEN, kind, KEYS)


def test_a_payload_that_is_not_the_canonical_json_of_an_object_is_rejected(implementation: ModuleType) -> None:
    for payload in (canonical_json(lease_document()).replace(",", ", ", 1).encode(), b"[1,2]", b'"lease"', b"\xff", b""):
        token = implementation.encode_token(LEASE_TOKEN_KIND, KID, payload, SEED)
        with pytest.raises(MalformedTokenError):
            verdict(token)


# --- genuinely signed, but not this software's, or garbled ------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "tenant", "product", "code"),
    [
        (lease_token(tenant=OTHER_TENANT), TENANT, PRODUCT, "TENANT_MISMATCH"),
        (TOKEN, OTHER_TENANT, PRODUCT, "TENANT_MISMATCH"),
        (lease_token(product="cam"), TENANT, PRODUCT, "PRODUCT_MISMATCH"),
        (TOKEN, TENANT, "cam", "PRODUCT_MISMATCH"),
        (lease_token(tenant=OTHER_TENANT, product="cam"), TENANT, PRODUCT, "TENANT_MISMATCH"),
        (lease_token(tenant=None), TENANT, PRODUCT, "TENANT_MISMATCH"),
        (lease_token(product=["cad"]), TENANT, PRODUCT, "PRODUCT_MISMATCH"),
    ],
    ids=[
        "token-of-another-tenant",
        "asked-for-another-tenant",
        "token-of-another-product",
        "asked-for-another-product",
        "both-tenant-first",
        "tenant-null",
        "product-a-list",
    ],
)
def test_a_genuine_token_of_another_tenant_or_product_is_rejected(token: str, tenant: str, product: str, code: str) -> None:
    with pytest.raises(LeaseTokenRejectedError) as rejected:
        verdict(token, tenant=tenant, product=product)
    assert rejected.value.code == code and isinstance(rejected.value, TokenError)


REQUIRED = [
    "license",
    "lease",
    "credential",
    "device",
    "features",
    "entitlements",
    "terms",
    "iat",
    "exp",
    "heartbeat_interval",
    "renewal",
]
GARBLED: dict[str, dict[str, Any]] = {
    "license-not-text": {"license": 7},
    "lease-null": {"lease": None},
    "credential-a-list": {"credential": [CREDENTIAL_ID]},
    "device-a-number": {"device": 42},
    "features-text": {"features": "draw"},
    "features-object": {"features": {"draw": True}},
    "feature-not-text": {"features": ["draw", 1]},
    "entitlements-object": {"entitlements": {"draw": None}},
    "entitlement-without-quantity": {"entitlements": [{"feature": "draw"}]},
    "entitlement-without-feature": {"entitlements": [{"quantity": 1}]},
    "entitlement-quantity-text": {"entitlements": [{"feature": "draw", "quantity": "4"}]},
    "entitlement-quantity-float": {"entitlements": [{"feature": "draw", "quantity": 4.5}]},
    "entitlement-quantity-true": {"entitlements": [{"feature": "draw", "quantity": True}]},
    "entitlement-not-object": {"entitlements": ["draw"]},
    "terms-list": {"terms": []},
    "iat-text": {"iat": str(NOW)},
    "iat-float": {"iat": NOW + 0.5},
    "exp-null": {"exp": None},
    "exp-true": {"exp": True},
    "heartbeat-interval-float": {"heartbeat_interval": 300.0},
    "renewal-null": {"renewal": None},
}


def _garbled_tokens() -> dict[str, str]:
    made: dict[str, str] = {}
    for name in REQUIRED:
        document = lease_document()
        del document[name]
        made[f"no-{name}"] = sign_document(LEASE_TOKEN_KIND, KID, SEED, document)
    for name, changes in GARBLED.items():
        made[name] = lease_token(**changes)
    return made


GARBLED_TOKENS = _garbled_tokens()


@pytest.mark.parametrize("token", GARBLED_TOKENS.values(), ids=GARBLED_TOKENS.keys())
def test_a_genuinely_signed_but_garbled_token_is_lease_token_malformed(token: str) -> None:
    for call in (lambda: verdict(token), lambda: read_lease_token(token, KEYS, tenant=TENANT, product=PRODUCT)):
        error = raised_by(call)
        assert isinstance(error, LeaseTokenRejectedError), error
        assert error.code == "LEASE_TOKEN_MALFORMED"
