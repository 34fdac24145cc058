"""Project Wycheproof's Ed25519 verification vectors (../shared/vectors, see its README): every ``valid``
case verifies and every other case is rejected, one by one and as a single batch, on every core."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from types import ModuleType

from tests.conftest import VECTORS

WYCHEPROOF_FILE = os.path.join(VECTORS, "wycheproof_ed25519_test.json")
EXPECTED_CASES = 151


@dataclass(frozen=True)
class Case:
    tc_id: int
    comment: str
    flags: tuple[str, ...]
    public_key: bytes
    message: bytes
    signature: bytes
    result: str

    @property
    def valid(self) -> bool:
        return self.result == "valid"

    @property
    def item(self) -> tuple[bytes, bytes, bytes]:
        return self.public_key, self.message, self.signature


def _load() -> tuple[dict[str, object], list[Case]]:
    with open(WYCHEPROOF_FILE, encoding="utf-8") as handle:
        suite = json.load(handle)
    cases = [
        Case(
            tc_id=test["tcId"],
            comment=test["comment"],
            flags=tuple(test["flags"]),
            public_key=bytes.fromhex(group["publicKey"]["pk"]),
            message=bytes.fromhex(test["msg"]),
            signature=bytes.fromhex(test["sig"]),
            result=test["result"],
        )
        for group in suite["testGroups"]
        for test in group["tests"]
    ]
    return suite, cases


SUITE, CASES = _load()


def test_the_vector_file_holds_exactly_151_distinct_cases() -> None:
    assert SUITE["algorithm"] == "EDDSA"
    assert SUITE["numberOfTests"] == EXPECTED_CASES
    assert len(CASES) == EXPECTED_CASES
    assert len({case.tc_id for case in CASES}) == EXPECTED_CASES


def test_the_vector_file_has_both_valid_and_invalid_cases() -> None:
    results = {case.result for case in CASES}
    assert results <= {"valid", "invalid", "acceptable"}
    valid = sum(case.valid for case in CASES)
    assert 0 < valid < EXPECTED_CASES
    assert all(len(case.public_key) == 32 for case in CASES)


def test_every_wycheproof_case_verifies_exactly_as_its_result_says(core: ModuleType) -> None:
    mismatches = []
    passing = 0
    for case in CASES:
        got = core.verify(*case.item)
        assert type(got) is bool
        if got == case.valid:
            passing += 1
        else:
            mismatches.append((case.tc_id, case.result, got, case.comment, case.flags))
    assert mismatches == []
    assert passing == EXPECTED_CASES


def test_verify_batch_over_all_wycheproof_cases_at_once_gives_the_same_list(core: ModuleType) -> None:
    expected = [case.valid for case in CASES]
    got = core.verify_batch([case.item for case in CASES])
    assert len(got) == EXPECTED_CASES
    mismatches = [(case.tc_id, case.result, result) for case, result in zip(CASES, got) if result != case.valid]
    assert mismatches == []
    assert got == expected
    assert got == [core.verify(*case.item) for case in CASES]
    assert sum(result == case.valid for case, result in zip(CASES, got)) == EXPECTED_CASES


def test_verify_batch_over_only_the_valid_wycheproof_cases_is_all_true(core: ModuleType) -> None:
    valid = [case.item for case in CASES if case.valid]
    assert core.verify_batch(valid) == [True] * len(valid)


def test_verify_batch_over_the_wycheproof_cases_in_reverse_order_gives_the_reversed_list(core: ModuleType) -> None:
    reverse = CASES[::-1]
    assert core.verify_batch([case.item for case in reverse]) == [case.valid for case in reverse]
