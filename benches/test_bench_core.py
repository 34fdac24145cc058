"""Benchmarks of the core, one group per operation, each run on every core this process offers (``core``).

``make bench`` times them (``--benchmark-only``) and ``benches/ratios.py`` turns the JSON into the native
speed-ups. In ``make test`` they run with ``--benchmark-disable``: each body runs once, as a plain test. So
every benchmark asserts its result after timing it, and the inputs are built outside the timed call.

The inputs are fixed (keys derived from labels, no randomness), so every run times the same work.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from licensor import _impl

MESSAGE_SIZE = 64
BATCH_KEYS = 16  # distinct signers in a batch, cycled
TOKEN_KIND = "lf1"
TOKEN_KID = "lk-2025-02"
INDEX_SIZE = 10_000
THRESHOLD = 0.7
# A few components weigh more than the default 1.0; the rest (of the 8) keep it.
WEIGHTS = {"machine_id": 3.0, "board_serial": 2.0, "disk_serial": 2.0, "mac_address": 1.5}
COMPONENTS = (
    "machine_id",
    "board_serial",
    "disk_serial",
    "mac_address",
    "bios_uuid",
    "hostname",
    "cpu_model",
    "os_version",
)
CHANGED_COMPONENT = "hostname"  # weight 1.0: the presented fingerprint differs from its stored one here only
EXPECTED_ID = "machine-07321"
EXPECTED_SCORE = (sum(WEIGHTS.values()) + (len(COMPONENTS) - len(WEIGHTS)) - 1.0) / (
    sum(WEIGHTS.values()) + (len(COMPONENTS) - len(WEIGHTS))
)  # 11.5 / 12.5

# Rounds for the slow bodies (pure Python: verify_batch_1024 ~200 ms a call). The fast ones use
# pytest-benchmark's own calibration (as many rounds as fit in its default max_time of 1 s).
SLOW_ROUNDS = 10


def _reference() -> ModuleType:
    """The pure-Python core (OpenSSL through ``cryptography``): builds the inputs for both cores."""
    return _impl.implementations()["python"]


def _seed(label: str) -> bytes:
    return hashlib.sha256(f"licensor-bench-seed:{label}".encode()).digest()


def _message(index: int) -> bytes:
    message = hashlib.sha512(f"licensor-bench-message:{index}".encode()).digest()
    assert len(message) == MESSAGE_SIZE
    return message


@functools.cache
def _signed_message() -> tuple[bytes, bytes, bytes, bytes]:
    """(seed, public key, 64-byte message, its signature)."""
    ref = _reference()
    seed = _seed("single")
    message = _message(0)
    return seed, ref.public_key(seed), message, ref.sign(seed, message)


@functools.cache
def _batch(size: int) -> tuple[tuple[bytes, bytes, bytes], ...]:
    """``size`` valid (public key, message, signature) items: distinct messages, BATCH_KEYS keys cycled."""
    ref = _reference()
    seeds = [_seed(f"batch-{k}") for k in range(BATCH_KEYS)]
    keys = [ref.public_key(seed) for seed in seeds]
    items = []
    for i in range(size):
        message = _message(1_000_000 + i)
        items.append((keys[i % BATCH_KEYS], message, ref.sign(seeds[i % BATCH_KEYS], message)))
    return tuple(items)


def _payload() -> bytes:
    """A license-file payload as the gateway signs it: canonical JSON (sorted keys, no spaces), ~300 bytes."""
    document = {
        "customer": "cus_8f3a2c91d04b",
        "expires_at": "2026-12-31T23:59:59Z",
        "features": ["audit-log", "offline-activation", "priority-support"],
        "fingerprint": "a3f9c2e17b0d4e58",
        "issued_at": "2025-02-14T09:30:00Z",
        "license_id": "lic_01HZX3K9Q7M2V5T8R4N6B1C0DE",
        "max_machines": 25,
        "product": "acme-analytics",
        "version": 1,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _hash_value(salt: str, *parts: object) -> str:
    """A salted-hash-like component value: 16 hex characters."""
    text = ":".join(str(part) for part in parts)
    return hashlib.blake2b(text.encode(), key=salt.encode(), digest_size=8).hexdigest()


@functools.cache
def _fingerprints() -> tuple[tuple[str, dict[str, str]], ...]:
    """INDEX_SIZE (id, fingerprint) pairs of 8 components. Most components are unique per machine; the CPU
    model and OS version are shared by many (as they are on real fleets)."""
    salt = "tenant-4d2e"
    stored = []
    for i in range(INDEX_SIZE):
        fingerprint = {}
        for name in COMPONENTS:
            source: object = i
            if name == "cpu_model":
                source = i % 37
            elif name == "os_version":
                source = i % 5
            fingerprint[name] = _hash_value(salt, name, source)
        stored.append((f"machine-{i:05d}", fingerprint))
    return tuple(stored)


def _time(benchmark: Any, function: Callable[..., Any], *args: Any, rounds: int | None = None) -> Any:
    """Time ``function(*args)``; return its result. With ``rounds``, exactly that many rounds of one call
    (after one warm-up round); otherwise pytest-benchmark calibrates."""
    if rounds is None:
        return benchmark(function, *args)
    return benchmark.pedantic(function, args=args, rounds=rounds, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="sign")
def test_sign(benchmark: Any, core: ModuleType) -> None:
    seed, public_key, message, expected = _signed_message()
    signature = _time(benchmark, core.sign, seed, message)
    assert signature == expected  # RFC 8032 signatures are deterministic: both cores make the same bytes
    assert core.verify(public_key, message, signature) is True


@pytest.mark.benchmark(group="verify")
def test_verify(benchmark: Any, core: ModuleType) -> None:
    _, public_key, message, signature = _signed_message()
    assert _time(benchmark, core.verify, public_key, message, signature) is True


def _bench_verify_batch(benchmark: Any, core: ModuleType, size: int, rounds: int | None) -> None:
    items = list(_batch(size))
    benchmark.extra_info["items"] = size
    benchmark.extra_info["distinct_keys"] = BATCH_KEYS
    results = _time(benchmark, core.verify_batch, items, rounds=rounds)
    assert results == [True] * size


@pytest.mark.benchmark(group="verify_batch_64")
def test_verify_batch_64(benchmark: Any, core: ModuleType) -> None:
    _bench_verify_batch(benchmark, core, 64, rounds=None)


@pytest.mark.benchmark(group="verify_batch_1024")
def test_verify_batch_1024(benchmark: Any, core: ModuleType) -> None:
    _bench_verify_batch(benchmark, core, 1024, rounds=SLOW_ROUNDS)


@pytest.mark.benchmark(group="decode_token")
def test_decode_token(benchmark: Any, core: ModuleType) -> None:
    payload = _payload()
    assert 280 <= len(payload) <= 320, len(payload)
    ref = _reference()
    token = ref.encode_token(TOKEN_KIND, TOKEN_KID, payload, _seed(TOKEN_KID))
    # The gateway checks against all of its current keys, looked up by the token's key id.
    public_keys = {kid: ref.public_key(_seed(kid)) for kid in ("lk-2024-08", TOKEN_KID, "lk-2025-08")}
    benchmark.extra_info["token_chars"] = len(token)
    benchmark.extra_info["payload_bytes"] = len(payload)
    assert _time(benchmark, core.decode_token, token, TOKEN_KIND, public_keys) == payload


@pytest.mark.benchmark(group="best_match_10000")
def test_best_match_10000(benchmark: Any, core: ModuleType) -> None:
    index = core.FingerprintIndex(WEIGHTS)
    stored = dict(_fingerprints())
    for id_, fingerprint in stored.items():
        index.add(id_, fingerprint)
    assert len(index) == INDEX_SIZE
    # As the gateway gets it: parsed from a request body, so no string object is shared with the index.
    changed = dict(stored[EXPECTED_ID], **{CHANGED_COMPONENT: _hash_value("tenant-4d2e", CHANGED_COMPONENT, "renamed")})
    presented = json.loads(json.dumps(changed))
    assert presented != stored[EXPECTED_ID]
    benchmark.extra_info["stored"] = INDEX_SIZE
    match = _time(benchmark, index.best_match, presented, THRESHOLD)
    assert match is not None
    assert match[0] == EXPECTED_ID
    assert match[1] == pytest.approx(EXPECTED_SCORE)
