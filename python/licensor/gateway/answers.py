"""Answers to checks remembered for identical repeats: the one place that decides which answer may be kept, until
when, and when it is forgotten.

Licensed software repeats the same check (same bytes: its license key, product, features) many times. When the
verdict depends only on those bytes, the tenant's License Central objects and the time, the answer is kept and
an identical request is answered from memory before anything else runs (:func:`quick_answer` in
:mod:`licensor.gateway.check`). Every committed change of the tenant announced by the store forgets its
answers, and an answer computed while a change was announced is not kept at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from licensor.backend import Backend
from licensor.license import Licensed
from licensor.store import Store
from licensor.verdict import Verdict

KEPT_US = 5_000_000
"""How long an answer is kept at most (a change of the tenant forgets it at once)."""
MAX_REMEMBERED = 50_000
"""Beyond this many answers (a flood of distinct requests), the memory starts afresh."""


class RememberedAnswer:
    """The answer to a check request and what repeating it records. Its bytes are made at the first repeat: most
    answers of a flood of distinct requests are never asked for again, and the first is answered as JSON anyway.
    (A plain class with slots: one is made per check, and a frozen dataclass costs a microsecond more.)"""

    __slots__ = ("_body", "answer", "backend", "code", "kept_at_us", "license_id", "tenant_id", "valid_until_us")

    def __init__(
        self,
        tenant_id: str,
        license_id: str,
        code: str,
        answer: dict[str, Any],
        kept_at_us: int,
        valid_until_us: int,
        backend: str,  # the backend that gave the verdict (the metric licensor_check_verdicts)
    ) -> None:
        self.tenant_id, self.license_id, self.code, self.answer = tenant_id, license_id, code, answer
        self.kept_at_us, self.valid_until_us, self.backend = kept_at_us, valid_until_us, backend
        self._body: bytes | None = None

    @property
    def body(self) -> bytes:
        """The answer's JSON bytes (made once)."""
        if self._body is None:
            self._body = orjson.dumps(self.answer)
        return self._body


class RememberedAnswers:
    """The remembered answers of one gateway process over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._answers: dict[bytes, RememberedAnswer] = {}
        self._by_tenant: dict[str, set[bytes]] = {}
        self._announced = 0  # counts announcements: an answer computed while one came is not kept
        self.hits = 0
        store.subscribe(self.forget)

    def __len__(self) -> int:
        """How many answers are remembered."""
        return len(self._answers)

    def forget(self, tenant_id: str | None) -> None:
        """Forget the tenant's answers (None: everyone's)."""
        self._announced += 1
        if tenant_id is None:
            self._answers.clear()
            self._by_tenant.clear()
            return
        for request_body in self._by_tenant.pop(tenant_id, ()):
            self._answers.pop(request_body, None)

    def mark(self) -> int:
        """Take before computing an answer, and pass to :meth:`remember`."""
        return self._announced

    def lookup(self, request_body: bytes, now_us: int) -> RememberedAnswer | None:
        """The remembered answer to a request with exactly these bytes, while it holds (a clock set back to before
        the answer was kept does not revive it)."""
        kept = self._answers.get(request_body)
        if kept is None or not kept.kept_at_us <= now_us < kept.valid_until_us or not self.store.announcements_live:
            return None
        self.hits += 1
        return kept

    def remember(
        self,
        request_body: bytes,
        request: dict[str, Any],
        mark: int,
        tenant_id: str,
        candidates: Sequence[Licensed],
        backend: Backend | None,
        verdict: Verdict,
        answer: dict[str, Any],
        now_us: int,
    ) -> None:
        """Keep ``answer`` for identical repeats of ``request`` if its verdict can only change with the tenant's
        objects or the time: a check by license key (one license), without a nonce (a signed answer is fresh
        each time), answered by a backend whose verdicts allow it (:attr:`Backend.verdicts_cacheable`), while no
        change was announced since ``mark``; until the license starts or expires, and at most :data:`KEPT_US`."""
        if (
            "license_key" not in request
            or "nonce" in request
            or len(candidates) != 1
            or backend is None
            or not backend.verdicts_cacheable
            or verdict.license_id is None
            or mark != self._announced
            or not self.store.announcements_live
        ):
            return
        until = now_us + KEPT_US
        license = candidates[0].license
        for moment in (license["starts_at"], license["expires_at"]):
            if moment is not None and now_us < moment < until:
                until = moment
        if len(self._answers) >= MAX_REMEMBERED:
            self.forget(None)
        self._answers[request_body] = RememberedAnswer(
            tenant_id, verdict.license_id, str(verdict.code), answer, now_us, until, backend.name
        )
        self._by_tenant.setdefault(tenant_id, set()).add(request_body)
