"""One client for the licensed software, synchronous (:class:`Client`) and asynchronous (:class:`AsyncClient`).

Both run the same flows (:mod:`licensor_client.http`); the methods of one are those of the other, awaited.

- **activation** backend: :meth:`Client.activate` with a license key binds the license to this device (its key,
  made once and kept in the state directory, and its fingerprint, read from the machine) and stores the signed
  license file; :meth:`Client.check` then answers offline, at every start, from that file;
  :meth:`Client.check_in` renews it before its checkpoint; :meth:`Client.deactivate` gives the seat back;
  :meth:`Client.recover` activates again after a lost file or key, or takes the seat of a dead device.
- **cloud** backend (a credential file): :meth:`Client.lease` holds a seat while its ``with`` block runs
  (heartbeats in a background thread, or task), and :meth:`Client.check` answers from the held lease.
- **cloud-lite** backend (a SaaS backend with a product token): :meth:`Client.entitlements` of a subject,
  verified and cached until its token is due for renewal.

Every offline decision is taken at the trusted time (:mod:`licensor_client.clock`): a clock turned back gives
``CLOCK_TAMPERED``, never an extra day. A device request that got no answer is kept and sent again byte for
byte (the gateway recognises the retry), and device operations are serialised across the program's threads
and processes, so a retry never costs a second seat or looks like a rolled-back snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import orjson

from licensor_client import codec
from licensor_client.activation import DeviceKey, LicenseFile, device_request, read_license_file, verify_license_file
from licensor_client.clock import ClockGrade, ClockReading, TrustedClock
from licensor_client.codes import DESCRIPTIONS, Code
from licensor_client.entitlements import EntitlementCache, Entitlements, verify_entitlement_token
from licensor_client.errors import LicensorError, TokenError, UnknownKeyError
from licensor_client.formats import b64url, published_keys
from licensor_client.http import (
    HOLD,
    RETRYABLE,
    AsyncDriver,
    Call,
    EventStreamParser,
    Flow,
    GatewayUnavailableError,
    Reply,
    RetryPolicy,
    SyncDriver,
    exchange,
)
from licensor_client.leases import CredentialFile, LeaseKeeper, LeaseToken, read_credential_file
from licensor_client.license_keys import normalize as normalize_license_key
from licensor_client.machine import MachineReading, read_machine
from licensor_client.receipts import make_receipt
from licensor_client.releases import ReleaseManifest, read_release_manifest
from licensor_client.state import DeviceLock, StateDir
from licensor_client.updates import LicenseUpdate, UpdateRejectedError, read_update

__all__ = ["AsyncClient", "CheckResult", "Client", "RefusedError", "ReleaseOffer", "SyncLease", "UpdateWatcher"]

logger = logging.getLogger("licensor_client")

NOT_ACTIVATED = "NOT_ACTIVATED"
NO_LEASE = "NO_LEASE"
DEACTIVATED = "DEACTIVATED"
KEYS_UNKNOWN = "KEYS_UNKNOWN"
_STOPPED = {"suspended": Code.SUSPENDED.value, "revoked": Code.REVOKED.value}
_ADVICE = {
    Code.VALID: "",
    Code.CHECKPOINT_OVERDUE: "Connect to the internet and check in to renew the license file.",
    Code.FINGERPRINT_MISMATCH: "This computer changed too much since activation: recover the activation (or ask the vendor).",
    Code.EXPIRED: "The license has expired: renew it with the vendor, then check in.",
    Code.NOT_YET_VALID: "The license file is newer than this computer's clock: set the date and time right.",
    Code.FEATURE_NOT_ENTITLED: "The license does not include this feature.",
    Code.WITHDRAWN: "This computer's activation was removed or moved to another computer: ask the vendor, or recover it here.",
    NOT_ACTIVATED: "Activate the license on this computer first.",
    DEACTIVATED: "The license was deactivated on this computer: activate it again to use the program.",
    NO_LEASE: "No seat is held: check one out (the program's lease).",
    KEYS_UNKNOWN: "The vendor's public keys are not known yet: activate or check in online once.",
}


class RefusedError(LicensorError):
    """The gateway refused a device operation or a query: ``code`` is its error code (SEAT_LIMIT_REACHED,
    LICENSE_NOT_FOUND, WITHDRAWN, ...), ``http_status`` its status, the message its message."""

    code = "REFUSED"
    http_status = 409

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.error_message or reply.error_code, code=reply.error_code)
        self.http_status = reply.status


@dataclass(frozen=True)
class CheckResult:
    """An offline check's outcome: ``code`` is VALID, a verdict code, ``CLOCK_TAMPERED``, ``NOT_ACTIVATED``,
    ``NO_LEASE`` or ``KEYS_UNKNOWN``; ``advice`` tells the user what to do."""

    code: str
    advice: str
    features: Mapping[str, int | None] = field(default_factory=dict)
    expires_at: int | None = None
    checkpoint_at: int | None = None
    lapses_at: int | None = None
    clock: ClockReading | None = None

    @property
    def valid(self) -> bool:
        return self.code == Code.VALID

    @property
    def check_in_due(self) -> bool:
        """Whether the license file's checkpoint has passed: check in (it stays valid until ``lapses_at``)."""
        return self.checkpoint_at is not None and self.clock is not None and self.clock.now >= self.checkpoint_at


