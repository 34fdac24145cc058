"""A full disk under the SQLite store: writes are refused with 503 STORE_FULL and Retry-After, nothing of them is
written, checks answered from the cache go on, and writes succeed again once space is freed.

The disk is real: the database lives on a tmpfs of its own (4 MiB, mounted for the test; the suite runs as root, as
its throwaway PostgreSQL servers need), filled with a file until the kernel answers ENOSPC, so SQLite meets the
same ``database or disk is full`` a real disk gives. ``licensor serve`` runs as a process of its own, its log and
master key outside the full disk. SQLite only: PostgreSQL's disk belongs to its own server, whose refusals are
STORE_UNAVAILABLE (tests of the store going away).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .served import served

DISK_BYTES = 4 * 1024 * 1024
MOST_WRITES = 3000  # bounded: the disk fills long before (about 300 writes here)
WRITES_DEADLINE_S = 60.0


@contextmanager
def small_disk(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``path`` for the block."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], capture_output=True)
    assert mounted.returncode == 0, f"cannot mount a tmpfs (the suite runs as root): {mounted.stderr!r}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """A file taking every free byte of ``disk`` (written until ENOSPC)."""
    filler = disk / "filler"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as out:
        while True:
            try:
                out.write(block)
            except OSError as error:
                assert error.errno == 28, error  # ENOSPC
                if len(block) == 1:
                    break
                block = block[: len(block) // 2]
    return filler


async def _call(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, Any, Any]:
    async with session.request(method, url, **kwargs) as answer:
        body = await answer.json() if answer.content_type == "application/json" else await answer.text()
        return answer.status, body, answer.headers


@pytest.mark.server
async def test_a_full_disk_refuses_writes_with_503_store_full_keeps_checks_and_recovers(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", DISK_BYTES) as disk, served(f"sqlite:///{disk}/licensor.db", tmp_path / "data") as server:
        auth = {"Authorization": f"Bearer {server.admin_token}"}
        async with aiohttp.ClientSession(headers=auth) as session:

            async def admin(path: str, body: dict[str, Any], **headers: str) -> tuple[int, Any, Any]:
                return await _call(session, "POST", server.url + path, json=body, headers=headers)

            status, tenant, _ = await _call(session, "GET", server.url + "/v1/admin/tenant")
            assert status == 200, tenant
            _, product, _ = await admin("/v1/admin/products", {"code": "cad", "name": "CAD"})
            _, policy, _ = await admin("/v1/admin/policies", {"product_id": product["id"], "name": "P", "backend": "activation"})
            _, license, _ = await admin("/v1/admin/licenses", {"policy_id": policy["id"]})
            body = {"tenant": tenant["id"], "product": "cad", "license_key": license["key"]}

            async def check() -> tuple[int, Any, Any]:
                async with aiohttp.ClientSession() as anonymous:  # a check carries the license key, not a token
                    return await _call(anonymous, "POST", server.url + "/v1/check", json=body)

            status, verdict, _ = await check()
            assert status == 200, verdict

            filler = fill(disk)
            acknowledged: list[str] = []
            refused: tuple[str, Any, Any] | None = None
            started = time.monotonic()
            for n in range(MOST_WRITES):
                assert time.monotonic() - started < WRITES_DEADLINE_S, f"the disk did not fill in {WRITES_DEADLINE_S:g} s"
                email = f"customer-{n}@example.com"
                customer = {"email": email, "name": "N" * 200}
                status, answer, headers = await admin("/v1/admin/customers", customer, **{"Idempotency-Key": f"k-{n}"})
                if status == 201:
                    acknowledged.append(email)
                    continue
                assert status == 503 and answer["error"]["code"] == "STORE_FULL", (status, answer)
                refused = (email, answer, headers)
                break
            assert refused is not None, f"{MOST_WRITES} writes fitted on a full disk"
            print(f"\nfull disk: {len(acknowledged)} writes acknowledged after the disk filled, then 503 STORE_FULL")
            email, answer, headers = refused
            assert int(headers["Retry-After"]) > 0
            assert answer["error"]["message"] and "filler" not in answer["error"]["message"]

            # Refused again while the disk stays full; reads and checks go on.
            for _ in range(3):
                status, again, headers = await admin(
                    "/v1/admin/customers", {"email": email, "name": "N" * 200}, **{"Idempotency-Key": "k-refused"}
                )
                assert (status, again["error"]["code"]) == (503, "STORE_FULL"), again
                assert "Retry-After" in headers
                status, answer, _ = await check()
                assert (status, answer["verdict"]["code"]) == (200, verdict["verdict"]["code"]), answer
            total = await _count(session, server.url)
            assert total == len(acknowledged), (total, len(acknowledged))  # nothing of the refused writes

            # Space is back: the refused write goes through (once, whatever the retries), and the chain verifies.
            os.unlink(filler)
            deadline = time.monotonic() + 10
            while True:
                status, created, _ = await admin(
                    "/v1/admin/customers", {"email": email, "name": "N" * 200}, **{"Idempotency-Key": "k-refused"}
                )
                if status == 201 or time.monotonic() > deadline:
                    break
                assert (status, created["error"]["code"]) == (503, "STORE_FULL"), created
                await asyncio.sleep(0.2)
            assert status == 201, created
            status, replayed, headers = await admin(
                "/v1/admin/customers", {"email": email, "name": "N" * 200}, **{"Idempotency-Key": "k-refused"}
            )
            assert (status, replayed["id"], headers.get("Idempotent-Replayed")) == (201, created["id"], "true")
            assert await _count(session, server.url) == len(acknowledged) + 1
            status, verified, _ = await _call(session, "GET", server.url + "/v1/admin/events/verify")
            assert status == 200 and verified["valid"] is True, verified
    assert "Traceback" not in server.log(), server.log()[-3000:]


async def _count(session: aiohttp.ClientSession, url: str) -> int:
    """How many customers the tenant has (every page)."""
    total, cursor = 0, None
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        status, page, _ = await _call(session, "GET", url + "/v1/admin/customers", params=params)
        assert status == 200, page
        total += len(page["data"])
        cursor = page.get("next_cursor")
        if not cursor:
            return total
