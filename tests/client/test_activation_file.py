"""The SDK's offline verification of ``lf1`` license files and its reading of ``dv1`` device requests: only a
genuine file of this tenant and product is read, and its verdict follows the file's fingerprint rule, the
device key and the clock (first failure first)."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from licensor import Licensed
from licensor import _impl as core
from licensor.errors import BadSignatureError, MalformedTokenError, TokenError, UnknownKeyError, WrongTokenKindError
from licensor.fingerprint import DEFAULT_WEIGHTS, PRESETS, hash_components, match_rule, product_salt
from licensor.model import canonical_json, format_time
from licensor.tokens import read_document, sign_document
from licensor.verdict import Code
from licensor_activation.backend import license_file
from licensor_client.activation import (
    CLOCK_SKEW_S,
    DEVICE_REQUEST_KIND,
    LICENSE_FILE_KIND,
    DeviceKey,
    LicenseFileRejectedError,
    device_public_key,
    device_request,
    read_device_request,
    read_license_file,
    verify_license_file,
)

NOW = 1_795_000_000  # seconds; the file is issued now
DAY = 86_400
TENANT = "ten_01JBZ8Q3V6N2K4M7P9R1T5W8XC"
OTHER_TENANT = "ten_01JBZ8Q3V6N2K4M7P9R1T5W8XD"
PRODUCT = "cad"
KID = "key_01JBZ8Q3V6N2K4M7P9R1T5W8XE"
SEED = bytes(range(32))
OTHER_TENANT_SEED = bytes(range(1, 33))
KEYS = {KID: core.public_key(SEED)}
DEVICE = DeviceKey(bytes(range(100, 132)))
OTHER_DEVICE = DeviceKey(bytes(range(200, 232)))
COMPONENTS = {"machine_id": "m-1", "board": "b-1", "cpu": "c-1", "disk": "d-1", "mac": "aa:bb", "hostname": "host-1"}
FINGERPRINT = hash_components(COMPONENTS, product_salt(TENANT, PRODUCT))
CHECKPOINT = NOW + 30 * DAY
LAPSES = CHECKPOINT + 7 * DAY
EXPIRES = NOW + 365 * DAY


def _licensed(expires_s: int | None = EXPIRES, product: str = PRODUCT) -> Licensed:
    """The rows the backend signs a file from (as the store holds them: JSON columns, microseconds)."""
    license = {
        "id": "lic_01JBZ8Q3V6N2K4M7P9R1T5W8XF",
        "expires_at": None if expires_s is None else expires_s * 1_000_000,
        "maintenance_until": None,
        "overrides": canonical_json({"features": {"render": 5}}),
        "generation": 4,
    }
    policy = {"features": canonical_json([{"code": "draw"}]), "seats": 2}
    return Licensed(license, {"code": product}, policy, {"match_preset": "medium"})


def _activation(device: DeviceKey = DEVICE, fingerprint: dict[str, str] = FINGERPRINT, generation: int = 3) -> dict[str, Any]:
    return {
        "id": "act_01JBZ8Q3V6N2K4M7P9R1T5W8XG",
        "device_key": device.key_id,
        "fingerprint": canonical_json(fingerprint),
        "generation": generation,
        "checkpoint_at": CHECKPOINT * 1_000_000,
        "lapses_at": LAPSES * 1_000_000,
        "mode": "online",
    }


def genuine(
    preset: str = "medium",
    *,
    expires_s: int | None = EXPIRES,
    tenant: str = TENANT,
    product: str = PRODUCT,
    seed: bytes = SEED,
    kid: str = KID,
    fingerprint: dict[str, str] = FINGERPRINT,
) -> str:
    """A license file exactly as the activation backend issues one (its own ``license_file``)."""
    return license_file(
        kid,
        seed,
        tenant,
        _licensed(expires_s, product),
        _activation(fingerprint=fingerprint),
        match_rule(preset),
        NOW * 1_000_000,
    )


FILE = genuine()
DOCUMENT = read_document(FILE, LICENSE_FILE_KIND, KEYS)


def resigned(change: Callable[[dict[str, Any]], Any], kind: str = LICENSE_FILE_KIND, seed: bytes = SEED, kid: str = KID) -> str:
    """The genuine document changed by ``change`` (in place) and signed again with the tenant's key."""
    document = read_document(FILE, LICENSE_FILE_KIND, KEYS)
    change(document)
    return sign_document(kind, kid, seed, document)