def _advice(code: str) -> str:
    if code in _ADVICE:
        return _ADVICE[code]
    try:
        return DESCRIPTIONS[Code(code)]
    except ValueError:
        return ""


def _result(code: str, clock: ClockReading | None, file: LicenseFile | None = None, advice: str | None = None) -> CheckResult:
    advice = _advice(code) if advice is None else advice
    if file is None:
        return CheckResult(code, advice, clock=clock)
    return CheckResult(code, advice, dict(file.features), file.expires_at, file.checkpoint_at, file.lapses_at, clock)


@dataclass(frozen=True)
class ReleaseOffer:
    """What :meth:`Client.latest_release` found: ``manifest``, the newest release the license may install
    (verified; None when there is none), and ``newest``, the newest release offered on the channel with its code
    for this license (``{"version", "released_at", "code"}``: VERSION_NOT_ENTITLED means a newer version exists
    that the license's maintenance does not cover), or None."""

    manifest: ReleaseManifest | None
    newest: dict[str, Any] | None


class _Flows:
    """What both clients do, as flows; the subclasses only run them."""

    def __init__(
        self,
        server: str | None,
        tenant: str | None,
        product: str | None,
        *,
        state_dir: str | Any,
        public_keys: Mapping[str, bytes] | None = None,
        credential_file: str | bytes | Any | None = None,
        product_token: str | None = None,
        machine: Callable[[], MachineReading] = read_machine,
        device_name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credential: CredentialFile | None = None
        if credential_file is not None:
            self.credential = read_credential_file(credential_file)
            for name, given in (("server", server), ("tenant", tenant), ("product", product)):
                if given is not None and given.rstrip("/") != getattr(self.credential, name):
                    raise ValueError(f"the credential file is for another {name} than {given!r}")
            server, tenant, product = self.credential.server, self.credential.tenant, self.credential.product
        if not (server and tenant and product):
            raise ValueError("name the server, tenant and product (or give a credential file)")
        self.server, self.tenant, self.product = server.rstrip("/"), tenant, product
        self.state = StateDir(state_dir)
        self.trusted = TrustedClock(self.state, clock)
        self.device_lock = DeviceLock(self.state)
        self.product_token = product_token
        self.device_name = device_name
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self._machine = machine
        self._reading: MachineReading | None = None
        self._rng = random.Random()
        # Keys the vendor gave (built into the program, or in the credential file) are pinned: never replaced by
        # fetched ones. Without them, the tenant's published keys are fetched once (over TLS) and kept.
        pinned = dict(public_keys or {}) or (dict(self.credential.keys) if self.credential else {})
        self._pinned = bool(pinned)
        self._keys = pinned or self._stored_keys()
        self._entitlements = EntitlementCache(None, self._keys, tenant=tenant)
        self._lease: LeaseKeeper | None = None

    # --- the device ------------------------------------------------------------------------------------------
    def machine(self) -> MachineReading:
        """The machine's components, read once per client (the hardware does not change while it runs)."""
        if self._reading is None:
            self._reading = self._machine()
        return self._reading

    def fingerprint(self) -> dict[str, str]:
        """The device's fingerprint for this tenant and product (salted hashes only)."""
        return self.machine().fingerprint(self.tenant, self.product)

    def device_key(self) -> DeviceKey:
        """The device's own key, made on first use and kept in the state directory."""
        return DeviceKey(self.state.device_seed(codec.generate_seed))

    def license_file(self) -> LicenseFile | None:
        """The stored license file (verified), or None."""
        token = self.state.read_text("license-file")
        if token is None or not self._keys:
            return None
        try:
            return read_license_file(token, self._keys, tenant=self.tenant, product=self.product)
        except TokenError:
            return None

    # --- offline ---------------------------------------------------------------------------------------------
    def check(self, *features: str) -> CheckResult:
        """May this device use ``features`` now? Answered offline: from the held lease (cloud), else from the stored
        license file (activation), at the trusted time. Never raises for a license reason; see the code."""
        clock = self.trusted.read()
        if clock.grade is not ClockGrade.OK:
            return _result(clock.code or "CLOCK_TAMPERED", clock, advice=clock.advice)
        pushed = self.state.read_json("update") or {}
        if pushed.get("state") in _STOPPED:  # the vendor suspended or revoked it: an update said so
            return _result(_STOPPED[pushed["state"]], clock)
        if self.credential is not None:
            return self._check_lease(features, clock)
        token = self.state.read_text("license-file")
        if token is None:
            ended = self.state.read_json("ended")
            return _result(str(ended["code"]) if ended and "code" in ended else NOT_ACTIVATED, clock)
        if not self._keys:
            return _result(KEYS_UNKNOWN, clock)
        verdict = verify_license_file(
            token,
            self._keys,
            tenant=self.tenant,
            product=self.product,
            fingerprint=self.fingerprint(),
            device_key=self.device_key().key_id,
            features=features,
            now=clock.now,
        )
        return _result(verdict.code.value, clock, verdict.file)

    def _check_lease(self, features: Collection[str], clock: ClockReading) -> CheckResult:
        keeper = self._lease
        if keeper is None or keeper.lease is None:
            return _result(NO_LEASE, clock)
        lease = keeper.lease
        if not keeper.valid:
            return _result(keeper.lost_code or Code.LEASE_EXPIRED.value, clock)
        if any(feature not in lease.entitlements for feature in features):
            return _result(Code.FEATURE_NOT_ENTITLED.value, clock)
        return CheckResult(Code.VALID.value, "", dict(lease.entitlements), clock=clock)

    # --- offline activation: request file -> the vendor -> response file ----------------------------------------
    def offline_request(self, license_key: str, *, new: bool = False) -> str:
        """The activation request file's text for ``license_key``, kept in the state until its answer is imported:
        asked again, the same request is given (a transaction resumed, not a second one); ``new`` makes a fresh
        one (the gateway still answers this device's activation, never a second seat, as long as it is the same
        device). :raises LicenseKeyError: a typo in the key."""
        key = normalize_license_key(license_key)
        with self.state.locked():
            kept = self.state.read_json("offline")
            if kept is not None and kept.get("license_key_hint") == key[-4:] and not new:
                return str(kept["request"])
            fields = {"license_key": key, **({"device_name": self.device_name} if self.device_name else {})}
            request = device_request(
                self.device_key(),
                "activate",
                tenant=self.tenant,
                product=self.product,
                fingerprint=self.fingerprint(),
                now=self.trusted.corrected(),
                **fields,
            )
            self.state.write_json(
                "offline",
                {"state": "requested", "request": request, "license_key_hint": key[-4:], "at": self.trusted.corrected()},
            )
            return request

    def offline_pending(self) -> dict[str, Any] | None:
        """The offline activation waiting for its response file (``state``, ``request``, ``at``), or None."""
        return self.state.read_json("offline")

    def offline_cancel(self) -> bool:
        """Drop the pending offline activation (if the vendor answered it already, asking again gets the same
        activation of this device). Whether there was one."""
        with self.state.locked():
            had = self.state.read_json("offline") is not None
            self.state.remove("offline")
            return had

    def offline_import(self, response: str) -> LicenseFile:
        """Import the vendor's response file (the ``lf1`` license file) for this device, ending the transaction.

        :raises licensor_client.errors.TokenError: not a genuine license file of this tenant and product (with
            the keys known: an offline device must have been given them);
            :class:`licensor_client.errors.LicensorError` DEVICE_MISMATCH: made for another device."""
        token = response.strip()
        if token.startswith("{"):  # the vendor's whole answer (licensor admin activations answer-request prints it)
            try:
                answer = orjson.loads(token)
            except orjson.JSONDecodeError:
                answer = None
            if not isinstance(answer, dict) or not isinstance(answer.get("license_file"), str):
                raise LicensorError(
                    "this is not a license file (lf1.…), nor an answer holding one", code="LICENSE_FILE_MALFORMED"
                )
            token = answer["license_file"].strip()
        if not self._keys:
            raise LicensorError("the vendor's public keys are not known: give them to the program", code=KEYS_UNKNOWN)
        file = read_license_file(token, self._keys, tenant=self.tenant, product=self.product)
        if file.device_key != self.device_key().key_id:
            raise LicensorError("this license file was made for another device", code="DEVICE_MISMATCH")
        with self.state.locked():
            held = self.license_file()
            if held is not None and (held.issued_at, held.generation) > (file.issued_at, file.generation):
                raise LicensorError("this license file is older than the one this device holds", code="STALE_LICENSE_FILE")
            self.state.write_text("license-file", token + "\n")
            self.state.remove("ended")
            self.state.remove("offline")
        self.trusted.observe_signed(file.issued_at, fresh=False)  # a file brought by hand may be old
        return file

    def offline_deactivation(self) -> str:
        """Give the seat back without network: the license file is deleted here and a receipt signed with the
        device's key returned (``LDR1-…``), for the vendor to post; its seat is free once they do. Asked again
        (the receipt lost), the same receipt is given."""
        self.device_lock.acquire()  # no check-in of another thread or process renews the file meanwhile
        try:
            with self.state.locked():
                ended = self.state.read_json("ended")
                if ended is not None and isinstance(ended.get("receipt"), str):
                    return str(ended["receipt"])
                file = self.license_file()
                if file is None:
                    raise LicensorError("this device holds no license file", code=NOT_ACTIVATED)
                receipt = make_receipt(self.device_key().seed, self.tenant, file.activation_id, file.generation)
                self.state.remove("license-file")
                self.state.write_json("ended", {"code": DEACTIVATED, "at": self.trusted.corrected(), "receipt": receipt})
                return receipt
        finally:
            self.device_lock.release()

    # --- updates pushed by the gateway -----------------------------------------------------------------------------
    @property
    def update_generation(self) -> int:
        """The license generation of the newest update applied here (0: none yet)."""
        return int((self.state.read_json("update") or {}).get("generation", 0))

    def apply_update(self, token: str) -> LicenseUpdate:
        """Verify and apply a pushed ``up1`` update: kept when newer than the one held (a suspension or revocation
        then makes :meth:`check` refuse; a later reinstatement lifts it).

        :raises licensor_client.errors.TokenError: not a genuine update of this license; UPDATE_STALE: not newer."""
        license_id = self._license_id()
        with self.state.locked():
            update = read_update(
                token, self._keys, tenant=self.tenant, product=self.product, license_id=license_id, after=self.update_generation
            )
            self.state.write_json("update", {"generation": update.generation, "state": update.state, "token": update.token})
        self.trusted.observe_signed(update.issued_at, fresh=False)  # signed once per change, maybe a while ago
        return update

    def _license_id(self) -> str | None:
        if self.credential is not None:
            return self.credential.license
        file = self.license_file()
        return file.license_id if file is not None else None

    def _holder_token(self) -> str:
        """What the device presents for its license: the held lease's token (cloud), or its license file."""
        if self._lease is not None and self._lease.lease_token is not None:
            return self._lease.lease_token
        presented = self.state.read_text("license-file")
        if presented is None:
            raise LicensorError("activate the license (or hold a lease) first", code=NOT_ACTIVATED)
        return presented.strip()

    async def _took_update(self, data: str, http: httpx.AsyncClient) -> LicenseUpdate | None:
        """An event's update applied, or None for one this device holds already (a race of two connections). An
        update signed by a key not known yet (the tenant rotated its key) has the tenant's keys fetched first,
        unless the vendor pinned them."""
        try:
            return self.apply_update(data)
        except UpdateRejectedError as stale:
            if stale.code != "UPDATE_STALE":
                raise
            return None
        except UnknownKeyError:
            if self._pinned:
                raise
        answer = await http.get("/v1/keys", params={"tenant": self.tenant})
        if answer.status_code == 200:
            self._keys.update(published_keys(answer.json()))
            self.state.write_json("keys", {kid: b64url(raw) for kid, raw in self._keys.items()})
        return self.apply_update(data)

    def _needs_file(self, update: LicenseUpdate) -> bool:
        """Whether an activation's license file must be renewed to carry ``update`` (a file that reflects an older
        generation of the license; a check-in then also tells a withdrawn device so)."""
        if self.credential is not None or self.product_token is not None or update.stops:
            return False
        file = self.license_file()
        return file is not None and (file.license_generation or 0) < update.generation

    async def _update_stream(
        self, http: httpx.AsyncClient, check_in: Callable[[], Awaitable[object]] | None
    ) -> AsyncIterator[LicenseUpdate]:
        """The updates of one connection after another (see :meth:`AsyncClient.updates`; :class:`UpdateWatcher`
        runs the same on its own thread's loop)."""
        attempt = 0
        while True:
            path, params, headers = self._updates_request()
            try:
                async with http.stream("GET", path, params=params, headers=headers, timeout=_STREAM_TIMEOUT) as response:
                    if response.status_code >= 400:
                        _refuse_stream(response.status_code, await response.aread(), response.headers)
                    attempt, parser = 0, EventStreamParser()
                    async for line in response.aiter_lines():
                        data = parser.feed(line)
                        update = None if data is None else await self._took_update(data, http)
                        if update is None:
                            continue
                        if check_in is not None and self._needs_file(update):
                            with contextlib.suppress(RefusedError):  # WITHDRAWN and the like: recorded, check() tells
                                await check_in()
                        yield update
            except (httpx.HTTPError, _StreamUnavailable, GatewayUnavailableError):
                pass
            await asyncio.sleep(self.retry.wait(attempt, None, self._rng))
            attempt += 1

    def _updates_request(self) -> tuple[str, dict[str, str], dict[str, str]]:
        file = self.license_file() if self.credential is None else None
        held = max(self.update_generation, (file.license_generation or 0) if file is not None else 0)  # what is known here
        params = {"tenant": self.tenant, "product": self.product, "after": str(held)}
        headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {self._holder_token()}"}
        return "/v1/updates", params, headers

    # --- flows -----------------------------------------------------------------------------------------------
    def _exchange(self, call: Call) -> Flow[Reply]:
        return exchange(call, self.server, self.retry, self._rng)

    def _stored_keys(self) -> dict[str, bytes]:
        stored = self.state.read_json("keys") or {}
        return published_keys({"keys": [{"kid": kid, "public_key": value} for kid, value in stored.items()]})

    def _probe_flow(self) -> Flow[dict[str, Any]]:
        """Ask the gateway now, once (no retries): whether it answers, its clock (the unsigned Date header, for a
        diagnosis only) and how many keys the tenant publishes."""
        once = Call("GET", "/v1/keys", params={"tenant": self.tenant})
        reply = yield from exchange(once, self.server, RetryPolicy(attempts=1), self._rng)
        if not reply.ok:
            raise RefusedError(reply)
        return {"keys": len(published_keys(reply.body)), "server_time": reply.date()}

    def _fetch_keys_flow(self) -> Flow[None]:
        """Fetch the tenant's published keys (unless the vendor pinned them) and keep them."""
        if self._pinned:
            return
        reply = yield from self._exchange(Call("GET", "/v1/keys", params={"tenant": self.tenant}))
        if not reply.ok:
            raise RefusedError(reply)
        self._keys.update(published_keys(reply.body))
        self.state.write_json("keys", {kid: b64url(raw) for kid, raw in self._keys.items()})

    def _verified(self, read: Callable[[], Any]) -> Flow[Any]:
        """``read()`` (a token reader), fetching the tenant's keys first when it names a key not known yet."""
        if not self._keys:
            yield from self._fetch_keys_flow()
        try:
            return read()
        except UnknownKeyError:
            if self._pinned:
                raise
        yield from self._fetch_keys_flow()
        return read()

    def _device_flow(self, op: str, path: str, **fields: Any) -> Flow[Reply]:
        """Send a device request of ``op``: the one kept from an unanswered attempt when it is the same question,
        else a new one (signed at the corrected time). A request of another op left unanswered is finished first
        (a check-in the gateway performed must not be followed by a request naming the old generation)."""
        yield HOLD
        pending = self.state.read_json("pending")
        if pending is not None and (pending.get("op"), pending.get("fields")) != (op, fields):
            yield from self._finish_pending_flow(pending)
            pending = None
        if pending is None:
            pending = self._new_pending(op, path, fields, self.trusted.corrected())
        reply = yield from self._send_pending(pending)
        date = reply.date()
        if reply.error_code == "DEVICE_CLOCK_SKEW" and date is not None:
            # The device's clock is off and no signed time corrected it yet: sign the request at the gateway's
            # time (the unsigned Date header only sets the request's time; nothing is trusted from it).
            reply = yield from self._send_pending(self._new_pending(op, path, fields, date))
        self.state.remove("pending")
        return reply

    def _new_pending(self, op: str, path: str, fields: dict[str, Any], at: float) -> dict[str, Any]:
        request = device_request(
            self.device_key(), op, tenant=self.tenant, product=self.product, fingerprint=self.fingerprint(), now=at, **fields
        )
        pending = {"op": op, "path": path, "fields": fields, "request": request, "key": f"dv-{secrets.token_urlsafe(18)}"}
        self.state.write_json("pending", pending)
        return pending

    def _send_pending(self, pending: dict[str, Any]) -> Flow[Reply]:
        call = Call("POST", str(pending["path"]), {"request": pending["request"]}, idempotency_key=str(pending["key"]))
        return (yield from self._exchange(call))

    def _finish_pending_flow(self, pending: dict[str, Any]) -> Flow[None]:
        reply = yield from self._send_pending(pending)
        self.state.remove("pending")
        if reply.ok and isinstance(reply.body.get("license_file"), str):
            yield from self._take_file_flow(reply)
        elif reply.ok and pending.get("op") == "deactivate":
            self._ended(Code.WITHDRAWN.value)

    def _take_file_flow(self, reply: Reply) -> Flow[LicenseFile]:
        token = reply.body.get("license_file")
        if not isinstance(token, str):
            raise LicensorError("the gateway's answer carries no license file", code="ANSWER_MALFORMED")
        file: LicenseFile = yield from self._verified(
            lambda: read_license_file(token, self._keys, tenant=self.tenant, product=self.product)
        )
        if file.device_key != self.device_key().key_id:
            raise LicensorError("the gateway answered a license file of another device", code="DEVICE_MISMATCH")
        current = self.license_file()
        if current is not None and current.activation_id == file.activation_id and file.generation < current.generation:
            raise LicensorError("the gateway answered an older license file than the stored one", code="STALE_LICENSE_FILE")
        self.state.write_text("license-file", token + "\n")
        self.state.remove("ended")
        if (file.license_generation or 0) >= self.update_generation:  # not an answer older than a pushed suspension
            self._license_state("active")
        self.trusted.observe_signed(file.issued_at)
        return file

    def _license_state(self, state: str) -> None:
        """Record what the gateway said of the license's state (kept with the newest update's generation)."""
        with self.state.locked():
            held = self.state.read_json("update") or {"generation": 0}
            if held.get("state", "active") != state:
                self.state.write_json("update", {**held, "state": state})

    def _ended(self, code: str) -> None:
        self.state.remove("license-file")
        self.state.write_json("ended", {"code": code, "at": self.trusted.corrected()})

    def _activate_flow(self, op: str, license_key: str, withdraw: str | None) -> Flow[LicenseFile]:
        fields = {"license_key": normalize_license_key(license_key)}
        if self.device_name is not None:
            fields["device_name"] = self.device_name
        if withdraw is not None:
            fields["withdraw"] = withdraw
        path = "/v1/activations" if op == "activate" else "/v1/activations/recover"
        reply = yield from self._device_flow(op, path, **fields)
        if not reply.ok:
            raise RefusedError(reply)
        return (yield from self._take_file_flow(reply))

    def _bound_flow(self, op: str, path: str) -> Flow[Reply]:
        yield HOLD  # before reading the file: a check-in of another thread may be renewing it
        file = self.license_file()
        if file is None:
            raise LicensorError("this device holds no license file: activate first", code=NOT_ACTIVATED)
        reply = yield from self._device_flow(op, path, activation=file.activation_id, generation=file.generation)
        if reply.error_code in (Code.WITHDRAWN, Code.REVOKED):
            self._ended(reply.error_code)
        elif reply.error_code == Code.SUSPENDED:
            self._license_state("suspended")  # until a reinstatement: an update or a check-in that succeeds
        if not reply.ok:
            raise RefusedError(reply)
        return reply

    def _check_in_flow(self) -> Flow[LicenseFile]:
        reply = yield from self._bound_flow("checkin", "/v1/activations/checkin")
        return (yield from self._take_file_flow(reply))

    def _deactivate_flow(self) -> Flow[dict[str, Any]]:
        reply = yield from self._bound_flow("deactivate", "/v1/activations/deactivate")
        self._ended(DEACTIVATED)
        activation: dict[str, Any] = reply.body.get("activation") or {}
        return activation

    def _entitlements_flow(self, subject: str) -> Flow[Entitlements]:
        if self.product_token is None:
            raise ValueError("entitlements need the SaaS backend's product token (product_token=)")
        clock = self.trusted.read()
        cached = self._entitlements.cached(self.product, subject, clock.now)
        if cached is not None:
            return cached
        body = {"product": self.product, "subject": subject}
        reply = yield from self._exchange(Call("POST", "/v1/entitlements/query", body, token=self.product_token, repeat=True))
        if not reply.ok:
            raise RefusedError(reply)
        token = reply.body.get("token")
        if not isinstance(token, str):
            raise LicensorError("the gateway's answer carries no entitlement token", code="ANSWER_MALFORMED")
        entitlements: Entitlements = yield from self._verified(
            lambda: verify_entitlement_token(
                token, self._keys, tenant=self.tenant, product=self.product, subject=subject, now=clock.now
            )
        )
        return self._entitlements.keep(entitlements)

    def _latest_release_flow(self, channel: str, prerelease: bool) -> Flow[ReleaseOffer]:
        """Ask for the newest release this license may install, presenting the license file (activation) or the
        held lease's token (cloud)."""
        presented = self._holder_token()
        params = {"tenant": self.tenant, "product": self.product, "channel": channel, "prerelease": str(prerelease).lower()}
        call = Call("GET", "/v1/releases/latest", params=params, token=presented)
        reply = yield from self._exchange(call)
        if not reply.ok:
            raise RefusedError(reply)
        manifest_token = reply.body.get("manifest")
        license_id = self._license_id()  # the license this device holds, not what the answer says it is
        manifest = None
        if isinstance(manifest_token, str):
            manifest = yield from self._verified(
                lambda: read_release_manifest(
                    manifest_token, self._keys, tenant=self.tenant, product=self.product, license_id=str(license_id)
                )
            )
            self.trusted.observe_signed(manifest.issued_at, fresh=False)
        newest = reply.body.get("newest")
        return ReleaseOffer(manifest, newest if isinstance(newest, dict) else None)

    def _lease_keeper(self, features: Collection[str], device_id: str | None, session: httpx.AsyncClient | None) -> LeaseKeeper:
        if self.credential is None:
            raise ValueError("a lease needs a credential file (credential_file=)")
        keeper = LeaseKeeper(
            self.credential,
            device_id or self.device_key().key_id,
            features,
            device_name=self.device_name,
            session=session,
            clock=time.monotonic,  # the lease's life is counted on a clock nobody can turn back
            request_timeout_s=self.timeout_s,
            retry_delay_s=self.retry.base_s,
            on_lease=self._took_lease,
        )
        self._lease = keeper
        return keeper

    def _took_lease(self, lease: LeaseToken) -> None:
        self.trusted.observe_signed(lease.issued_at)


class Client(_Flows):
    """The synchronous client. ``Client(server, tenant, product, state_dir=..., public_keys=...)`` for the
    activation backend, ``Client(None, None, None, credential_file=..., state_dir=...)`` (or
    :meth:`from_credential_file`) for the cloud backend, ``product_token=`` for cloud-lite queries. Close it
    (or use it as a context manager) to close its connections."""

    def __init__(self, *args: Any, transport: httpx.BaseTransport | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._driver = SyncDriver(self.server, timeout_s=self.timeout_s, lock=self.device_lock, transport=transport)

    @classmethod
    def from_credential_file(cls, credential_file: Any, *, state_dir: Any, **kwargs: Any) -> Client:
        return cls(None, None, None, credential_file=credential_file, state_dir=state_dir, **kwargs)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._driver.close()

    def activate(self, license_key: str) -> LicenseFile:
        """Activate ``license_key`` on this device and keep its license file.

        :raises RefusedError: the gateway refused (LICENSE_NOT_FOUND, SEAT_LIMIT_REACHED, ALREADY_ACTIVATED, ...).
        :raises licensor_client.http.GatewayUnavailableError: no answer after every retry (the request is kept
            and sent again, byte for byte, by the next attempt)."""
        return self._driver.run(self._activate_flow("activate", license_key, None))

    def recover(self, license_key: str, withdraw: str | None = None) -> LicenseFile:
        """Activate again after losing the file or key, or take the seat of the activation ``withdraw``."""
        return self._driver.run(self._activate_flow("recover", license_key, withdraw))

    def check_in(self) -> LicenseFile:
        """Renew the license file (before its checkpoint); a WITHDRAWN answer ends the local activation."""
        return self._driver.run(self._check_in_flow())

    def deactivate(self) -> dict[str, Any]:
        """Give the seat back now; the license file is removed."""
        return self._driver.run(self._deactivate_flow())

    def entitlements(self, subject: str) -> Entitlements:
        """What ``subject`` may do (cloud-lite), verified, cached until its token is due for renewal."""
        return self._driver.run(self._entitlements_flow(subject))

    def probe(self) -> dict[str, Any]:
        """Whether the gateway answers now (one request, no retries): ``{"keys": n, "server_time": t | None}``.

        :raises GatewayUnavailableError, RefusedError: it does not (the code says how)."""
        return self._driver.run(self._probe_flow())

    def public_keys(self) -> dict[str, bytes]:
        """The tenant's public keys: the pinned ones, or those fetched and kept (fetched now if none)."""
        if not self._keys:
            self._driver.run(self._fetch_keys_flow())
        return dict(self._keys)

    def latest_release(self, channel: str = "stable", *, prerelease: bool = False) -> ReleaseOffer:
        """The newest release the license may install on ``channel``, as a verified manifest: check each downloaded
        file with :func:`licensor_client.releases.verify_artifact` before installing it."""
        return self._driver.run(self._latest_release_flow(channel, prerelease))

    def watch(self, on_update: Callable[[LicenseUpdate], object], *, check_in: bool = True) -> UpdateWatcher:
        """Receive the license's updates in a background thread while the watcher runs (``stop()`` it): each is
        verified, applied in order (:meth:`apply_update`), an activation's file renewed (``check_in``; a withdrawn
        device learns so then), and passed to ``on_update``. It reconnects by itself with backoff."""
        watcher = UpdateWatcher(self, on_update, check_in)
        watcher.start()
        return watcher

    def lease(self, *features: str, device_id: str | None = None) -> SyncLease:
        """A seat of the credential file's license, held while the ``with`` block runs (heartbeats in a thread)."""
        return SyncLease(lambda: self._lease_keeper(features, device_id, None))


class AsyncClient(_Flows):
    """The asynchronous client: :class:`Client`'s methods, awaited (``check`` needs no await: it is offline)."""

    def __init__(self, *args: Any, transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._driver = AsyncDriver(self.server, timeout_s=self.timeout_s, lock=self.device_lock, transport=transport)

    @classmethod
    def from_credential_file(cls, credential_file: Any, *, state_dir: Any, **kwargs: Any) -> AsyncClient:
        return cls(None, None, None, credential_file=credential_file, state_dir=state_dir, **kwargs)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._driver.aclose()

    async def activate(self, license_key: str) -> LicenseFile:
        return await self._driver.run(self._activate_flow("activate", license_key, None))

    async def recover(self, license_key: str, withdraw: str | None = None) -> LicenseFile:
        return await self._driver.run(self._activate_flow("recover", license_key, withdraw))

    async def check_in(self) -> LicenseFile:
        return await self._driver.run(self._check_in_flow())

    async def deactivate(self) -> dict[str, Any]:
        return await self._driver.run(self._deactivate_flow())

    async def entitlements(self, subject: str) -> Entitlements:
        return await self._driver.run(self._entitlements_flow(subject))

    async def probe(self) -> dict[str, Any]:
        return await self._driver.run(self._probe_flow())

    async def public_keys(self) -> dict[str, bytes]:
        if not self._keys:
            await self._driver.run(self._fetch_keys_flow())
        return dict(self._keys)

    async def latest_release(self, channel: str = "stable", *, prerelease: bool = False) -> ReleaseOffer:
        return await self._driver.run(self._latest_release_flow(channel, prerelease))

    def updates(self, *, check_in: bool = True) -> AsyncIterator[LicenseUpdate]:
        """The license's updates as they come (one long-lived connection, reconnected with backoff): each verified,
        applied in order (:meth:`apply_update`), an activation's file renewed first (``check_in``). Stop by leaving
        the ``async for``."""
        return self._update_stream(self._driver.http, self.check_in if check_in else None)

    def lease(self, *features: str, device_id: str | None = None) -> LeaseKeeper:
        """A seat held while the ``async with`` block runs (heartbeats in a task), on the client's connections."""
        return self._lease_keeper(features, device_id, self._driver.http)


_STREAM_TIMEOUT = httpx.Timeout(10.0, read=60.0)  # the gateway writes at least every 25 s: silence this long is a dead line


class _StreamUnavailable(Exception):
    """The update stream was answered with a 429 or 5xx: reconnect later."""


def _refuse_stream(status: int, raw: bytes, headers: Any) -> None:
    """:raises RefusedError: a 4xx answer (within the error contract); :raises _StreamUnavailable: else."""
    if status in RETRYABLE:
        raise _StreamUnavailable(f"HTTP {status}")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = {}
    raise RefusedError(Reply(status, body if isinstance(body, dict) else {}, headers))


class UpdateWatcher:
    """:meth:`Client.watch`'s background thread, running the update stream on an event loop of its own;
    ``stop()`` ends it (and its connection) at once."""

    def __init__(self, client: Client, on_update: Callable[[LicenseUpdate], object], check_in: bool) -> None:
        self.client, self.on_update, self.check_in = client, on_update, check_in
        self.error: BaseException | None = None
        """What stopped the watcher by itself (a refusal, a forged update: the license cannot be watched), or None."""
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, name="licensor updates", daemon=True)

    def start(self) -> None:
        self._task = self._loop.create_task(self._watch())
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._thread.is_alive() and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        assert self._task is not None
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as error:
            self.error = error
            logger.warning("watching the license's updates stopped: %s", getattr(error, "code", type(error).__name__))
        finally:
            self._loop.close()

    async def _watch(self) -> None:
        client = self.client

        async def check_in() -> object:
            return await asyncio.to_thread(client.check_in)

        async with httpx.AsyncClient(base_url=client.server, trust_env=True) as http:
            async for update in client._update_stream(http, check_in if self.check_in else None):
                self.on_update(update)


class SyncLease:
    """A :class:`LeaseKeeper` run on an event loop of its own thread, for synchronous programs: ``with
    client.lease("render") as lease:`` checks a seat out, heartbeats in the background, releases it on leaving."""

    def __init__(self, make_keeper: Callable[[], LeaseKeeper]) -> None:
        self._make_keeper = make_keeper
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.keeper: LeaseKeeper | None = None

    def _run(self, coroutine: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __enter__(self) -> LeaseKeeper:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="licensor lease", daemon=True)
        self._thread.start()
        try:
            self.keeper = self._make_keeper()
            self._run(self.keeper.__aenter__())
        except BaseException:
            self._stop()
            raise
        return self.keeper

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        try:
            if self.keeper is not None:
                self._run(self.keeper.__aexit__(kind, error, trace))
        finally:
            self._stop()

    def _stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
        self._loop = self._thread = None
