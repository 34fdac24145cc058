"""``licensor-activate``: the activation wizard, a friendly guide in a terminal and a scriptable tool.

Every command works the same in both modes. In a terminal, a missing license key is asked for (its check
character is checked on enter, and a typo asked again), progress is shown while the gateway is asked, and the
outcome ends with what to do next. With ``--json``, or without a terminal, nothing is asked: each command
prints one JSON object and the exit code says how it went (:data:`EXIT_CODES`).

The program's settings come from flags, then ``LICENSOR_*`` environment variables, then a JSON file the vendor
ships (``--config`` or ``LICENSOR_ACTIVATE_CONFIG``): ``server``, ``tenant``, ``product``, ``state_dir`` and
``public_keys`` (the answer of ``GET /v1/keys``, or a map of key id to base64url key). docs/client.md is the
reference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from licensor_client.client import CheckResult, Client, RefusedError
from licensor_client.clock import ClockGrade
from licensor_client.errors import LicensorError, TokenError
from licensor_client.formats import published_keys
from licensor_client.http import GatewayUnavailableError
from licensor_client.leases import CredentialFileError, read_credential_file
from licensor_client.license_keys import LicenseKeyError, grouped, normalize
from licensor_client.state import StateDir, StateError

__all__ = ["EXIT_CODES", "main"]

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_STATE, EXIT_CLOCK = 0, 1, 2, 3, 4, 5
EXIT_CODES = {
    EXIT_OK: "done; for check: the license allows it",
    EXIT_REFUSED: "the license does not allow it, or the gateway refused (the code says why)",
    EXIT_USAGE: "a usage error: a missing setting or argument, a mistyped license key",
    EXIT_UNREACHABLE: "the gateway could not be reached (GATEWAY_UNAVAILABLE): try again, or use request/import",
    EXIT_STATE: "the state directory cannot be used (STATE_UNUSABLE, STATE_LOCKED)",
    EXIT_CLOCK: "the computer's clock is behind a time it has seen (CLOCK_TAMPERED)",
}
KEY_PROMPT_TRIES = 5
NEXT_STEP = {
    "ALREADY_ACTIVATED": "This computer is activated already: run `licensor-activate check-in`, or, if its license file or "
    "key was lost, `licensor-activate recover KEY`.",
    "SEAT_LIMIT_REACHED": "Every seat of the license is in use: deactivate it on another computer, or take a dead "
    "computer's seat with `licensor-activate recover KEY`.",
    "RECOVERY_LIMIT_REACHED": "The license's recoveries for this period are used: ask the vendor to remove the old computer.",
    "LICENSE_NOT_FOUND": "No license of this product has that key: check the key, or ask the vendor.",
    "WITHDRAWN": "This computer's activation was removed or moved to another computer: ask the vendor, or "
    "`licensor-activate recover KEY`.",
    "FINGERPRINT_MISMATCH": "This computer changed too much since activation: `licensor-activate doctor` shows what changed; "
    "`licensor-activate recover KEY` moves the license to it.",
    "NOT_ACTIVATED": "Activate first: `licensor-activate activate`.",
}


class UsageError(Exception):
    """A setting or argument missing or wrong: exit 2."""

    code = "USAGE"


@dataclass
class Outcome:
    code: str
    document: dict[str, Any]
    lines: list[str] = field(default_factory=list)
    exit: int = EXIT_OK


# --- settings ---------------------------------------------------------------------------------------------------
def _settings(args: argparse.Namespace, environ: dict[str, str]) -> dict[str, Any]:
    path = args.config or environ.get("LICENSOR_ACTIVATE_CONFIG")
    shipped: dict[str, Any] = {}
    if path:
        try:
            shipped = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise UsageError(f"the settings file {path} cannot be read: {error}") from None
        if not isinstance(shipped, dict):
            raise UsageError(f"the settings file {path} is not a JSON object")
    chosen: dict[str, Any] = {}
    for name in ("server", "tenant", "product", "state_dir", "keys"):
        flag = getattr(args, name, None)
        chosen[name] = flag or environ.get(f"LICENSOR_{name.upper()}") or shipped.get(name)
    keys = chosen.pop("keys")
    public = shipped.get("public_keys")
    if keys:
        try:
            public = json.loads(Path(keys).read_text())
        except (OSError, ValueError) as error:
            raise UsageError(f"the keys file {keys} cannot be read: {error}") from None
    if isinstance(public, dict) and "keys" not in public:
        public = {"keys": [{"kid": kid, "public_key": value} for kid, value in public.items()]}
    chosen["public_keys"] = published_keys(public) if public else {}
    if not chosen["state_dir"]:
        base = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
        chosen["state_dir"] = os.path.join(base, "licensor", chosen["product"] or "default")
    return chosen


def _client(args: argparse.Namespace, environ: dict[str, str]) -> Client:
    chosen = _settings(args, environ)
    state = StateDir(chosen["state_dir"])
    credential = state.read_text("credential")
    product_token = state.read_text("product-token")
    common: dict[str, Any] = {"state_dir": chosen["state_dir"], "timeout_s": args.timeout}
    if credential is not None:
        return Client(None, None, None, credential_file=credential, **common)
    missing = [name for name in ("server", "tenant", "product") if not chosen[name]]
    if missing:
        raise UsageError(
            f"name the {', '.join(missing)} (flags --{missing[0]}, LICENSOR_{missing[0].upper()}, or the vendor's settings file)"
        )
    return Client(
        chosen["server"],
        chosen["tenant"],
        chosen["product"],
        public_keys=chosen["public_keys"] or None,
        product_token=product_token.strip() if product_token else None,
        device_name=args.device_name,
        **common,
    )


# --- the terminal ---------------------------------------------------------------------------------------------
class Terminal:
    def __init__(self, out: TextIO, err: TextIO, interactive: bool, ask: Callable[[str], str]) -> None:
        self.out, self.err, self.interactive, self.ask = out, err, interactive, ask

    @contextmanager
    def progress(self, what: str) -> Iterator[None]:
        """``what …`` with a dot every half second while the block runs (in a terminal only)."""
        if not self.interactive:
            yield
            return
        self.err.write(f"{what} ")
        self.err.flush()
        done = threading.Event()

        def dots() -> None:
            while not done.wait(0.5):
                self.err.write(".")
                self.err.flush()

        ticker = threading.Thread(target=dots, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()
            self.err.write(" done\n")
            self.err.flush()

    def license_key(self, given: str | None) -> str:
        """The key given, or asked for in a terminal until it has no typo.

        :raises UsageError: no key, and no terminal to ask on (or the tries ran out)."""
        if given:
            return normalize(given)  # a typo raises LicenseKeyError: exit 2
        if not self.interactive:
            raise UsageError("give the license key (there is no terminal to ask on)")
        for _ in range(KEY_PROMPT_TRIES):
            typed = self.ask("License key (XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX): ")
            if not typed.strip():
                self.err.write("  Please type the license key (it is in your order confirmation).\n")
                continue
            try:
                key = normalize(typed)
            except LicenseKeyError as typo:
                self.err.write(f"  {typo.message}. Please type it again.\n")
                continue
            self.err.write(f"  {grouped(key)}: the key looks right.\n")
            return key
        raise UsageError("no valid license key was typed")


# --- commands ----------------------------------------------------------------------------------------------------
def _when(seconds: float | None) -> str:
    return "never" if seconds is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def _check_outcome(result: CheckResult, features: Sequence[str]) -> Outcome:
    document = {
        "code": result.code,
        "valid": result.valid,
        "advice": result.advice,
        "features": dict(result.features),
        "expires_at": result.expires_at,
        "checkpoint_at": result.checkpoint_at,
        "lapses_at": result.lapses_at,
        "check_in_due": result.check_in_due,
    }
    asked = ", ".join(features) or "the license"
    if result.valid:
        lines = [f"✓ {asked}: allowed on this computer (valid until {_when(result.expires_at)})."]
        if result.lapses_at is not None:
            offline_until = result.lapses_at if result.expires_at is None else min(result.lapses_at, result.expires_at)
            lines.append(f"  Works offline until {_when(offline_until)}; check in before {_when(result.checkpoint_at)}.")
        if result.check_in_due:
            lines.append("  A check-in is due: run `licensor-activate check-in` while online.")
        return Outcome(result.code, document, lines)
    exit_code = EXIT_CLOCK if result.code == "CLOCK_TAMPERED" else EXIT_REFUSED
    return Outcome(result.code, document, [f"✗ {asked}: {result.code}.", f"  {result.advice}"], exit_code)


def _file_lines(verb: str, file: Any, key: str | None = None) -> list[str]:
    features = ", ".join(sorted(file.features)) or "none"
    named = f"the license with key …{key[-4:]}" if key else f"license {file.license_id}"
    offline_until = file.lapses_at if file.expires_at is None else min(file.lapses_at, file.expires_at)
    return [
        f"✓ {verb}: {named} on this computer (activation {file.activation_id}).",
        f"  Features: {features}. Valid until {_when(file.expires_at)}.",
        f"  Next: the program works offline until {_when(offline_until)}; check in before {_when(file.checkpoint_at)}.",
    ]


def _file_document(file: Any) -> dict[str, Any]:
    return {
        "license_id": file.license_id,
        "activation_id": file.activation_id,
        "generation": file.generation,
        "features": file.features,
        "expires_at": file.expires_at,
        "checkpoint_at": file.checkpoint_at,
        "lapses_at": file.lapses_at,
        "maintenance_until": file.maintenance_until,
        "mode": file.mode,
    }


def cmd_activate(client: Client, args: argparse.Namespace, term: Terminal) -> Outcome:
    key = term.license_key(args.key)
    with term.progress(f"Activating with the license server at {client.server}"):
        file = client.activate(key)
    return Outcome("ACTIVATED", {"code": "ACTIVATED", **_file_document(file)}, _file_lines("Activated", file, key))


def cmd_recover(client: Client, args: argparse.Namespace, term: Terminal) -> Outcome:
    key = term.license_key(args.key)
    with term.progress(f"Recovering the activation at {client.server}"):
        file = client.recover(key, args.withdraw)
    return Outcome("RECOVERED", {"code": "RECOVERED", **_file_document(file)}, _file_lines("Recovered", file, key))


def cmd_check(client: Client, args: argparse.Namespace, term: Terminal) -> Outcome:
    if client.credential is not None:  # cloud: a seat is checked out for the check, and given back
        with term.progress(f"Checking a seat out at {client.server}"), client.lease(*args.features):
            result = client.check(*args.features)
        return _check_outcome(result, args.features)
    if client.product_token is not None:  # cloud-lite: what a subject may do
        if not args.subject:
            raise UsageError("name the subject (--subject) whose entitlements to check")
        with term.progress(f"Asking {client.server}"):
            granted = client.entitlements(args.subject)
        missing = [f for f in args.features if not granted.allows(f)]
        code = "FEATURE_NOT_ENTITLED" if missing else "VALID"
        document = {"code": code, "valid": not missing, "subject": args.subject, "features": granted.features}
        line = (
            f"✓ {args.subject} may use {', '.join(args.features) or 'the product'}."
            if not missing
            else (f"✗ {args.subject} may not use {', '.join(missing)}.")
        )
        return Outcome(code, document, [line], EXIT_REFUSED if missing else EXIT_OK)
    return _check_outcome(client.check(*args.features), args.features)


def cmd_check_in(client: Client, args: argparse.Namespace, term: Terminal) -> Outcome:
    if client.product_token is not None:
        return Outcome("VALID", {"code": "VALID"}, ["✓ Nothing to renew: a SaaS backend's answers are asked for at every check."])
    if client.credential is not None:
        with term.progress(f"Checking a seat out at {client.server}"), client.lease() as lease:
            document = {"code": "VALID", "lease_expires_at": lease.expires_at}
        return Outcome("VALID", document, ["✓ The credential file holds a seat of its license (given back again)."])
    with term.progress(f"Checking in with {client.server}"):
        file = client.check_in()
    return Outcome("CHECKED_IN", {"code": "CHECKED_IN", **_file_document(file)}, _file_lines("Checked in", file))


def cmd_deactivate(client: Client, args: argparse.Namespace, term: Terminal) -> Outcome:
    if args.offline:
        receipt = client.offline_deactivation()
        return Outcome(
            "DEACTIVATED",
            {"code": "DEACTIVATED", "receipt": receipt},
            [
                "✓ Deactivated here: the license file is deleted. Give the vendor this receipt (read it out, type it, or",
                "  scan it); the seat is free once they enter it (licensor admin activations deactivation-receipt):",
                f"  {receipt}",
            ],
        )
    if client.credential is not None or client.product_token is not None:
        client.state.remove("credential")
        client.state.remove("product-token")
        return Outcome("DEACTIVATED", {"code": "DEACTIVATED"}, ["✓ Removed from this computer."])
    with term.progress(f"Giving the seat back at {client.server}"):
        activation = client.deactivate()
    return Outcome(
        "DEACTIVATED",
        {"code": "DEACTIVATED", "activation_id": activation.get("id")},
        ["✓ Deactivated: the seat is free for another computer now.", "  Next: activate again to use the program here."],
    )


def cmd_request(client: Client, args: argparse.Namespace, term: Terminal) -> Outcome:
    key = term.license_key(args.key)
    request = client.offline_request(key, new=args.new)
    # The request holds the license key: readable by this user only.
    descriptor = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(request + "\n")
    return Outcome(
        "REQUESTED",
        {"code": "REQUESTED", "request_file": args.out},
        [
            f"✓ Wrote the activation request file {args.out}.",
            "  Next: send it to the vendor (mail, a USB stick); import the license file they answer with:",
            "  licensor-activate import license.lf1",
        ],
    )


def cmd_import(client: Client, args: argparse.Namespace, term: Terminal) -> Outcome:
    try:
        text = Path(args.file).read_text()
    except OSError as error:
        raise UsageError(f"{args.file} cannot be read: {error.strerror}") from None
    file = client.offline_import(text)
    return Outcome("ACTIVATED", {"code": "ACTIVATED", **_file_document(file)}, _file_lines("Imported", file))


def cmd_cancel(client: Client, args: argparse.Namespace, term: Terminal) -> Outcome:
    had = client.offline_cancel()
    line = "✓ The pending offline activation was dropped." if had else "Nothing was pending."
    return Outcome("CANCELLED" if had else "NOTHING_PENDING", {"code": "CANCELLED" if had else "NOTHING_PENDING"}, [line])


def cmd_status(client: Client, args: argparse.Namespace, term: Terminal) -> Outcome:
    result = client.check()
    file = client.license_file()
    backend = "cloud" if client.credential else "cloud-lite" if client.product_token else "activation"
    document: dict[str, Any] = {
        "code": result.code,
        "backend": backend,
        "server": client.server,
        "tenant": client.tenant,
        "product": client.product,
        "state_dir": str(client.state.path),
        "device_key": client.device_key().key_id,
        "offline_pending": client.offline_pending() is not None,
        "license_file": None if file is None else _file_document(file),
    }
    lines = [f"{client.product} at {client.server} ({backend}); state in {client.state.path}", f"  status: {result.code}"]
    if file is not None:
        lines += _file_lines("Active", file)[1:]
    if result.advice:
        lines.append(f"  {result.advice}")
    if document["offline_pending"]:
        lines.append("  An offline activation waits for its license file: licensor-activate import FILE")
    return Outcome(result.code, document, lines)


def cmd_doctor(client: Client, args: argparse.Namespace, term: Terminal) -> Outcome:
    """Why a check fails: fingerprint drift, the clock, proxies and connectivity, a seat held elsewhere."""
    findings: list[dict[str, Any]] = []

    def finding(area: str, ok: bool, detail: str) -> None:
        findings.append({"area": area, "ok": ok, "detail": detail})

    reading = client.machine()
    finding("environment", True, f"{reading.environment.kind} {reading.environment.evidence}".strip())
    for name, why in sorted(reading.skipped.items()):
        finding(f"component {name}", True, f"not read: {why}")
    file = client.license_file()
    if file is not None:
        now = client.fingerprint()
        changed = sorted(name for name, value in file.fingerprint.items() if now.get(name) != value)
        score = file.rule.score(file.fingerprint, now)
        detail = f"{score:.0%} of the activation's fingerprint unchanged (needs {file.rule.threshold:.0%})"
        if changed:
            detail += f"; changed or missing: {', '.join(changed)}"
        finding("fingerprint", score >= file.rule.threshold, detail)
    clock = client.trusted.read()
    learned = client.trusted.corrected() - clock.device_now
    clock_detail = f"{clock.grade.value}; {clock.behind_s / 3600:.1f} h behind the latest trusted time"
    if abs(learned) >= 1:
        clock_detail += f"; corrected by {learned:+.0f} s learned from the gateway's signed time"
    finding("clock", clock.grade is ClockGrade.OK, clock_detail)
    proxies = {
        name: os.environ[name]
        for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
        if name in os.environ
    }
    finding("proxy", True, ", ".join(f"{k}={_without_password(v)}" for k, v in proxies.items()) or "none set")
    try:
        with term.progress(f"Reaching {client.server}"):
            probed = client.probe()
        finding("connectivity", True, f"the gateway at {client.server} answers ({probed['keys']} public key(s) of the tenant)")
        if probed["server_time"] is not None:
            skew = clock.device_now - probed["server_time"]
            finding("clock skew", abs(skew) < 300, f"this clock is {skew:+.0f} s from the gateway's (its Date header)")
    except (GatewayUnavailableError, RefusedError) as error:
        finding("connectivity", False, f"{error.code}: {error.message}")
    result = client.check()
    if result.code in ("SEAT_LIMIT_REACHED", "WITHDRAWN", "LEASE_TAKEN_OVER"):
        finding("seat", False, "the seat is held by another computer: deactivate it there, or recover here")
    finding("check", result.valid, f"{result.code}: {result.advice}" if result.advice else result.code)
    ok = all(f["ok"] for f in findings)
    lines = [f"{'✓' if f['ok'] else '✗'} {f['area']}: {f['detail']}" for f in findings]
    return Outcome(
        "OK" if ok else "PROBLEMS_FOUND",
        {"code": "OK" if ok else "PROBLEMS_FOUND", "findings": findings},
        lines,
        EXIT_OK if ok else EXIT_REFUSED,
    )


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


COMMANDS: dict[str, tuple[Callable[[Client, argparse.Namespace, Terminal], Outcome], str]] = {
    "activate": (cmd_activate, "activate this computer (asks for the license key in a terminal)"),
    "status": (cmd_status, "what is activated here, offline"),
    "check": (cmd_check, "may this computer use FEATURE now (offline for activations)"),
    "check-in": (cmd_check_in, "renew the license file (before its checkpoint)"),
    "deactivate": (cmd_deactivate, "give the seat back now (--offline: a signed receipt for the vendor)"),
    "recover": (cmd_recover, "activate again after losing the file or key, or take a dead computer's seat"),
    "request": (cmd_request, "offline activation: write the request file for the vendor"),
    "import": (cmd_import, "offline activation: import the vendor's license file"),
    "cancel": (cmd_cancel, "offline activation: drop the pending request"),
    "doctor": (cmd_doctor, "explain why a check fails (fingerprint, clock, proxy, connectivity, seat)"),
}


def _settings_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The settings every command takes, before or after its name (after it, they override)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--config", default=default(None), help="the vendor's settings file (JSON)")
    parser.add_argument("--server", default=default(None), help="the license server's URL")
    parser.add_argument("--tenant", default=default(None), help="the vendor's tenant id")
    parser.add_argument("--product", default=default(None), help="the product's code")
    parser.add_argument("--state-dir", dest="state_dir", default=default(None), help="where the license is kept on this computer")
    parser.add_argument("--keys", default=default(None), help="the vendor's public keys (the answer of GET /v1/keys, as a file)")
    parser.add_argument(
        "--device-name", dest="device_name", default=default(None), help="a name for this computer, shown to the vendor"
    )
    parser.add_argument("--timeout", type=float, default=default(10.0), help="seconds per request (default 10)")
    parser.add_argument("--json", action="store_true", default=default(False), help="print one JSON object; never ask")


def _parser() -> argparse.ArgumentParser:
    epilog = "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="licensor-activate",
        description="Activate this computer's license, check it, and move it: a guide in a terminal, a tool in scripts.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _settings_options(parser, suppress=False)
    shared = argparse.ArgumentParser(add_help=False)
    _settings_options(shared, suppress=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary, parents=[shared])
        if name in ("activate", "recover", "request"):
            sub.add_argument("key", nargs="?", help="the license key (asked for in a terminal when left out)")
        if name == "activate":
            sub.add_argument("--credential-file", dest="credential_file", help="cloud: import this credential file instead")
            sub.add_argument("--product-token", dest="product_token", help="cloud-lite: keep this product token instead")
        if name == "recover":
            sub.add_argument("--withdraw", help="the activation id of the dead computer whose seat to take")
        if name == "request":
            sub.add_argument("--out", required=True, help="where to write the request file")
            sub.add_argument("--new", action="store_true", help="a new request instead of the pending one")
        if name == "deactivate":
            sub.add_argument("--offline", action="store_true", help="without network: print a receipt for the vendor")
        if name == "import":
            sub.add_argument("file", help="the license file the vendor answered with")
        if name == "check":
            sub.add_argument("features", nargs="*", help="the features to check")
            sub.add_argument("--subject", help="cloud-lite: the user or customer to check")
    return parser


def _import_secret(args: argparse.Namespace, environ: dict[str, str]) -> Outcome | None:
    """``activate --credential-file`` / ``--product-token``: kept in the state directory (0600) before the client
    is made from it."""
    if args.command != "activate" or not (args.credential_file or args.product_token):
        return None
    chosen = _settings(args, environ)
    if args.credential_file:
        credential = read_credential_file(Path(args.credential_file))  # CredentialFileError: exit 2
        state = StateDir(chosen["state_dir"])
        state.write_text("credential", Path(args.credential_file).read_text())
        return Outcome(
            "IMPORTED",
            {"code": "IMPORTED", "credential_id": credential.credential_id, "state_dir": str(state.path)},
            [
                f"✓ Imported credential {credential.credential_id} for {credential.product}.",
                "  Next: licensor-activate check FEATURE",
            ],
        )
    StateDir(chosen["state_dir"]).write_text("product-token", args.product_token + "\n")
    return Outcome(
        "IMPORTED", {"code": "IMPORTED"}, ["✓ Kept the product token.", "  Next: licensor-activate check --subject S FEATURE"]
    )


def main(argv: Sequence[str] | None = None, *, environ: dict[str, str] | None = None, stdin: TextIO | None = None) -> int:
    """Run one command; returns the exit code (:data:`EXIT_CODES`)."""
    environ = dict(os.environ if environ is None else environ)
    stdin = stdin or sys.stdin
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0) and EXIT_USAGE
    interactive = not args.json and stdin.isatty() and sys.stderr.isatty()

    def ask(prompt: str) -> str:
        sys.stderr.write(prompt)
        sys.stderr.flush()
        line = stdin.readline()
        if not line:
            raise UsageError("no license key was typed")
        return line

    term = Terminal(sys.stdout, sys.stderr, interactive, ask)
    outcome: Outcome
    client: Client | None = None
    try:
        imported = _import_secret(args, environ)
        if imported is not None:
            outcome = imported
        else:
            client = _client(args, environ)
            outcome = COMMANDS[args.command][0](client, args, term)
    except UsageError as error:
        outcome = Outcome("USAGE", {"code": "USAGE", "message": str(error)}, [f"✗ {error}"], EXIT_USAGE)
    except LicenseKeyError as error:
        outcome = Outcome(error.code, {"code": error.code, "message": error.message}, [f"✗ {error.message}."], EXIT_USAGE)
    except GatewayUnavailableError as error:
        lines = [
            f"✗ {error.message}.",
            "  Check the network (and HTTPS_PROXY), try again, or activate offline: licensor-activate request",
        ]
        outcome = Outcome(error.code, {"code": error.code, "message": error.message}, lines, EXIT_UNREACHABLE)
    except StateError as error:
        outcome = Outcome(error.code, {"code": error.code, "message": error.message}, [f"✗ {error.message}"], EXIT_STATE)
    except OSError as error:  # a file named on the command line that cannot be read or written
        where = f" ({error.filename})" if error.filename else ""
        outcome = Outcome(
            "FILE_UNUSABLE",
            {"code": "FILE_UNUSABLE", "message": f"{error.strerror}{where}"},
            [f"✗ {error.strerror}{where}"],
            EXIT_USAGE,
        )
    except (CredentialFileError, ValueError) as error:  # a credential file or setting that is not one
        code = getattr(error, "code", "INVALID_SETTING")
        outcome = Outcome(code, {"code": code, "message": str(error)}, [f"✗ {error}"], EXIT_USAGE)
    except (RefusedError, TokenError, LicensorError) as error:
        lines = [f"✗ {error.code}: {error.message}"]
        if error.code in NEXT_STEP:
            lines.append(f"  {NEXT_STEP[error.code]}")
        document = {"code": error.code, "message": error.message, "next_step": NEXT_STEP.get(error.code)}
        outcome = Outcome(error.code, document, lines, EXIT_REFUSED)
    except KeyboardInterrupt:
        return 130
    finally:
        if client is not None:
            client.close()
    if args.json:
        print(json.dumps({"command": args.command, "exit": outcome.exit, **outcome.document}, sort_keys=True))
    else:
        for line in outcome.lines:
            print(line)
    return outcome.exit


def run() -> None:
    """The console script ``licensor-activate``."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")  # a terminal that cannot show ✓ gets ? instead of a traceback
    sys.exit(main())
