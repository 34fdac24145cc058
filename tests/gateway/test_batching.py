"""Self-keyed tokens (dv1) verified one by one when alone and together in bursts (licensor.batching),
on the core this pass loads. Every result is the one decode_token gives for that token alone."""

from __future__ import annotations

import asyncio

import pytest
from licensor import _impl, batching
from licensor.batching import GATHER_FROM, SelfKeyedTokenReader
from licensor.errors import BadSignatureError, MalformedTokenError, UnknownKeyError, WrongTokenKindError
from licensor_client.activation import DEVICE_REQUEST_KIND, DeviceKey

DEVICES = [DeviceKey.generate() for _ in range(8)]


def token(n: int, kind: str = DEVICE_REQUEST_KIND) -> str:
    device = DEVICES[n % len(DEVICES)]
    return _impl.encode_token(kind, device.key_id, f'{{"n":{n}}}'.encode(), device.seed)


def tampered(text: str) -> str:
    head, _, signature = text.rpartition(".")
    return f"{head}.{('B' if signature[0] == 'A' else 'A')}{signature[1:]}"


async def read_all(reader: SelfKeyedTokenReader, tokens: list[str]) -> list[bytes | Exception]:
    return await asyncio.gather(*(reader.read(t) for t in tokens), return_exceptions=True)


async def test_a_lone_token_is_verified_at_once_without_a_timer() -> None:
    reader = SelfKeyedTokenReader(DEVICE_REQUEST_KIND)
    loop = asyncio.get_running_loop()

    def no_timer(*_: object) -> None:
        raise AssertionError("a lone token must not wait for a timer")

    loop.call_later = no_timer  # type: ignore[method-assign,assignment]
    try:
        assert await reader.read(token(1)) == b'{"n":1}'
        assert await read_all(reader, [token(2), token(3)]) == [b'{"n":2}', b'{"n":3}']  # a few: at once too
    finally:
        del loop.call_later  # back to the class's method
    assert (reader.stats.tokens, reader.stats.calls) == (3, 2)


async def test_a_burst_is_verified_together_and_each_bad_token_gets_its_own_error() -> None:
    reader = SelfKeyedTokenReader(DEVICE_REQUEST_KIND)
    tokens = [token(n) for n in range(200)]
    bad = {7: tampered(tokens[7]), 99: tampered(tokens[99]), 150: token(150, kind="lf1")}
    results = await read_all(reader, [bad.get(n, t) for n, t in enumerate(tokens)])
    for n, result in enumerate(results):
        if n in (7, 99):
            assert isinstance(result, BadSignatureError), n
        elif n == 150:
            assert isinstance(result, WrongTokenKindError), n
        else:
            assert result == f'{{"n":{n}}}'.encode(), n
    assert (reader.stats.tokens, reader.stats.calls) == (200, 1)


@pytest.mark.alone  # waves a millisecond apart within the gathering window: a busy machine delays one past it
async def test_a_burst_arriving_in_waves_is_gathered_into_one_batch() -> None:
    reader = SelfKeyedTokenReader(DEVICE_REQUEST_KIND)
    waves = [[token(wave * 100 + n) for n in range(GATHER_FROM + 8)] for wave in range(4)]
    pending = []
    for wave in waves:  # a wave every millisecond, well within the gathering window
        pending += [asyncio.ensure_future(reader.read(t)) for t in wave]
        await asyncio.sleep(0.001)
    results = await asyncio.gather(*pending)
    assert len(results) == sum(len(wave) for wave in waves)
    assert reader.stats.calls == 1, "the waves of one burst share one batch"


async def test_gathering_never_holds_a_token_beyond_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batching, "GATHER_MAX_S", 0.0)  # the window closes at once: verify what is there
    reader = SelfKeyedTokenReader(DEVICE_REQUEST_KIND)
    first = [asyncio.ensure_future(reader.read(token(n))) for n in range(GATHER_FROM + 8)]
    await asyncio.sleep(0.001)
    assert all(read.done() for read in first), "the first wave did not wait for a second"
    second = [asyncio.ensure_future(reader.read(token(n))) for n in range(GATHER_FROM + 8)]
    await asyncio.gather(*first, *second)
    assert reader.stats.calls == 2


async def test_without_batching_every_token_is_verified_alone() -> None:
    reader = SelfKeyedTokenReader(DEVICE_REQUEST_KIND, batching=False)
    results = await read_all(reader, [token(n) for n in range(40)])
    assert all(isinstance(r, bytes) for r in results)
    assert (reader.stats.tokens, reader.stats.calls) == (40, 40)


async def test_tokens_that_name_no_device_key_are_refused() -> None:
    reader = SelfKeyedTokenReader(DEVICE_REQUEST_KIND)
    with pytest.raises(MalformedTokenError):
        await reader.read("not a token")
    device = DEVICES[0]
    with pytest.raises(UnknownKeyError):  # a well-formed token whose key id is no public key
        await reader.read(_impl.encode_token(DEVICE_REQUEST_KIND, "tenant-key-1", b"{}", device.seed))
    other = DEVICES[1]  # signed by one device, naming another's key
    with pytest.raises(BadSignatureError):
        await reader.read(_impl.encode_token(DEVICE_REQUEST_KIND, other.key_id, b"{}", device.seed))


async def test_a_request_that_goes_away_does_not_disturb_its_batch() -> None:
    reader = SelfKeyedTokenReader(DEVICE_REQUEST_KIND)
    reads = [asyncio.ensure_future(reader.read(token(n))) for n in range(GATHER_FROM + 4)]
    await asyncio.sleep(0)  # every read is queued
    reads[3].cancel()
    results = await asyncio.gather(*reads, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert all(results[n] == f'{{"n":{n}}}'.encode() for n in range(len(reads)) if n != 3)
