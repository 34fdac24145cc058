"""Verdict codes are defined and described in one place, and shown the same way everywhere."""

from licensor.verdict import DESCRIPTIONS, Code, Entitlement, Verdict


def test_every_verdict_code_is_upper_case_and_described() -> None:
    assert set(DESCRIPTIONS) == set(Code)
    for code in Code:
        assert code.value == code.name and code.value.isupper()
        assert DESCRIPTIONS[code].endswith(".")


def test_a_verdict_is_valid_only_when_its_code_is_valid() -> None:
    assert Verdict(Code.VALID).valid
    assert not any(Verdict(code).valid for code in Code if code is not Code.VALID)


def test_a_verdict_as_json_carries_its_code_description_and_entitlements() -> None:
    shown = Verdict(Code.EXPIRED, license_id="lic_x", entitlements=(Entitlement("export", 3),), terms={"seats": 2}).as_json()
    assert shown == {
        "code": "EXPIRED",
        "valid": False,
        "message": DESCRIPTIONS[Code.EXPIRED],
        "license_id": "lic_x",
        "entitlements": [{"feature": "export", "quantity": 3}],
        "terms": {"seats": 2},
    }