def verdict(
    token: str = FILE,
    *,
    fingerprint: dict[str, str] = FINGERPRINT,
    device_key: str | None = DEVICE.key_id,
    features: tuple[str, ...] = ("draw",),
    now: float = NOW + 60,
    keys: dict[str, bytes] = KEYS,
    tenant: str = TENANT,
    product: str = PRODUCT,
) -> Code:
    return verify_license_file(
        token, keys, tenant=tenant, product=product, fingerprint=fingerprint, device_key=device_key, features=features, now=now
    ).code


def raised_by(call: Callable[[], object]) -> BaseException | None:
    try:
        call()
    except BaseException as error:
        return error
    return None


def _flip(token: str, position: int, bit: int) -> str:
    return token[:position] + chr(ord(token[position]) ^ (1 << bit)) + token[position + 1 :]


def _kid_neighbours(kid: str, public_key: bytes) -> dict[str, bytes]:
    """``kid`` and every key id one bit away from it (in the key id alphabet), all naming ``public_key``: a
    flipped key id then still finds a key, and the flip must be caught by the signature."""
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
    keys = {kid: public_key}
    for position in range(len(kid)):
        for bit in range(8):
            flipped = _flip(kid, position, bit)
            if set(flipped) <= alphabet:
                keys[flipped] = public_key
    return keys


# --- a genuine file ----------------------------------------------------------------------------------------


def test_a_genuine_file_is_valid_and_reads_back_as_the_backend_signed_it() -> None:
    assert verdict() is Code.VALID
    read = read_license_file(FILE, KEYS, tenant=TENANT, product=PRODUCT)
    assert (read.tenant, read.product, read.license_id, read.activation_id) == (
        TENANT,
        PRODUCT,
        "lic_01JBZ8Q3V6N2K4M7P9R1T5W8XF",
        "act_01JBZ8Q3V6N2K4M7P9R1T5W8XG",
    )
    assert (read.device_key, read.fingerprint, read.rule) == (DEVICE.key_id, FINGERPRINT, match_rule("medium"))
    assert read.features == {"draw": None, "render": 5}
    assert read.terms == {"expires_at": format_time(EXPIRES * 1_000_000), "maintenance_until": None, "seats": 2}
    assert (read.generation, read.issued_at, read.checkpoint_at, read.lapses_at, read.expires_at, read.mode) == (
        3,
        NOW,
        CHECKPOINT,
        LAPSES,
        EXPIRES,
        "online",
    )
    assert read.token == FILE
    assert FILE.startswith(f"{LICENSE_FILE_KIND}.{KID}.")


def test_the_file_is_canonical_so_signing_its_document_again_gives_the_same_file() -> None:
    assert sign_document(LICENSE_FILE_KIND, KID, SEED, DOCUMENT) == FILE
    assert FILE.isascii() and FILE.count(".") == 3


# --- not a genuine file of this tenant ---------------------------------------------------------------------


def test_every_single_bit_flip_of_every_character_of_the_file_is_rejected() -> None:
    keys = _kid_neighbours(KID, core.public_key(SEED))  # a flipped key id still names the tenant's key
    assert len(keys) > 1 and verdict(keys=keys) is Code.VALID
    refused: dict[str, int] = {}
    for position in range(len(FILE)):
        for bit in range(8):
            flipped = _flip(FILE, position, bit)
            assert flipped != FILE
            error = raised_by(lambda: verdict(flipped, keys=keys))
            assert isinstance(error, TokenError), (position, bit, flipped, error)
            refused[type(error).__name__] = refused.get(type(error).__name__, 0) + 1
    assert sum(refused.values()) == len(FILE) * 8
    assert refused["BadSignatureError"] > len(FILE)  # most flips reach the signature check, which refuses them
    assert "LicenseFileRejectedError" not in refused  # a flip never yields a genuinely signed document


