"""Strict Ed25519 on every core: generate_seed, public_key, sign, verify and verify_batch.

The strictness rules come from ``_core.pyi``: a signature verifies only if the key is 32 bytes and the
signature 64, ``A`` and ``R`` are canonical encodings of points that are not of small order, ``S < L``, and
``[S]B = R + [k]A`` holds without the cofactor. Where a rule is tested, the signature is built so that a
lenient verifier *would* accept it (checked with the independent model in ``_curve``), so the refusal is
the rule's doing and not an accident of bad arithmetic.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from types import ModuleType

import pytest
from licensor.errors import InvalidInputError, LicensorError

from . import _curve as curve

# RFC 8032 section 7.1, TEST 1, TEST 2 and TEST 3: (secret seed, public key, message, signature).
RFC8032_VECTORS = [
    pytest.param(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        id="rfc8032-test1",
    ),
    pytest.param(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        id="rfc8032-test2",
    ),
    pytest.param(
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        id="rfc8032-test3",
    ),
]

SEED = bytes(range(32))
OTHER_SEED = bytes(range(100, 132))
SECRET = curve.Secret.from_seed(SEED)
NONCE = 0x1234_5678_9ABC_DEF0_1122_3344  # an arbitrary r for hand-built signatures


def _seed(n: int) -> bytes:
    return bytes([n]) * 32


def _signed(core: ModuleType, seed: bytes, message: bytes) -> tuple[bytes, bytes, bytes]:
    return core.public_key(seed), message, core.sign(seed, message)


# --- known answers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032_VECTORS)
def test_public_key_of_an_rfc8032_seed_is_its_published_key(
    core: ModuleType, seed: str, public: str, message: str, signature: str
) -> None:
    assert core.public_key(bytes.fromhex(seed)) == bytes.fromhex(public)


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032_VECTORS)
def test_signature_of_an_rfc8032_message_is_its_published_signature(
    core: ModuleType, seed: str, public: str, message: str, signature: str
) -> None:
    assert core.sign(bytes.fromhex(seed), bytes.fromhex(message)) == bytes.fromhex(signature)


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032_VECTORS)
def test_published_rfc8032_signature_verifies_and_only_for_its_own_message_and_key(
    core: ModuleType, seed: str, public: str, message: str, signature: str
) -> None:
    key, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert core.verify(key, msg, sig) is True
    assert core.verify(key, msg + b"\x00", sig) is False
    assert core.verify(core.public_key(OTHER_SEED), msg, sig) is False
    assert core.verify_batch([(key, msg, sig)]) == [True]


def test_the_independent_model_agrees_with_rfc8032_so_hand_built_signatures_can_be_trusted() -> None:
    for vector in RFC8032_VECTORS:
        seed, public, message, signature = (bytes.fromhex(v) for v in vector.values)
        assert curve.Secret.from_seed(seed).public == public
        assert curve.sign_reference(seed, message) == signature
        assert curve.equation_holds(public, message, signature)


# --- seeds, keys and signatures ----------------------------------------------------------------------------


def test_generate_seed_returns_32_fresh_random_bytes(core: ModuleType) -> None:
    seeds = {core.generate_seed() for _ in range(16)}
    assert len(seeds) == 16
    for seed in seeds:
        assert type(seed) is bytes and len(seed) == 32
        assert core.verify(core.public_key(seed), b"m", core.sign(seed, b"m")) is True


def test_public_key_is_32_bytes_and_signature_64_bytes(core: ModuleType) -> None:
    key = core.public_key(SEED)
    signature = core.sign(SEED, b"hello")
    assert type(key) is bytes and len(key) == 32
    assert type(signature) is bytes and len(signature) == 64
    assert key == SECRET.public


def test_signing_is_deterministic_and_matches_rfc8032_section_5_1_6(core: ModuleType) -> None:
    for message in (b"", b"a", bytes(range(256)), b"x" * 10_000):
        first = core.sign(SEED, message)
        assert core.sign(SEED, message) == first
        assert first == curve.sign_reference(SEED, message)


def test_different_messages_and_seeds_give_different_signatures(core: ModuleType) -> None:
    signatures = {core.sign(seed, message) for seed in (SEED, OTHER_SEED) for message in (b"a", b"b", b"")}
    assert len(signatures) == 6


def test_signature_verifies_only_under_its_own_key_and_message(core: ModuleType) -> None:
    key, message, signature = _signed(core, SEED, b"the message")
    assert core.verify(key, message, signature) is True
    assert core.verify(core.public_key(OTHER_SEED), message, signature) is False
    assert core.verify(key, b"the messagE", signature) is False
    assert core.verify(key, b"", signature) is False


def test_every_single_bit_flip_of_a_signature_is_rejected(core: ModuleType) -> None:
    key, message, signature = _signed(core, SEED, b"flip me")
    for position in range(64):
        for bit in range(8):
            changed = bytearray(signature)
            changed[position] ^= 1 << bit
            assert core.verify(key, message, bytes(changed)) is False, (position, bit)


def test_every_single_bit_flip_of_a_public_key_is_rejected(core: ModuleType) -> None:
    key, message, signature = _signed(core, SEED, b"flip the key")
    for position in range(32):
        for bit in range(8):
            changed = bytearray(key)
            changed[position] ^= 1 << bit
            assert core.verify(bytes(changed), message, signature) is False, (position, bit)


@pytest.mark.parametrize("length", [0, 1, 31, 33, 64, 1000])
def test_public_key_of_wrong_length_is_rejected_not_raised(core: ModuleType, length: int) -> None:
    key, message, signature = _signed(core, SEED, b"m")
    wrong = (key * 40)[:length]
    assert core.verify(wrong, message, signature) is False
    assert core.verify_batch([(wrong, message, signature)]) == [False]


def test_public_key_with_a_trailing_or_missing_byte_is_rejected_not_raised(core: ModuleType) -> None:
    key, message, signature = _signed(core, SEED, b"m")
    assert core.verify(key + b"\x00", message, signature) is False
    assert core.verify(key[:-1], message, signature) is False
    assert core.verify(b"\x00" + key, message, signature) is False


@pytest.mark.parametrize("length", [0, 1, 32, 63, 65, 128])
def test_signature_of_wrong_length_is_rejected_not_raised(core: ModuleType, length: int) -> None:
    key, message, signature = _signed(core, SEED, b"m")
    wrong = (signature * 3)[:length]
    assert core.verify(key, message, wrong) is False
    assert core.verify_batch([(key, message, wrong)]) == [False]


def test_valid_signature_with_garbage_appended_or_a_byte_cut_is_rejected_not_raised(core: ModuleType) -> None:
    key, message, signature = _signed(core, SEED, b"m")
    assert core.verify(key, message, signature + b"\x00") is False
    assert core.verify(key, message, signature[:-1]) is False
    assert core.verify(key, message, signature[:32]) is False
    assert core.verify(key, message, signature + signature) is False


# --- strictness: S, non-canonical encodings, small order, torsion -----------------------------------------


@pytest.mark.parametrize("message", [b"", b"m", b"malleable"])
def test_non_canonical_s_that_is_s_plus_l_is_rejected(core: ModuleType, message: bytes) -> None:
    key, _, signature = _signed(core, SEED, message)
    malleated = curve.add_l_to_s(signature)
    assert curve.equation_holds(key, message, malleated)  # a verifier without the S < L check accepts it
    assert core.verify(key, message, signature) is True
    assert core.verify(key, message, malleated) is False
    assert core.verify_batch([(key, message, malleated), (key, message, signature)]) == [False, True]


def test_s_equal_to_l_or_all_ones_is_rejected(core: ModuleType) -> None:
    key, message, signature = _signed(core, SEED, b"m")
    for s in (curve.L, 2**256 - 1, 2**255, 2**253):
        assert core.verify(key, message, signature[:32] + s.to_bytes(32, "little")) is False


def _non_canonical(y: int, sign: int) -> bytes:
    return (y | (sign << 255)).to_bytes(32, "little")


# Non-canonical encodings of points a key holder can still make signatures for, with the challenge
# divisor that makes [k]A vanish: (encoding, divisor).
NON_CANONICAL_SMALL_POINTS = [
    pytest.param(_non_canonical(1, 1), 1, id="y=1-with-sign-bit(identity)"),
    pytest.param(_non_canonical(curve.P + 1, 0), 1, id="y=p+1(identity)"),
    pytest.param(_non_canonical(curve.P + 1, 1), 1, id="y=p+1-with-sign-bit(identity)"),
    pytest.param(_non_canonical(curve.P - 1, 1), 2, id="y=p-1-with-sign-bit(order-2)"),
    pytest.param(_non_canonical(curve.P, 0), 4, id="y=p(order-4)"),
    pytest.param(_non_canonical(curve.P, 1), 4, id="y=p-with-sign-bit(order-4)"),
]


@pytest.mark.parametrize(("encoding", "divisor"), NON_CANONICAL_SMALL_POINTS)
def test_non_canonical_public_key_encoding_is_rejected_even_when_the_equation_holds(
    core: ModuleType, encoding: bytes, divisor: int
) -> None:
    r_encoding = curve.encode(curve.mul(NONCE, curve.B))
    message = curve.message_with_challenge_divisible_by(divisor, r_encoding, encoding)
    signature = curve.forge(a_encoding=encoding, a_scalar=0, r_encoding=r_encoding, r_scalar=NONCE, message=message)
    assert curve.equation_holds(encoding, message, signature)
    assert core.verify(encoding, message, signature) is False
    assert core.verify_batch([(encoding, message, signature)]) == [False]


@pytest.mark.parametrize(("encoding", "divisor"), NON_CANONICAL_SMALL_POINTS)
def test_non_canonical_commitment_encoding_is_rejected_even_when_an_equation_holds(
    core: ModuleType, encoding: bytes, divisor: int
) -> None:
    key = SECRET.public
    message = b"non-canonical R"
    # S = k a: R is (a non-canonical encoding of) a point of small order, so [8]R vanishes and the
    # cofactored equation holds; for the identity the cofactorless one holds as well.
    signature = curve.forge(a_encoding=key, a_scalar=SECRET.scalar, r_encoding=encoding, r_scalar=0, message=message)
    assert curve.cofactored_equation_holds(key, message, signature)
    if divisor == 1:
        assert curve.equation_holds(key, message, signature)
    assert core.verify(key, message, signature) is False
    assert core.verify_batch([(key, message, signature)]) == [False]


def test_every_encoding_with_y_at_least_p_is_rejected_as_key_and_as_commitment(core: ModuleType) -> None:
    key, message, signature = _signed(core, SEED, b"m")
    encodings = [_non_canonical(y, sign) for y in range(curve.P, 2**255) for sign in (0, 1)]
    assert len(encodings) == 38
    items = []
    for encoding in encodings:
        items.append((encoding, message, signature))
        items.append((key, message, encoding + signature[32:]))
    assert [core.verify(*item) for item in items] == [False] * len(items)
    assert core.verify_batch(items) == [False] * len(items)


def test_the_eight_small_order_encodings_are_the_whole_eight_torsion() -> None:
    assert len(curve.SMALL_ORDER_ENCODINGS) == 8
    for encoding in curve.SMALL_ORDER_ENCODINGS:
        point = curve.decode_lenient(encoding)
        assert point is not None and curve.order_divides(point, 8)


@pytest.mark.parametrize("encoding", curve.SMALL_ORDER_ENCODINGS, ids=lambda e: e.hex()[:8] + "-" + e.hex()[-2:])
def test_small_order_public_key_is_rejected_even_when_the_equation_holds(core: ModuleType, encoding: bytes) -> None:
    r_encoding = curve.encode(curve.mul(NONCE, curve.B))
    # A challenge divisible by 8 makes [k]A the identity, so S = r satisfies [S]B = R + [k]A.
    message = curve.message_with_challenge_divisible_by(8, r_encoding, encoding)
    signature = curve.forge(a_encoding=encoding, a_scalar=0, r_encoding=r_encoding, r_scalar=NONCE, message=message)
    assert curve.equation_holds(encoding, message, signature)
    assert core.verify(encoding, message, signature) is False
    assert core.verify_batch([(encoding, message, signature)]) == [False]


@pytest.mark.parametrize("encoding", curve.SMALL_ORDER_ENCODINGS, ids=lambda e: e.hex()[:8] + "-" + e.hex()[-2:])
def test_small_order_commitment_is_rejected_even_when_the_cofactored_equation_holds(core: ModuleType, encoding: bytes) -> None:
    key = SECRET.public
    message = b"small-order R"
    signature = curve.forge(a_encoding=key, a_scalar=SECRET.scalar, r_encoding=encoding, r_scalar=0, message=message)
    assert curve.cofactored_equation_holds(key, message, signature)
    assert core.verify(key, message, signature) is False
    good = _signed(core, SEED, b"good")
    assert core.verify_batch([(key, message, signature), good, (key, message, signature)]) == [False, True, False]


def test_small_order_key_with_an_all_zero_signature_is_rejected(core: ModuleType) -> None:
    for encoding in curve.SMALL_ORDER_ENCODINGS:
        for signature in (bytes(64), encoding + bytes(32), curve.SMALL_ORDER_ENCODINGS[0] + bytes(32)):
            assert core.verify(encoding, b"", signature) is False
            assert core.verify(encoding, b"any message", signature) is False


@pytest.mark.parametrize("torsion", range(1, 8))
def test_commitment_with_a_torsion_component_is_rejected_alone_and_in_a_batch(core: ModuleType, torsion: int) -> None:
    key = SECRET.public
    message = b"torsion in R"
    r_encoding = curve.encode(curve.add(curve.mul(NONCE, curve.B), curve.TORSION[torsion]))
    signature = curve.forge(a_encoding=key, a_scalar=SECRET.scalar, r_encoding=r_encoding, r_scalar=NONCE, message=message)
    # Only the cofactor hides the torsion: a cofactored (batch) equation would accept this signature.
    assert curve.cofactored_equation_holds(key, message, signature)
    assert not curve.equation_holds(key, message, signature)
    assert core.verify(key, message, signature) is False
    goods = [_signed(core, SEED, b"good %d" % i) for i in range(9)]
    batch = [*goods[:4], (key, message, signature), *goods[4:]]
    assert core.verify_batch(batch) == [True] * 4 + [False] + [True] * 5


def test_key_with_a_torsion_component_follows_the_cofactorless_equation(core: ModuleType) -> None:
    key = curve.encode(curve.add(curve.mul(SECRET.scalar, curve.B), curve.TORSION[1]))  # order 8L: not small
    r_encoding = curve.encode(curve.mul(NONCE, curve.B))
    items, expected = [], []
    for i in range(6):
        for divisible in (True, False):
            pick = curve.message_with_challenge_divisible_by if divisible else curve.message_with_challenge_not_divisible_by
            message = pick(8, r_encoding, key, prefix=b"t%d-" % i)
            signature = curve.forge(
                a_encoding=key, a_scalar=SECRET.scalar, r_encoding=r_encoding, r_scalar=NONCE, message=message
            )
            assert curve.cofactored_equation_holds(key, message, signature)
            assert curve.equation_holds(key, message, signature) is divisible
            items.append((key, message, signature))
            expected.append(divisible)
    assert [core.verify(*item) for item in items] == expected
    assert core.verify_batch(items) == expected


# --- verify_batch ------------------------------------------------------------------------------------------


def test_verify_batch_of_nothing_is_an_empty_list(core: ModuleType) -> None:
    assert core.verify_batch([]) == []
    assert core.verify_batch(()) == []


def test_verify_batch_of_one_good_item_is_true_and_of_one_bad_item_false(core: ModuleType) -> None:
    key, message, signature = _signed(core, SEED, b"one")
    assert core.verify_batch([(key, message, signature)]) == [True]
    assert core.verify_batch([(key, b"two", signature)]) == [False]


def test_verify_batch_returns_a_list_of_bools(core: ModuleType) -> None:
    result = core.verify_batch([_signed(core, SEED, b"a"), (b"", b"", b"")])
    assert type(result) is list
    assert [type(value) for value in result] == [bool, bool]
    assert result == [True, False]


def test_verify_batch_accepts_any_sequence_of_tuples(core: ModuleType) -> None:
    items = (_signed(core, SEED, b"a"), _signed(core, OTHER_SEED, b"b"))
    assert core.verify_batch(items) == [True, True]
    assert core.verify_batch(list(items)) == [True, True]


def test_verify_batch_of_mixed_good_and_bad_items_equals_verifying_each(core: ModuleType) -> None:
    key, message, signature = _signed(core, SEED, b"base")
    other_key = core.public_key(OTHER_SEED)
    items = [
        (key, message, signature),
        (key, message + b"!", signature),  # wrong message
        (other_key, message, signature),  # wrong key
        _signed(core, OTHER_SEED, b"fine"),
        (key, message, curve.add_l_to_s(signature)),  # non-canonical S
        (key[:31], message, signature),  # short key
        (key, message, signature[:63]),  # short signature
        (curve.SMALL_ORDER_ENCODINGS[0], message, signature),  # small-order key
        (key, message, curve.SMALL_ORDER_ENCODINGS[2] + signature[32:]),  # small-order R
        _signed(core, _seed(7), b""),
        (key, message, bytes(64)),
        (b"\xff" * 32, message, signature),  # y >= p
    ]
    expected = [True, False, False, True, False, False, False, False, False, True, False, False]
    assert [core.verify(*item) for item in items] == expected
    assert core.verify_batch(items) == expected


def test_verify_batch_with_one_key_repeated_finds_exactly_the_bad_items(core: ModuleType) -> None:
    key = core.public_key(SEED)
    items, expected = [], []
    for i in range(40):
        message = b"repeated key %d" % i
        signature = core.sign(SEED, message)
        bad = i in {0, 13, 14, 39}
        if bad:
            signature = signature[:40] + bytes([signature[40] ^ 0x01]) + signature[41:]
        items.append((key, message, signature))
        expected.append(not bad)
    assert core.verify_batch(items) == expected
    assert core.verify_batch(items) == [core.verify(*item) for item in items]


def test_verify_batch_of_the_same_item_repeated(core: ModuleType) -> None:
    good = _signed(core, SEED, b"same")
    bad = (good[0], b"other", good[2])
    assert core.verify_batch([good] * 10) == [True] * 10
    assert core.verify_batch([bad] * 10) == [False] * 10
    assert core.verify_batch([good, bad] * 5) == [True, False] * 5


def test_verify_batch_where_every_item_is_bad(core: ModuleType) -> None:
    items = [(core.public_key(_seed(i)), b"m%d" % i, core.sign(_seed(i + 1), b"m%d" % i)) for i in range(20)]
    assert core.verify_batch(items) == [False] * 20


@pytest.mark.parametrize("rng_seed", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [65, 100, 200])
def test_verify_batch_of_more_than_64_items_finds_a_few_bad_ones_at_random_positions(
    core: ModuleType, size: int, rng_seed: int
) -> None:
    rng = random.Random(rng_seed * 1000 + size)
    seeds = [_seed(i) for i in range(5)]
    keys = [core.public_key(seed) for seed in seeds]
    bad_positions = set(rng.sample(range(size), rng.randint(1, 5)))
    items, expected = [], []
    for position in range(size):
        which = rng.randrange(5)
        message = rng.randbytes(rng.randrange(0, 50))
        signature = core.sign(seeds[which], message)
        if position in bad_positions:
            spoil = rng.randrange(3)
            if spoil == 0:
                message = message + b"x"
            elif spoil == 1:
                signature = signature[:10] + bytes([signature[10] ^ 0x80]) + signature[11:]
            else:
                which = (which + 1) % 5
        items.append((keys[which], message, signature))
        expected.append(position not in bad_positions)
    assert core.verify_batch(items) == expected
    assert core.verify_batch(items) == [core.verify(*item) for item in items]


def test_verify_batch_of_only_malformed_items_is_all_false(core: ModuleType) -> None:
    items = [(b"", b"", b""), (b"k" * 32, b"", b"s" * 64), (bytes(32), b"", bytes(64))] * 30
    assert core.verify_batch(items) == [False] * 90


# --- argument types and values -------------------------------------------------------------------------------


WRONG_BYTES = [
    pytest.param(lambda b: bytearray(b), id="bytearray"),
    pytest.param(lambda b: memoryview(b), id="memoryview"),
    pytest.param(lambda b: b.hex(), id="str"),
    pytest.param(lambda b: None, id="None"),
    pytest.param(lambda b: list(b), id="list"),
]


@pytest.mark.parametrize("convert", WRONG_BYTES)
@pytest.mark.parametrize("position", [0, 1, 2])
def test_verify_with_a_non_bytes_argument_raises_type_error(
    core: ModuleType, position: int, convert: Callable[[bytes], object]
) -> None:
    args = list(_signed(core, SEED, b"m"))
    args[position] = convert(args[position])
    with pytest.raises(TypeError):
        core.verify(*args)


@pytest.mark.parametrize("convert", WRONG_BYTES)
def test_sign_and_public_key_with_a_non_bytes_seed_raise_type_error(core: ModuleType, convert: Callable[[bytes], object]) -> None:
    with pytest.raises(TypeError):
        core.public_key(convert(SEED))
    with pytest.raises(TypeError):
        core.sign(convert(SEED), b"m")


@pytest.mark.parametrize("convert", WRONG_BYTES)
def test_sign_with_a_non_bytes_message_raises_type_error(core: ModuleType, convert: Callable[[bytes], object]) -> None:
    with pytest.raises(TypeError):
        core.sign(SEED, convert(b"message"))


@pytest.mark.parametrize(
    "item",
    [
        pytest.param(lambda k, m, s: [k, m, s], id="list-instead-of-tuple"),
        pytest.param(lambda k, m, s: (k, m), id="tuple-of-2"),
        pytest.param(lambda k, m, s: (k, m, s, s), id="tuple-of-4"),
        pytest.param(lambda k, m, s: (), id="empty-tuple"),
        pytest.param(lambda k, m, s: None, id="None"),
        pytest.param(lambda k, m, s: (bytearray(k), m, s), id="bytearray-key"),
        pytest.param(lambda k, m, s: (k, m.decode(), s), id="str-message"),
        pytest.param(lambda k, m, s: (k, m, None), id="None-signature"),
    ],
)
def test_verify_batch_with_a_malformed_item_raises_type_error(
    core: ModuleType, item: Callable[[bytes, bytes, bytes], object]
) -> None:
    good = _signed(core, SEED, b"m")
    with pytest.raises(TypeError):
        core.verify_batch([good, item(*good), good])


@pytest.mark.parametrize(
    "items",
    [
        pytest.param(None, id="None"),
        pytest.param(b"", id="bytes"),
        pytest.param("", id="str"),
        pytest.param(iter([]), id="iterator"),
        pytest.param({}, id="dict"),
        pytest.param(42, id="int"),
    ],
)
def test_verify_batch_of_a_non_sequence_raises_type_error(core: ModuleType, items: object) -> None:
    with pytest.raises(TypeError):
        core.verify_batch(items)


@pytest.mark.parametrize("length", [0, 1, 16, 31, 33, 64])
def test_seed_of_wrong_length_raises_invalid_input_error(core: ModuleType, length: int) -> None:
    seed = bytes(range(length))
    with pytest.raises(InvalidInputError) as raised:
        core.public_key(seed)
    assert raised.value.code == "INVALID_INPUT"
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, LicensorError)
    with pytest.raises(InvalidInputError):
        core.sign(seed, b"m")
