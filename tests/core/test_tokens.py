"""Signed tokens ``KIND.KID.B64URL(payload).B64URL(signature)`` on every core: encode_token, decode_token and
decode_tokens, and the one error class (with its ``code``) each refusal raises, in the contract's order.

Malformed tokens below are *signed as written* wherever that is possible, so that only the form check can
refuse them: a lenient decoder that accepted, say, padding would find a good signature.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from licensor.errors import (
    BadSignatureError,
    InvalidInputError,
    LicensorError,
    MalformedTokenError,
    TokenError,
    UnknownKeyError,
    WrongTokenKindError,
)

SEED = bytes(range(32))
OTHER_TENANT_SEED = bytes(range(1, 33))
SECOND_SEED = bytes(range(64, 96))
MAX = 262_144

PAYLOAD = b'{"licence":"L-1","seats":5}'


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def keys_for(core: ModuleType) -> dict[str, bytes]:
    return {"k1": core.public_key(SEED), "k2": core.public_key(SECOND_SEED)}


def signed_as_written(core: ModuleType, kind: str, kid: str, payload_text: str, seed: bytes = SEED) -> str:
    """A token whose signature covers ``KIND.KID.PAYLOAD_TEXT`` exactly as given, well formed or not."""
    signed = f"{kind}.{kid}.{payload_text}"
    return f"{signed}.{b64(core.sign(seed, signed.encode('utf-8')))}"


def raised_by(call: Callable[[], object]) -> BaseException | None:
    try:
        call()
    except BaseException as error:
        return error
    return None


# --- round trip and format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "kid", "payload"),
    [
        ("lf1", "k1", PAYLOAD),
        ("a", "k", b""),
        ("abcdefgh", "K" * 64, b"\x00"),
        ("12345678", "A-z_0-9", bytes(range(256))),
        ("ls1", "tenant_42-key-2025", b"\xff" * 1000),
        ("z9", "-", b"ab"),
        ("z9", "_", b"abc"),
    ],
)
def test_encoded_token_decodes_back_to_its_payload(core: ModuleType, kind: str, kid: str, payload: bytes) -> None:
    token = core.encode_token(kind, kid, payload, SEED)
    assert type(token) is str
    decoded = core.decode_token(token, kind, {kid: core.public_key(SEED)})
    assert type(decoded) is bytes
    assert decoded == payload


def test_token_is_kind_kid_payload_and_signature_over_the_first_three_parts(core: ModuleType) -> None:
    token = core.encode_token("lf1", "k1", PAYLOAD, SEED)
    kind, kid, payload_text, signature_text = token.split(".")
    assert (kind, kid, payload_text) == ("lf1", "k1", b64(PAYLOAD))
    assert "=" not in token
    assert len(signature_text) == 86
    signature = base64.urlsafe_b64decode(signature_text + "==")
    assert signature == core.sign(SEED, f"lf1.k1.{payload_text}".encode())
    assert core.verify(core.public_key(SEED), f"lf1.k1.{payload_text}".encode(), signature)


def test_encoding_is_deterministic(core: ModuleType) -> None:
    assert core.encode_token("lf1", "k1", PAYLOAD, SEED) == core.encode_token("lf1", "k1", PAYLOAD, SEED)
    assert core.encode_token("lf1", "k1", PAYLOAD, SEED) != core.encode_token("lf1", "k1", PAYLOAD, SECOND_SEED)


def test_max_token_length_is_262144_characters(core: ModuleType) -> None:
    assert core.MAX_TOKEN_LENGTH == MAX


def test_token_of_exactly_max_token_length_is_made_and_read(core: ModuleType) -> None:
    # 1 (kind) + 2 (kid) + 262052 (base64 of 196539 bytes) + 89 (three dots, 86 signature characters).
    payload = bytes(range(256)) * 767 + bytes(187)
    assert len(payload) == 196_539
    token = core.encode_token("a", "k1", payload, SEED)
    assert len(token) == MAX
    assert core.decode_token(token, "a", keys_for(core)) == payload


def test_payload_one_byte_too_large_for_max_token_length_is_invalid_input(core: ModuleType) -> None:
    with pytest.raises(InvalidInputError):
        core.encode_token("a", "k1", bytes(196_540), SEED)
    with pytest.raises(InvalidInputError):
        core.encode_token("a", "k1", bytes(MAX), SEED)


# --- malformed ---------------------------------------------------------------------------------------------


def _too_long_but_signed(core: ModuleType) -> str:
    # One character over the limit, otherwise perfect: 1 + 3 + 262052 + 89 = MAX + 1.
    token = signed_as_written(core, "a", "k12", b64(bytes(196_539)))
    assert len(token) == MAX + 1
    return token


B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _with_trailing_bits(token: str) -> str:
    """The same token with non-zero trailing bits in the signature's last character: 64 bytes take 86
    characters, the last of which carries 2 bits of the signature and 4 bits that must be zero."""
    last = B64_ALPHABET.index(token[-1])
    assert last % 16 == 0
    changed = token[:-1] + B64_ALPHABET[last + 1]
    assert base64.urlsafe_b64decode(changed.split(".")[3] + "==") == base64.urlsafe_b64decode(token.split(".")[3] + "==")
    return changed


MALFORMED: dict[str, Callable[[ModuleType], str]] = {
    "three-parts": lambda c: "lf1.k1." + b64(c.sign(SEED, b"lf1.k1")),
    "three-parts-no-payload": lambda c: ".".join(
        p for i, p in enumerate(c.encode_token("lf1", "k1", PAYLOAD, SEED).split(".")) if i != 2
    ),
    "five-parts": lambda c: c.encode_token("lf1", "k1", PAYLOAD, SEED) + ".eA",
    "five-parts-dot-in-payload": lambda c: signed_as_written(c, "lf1", "k1", "YQ.YQ"),
    "empty-string": lambda c: "",
    "only-dots": lambda c: "...",
    "payload-with-padding": lambda c: signed_as_written(c, "lf1", "k1", "YQ=="),
    "payload-with-one-padding-char": lambda c: signed_as_written(c, "lf1", "k1", "YWI="),
    "signature-with-padding": lambda c: c.encode_token("lf1", "k1", PAYLOAD, SEED) + "==",
    "payload-with-plus-and-slash": lambda c: signed_as_written(c, "lf1", "k1", "+/8"),
    "payload-with-plus": lambda c: signed_as_written(c, "lf1", "k1", "+w"),
    "payload-with-slash": lambda c: signed_as_written(c, "lf1", "k1", "/w"),
    "payload-with-space": lambda c: signed_as_written(c, "lf1", "k1", "YW Jj"),
    "payload-of-one-mod-four-length": lambda c: signed_as_written(c, "lf1", "k1", "YWJjZ"),
    "non-ascii-in-payload": lambda c: signed_as_written(c, "lf1", "k1", "YWJj\u00e9"),
    "non-ascii-kid": lambda c: signed_as_written(c, "lf1", "k\u00e9", b64(PAYLOAD)),
    "non-ascii-appended": lambda c: c.encode_token("lf1", "k1", PAYLOAD, SEED) + "\u2603",
    "empty-kind": lambda c: signed_as_written(c, "", "k1", b64(PAYLOAD)),
    "kind-with-uppercase": lambda c: signed_as_written(c, "LF1", "k1", b64(PAYLOAD)),
    "kind-of-nine-characters": lambda c: signed_as_written(c, "abcdefghi", "k1", b64(PAYLOAD)),
    "kind-with-dash": lambda c: signed_as_written(c, "lf-1", "k1", b64(PAYLOAD)),
    "empty-kid": lambda c: signed_as_written(c, "lf1", "", b64(PAYLOAD)),
    "kid-of-65-characters": lambda c: signed_as_written(c, "lf1", "k" * 65, b64(PAYLOAD)),
    "kid-with-a-space": lambda c: signed_as_written(c, "lf1", "k 1", b64(PAYLOAD)),
    "kid-with-plus": lambda c: signed_as_written(c, "lf1", "k+1", b64(PAYLOAD)),
    "signature-of-63-bytes": lambda c: "lf1.k1.{}.{}".format(
        b64(PAYLOAD), b64(c.sign(SEED, f"lf1.k1.{b64(PAYLOAD)}".encode())[:63])
    ),
    "signature-of-65-bytes": lambda c: "lf1.k1.{}.{}".format(
        b64(PAYLOAD), b64(c.sign(SEED, f"lf1.k1.{b64(PAYLOAD)}".encode()) + b"\x00")
    ),
    "empty-signature": lambda c: f"lf1.k1.{b64(PAYLOAD)}.",
    "payload-with-non-zero-trailing-bits": lambda c: signed_as_written(c, "lf1", "k1", "YR"),
    "payload-with-non-zero-trailing-bits-2": lambda c: signed_as_written(c, "lf1", "k1", "YWJ"),
    "signature-with-non-zero-trailing-bits": lambda c: _with_trailing_bits(c.encode_token("lf1", "k1", PAYLOAD, SEED)),
    "trailing-newline": lambda c: c.encode_token("lf1", "k1", PAYLOAD, SEED) + "\n",
    "leading-space": lambda c: " " + c.encode_token("lf1", "k1", PAYLOAD, SEED),
    "longer-than-max-token-length": lambda c: "x" * (MAX + 1),
    "longer-than-max-token-length-but-signed": _too_long_but_signed,
    "lone-surrogate": lambda c: c.encode_token("lf1", "k1", PAYLOAD, SEED)[:-1] + "\ud800",
}


@pytest.mark.parametrize("shape", sorted(MALFORMED))
def test_malformed_token_raises_malformed_token_error(core: ModuleType, shape: str) -> None:
    token = MALFORMED[shape](core)
    with pytest.raises(MalformedTokenError) as raised:
        core.decode_token(token, "lf1", {**keys_for(core), "k" * 65: core.public_key(SEED), "k\u00e9": b"\x00" * 32})
    assert raised.value.code == "TOKEN_MALFORMED"
    assert isinstance(raised.value, TokenError)


def test_non_zero_trailing_bits_change_nothing_a_lenient_decoder_would_see() -> None:
    # The premise of the trailing-bits cases: "YR" and "YQ" decode to the same byte when bits are dropped.
    assert base64.urlsafe_b64decode("YR==") == base64.urlsafe_b64decode("YQ==") == b"a"
    assert base64.urlsafe_b64decode("YWJ=") == base64.urlsafe_b64decode("YWI=") == b"ab"


def test_malformed_token_of_another_kind_is_malformed_not_wrong_kind(core: ModuleType) -> None:
    token = signed_as_written(core, "ls1", "k1", "YQ==")
    with pytest.raises(MalformedTokenError):
        core.decode_token(token, "lf1", keys_for(core))


def test_malformed_token_with_an_unknown_kid_is_malformed_not_unknown_key(core: ModuleType) -> None:
    token = core.encode_token("lf1", "nobody", PAYLOAD, SEED) + "="
    with pytest.raises(MalformedTokenError):
        core.decode_token(token, "lf1", {})


def test_too_long_token_is_malformed_before_it_is_looked_at_further(core: ModuleType) -> None:
    for token in ("\u00e9" * (MAX + 1), "." * (MAX + 1), "lf1.k1." + "A" * MAX):
        with pytest.raises(MalformedTokenError):
            core.decode_token(token, "lf1", keys_for(core))


# --- wrong kind, unknown key, bad signature ----------------------------------------------------------------


def test_well_formed_token_of_another_kind_raises_wrong_token_kind_error(core: ModuleType) -> None:
    token = core.encode_token("ls1", "k1", PAYLOAD, SEED)
    with pytest.raises(WrongTokenKindError) as raised:
        core.decode_token(token, "lf1", keys_for(core))
    assert raised.value.code == "TOKEN_WRONG_KIND"
    assert isinstance(raised.value, TokenError)
    assert core.decode_token(token, "ls1", keys_for(core)) == PAYLOAD


def test_wrong_kind_is_reported_before_an_unknown_kid_or_a_bad_signature(core: ModuleType) -> None:
    unknown_kid = core.encode_token("ls1", "nobody", PAYLOAD, SEED)
    forged = f"ls1.k1.{b64(PAYLOAD)}.{b64(bytes(64))}"
    for token in (unknown_kid, forged):
        with pytest.raises(WrongTokenKindError):
            core.decode_token(token, "lf1", keys_for(core))


def test_token_naming_a_kid_not_among_the_keys_raises_unknown_key_error(core: ModuleType) -> None:
    token = core.encode_token("lf1", "k3", PAYLOAD, SEED)
    for keys in ({}, keys_for(core), {"K3": core.public_key(SEED), "k": core.public_key(SEED)}):
        with pytest.raises(UnknownKeyError) as raised:
            core.decode_token(token, "lf1", keys)
        assert raised.value.code == "TOKEN_UNKNOWN_KEY"
        assert isinstance(raised.value, TokenError)


def test_unknown_key_is_reported_before_a_bad_signature(core: ModuleType) -> None:
    token = f"lf1.k9.{b64(PAYLOAD)}.{b64(bytes(64))}"
    with pytest.raises(UnknownKeyError):
        core.decode_token(token, "lf1", keys_for(core))


def test_token_relabelled_to_another_kind_raises_bad_signature_error_as_that_kind(core: ModuleType) -> None:
    token = core.encode_token("lf1", "k1", PAYLOAD, SEED)
    relabelled = "ls1" + token[len("lf1") :]
    with pytest.raises(BadSignatureError) as raised:
        core.decode_token(relabelled, "ls1", keys_for(core))
    assert raised.value.code == "TOKEN_BAD_SIGNATURE"
    assert isinstance(raised.value, TokenError)


def test_token_signed_by_another_tenants_key_with_the_same_kid_raises_bad_signature_error(core: ModuleType) -> None:
    foreign = core.encode_token("lf1", "k1", PAYLOAD, OTHER_TENANT_SEED)
    assert core.decode_token(foreign, "lf1", {"k1": core.public_key(OTHER_TENANT_SEED)}) == PAYLOAD
    with pytest.raises(BadSignatureError):
        core.decode_token(foreign, "lf1", {"k1": core.public_key(SEED)})


def test_token_relabelled_to_another_kid_raises_bad_signature_error(core: ModuleType) -> None:
    token = core.encode_token("lf1", "k1", PAYLOAD, SEED)
    keys = {"k1": core.public_key(SEED), "k2": core.public_key(SEED)}  # the very same key under both ids
    with pytest.raises(BadSignatureError):
        core.decode_token(token.replace(".k1.", ".k2.", 1), "lf1", keys)


def test_payload_or_signature_swapped_between_tokens_raises_bad_signature_error(core: ModuleType) -> None:
    first = core.encode_token("lf1", "k1", b"first", SEED).split(".")
    second = core.encode_token("lf1", "k1", b"second", SEED).split(".")
    for token in (".".join(first[:3] + second[3:]), ".".join(first[:2] + second[2:3] + first[3:])):
        with pytest.raises(BadSignatureError):
            core.decode_token(token, "lf1", keys_for(core))


def test_all_zero_signature_raises_bad_signature_error(core: ModuleType) -> None:
    token = f"lf1.k1.{b64(PAYLOAD)}.{b64(bytes(64))}"
    with pytest.raises(BadSignatureError):
        core.decode_token(token, "lf1", keys_for(core))


@pytest.mark.parametrize("key", [b"", b"\x00" * 31, b"\x00" * 33, b"\xff" * 32])
def test_a_stored_public_key_that_is_not_a_valid_key_gives_bad_signature_error(core: ModuleType, key: bytes) -> None:
    token = core.encode_token("lf1", "k1", PAYLOAD, SEED)
    with pytest.raises(BadSignatureError):
        core.decode_token(token, "lf1", {"k1": key})


def test_a_stored_public_key_that_is_not_bytes_raises_type_error(core: ModuleType) -> None:
    token = core.encode_token("lf1", "k1", PAYLOAD, SEED)
    for key in (bytearray(core.public_key(SEED)), core.public_key(SEED).hex(), 7):
        with pytest.raises(TypeError):
            core.decode_token(token, "lf1", {"k1": key})


def test_token_error_classes_and_codes_are_distinct() -> None:
    classes = [MalformedTokenError, UnknownKeyError, WrongTokenKindError, BadSignatureError]
    assert [cls.code for cls in classes] == ["TOKEN_MALFORMED", "TOKEN_UNKNOWN_KEY", "TOKEN_WRONG_KIND", "TOKEN_BAD_SIGNATURE"]
    for cls in classes:
        assert issubclass(cls, TokenError) and issubclass(cls, LicensorError)
        assert not issubclass(cls, InvalidInputError)


# --- invalid arguments -------------------------------------------------------------------------------------

BAD_KINDS = ["", "LF1", "Lf1", "abcdefghi", "lf-1", "lf.1", "lf_1", " lf1", "lf1\n", "l\u00e9", "\u0661", "\ud800"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_decoding_with_an_invalid_kind_argument_raises_invalid_input_error(core: ModuleType, kind: str) -> None:
    token = core.encode_token("lf1", "k1", PAYLOAD, SEED)
    for candidate in (token, "garbage", "x" * (MAX + 1)):
        with pytest.raises(InvalidInputError) as raised:
            core.decode_token(candidate, kind, keys_for(core))
        assert raised.value.code == "INVALID_INPUT"
        assert not isinstance(raised.value, TokenError)
    with pytest.raises(InvalidInputError):
        core.decode_tokens([token, "garbage"], kind, keys_for(core))
    with pytest.raises(InvalidInputError):
        core.decode_tokens([], kind, keys_for(core))


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_encoding_with_an_invalid_kind_raises_invalid_input_error(core: ModuleType, kind: str) -> None:
    with pytest.raises(InvalidInputError):
        core.encode_token(kind, "k1", PAYLOAD, SEED)


@pytest.mark.parametrize("kid", ["", "k" * 65, "k.1", "k 1", "k=", "k+1", "k/1", "k\u00e9", "\ud800", "k\x00"])
def test_encoding_with_an_invalid_kid_raises_invalid_input_error(core: ModuleType, kid: str) -> None:
    with pytest.raises(InvalidInputError):
        core.encode_token("lf1", kid, PAYLOAD, SEED)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_encoding_with_a_seed_of_wrong_length_raises_invalid_input_error(core: ModuleType, length: int) -> None:
    with pytest.raises(InvalidInputError):
        core.encode_token("lf1", "k1", PAYLOAD, bytes(length))


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((None, "k1", PAYLOAD, SEED), id="kind-None"),
        pytest.param((b"lf1", "k1", PAYLOAD, SEED), id="kind-bytes"),
        pytest.param(("lf1", None, PAYLOAD, SEED), id="kid-None"),
        pytest.param(("lf1", 1, PAYLOAD, SEED), id="kid-int"),
        pytest.param(("lf1", "k1", PAYLOAD.decode(), SEED), id="payload-str"),
        pytest.param(("lf1", "k1", bytearray(PAYLOAD), SEED), id="payload-bytearray"),
        pytest.param(("lf1", "k1", PAYLOAD, bytearray(SEED)), id="seed-bytearray"),
        pytest.param(("lf1", "k1", PAYLOAD, None), id="seed-None"),
    ],
)
def test_encoding_with_an_argument_of_the_wrong_type_raises_type_error(core: ModuleType, args: tuple[object, ...]) -> None:
    with pytest.raises(TypeError):
        core.encode_token(*args)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((None, "lf1", {}), id="token-None"),
        pytest.param((b"lf1.k1.YQ.AA", "lf1", {}), id="token-bytes"),
        pytest.param(("lf1.k1.YQ.AA", None, {}), id="kind-None"),
        pytest.param(("lf1.k1.YQ.AA", "lf1", None), id="keys-None"),
        pytest.param(("lf1.k1.YQ.AA", "lf1", [("k1", b"")]), id="keys-list"),
    ],
)
def test_decoding_with_an_argument_of_the_wrong_type_raises_type_error(core: ModuleType, args: tuple[object, ...]) -> None:
    with pytest.raises(TypeError):
        core.decode_token(*args)


# --- decode_tokens -----------------------------------------------------------------------------------------


def _mixed_tokens(core: ModuleType) -> list[str]:
    good = core.encode_token("lf1", "k1", PAYLOAD, SEED)
    return [
        good,
        "lf1.k1.YQ==." + b64(bytes(64)),  # malformed
        core.encode_token("lf1", "k9", b"unknown kid", SEED),  # unknown key
        core.encode_token("ls1", "k1", b"other kind", SEED),  # wrong kind
        "lf1" + core.encode_token("ls1", "k1", b"relabelled", SEED)[3:],  # bad signature
        core.encode_token("lf1", "k2", b"", SECOND_SEED),
        "x" * (MAX + 1),  # malformed: too long
        core.encode_token("lf1", "k1", b"foreign", OTHER_TENANT_SEED),  # bad signature
        "\ud800",  # malformed: not ASCII
        good,
    ]


def test_decode_tokens_returns_payloads_and_error_instances_in_order(core: ModuleType) -> None:
    results = core.decode_tokens(_mixed_tokens(core), "lf1", keys_for(core))
    assert type(results) is list
    assert [type(r) for r in results] == [
        bytes,
        MalformedTokenError,
        UnknownKeyError,
        WrongTokenKindError,
        BadSignatureError,
        bytes,
        MalformedTokenError,
        BadSignatureError,
        MalformedTokenError,
        bytes,
    ]
    assert results[0] == results[9] == PAYLOAD
    assert results[5] == b""


def test_decode_tokens_gives_for_each_token_what_decode_token_raises(core: ModuleType) -> None:
    tokens = _mixed_tokens(core)
    keys = keys_for(core)
    results = core.decode_tokens(tokens, "lf1", keys)
    assert len(results) == len(tokens)
    for token, result in zip(tokens, results):
        error = raised_by(lambda: core.decode_token(token, "lf1", keys))
        if error is None:
            assert result == core.decode_token(token, "lf1", keys)
        else:
            assert isinstance(error, TokenError)
            assert type(result) is type(error)
            assert str(result) == str(error)
            assert result.args == error.args
            assert result.code == error.code


def test_decode_tokens_of_nothing_is_an_empty_list(core: ModuleType) -> None:
    assert core.decode_tokens([], "lf1", keys_for(core)) == []
    assert core.decode_tokens((), "lf1", {}) == []


def test_decode_tokens_of_many_tokens_finds_exactly_the_bad_ones(core: ModuleType) -> None:
    keys = keys_for(core)
    tokens, expected = [], []
    for i in range(150):
        seed = SEED if i % 3 else SECOND_SEED
        token = core.encode_token("lf1", "k1" if i % 3 else "k2", b"payload %d" % i, seed)
        if i in {3, 64, 65, 100, 149}:
            token = core.encode_token("lf1", "k1" if i % 3 else "k2", b"payload %d" % i, OTHER_TENANT_SEED)
        tokens.append(token)
        expected.append(BadSignatureError if i in {3, 64, 65, 100, 149} else b"payload %d" % i)
    results = core.decode_tokens(tokens, "lf1", keys)
    assert [type(r) if isinstance(r, Exception) else r for r in results] == expected


def test_decode_tokens_with_a_non_str_token_raises_type_error(core: ModuleType) -> None:
    good = core.encode_token("lf1", "k1", PAYLOAD, SEED)
    with pytest.raises(TypeError):
        core.decode_tokens([good, None], "lf1", keys_for(core))
    with pytest.raises(TypeError):
        core.decode_tokens([good.encode()], "lf1", keys_for(core))


@pytest.mark.parametrize("tokens", [None, "lf1.k1.YQ.AA", b"lf1", iter([]), {"a": 1}])
def test_decode_tokens_of_a_non_sequence_raises_type_error(core: ModuleType, tokens: object) -> None:
    with pytest.raises(TypeError):
        core.decode_tokens(tokens, "lf1", keys_for(core))


# --- no single bit goes unnoticed --------------------------------------------------------------------------


def _flip(token: str, position: int, bit: int) -> str:
    return token[:position] + chr(ord(token[position]) ^ (1 << bit)) + token[position + 1 :]


def test_every_single_bit_flip_of_every_character_of_a_token_is_refused(core: ModuleType) -> None:
    token = core.encode_token("en1", "k1", b"payload bytes \x00\xff", SEED)
    keys = {"k1": core.public_key(SEED), "k0": core.public_key(SEED), "j1": core.public_key(SEED)}
    assert core.decode_token(token, "en1", keys) == b"payload bytes \x00\xff"
    refused = 0
    for position in range(len(token)):
        for bit in range(8):
            flipped = _flip(token, position, bit)
            assert flipped != token
            error = raised_by(lambda: core.decode_token(flipped, "en1", keys))
            assert isinstance(error, TokenError), (position, bit, flipped, error)
            refused += 1
    assert refused == len(token) * 8


KINDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
KIDS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=64)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=KINDS, kid=KIDS, payload=st.binary(max_size=64), data=st.data())
def test_flipping_any_single_bit_of_a_valid_token_is_always_refused_with_a_token_error(
    core: ModuleType, kind: str, kid: str, payload: bytes, data: st.DataObject
) -> None:
    token = core.encode_token(kind, kid, payload, SEED)
    keys = {kid: core.public_key(SEED)}
    assert core.decode_token(token, kind, keys) == payload
    position = data.draw(st.integers(0, len(token) - 1), label="position")
    bit = data.draw(st.integers(0, 7), label="bit")
    flipped = _flip(token, position, bit)
    error = raised_by(lambda: core.decode_token(flipped, kind, keys))
    assert isinstance(error, TokenError), (flipped, error)