@settings(max_examples=200, deadline=None)
@given(
    components=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_-]{0,31}", fullmatch=True), st.text(max_size=20), min_size=1, max_size=8
    ),
    preset=st.sampled_from(sorted(PRESETS)),
    expires=st.one_of(st.none(), st.integers(NOW, NOW + 3650 * DAY)),
    data=st.data(),
)
def test_any_single_bit_flip_of_any_file_is_rejected(
    components: dict[str, str], preset: str, expires: int | None, data: st.DataObject
) -> None:
    fingerprint = hash_components(components, product_salt(TENANT, PRODUCT))
    token = genuine(preset, expires_s=expires, fingerprint=fingerprint)
    assert verdict(token, fingerprint=fingerprint, features=()) in (Code.VALID, Code.EXPIRED)
    position = data.draw(st.integers(0, len(token) - 1), label="position")
    bit = data.draw(st.integers(0, 7), label="bit")
    flipped = _flip(token, position, bit)
    with pytest.raises(TokenError):
        verdict(flipped, fingerprint=fingerprint, features=())


def test_a_file_signed_with_another_tenants_key_is_rejected() -> None:
    forged = genuine(seed=OTHER_TENANT_SEED)  # the same key id, another tenant's key
    assert forged != FILE
    with pytest.raises(BadSignatureError):
        verdict(forged)
    with pytest.raises(UnknownKeyError):  # the other tenant's own key id: not among this tenant's keys
        verdict(genuine(seed=OTHER_TENANT_SEED, kid="key_01JBZ8Q3V6N2K4M7P9R1T5W8XH"))
    with pytest.raises(BadSignatureError):  # the genuine file against another tenant's keys under the same key id
        verdict(keys={KID: core.public_key(OTHER_TENANT_SEED)})
    with pytest.raises(UnknownKeyError):
        verdict(keys={})


def test_a_file_signed_by_a_device_key_is_rejected() -> None:
    with pytest.raises(UnknownKeyError):  # signed under the device's own key id: not a key of the tenant
        verdict(resigned(lambda d: None, seed=DEVICE.seed, kid=DEVICE.key_id))
    with pytest.raises(BadSignatureError):  # signed by the device under the tenant's key id
        verdict(resigned(lambda d: None, seed=DEVICE.seed))


@pytest.mark.parametrize("kind", ["en1", "rs1", "dv1", "ls1", "lf2", "lf"])
def test_a_token_of_another_kind_with_the_same_document_and_key_is_rejected(kind: str) -> None:
    other = resigned(lambda d: None, kind=kind)
    with pytest.raises(WrongTokenKindError):
        verdict(other)
    # The signature covers the kind: putting "lf1" in front of the other kind's token does not verify either.
    relabelled = LICENSE_FILE_KIND + other[len(kind) :]
    with pytest.raises(BadSignatureError):
        verdict(relabelled)


def test_a_payload_that_is_not_the_canonical_json_of_an_object_is_rejected() -> None:
    for payload in (canonical_json(DOCUMENT).replace(",", ", ", 1).encode(), b"[1,2]", b'"file"', b"\xff", b""):
        token = core.encode_token(LICENSE_FILE_KIND, KID, payload, SEED)
        with pytest.raises(MalformedTokenError):
            verdict(token)


# --- genuinely signed, but not this software's -------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "tenant", "product", "code"),
    [
        (genuine(tenant=OTHER_TENANT), TENANT, PRODUCT, "TENANT_MISMATCH"),
        (FILE, OTHER_TENANT, PRODUCT, "TENANT_MISMATCH"),
        (genuine(product="cam"), TENANT, PRODUCT, "PRODUCT_MISMATCH"),
        (FILE, TENANT, "cam", "PRODUCT_MISMATCH"),
        (genuine(tenant=OTHER_TENANT, product="cam"), TENANT, PRODUCT, "TENANT_MISMATCH"),
    ],
    ids=[
        "file-of-another-tenant",
        "asked-for-another-tenant",
        "file-of-another-product",
        "asked-for-another-product",
        "both-tenant-first",
    ],
)
def test_a_genuine_file_of_another_tenant_or_product_is_rejected(token: str, tenant: str, product: str, code: str) -> None:
    with pytest.raises(LicenseFileRejectedError) as rejected:
        verdict(token, tenant=tenant, product=product)
    assert rejected.value.code == code
    assert isinstance(rejected.value, TokenError)


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda document: document.pop(name)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target: Any = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[int(last) if isinstance(target, list) else last] = value

    return change


