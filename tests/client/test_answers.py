"""The SDK's verification of signed answers: only a genuine answer to this very request is accepted."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from licensor import _impl as core
from licensor.errors import BadSignatureError, MalformedTokenError, TokenError, UnknownKeyError, WrongTokenKindError
from licensor.tokens import read_document, sign_document
from licensor_client.answers import AnswerRejectedError, answer_document, verify_answer
from licensor_client.tokens import canonical_json

NOW = 1_795_000_000
SEED = bytes(range(32))
OTHER_TENANT_SEED = bytes(range(1, 33))
KEYS = {"key_a": core.public_key(SEED)}
VERDICT = {"code": "VALID", "valid": True, "license_id": "lic_1", "entitlements": [], "terms": {}}


def _answer(nonce: str = "n-1", path: str = "/v1/check", issued_at: int = NOW, kind: str = "rs1", seed: bytes = SEED) -> str:
    return sign_document(kind, "key_a", seed, answer_document(nonce, path, issued_at, VERDICT))


def test_a_genuine_answer_gives_its_verdict() -> None:
    assert verify_answer(_answer(), KEYS, nonce="n-1", path="/v1/check", now=NOW + 10) == VERDICT


def test_an_answer_to_another_nonce_is_rejected() -> None:
    with pytest.raises(AnswerRejectedError) as rejected:
        verify_answer(_answer(nonce="n-2"), KEYS, nonce="n-1", path="/v1/check", now=NOW)
    assert rejected.value.code == "NONCE_MISMATCH"


def test_an_answer_for_another_path_is_rejected() -> None:
    with pytest.raises(AnswerRejectedError) as rejected:
        verify_answer(_answer(path="/v1/entitlements/query"), KEYS, nonce="n-1", path="/v1/check", now=NOW)
    assert rejected.value.code == "PATH_MISMATCH"


@pytest.mark.parametrize("age", [-301, 301, 10**9])
def test_a_stale_or_future_answer_is_rejected(age: int) -> None:
    with pytest.raises(AnswerRejectedError) as rejected:
        verify_answer(_answer(), KEYS, nonce="n-1", path="/v1/check", now=NOW + age)
    assert rejected.value.code == "ANSWER_STALE"


def test_an_answer_signed_with_another_tenants_key_is_rejected() -> None:
    with pytest.raises(BadSignatureError):
        verify_answer(_answer(seed=OTHER_TENANT_SEED), KEYS, nonce="n-1", path="/v1/check", now=NOW)
    with pytest.raises(UnknownKeyError):
        verify_answer(_answer(), {"key_b": core.public_key(OTHER_TENANT_SEED)}, nonce="n-1", path="/v1/check", now=NOW)


def test_a_token_of_another_kind_is_rejected() -> None:
    with pytest.raises(WrongTokenKindError):
        verify_answer(_answer(kind="en1"), KEYS, nonce="n-1", path="/v1/check", now=NOW)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_single_bit_flip_of_an_answer_is_rejected(data: st.DataObject) -> None:
    token = _answer()
    position = data.draw(st.integers(0, len(token) - 1))
    bit = data.draw(st.integers(0, 6))  # a bit of the 7-bit ASCII character
    changed = token[:position] + chr(ord(token[position]) ^ (1 << bit)) + token[position + 1 :]
    with pytest.raises(TokenError):
        verify_answer(changed, KEYS, nonce="n-1", path="/v1/check", now=NOW)


def test_a_payload_that_is_not_canonical_json_is_malformed() -> None:
    token = core.encode_token("rs1", "key_a", b'{"nonce": "n-1"}', SEED)  # spaces: not canonical
    with pytest.raises(MalformedTokenError, match="canonical"):
        read_document(token, "rs1", KEYS)
    with pytest.raises(MalformedTokenError, match="not JSON"):
        read_document(core.encode_token("rs1", "key_a", b"\xff", SEED), "rs1", KEYS)


def test_the_server_keeps_each_key_expanded_and_signs_with_it_as_with_the_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    from licensor import tokens

    monkeypatch.setattr(tokens, "_signers", {})
    monkeypatch.setattr(tokens, "MAX_SIGNERS", 2)
    first = tokens.signer_of(SEED)
    assert tokens.signer_of(SEED) is first  # kept, not expanded again
    document = answer_document("n-1", "/v1/check", NOW, VERDICT)
    assert _answer() == core.encode_token("rs1", "key_a", canonical_json(document).encode(), SEED)
    tokens.signer_of(OTHER_TENANT_SEED)
    tokens.signer_of(bytes(32))  # a third key: the kept ones are dropped, never more than MAX_SIGNERS
    assert len(tokens._signers) <= 2 and tokens.signer_of(SEED) is not first
    assert tokens.signer_of(SEED).public_key() == KEYS["key_a"]
