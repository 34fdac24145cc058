"""Seat races across the workers of ``licensor serve --workers 2`` on PostgreSQL (issue 18's acceptance): in each
round, 1,000 requests at once against a license of 5 seats (or a quota of 5 calls), of each kind:

- device-signed activations of 1,000 distinct devices: exactly 5 are created (201), the others refused with
  409 SEAT_LIMIT_REACHED;
- cloud check-outs of 1,000 distinct devices: exactly 5 leases (201), the others 409 SEAT_LIMIT_REACHED;
- metered usage reports of 1 call each by one subject: exactly 5 recorded (201), the others 409 QUOTA_EXCEEDED;

never a 5xx nor a lost connection; what the admin API shows afterwards is exactly what was acknowledged, and the
tenant's event chain verifies. PostgreSQL only: several workers need it (the SQLite store serves one process; its
races are the plugins' concurrency tests). ``make test`` runs 1 round, ``make soak`` 20
(``LICENSOR_SEAT_RACE_ROUNDS``). Run with ``-s`` for the figures.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from licensor.testing import Sent, ThrowawayPostgres, no_server_errors

from .scale_kit import ACTIVATE, CHECK_OUT, USAGE, Admin, Licenses, make_licenses, send_together
from .served import served

pytestmark = pytest.mark.alone  # 1,000 connections at once and figures: the machine to itself

ROUNDS = int(os.environ.get("LICENSOR_SEAT_RACE_ROUNDS", "1"))
REQUESTS = 1_000
SEATS = 5
ROUND_LIMIT_S = 120.0  # a generous bound for a hang, per burst


def _outcomes(sent: list[Sent]) -> Counter[str]:
    return Counter(f"{s.answer.status} {s.answer.code}" if s.answer.code else str(s.answer.status) for s in sent)


async def _race_activations(licenses: Licenses, url: str) -> tuple[list[Sent], float]:
    license = await licenses.activation_license()
    jobs = [(url, ACTIVATE, licenses.activation_body(n, license["key"]), {}) for n in range(REQUESTS)]
    sent, wall = await send_together(jobs)
    active = await licenses.admin.ok("GET", f"/v1/admin/licenses/{license['id']}/activations", params={"limit": "200"})
    created = {s.answer.body["activation"]["id"] for s in sent if s.answer.status == 201}
    assert {row["id"] for row in active["data"] if row["state"] == "active"} == created
    assert len(active["data"]) == len(created)  # no activation beyond those acknowledged
    return sent, wall


async def _race_check_outs(licenses: Licenses, url: str) -> tuple[list[Sent], float]:
    license, credential_file = await licenses.cloud_credential()
    jobs = [(url, CHECK_OUT, licenses.check_out_body(n, credential_file), {}) for n in range(REQUESTS)]
    sent, wall = await send_together(jobs)
    leases = await licenses.admin.ok("GET", f"/v1/admin/licenses/{license['id']}/leases", params={"limit": "200"})
    granted = {s.answer.body["lease"]["id"] for s in sent if s.answer.status == 201}
    assert {row["id"] for row in leases["data"]} == granted  # every lease there is was acknowledged, once
    return sent, wall


async def _race_usage(licenses: Licenses, url: str) -> tuple[list[Sent], float]:
    subject = await licenses.saas_subject()
    product_token = {"Authorization": f"Bearer {licenses.product_token}"}
    jobs = [(url, USAGE, licenses.usage_body(subject), product_token) for _ in range(REQUESTS)]
    sent, wall = await send_together(jobs)
    totals = await licenses.admin.ok("GET", USAGE, params={"product": "saas", "subject": subject}, token=licenses.product_token)
    assert [(row["feature"], row["used"]) for row in totals["totals"]] == [("calls", SEATS)]
    assert sorted(s.answer.body["used"] for s in sent if s.answer.status == 201) == list(range(1, SEATS + 1))
    return sent, wall


RACES = {
    "activations": (_race_activations, {"201": SEATS, "409 SEAT_LIMIT_REACHED": REQUESTS - SEATS}),
    "check-outs": (_race_check_outs, {"201": SEATS, "409 SEAT_LIMIT_REACHED": REQUESTS - SEATS}),
    "usage reports": (_race_usage, {"201": SEATS, "409 QUOTA_EXCEEDED": REQUESTS - SEATS}),
}


async def test_a_thousand_at_once_take_exactly_the_seats_or_the_quota_across_two_workers(
    licensor_postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    figures: dict[str, list[tuple[float, float]]] = {kind: [] for kind in RACES}
    with served(licensor_postgres.create_database(), tmp_path / "var", "--workers", "2") as server:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            admin = Admin(session, server.url, server.admin_token)
            licenses = await make_licenses(admin, SEATS)
            for round_ in range(ROUNDS):
                for kind, (race, expected) in RACES.items():
                    began = time.monotonic()
                    sent, wall = await race(licenses, server.url)
                    assert time.monotonic() - began < ROUND_LIMIT_S, (kind, round_)
                    no_server_errors(sent)
                    assert _outcomes(sent) == expected, (kind, round_, _outcomes(sent))
                    figures[kind].append((wall, max(s.seconds for s in sent)))
            verified = await admin.ok("GET", "/v1/admin/events/verify")
        log = server.log()
        assert server.stop() == 0
    assert verified["valid"], verified
    assert " 500 " not in log and "Traceback" not in log
    workers = set(re.findall(r" licensor\.access \[(\d+)\]: ", log))
    print(f"\n{ROUNDS} rounds of {REQUESTS} requests at once against {SEATS} seats, 2 workers ({len(workers)} answered):")
    for kind, rounds in figures.items():
        walls = sorted(wall for wall, _ in rounds)
        print(
            f"  {kind}: exactly {SEATS} accepted in each of {len(rounds)} rounds, zero 5xx; burst wall median "
            f"{walls[len(walls) // 2]:.2f} s, max {walls[-1]:.2f} s; slowest answer {max(s for _, s in rounds):.2f} s"
        )