REQUIRED = [
    "license",
    "activation",
    "device_key",
    "fingerprint",
    "match",
    "features",
    "terms",
    "generation",
    "iat",
    "checkpoint_at",
    "lapses_at",
    "exp",
    "mode",
]
MALFORMED: dict[str, Callable[[dict[str, Any]], None]] = {
    **{f"no-{name}": _drop(name) for name in REQUIRED},
    "license-not-text": _set("license", 7),
    "activation-null": _set("activation", None),
    "device_key-not-text": _set("device_key", ["k"]),
    "mode-not-text": _set("mode", 1),
    "fingerprint-list": _set("fingerprint", [["cpu", "x"]]),
    "fingerprint-value-number": _set("fingerprint/cpu", 5),
    "fingerprint-value-null": _set("fingerprint/cpu", None),
    "match-not-object": _set("match", 0.7),
    "match-no-threshold": lambda d: d["match"].pop("threshold"),
    "match-no-weights": lambda d: d["match"].pop("weights"),
    "threshold-zero": _set("match/threshold", 0),
    "threshold-above-one": _set("match/threshold", 1.5),
    "threshold-text": _set("match/threshold", "0.7"),
    "threshold-bool": _set("match/threshold", True),
    "weights-list": _set("match/weights", [4.0]),
    "weight-text": _set("match/weights/cpu", "2"),
    "weight-bool": _set("match/weights/cpu", True),
    "weight-negative": _set("match/weights/cpu", -2.0),
    "weight-above-the-core-maximum": _set("match/weights/cpu", 2e6),
    "features-object": _set("features", {"draw": None}),
    "features-text": _set("features", "draw"),
    "feature-item-text": _set("features/0", "draw"),
    "feature-without-quantity": lambda d: d["features"][0].pop("quantity"),
    "feature-without-code": lambda d: d["features"][0].pop("feature"),
    "feature-code-number": _set("features/0/feature", 7),
    "feature-quantity-text": _set("features/1/quantity", "5"),
    "terms-text": _set("terms", "perpetual"),
    "terms-list": _set("terms", [["seats", 2]]),
    "generation-text": _set("generation", "3"),
    "generation-bool": _set("generation", True),
    "generation-float": _set("generation", 3.5),
    "iat-float": _set("iat", NOW + 0.5),
    "iat-null": _set("iat", None),
    "checkpoint_at-text": _set("checkpoint_at", "soon"),
    "lapses_at-null": _set("lapses_at", None),
    "exp-text": _set("exp", "never"),
    "exp-bool": _set("exp", False),
}


@pytest.mark.parametrize("change", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_genuinely_signed_but_malformed_document_is_license_file_malformed(change: Callable[[dict[str, Any]], None]) -> None:
    token = resigned(change)
    with pytest.raises(LicenseFileRejectedError) as rejected:
        verdict(token)
    assert rejected.value.code == "LICENSE_FILE_MALFORMED"


def test_extra_fields_of_a_later_issuer_do_not_make_a_file_malformed() -> None:
    assert verdict(resigned(_set("note", "added by a later gateway"))) is Code.VALID


# --- the verdict codes, first failure first -----------------------------------------------------------------


def test_valid_for_the_device_and_its_entitled_features() -> None:
    for features in ((), ("draw",), ("render",), ("draw", "render")):
        assert verdict(features=features) is Code.VALID
    assert verdict(device_key=None) is Code.VALID  # the software may skip the key check
    assert verdict(fingerprint={**FINGERPRINT, "gpu": "added"}) is Code.VALID  # components not in the file are ignored


def test_feature_not_entitled() -> None:
    assert verdict(features=("animate",)) is Code.FEATURE_NOT_ENTITLED
    assert verdict(features=("draw", "animate")) is Code.FEATURE_NOT_ENTITLED


def test_fingerprint_mismatch_for_another_device_key_or_a_device_changed_beyond_the_rule() -> None:
    assert verdict(device_key=OTHER_DEVICE.key_id) is Code.FINGERPRINT_MISMATCH
    changed = hash_components({**COMPONENTS, "machine_id": "new", "board": "new"}, product_salt(TENANT, PRODUCT))
    assert verdict(fingerprint=changed) is Code.FINGERPRINT_MISMATCH  # 6 of 13 unchanged, medium needs 0.7
    assert verdict(fingerprint={}) is Code.FINGERPRINT_MISMATCH
    elsewhere = hash_components(COMPONENTS, product_salt(TENANT, "cam"))  # the same machine salted for another product
    assert verdict(fingerprint=elsewhere) is Code.FINGERPRINT_MISMATCH


def test_not_yet_valid_when_the_clock_was_turned_back() -> None:
    assert verdict(now=NOW - CLOCK_SKEW_S) is Code.VALID  # a clock a little behind the gateway's
    assert verdict(now=NOW - CLOCK_SKEW_S - 1) is Code.NOT_YET_VALID
    assert verdict(now=NOW - 400 * DAY) is Code.NOT_YET_VALID


def test_expired_at_the_end_of_the_term() -> None:
    short = genuine(expires_s=NOW + 10 * DAY)  # the term ends before the checkpoint
    assert verdict(short, now=NOW + 10 * DAY - 1) is Code.VALID
    assert verdict(short, now=NOW + 10 * DAY) is Code.EXPIRED
    assert verdict(short, now=LAPSES + DAY) is Code.EXPIRED  # expired comes before overdue
    perpetual = genuine(expires_s=None)
    assert verdict(perpetual, now=LAPSES - 1) is Code.VALID
    assert verdict(perpetual, now=NOW + 100 * 365 * DAY) is Code.CHECKPOINT_OVERDUE  # never EXPIRED


def test_checkpoint_overdue_after_the_checkpoint_and_its_grace() -> None:
    assert verdict(now=CHECKPOINT + 1) is Code.VALID  # within the grace
    assert verdict(now=LAPSES - 1) is Code.VALID
    assert verdict(now=LAPSES) is Code.CHECKPOINT_OVERDUE


def test_the_first_failure_decides() -> None:
    assert verdict(device_key=OTHER_DEVICE.key_id, now=NOW - DAY, features=("animate",)) is Code.FINGERPRINT_MISMATCH
    assert verdict(now=NOW - DAY, features=("animate",)) is Code.NOT_YET_VALID
    assert verdict(now=LAPSES, features=("animate",)) is Code.CHECKPOINT_OVERDUE


def _weight(name: str) -> int:
    return int(DEFAULT_WEIGHTS.get(name, 1.0))


@settings(max_examples=300, deadline=None)
@given(
    preset=st.sampled_from(sorted(PRESETS)),
    changed=st.sets(st.sampled_from(sorted(COMPONENTS))),
    removed=st.sets(st.sampled_from(sorted(COMPONENTS))),
    added=st.dictionaries(st.sampled_from(["gpu", "ram", "os"]), st.text(min_size=1, max_size=5)),
)
def test_tolerant_matching_follows_the_weighted_share_of_unchanged_components(
    preset: str, changed: set[str], removed: set[str], added: dict[str, str]
) -> None:
    """VALID exactly when the weight of the file's components presented unchanged is at least the preset's
    threshold share of their total weight (computed exactly here); else FINGERPRINT_MISMATCH."""
    token = genuine(preset)
    raw = {name: value + "-changed" if name in changed else value for name, value in COMPONENTS.items() if name not in removed}
    presented = hash_components({**raw, **added}, product_salt(TENANT, PRODUCT))
    unchanged = sum(_weight(name) for name in COMPONENTS if name not in changed | removed)
    share = Fraction(unchanged, sum(_weight(name) for name in COMPONENTS))
    expected = Code.VALID if share >= Fraction(str(PRESETS[preset])) else Code.FINGERPRINT_MISMATCH
    assert verdict(token, fingerprint=presented) is expected, (share, PRESETS[preset])


@pytest.mark.parametrize(
    ("preset", "changed", "expected"),
    [
        ("medium", {"mac", "hostname"}, Code.VALID),  # 11 of 13
        ("medium", {"cpu", "mac"}, Code.VALID),  # 10 of 13
        ("medium", {"cpu", "disk"}, Code.FINGERPRINT_MISMATCH),  # 9 of 13 = 0.69...: below 0.7
        ("medium", {"board", "mac"}, Code.FINGERPRINT_MISMATCH),  # 9 of 13
        ("medium", {"machine_id"}, Code.FINGERPRINT_MISMATCH),  # 9 of 13
        ("loose", {"machine_id", "mac", "hostname"}, Code.VALID),  # 7 of 13
        ("loose", {"machine_id", "board"}, Code.FINGERPRINT_MISMATCH),  # 6 of 13
        ("strict", {"hostname"}, Code.VALID),  # 12 of 13
        ("strict", {"cpu"}, Code.FINGERPRINT_MISMATCH),  # 11 of 13
    ],
    ids=lambda value: "+".join(sorted(value)) if isinstance(value, set) else str(value),
)
def test_tolerant_matching_examples(preset: str, changed: set[str], expected: Code) -> None:
    presented = hash_components(
        {n: v + "-new" if n in changed else v for n, v in COMPONENTS.items()}, product_salt(TENANT, PRODUCT)
    )
    assert verdict(genuine(preset), fingerprint=presented) is expected


# --- dv1 device requests -----------------------------------------------------------------------------------


def _request(key: DeviceKey = DEVICE, **fields: Any) -> str:
    return device_request(
        key,
        "checkin",
        tenant=TENANT,
        product=PRODUCT,
        fingerprint=FINGERPRINT,
        now=NOW,
        activation="act_01JBZ8Q3V6N2K4M7P9R1T5W8XG",
        generation=3,
        **fields,
    )


def test_a_genuine_device_request_reads_back() -> None:
    request = _request()
    assert request.startswith(f"{DEVICE_REQUEST_KIND}.{DEVICE.key_id}.")
    assert read_device_request(request) == {
        "op": "checkin",
        "tenant": TENANT,
        "product": PRODUCT,
        "device_key": DEVICE.key_id,
        "fingerprint": FINGERPRINT,
        "time": NOW,
        "activation": "act_01JBZ8Q3V6N2K4M7P9R1T5W8XG",
        "generation": 3,
    }
    assert device_public_key(DEVICE.key_id) == DEVICE.public_key


def test_every_single_bit_flip_of_a_device_request_is_refused() -> None:
    request = _request()
    refused: dict[str, int] = {}
    for position in range(len(request)):
        for bit in range(8):
            flipped = _flip(request, position, bit)
            error = raised_by(lambda: read_device_request(flipped))
            assert isinstance(error, TokenError), (position, bit, flipped, error)
            refused[type(error).__name__] = refused.get(type(error).__name__, 0) + 1
    assert sum(refused.values()) == len(request) * 8
    assert refused["BadSignatureError"] > len(request)


def test_a_request_signed_by_one_device_naming_another_devices_key_is_refused() -> None:
    document = read_device_request(_request())
    for named in (OTHER_DEVICE.key_id, DEVICE.key_id):
        for signer in (DEVICE, OTHER_DEVICE):
            token = sign_document(DEVICE_REQUEST_KIND, named, signer.seed, {**document, "device_key": named})
            if signer.key_id == named:
                assert read_device_request(token)["device_key"] == named
            else:
                with pytest.raises(BadSignatureError):
                    read_device_request(token)


@pytest.mark.parametrize(
    "kid",
    [KID, "A" * 42, "A" * 44, DEVICE.key_id[:-1] + "B", "lf1"],
    ids=["tenant-key-id", "too-short", "too-long", "non-canonical-base64", "kind-like"],
)
def test_a_request_whose_key_id_names_no_device_key_is_refused(kid: str) -> None:
    assert device_public_key(kid) is None or kid == DEVICE.key_id
    token = sign_document(DEVICE_REQUEST_KIND, kid, DEVICE.seed, read_device_request(_request()))
    with pytest.raises(UnknownKeyError):
        read_device_request(token)


def test_a_license_file_is_not_a_device_request_and_a_device_request_not_a_license_file() -> None:
    with pytest.raises(WrongTokenKindError):
        read_device_request(sign_document(LICENSE_FILE_KIND, DEVICE.key_id, DEVICE.seed, read_device_request(_request())))
    with pytest.raises(TokenError):
        read_device_request(FILE)
    with pytest.raises(WrongTokenKindError):
        verdict(_request(), keys={**KEYS, DEVICE.key_id: DEVICE.public_key})
    for text in ("", "dv1", "dv1...", "dv1.x.y.z", "dv1." + DEVICE.key_id + ".e30.AA"):
        with pytest.raises(TokenError):
            read_device_request(text)
