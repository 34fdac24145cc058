"""The License Portal's pages: ``/portal/{tenant}/``, server-rendered (jinja2), for the tenant's customers.

A customer signs in with a license key (that license), or with their e-mail address and password, or by a
single-use link mailed to them (all their licenses). What they change goes through the same operations as the
admin API (run with :func:`licensor.gateway.api.run_as` as ``portal:<customer or license>``), so every action
writes the same event, and the backends' rules apply unchanged; the portal checks first (or, for what a file
names, before the transaction commits) that the object belongs to one of the session's licenses. Another
customer's or tenant's object is "not found" by every URL.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson
from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape
from licensor_client.receipts import ReceiptError, read_receipt
from licensor_client.releases import VALID, is_prerelease, release_entitlement, version_key

from licensor.errors import LicensorError, NotFoundError, RateLimitedError, RequestRefusedError, ValidationError
from licensor.gateway import keys as app_keys
from licensor.gateway.api import run_as
from licensor.gateway.limits import limit_key
from licensor.mail import Mail
from licensor.model import (
    ACTIVATION,
    CREDENTIAL,
    CUSTOMER,
    LEASE,
    LICENSE,
    PORTAL_BRANDING,
    RELEASE,
    format_time,
    id_pattern,
)
from licensor.operations import Principal, Reply
from licensor.portal import security
from licensor.portal.security import PortalSession
from licensor.store import Row

log = logging.getLogger("licensor.portal")

_TENANT = re.compile(id_pattern("ten"))
_ACTIVATION = re.compile(id_pattern("act"))
_PATH_IDS = {
    "license": re.compile(id_pattern("lic")),
    "activation": _ACTIVATION,
    "credential": re.compile(id_pattern("crd")),
    "lease": re.compile(id_pattern("lse")),
    "release": re.compile(id_pattern("rel")),
    "token": re.compile(r"^ptk_[0-9A-HJKMNP-TV-Z]{26}\.[A-Za-z0-9_-]{43}$"),
}
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}$")
MAX_UPLOAD_BYTES = 64 << 10
"""An activation request file, a deactivation receipt: far smaller than this."""

_ENV = Environment(loader=PackageLoader("licensor.portal", "templates"), autoescape=select_autoescape(["html"]))
EXPIRED = {"title": "This link has expired", "message": "Ask for a new one.", "code": "LINK_EXPIRED"}
_ENV.filters["when"] = lambda micros: (format_time(micros) or "")[:16].replace("T", " ") if micros else "—"


@dataclass(frozen=True)
class Brand:
    name: str
    logo_url: str | None
    primary: str
    accent: str

    @property
    def on_primary(self) -> str:
        """Black or white text on the primary colour, whichever has the higher contrast (WCAG)."""
        red, green, blue = (int(self.primary[i : i + 2], 16) / 255 for i in (1, 3, 5))

        def linear(c: float) -> float:
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

        luminance = 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)
        return "#000000" if (luminance + 0.05) / 0.05 > 1.05 / (luminance + 0.05) else "#ffffff"


# --- the frame every page shares ------------------------------------------------------------------------
class Page:
    """One request to the portal of one tenant: its store, its brand, the session (if signed in)."""

    def __init__(self, request: web.Request, tenant_id: str, brand: Brand, session: PortalSession | None) -> None:
        self.request = request
        self.tenant_id = tenant_id
        self.brand = brand
        self.session = session
        self.app = request.app
        self.store = request.app[app_keys.STORE]
        self.services = request.app[app_keys.SERVICES]
        self.base = security.portal_path(tenant_id)

    def now(self) -> int:
        return self.services.now_us()

    def render(self, template: str, status: int = 200, **context: Any) -> web.Response:
        response = web.Response(status=status, content_type="text/html", charset="utf-8")
        token = self.session.csrf if self.session is not None else security.form_token(self.request, response, self.tenant_id)
        response.text = _ENV.get_template(template).render(
            brand=self.brand, base=self.base, session=self.session, csrf=token, **context
        )
        _harden(response)
        return response

    def redirect(self, path: str, notice: str | None = None) -> NoReturn:
        location = self.base + path + (f"?notice={notice}" if notice else "")
        response = web.HTTPSeeOther(location)
        _harden(response)
        raise response

    @property
    def principal(self) -> Principal:
        assert self.session is not None
        return Principal(self.tenant_id, "", "support", None, actor=self.session.actor)

    async def licenses(self) -> list[Row]:
        """The session's licenses, oldest first."""
        assert self.session is not None
        if self.session.license_id is not None:
            row = await self.store.get(self.tenant_id, LICENSE, self.session.license_id)
            return [row] if row is not None else []
        rows, after = [], None
        while True:
            page = await self.store.list(self.tenant_id, LICENSE, {"customer_id": self.session.customer_id}, after, 200)
            rows.extend(page.rows)
            if not page.has_more or len(rows) >= 1000:
                return rows
            after = page.rows[-1]["id"]

    async def own_license(self, license_id: str) -> Row:
        """One of the session's licenses. :raises NotFoundError: any other (another customer's: not found)."""
        for row in await self.licenses():
            if row["id"] == license_id:
                return row
        raise NotFoundError("no such license", code="LICENSE_NOT_FOUND")

    async def own(self, resource: Any, object_id: str, license_id: str) -> Row:
        """An activation, credential or lease of the session's license ``license_id``."""
        await self.own_license(license_id)
        row = await self.store.get(self.tenant_id, resource, object_id)
        if row is None or row["license_id"] != license_id:
            raise NotFoundError(f"no such {resource.name}", code=f"{resource.name.upper()}_NOT_FOUND")
        return row

    async def run(
        self,
        operation_id: str,
        path: dict[str, str],
        body: dict[str, Any],
    ) -> Reply:
        operation = self.app[app_keys.OPERATIONS].get(operation_id)
        if operation is None:  # the backend that offers it is not installed
            raise NotFoundError("this gateway cannot do that for this license", code="OPERATION_UNAVAILABLE")
        return await run_as(operation, self.services, self.request, self.principal, path, body)

    async def form(self) -> dict[str, Any]:
        """The posted form, its CSRF token checked.

        :raises RequestRefusedError: CSRF_TOKEN_INVALID (403)."""
        if self.request.content_length is not None and self.request.content_length > MAX_UPLOAD_BYTES:
            raise ValidationError("the form is too large", code="FORM_TOO_LARGE")
        try:
            data = dict(await self.request.post())
        except (ValueError, LookupError, AssertionError):  # not UTF-8, an unknown charset, broken multipart
            raise ValidationError("the form cannot be read", code="FORM_MALFORMED") from None
        if any(isinstance(value, str) and ("\x00" in value or len(value) > MAX_UPLOAD_BYTES) for value in data.values()):
            raise ValidationError("a field of the form holds a NUL character or is too long", code="FORM_MALFORMED")
        token = data.get("csrf")
        if not isinstance(token, str) or not security.csrf_valid(self.request, token, self.session):
            raise RequestRefusedError(
                "CSRF_TOKEN_INVALID", "the form has expired or was not sent from this portal; try again", 403
            )
        return data


def _harden(response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # the links' tokens stay out of other sites' logs
    response.headers["Cache-Control"] = "no-store"


Handler = Callable[[Page], Awaitable[web.StreamResponse]]


def page(*, signed_in: bool) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """A portal handler: the tenant resolved, the brand and session read, errors shown as a page."""

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def route(request: web.Request) -> web.StreamResponse:
            tenant_id = request.match_info["tenant"]
            store = request.app[app_keys.STORE]
            if not _TENANT.fullmatch(tenant_id) or (tenant := await store.get_tenant(tenant_id)) is None:
                return web.Response(status=404, text="No such portal.", content_type="text/plain")
            for name, value in request.match_info.items():  # an id of another shape names nothing (and no NUL reaches SQL)
                if name in _PATH_IDS and not _PATH_IDS[name].fullmatch(value):
                    return web.Response(status=404, text="Not found.", content_type="text/plain")
            brand = await _brand(request, tenant)
            now = request.app[app_keys.SERVICES].now_us()
            current = await security.current_session(request, store, tenant_id, now)
            view = Page(request, tenant_id, brand, current)
            if signed_in and current is None:
                view.redirect("", "signed-out")
            try:
                return await handler(view)
            except web.HTTPException:
                raise
            except LicensorError as error:
                status = error.http_status if error.http_status < 500 else 503
                return view.render("message.html", status, title="That did not work", message=error.message, code=error.code)

        return route

    return wrap


async def _brand(request: web.Request, tenant: Row) -> Brand:
    page_ = await request.app[app_keys.STORE].list(tenant["id"], PORTAL_BRANDING, {}, None, 1)
    if not page_.rows:
        return Brand(tenant["name"], None, "#1f4e8c", "#0b7a5c")
    row = page_.rows[0]
    return Brand(row["name"], row["logo_url"], row["primary_color"], row["accent_color"])


def _public_base(view: Page) -> str:
    """Where customers reach the gateway, for links in mail: ``--public-url``, else the address it listens on;
    never the request's Host header, which whoever asks for a link chooses."""
    settings = view.app[app_keys.SETTINGS]
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


def _client(request: web.Request) -> str:
    """The client's address as the rate limits count it (an IPv6 client by its /64, which one host holds)."""
    return limit_key(request.get(app_keys.CLIENT) or request.remote or "unknown")


def _email_of(data: dict[str, Any]) -> str:
    """The e-mail address a form gives, trimmed and lower-cased; "" when it is not one (never a rate-limit key of
    any size)."""
    email = str(data.get("email", "")).strip().lower()
    return email if _EMAIL.fullmatch(email) else ""


def _refused(view: Page, *keys: str, mail: bool = False) -> web.Response | None:
    """A "too many attempts" page when one of ``keys`` (client address, account) has used up its budget (the
    rate_limits.mail_links setting for links to mail, else rate_limits.sign_in: sign-ins and links used, each
    counted apart); else None, with one attempt counted for each key."""
    limits = view.app[app_keys.LIMITS]
    budget = limits.mail_links if mail else limits.sign_in
    if budget is None:
        return None
    # Hashed: an e-mail address of any length costs 16 bytes of the budget's memory.
    hashed = [
        hashlib.blake2b(f"{view.tenant_id} {key}".encode("utf-8", "surrogatepass"), digest_size=16).hexdigest() for key in keys
    ]
    try:
        for key in hashed:
            budget.check(key, "attempts")
        for key in hashed:
            budget.take(key, "attempts")
    except RateLimitedError as error:
        response = view.render(
            "message.html",
            429,
            title="Too many attempts",
            message=f"Please wait {error.headers['Retry-After']} seconds and try again.",
            code="RATE_LIMITED",
        )
        response.headers.update(error.headers)
        return response
    return None


# --- signing in ----------------------------------------------------------------------------------------
@page(signed_in=False)
async def home(view: Page) -> web.StreamResponse:
    if view.session is not None:
        view.redirect("licenses")
    return view.render("sign_in.html", notice=view.request.query.get("notice"))


@page(signed_in=False)
async def sign_in_with_key(view: Page) -> web.StreamResponse:
    data = await view.form()
    if refused := _refused(view, f"ip {_client(view.request)}"):
        return refused
    key = str(data.get("license_key", ""))
    try:
        licensed = await view.services.license_by_key(view.tenant_id, key)
    except ValidationError:
        licensed = None
    if licensed is None:
        await _record(view, "portal.sign_in_failed", "tenant", view.tenant_id, {"method": "license_key"})
        return view.render("sign_in.html", 401, error="This license key was not found. Check it and try again.")
    response = web.HTTPSeeOther(view.base + "licenses")
    async with view.store.transaction(view.tenant_id) as tx:
        await security.open_session(tx, response, view.request, view.services.public_url, view.now(), license_id=licensed.id)
        await tx.append_event("portal.signed_in", "license", licensed.id, f"portal:{licensed.id}", {"method": "license_key"})
    raise response


@page(signed_in=False)
async def sign_in_with_password(view: Page) -> web.StreamResponse:
    data = await view.form()
    email = _email_of(data)
    if refused := _refused(view, f"ip {_client(view.request)}", f"account {email}"):
        return refused
    customer = await _customer_by_email(view, email)
    if not await security.password_matches(customer["password_hash"] if customer else None, str(data.get("password", ""))):
        await _record(view, "portal.sign_in_failed", "tenant", view.tenant_id, {"method": "password"})
        return view.render("sign_in.html", 401, error="The e-mail address or the password is not right.", email=email)
    assert customer is not None
    response = web.HTTPSeeOther(view.base + "licenses")
    async with view.store.transaction(view.tenant_id) as tx:
        await security.open_session(tx, response, view.request, view.services.public_url, view.now(), customer_id=customer["id"])
        await tx.append_event("portal.signed_in", "customer", customer["id"], f"portal:{customer['id']}", {"method": "password"})
    raise response


async def _customer_by_email(view: Page, email: str) -> Row | None:
    """The customer with this address, however its letters are cased where it was stored."""
    if not email:
        return None
    return await view.store.customer_by_email(view.tenant_id, email)


LINKS = {
    "password": ("password", "Set your password", "Choose a password for the License Portal"),
    "link": ("sign_in", "Your sign-in link", "Sign in to the License Portal"),
}


@page(signed_in=False)
async def ask_for_link(view: Page) -> web.StreamResponse:
    kind = view.request.match_info["kind"]
    return view.render("ask_link.html", kind=kind)


@page(signed_in=False)
async def send_link(view: Page) -> web.StreamResponse:
    kind = view.request.match_info["kind"]
    purpose, subject, action = LINKS[kind]
    data = await view.form()
    email = _email_of(data)
    if refused := _refused(view, f"link ip {_client(view.request)}", f"link {email}", mail=True):
        return refused
    customer = await _customer_by_email(view, email)
    if customer is not None:
        async with view.store.transaction(view.tenant_id) as tx:
            token = await security.issue_link(tx, customer["id"], purpose, view.now())
            await tx.append_event(f"portal.{purpose}_link_sent", "customer", customer["id"], "portal", {"email": email})
        url = f"{_public_base(view)}{view.base}{kind}/{token}"
        text = (
            f"{action} of {view.brand.name}: open this link within 30 minutes. It works once.\n\n{url}\n\n"
            "If you did not ask for it, ignore this message: nothing changes.\n"
        )
        _send_soon(view, Mail(email, f"{view.brand.name}: {subject}", text))
    # The same answer whether or not the address is a customer's: the page tells nobody who is one.
    return view.render("message.html", title="Check your mail", message=f"If {email} holds licenses here, a link is on its way.")


_SENDING: set[asyncio.Task[None]] = set()


def _send_soon(view: Page, mail: Mail) -> None:
    """Send after answering: how long a mail server takes must not tell who is a customer."""

    async def send() -> None:
        try:
            await view.app[app_keys.MAIL].send(mail)
        except Exception:
            log.exception("the portal could not send a link to a customer")

    task = asyncio.get_running_loop().create_task(send())
    _SENDING.add(task)
    task.add_done_callback(_SENDING.discard)


@page(signed_in=False)
async def open_link(view: Page) -> web.StreamResponse:
    kind, token = view.request.match_info["kind"], view.request.match_info["token"]
    if await security.link_valid(view.store, view.tenant_id, token, LINKS[kind][0], view.now()) is None:
        return view.render("message.html", 410, **EXPIRED)
    # A page with a button, not an action on GET: a mail scanner that follows the link spends nothing.
    return view.render("use_link.html", kind=kind, token=token)


@page(signed_in=False)
async def use_link(view: Page) -> web.StreamResponse:
    kind, token = view.request.match_info["kind"], view.request.match_info["token"]
    data = await view.form()
    if refused := _refused(view, f"link use ip {_client(view.request)}"):
        return refused
    if await security.link_valid(view.store, view.tenant_id, token, LINKS[kind][0], view.now()) is None:
        return view.render("message.html", 410, **EXPIRED)  # before any hashing: a made-up link costs nothing
    password = str(data.get("password", ""))
    if kind == "password" and not 10 <= len(password) <= 200:
        return view.render("use_link.html", 422, kind=kind, token=token, error="Choose a password of 10 to 200 characters.")
    hashed = await security.hash_password(password) if kind == "password" else None
    response = web.HTTPSeeOther(view.base + "licenses")
    async with view.store.transaction(view.tenant_id) as tx:
        row = await security.link_holder(tx, token, LINKS[kind][0], view.now(), spend=True)
        if row is None:
            return view.render(
                "message.html", 410, title="This link has expired", message="Ask for a new one.", code="LINK_EXPIRED"
            )
        customer_id = row["customer_id"]
        if hashed is not None:  # a new password ends every other session and link of the customer
            await tx.update(CUSTOMER, customer_id, {"password_hash": hashed})
            await security.revoke_customer(tx, customer_id, view.now())
            await tx.append_event("portal.password_set", "customer", customer_id, f"portal:{customer_id}", {})
        await security.open_session(tx, response, view.request, view.services.public_url, view.now(), customer_id=customer_id)
        await tx.append_event("portal.signed_in", "customer", customer_id, f"portal:{customer_id}", {"method": kind})
    raise response


@page(signed_in=True)
async def sign_out(view: Page) -> web.StreamResponse:
    await view.form()
    assert view.session is not None
    response = web.HTTPSeeOther(view.base + "?notice=signed-out")
    async with view.store.transaction(view.tenant_id) as tx:
        await security.close_session(tx, view.session, response)
        await tx.append_event("portal.signed_out", "tenant", view.tenant_id, view.session.actor, {})
    raise response


async def _record(view: Page, kind: str, subject_type: str, subject_id: str, data: dict[str, Any]) -> None:
    async with view.store.transaction(view.tenant_id) as tx:
        await tx.append_event(kind, subject_type, subject_id, "portal", data)


# --- what a customer holds -----------------------------------------------------------------------------
@page(signed_in=True)
async def list_licenses(view: Page) -> web.StreamResponse:
    cards = [await _summary(view, row) for row in await view.licenses()]
    return view.render("licenses.html", cards=cards, notice=view.request.query.get("notice"))


async def _summary(view: Page, row: Row) -> dict[str, Any]:
    licensed = await view.services.license_by_id(view.tenant_id, row["id"])
    assert licensed is not None
    return {
        "license": LICENSE.to_api(row),
        "product": licensed.product,
        "policy": licensed.policy,
        "features": sorted(licensed.features.items()),
        "raw": row,
    }


@page(signed_in=True)
async def show_license(view: Page) -> web.StreamResponse:
    row = await view.own_license(view.request.match_info["license"])
    summary = await _summary(view, row)
    backend = summary["policy"]["backend"]
    context: dict[str, Any] = {"card": summary, "backend": backend, "notice": view.request.query.get("notice")}
    now = view.now()
    if backend == "activation":
        rows = (await view.store.list(view.tenant_id, ACTIVATION, {"license_id": row["id"]}, None, 200)).rows
        context["devices"] = [a for a in rows if a["state"] in ("active", "suspended", "withdrawn")]
    if backend == "cloud":
        context["credentials"] = (await view.store.list(view.tenant_id, CREDENTIAL, {"license_id": row["id"]}, None, 200)).rows
        leases = await view.store.leases_overlapping(view.tenant_id, row["id"], now, now + 1, 500)
        context["leases"] = [lease for lease in leases if lease["state"] == "active" and lease["expires_at"] > now]
    context["releases"] = await _releases(view, summary)
    return view.render("license.html", **context)


async def _releases(view: Page, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The product's releases, newest first, with whether this license may install each."""
    rows, after = [], None
    while True:
        found = await view.store.list(view.tenant_id, RELEASE, {"product_id": summary["product"]["id"], "yanked": 0}, after, 200)
        rows.extend(found.rows)
        if not found.has_more or len(rows) >= 1000:
            break
        after = found.rows[-1]["id"]
    maintenance = summary["raw"]["maintenance_until"]
    shown = []
    for row in sorted(rows, key=lambda r: version_key(r["version"]), reverse=True)[:20]:
        if row["released_at"] > view.now() or is_prerelease(row["version"]):
            continue
        code = release_entitlement(
            version=row["version"],
            released_at=row["released_at"] // 1_000_000,
            required_features=RELEASE.field("required_features").column_to_api(row["required_features"]),
            yanked=False,
            features=dict(summary["features"]),
            maintenance_until=None if maintenance is None else maintenance // 1_000_000,
        )
        shown.append({"release": RELEASE.to_api(row), "entitled": code == VALID, "code": code})
    return shown


@page(signed_in=True)
async def download_release(view: Page) -> web.StreamResponse:
    info = view.request.match_info
    row = await view.own_license(info["license"])
    summary = await _summary(view, row)
    for item in await _releases(view, summary):
        release = item["release"]
        if release["id"] == info["release"] and item["entitled"]:
            for artifact in release["artifacts"]:
                if artifact["name"] == info["artifact"]:
                    await _record(
                        view,
                        "portal.release_downloaded",
                        "license",
                        row["id"],
                        {"release": release["id"], "artifact": artifact["name"]},
                    )
                    raise web.HTTPFound(artifact["url"])
    raise NotFoundError("no such release file for this license", code="RELEASE_NOT_FOUND")


# --- devices (the activation backend) ------------------------------------------------------------------
@page(signed_in=True)
async def remove_device(view: Page) -> web.StreamResponse:
    info = view.request.match_info
    await view.form()
    await view.own(ACTIVATION, info["activation"], info["license"])
    await view.run("withdraw_activation", {"id": info["activation"]}, {"reason": "removed in the License Portal"})
    view.redirect(f"licenses/{info['license']}", "device-removed")


async def _upload(data: dict[str, Any], field: str) -> str:
    value = data.get(f"{field}_file")
    text = ""
    if isinstance(value, web.FileField):
        text = value.file.read(MAX_UPLOAD_BYTES + 1).decode("utf-8", "replace")
    if not text.strip():
        text = str(data.get(field, ""))
    return text.strip()


async def _license_a_request_names(view: Page, text: str) -> str | None:
    """The license an activation request file is for (read, not verified: the backend verifies it), by the license
    key it carries or the activation it names."""
    parts = text.split(".")
    try:
        document = orjson.loads(base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))) if len(parts) == 4 else None
    except (ValueError, orjson.JSONDecodeError):
        document = None
    if not isinstance(document, dict):
        raise ValidationError("this is not an activation request file", code="REQUEST_FILE_MALFORMED")
    if isinstance(document.get("license_key"), str):
        licensed = await view.services.license_by_key(view.tenant_id, document["license_key"])
        return licensed.id if licensed is not None else None
    activation_id = document.get("activation")
    if isinstance(activation_id, str) and _ACTIVATION.fullmatch(activation_id):
        row = await view.store.get(view.tenant_id, ACTIVATION, activation_id)
        return str(row["license_id"]) if row is not None else None
    return None


@page(signed_in=True)
async def answer_request_file(view: Page) -> web.StreamResponse:
    license_id = view.request.match_info["license"]
    await view.own_license(license_id)
    request_text = await _upload(await view.form(), "request")
    if not request_text:
        raise ValidationError("choose the activation request file, or paste its text", code="REQUEST_FILE_MISSING")
    if await _license_a_request_names(view, request_text) != license_id:
        raise NotFoundError("this request file is for another license", code="LICENSE_NOT_FOUND")
    # Run whatever the backend answers: a refusal it records (a clone flagged) commits like any other.
    reply = await view.run("answer_activation_request", {}, {"request": request_text})
    if reply.status >= 400:
        error = reply.body.get("error", {}) if isinstance(reply.body, dict) else {}
        raise RequestRefusedError(str(error.get("code", "REFUSED")), str(error.get("message", "refused")), reply.status)
    license_file = reply.body["license_file"]
    return web.Response(
        body=license_file.encode() + b"\n",
        content_type="application/octet-stream",
        headers={"Content-Disposition": 'attachment; filename="license-response.lic"', "Cache-Control": "no-store"},
    )


@page(signed_in=True)
async def enter_receipt(view: Page) -> web.StreamResponse:
    license_id = view.request.match_info["license"]
    await view.own_license(license_id)
    receipt = await _upload(await view.form(), "receipt")
    try:
        activation_id = read_receipt(receipt).activation_id
    except ReceiptError:
        raise ValidationError(
            "this is not a deactivation receipt (LDR1-…): check what you typed", code="RECEIPT_MALFORMED"
        ) from None
    await view.own(ACTIVATION, activation_id, license_id)  # another license's device: not found
    await view.run("deactivation_receipt", {}, {"receipt": receipt})
    view.redirect(f"licenses/{license_id}", "device-deactivated")


# --- credential files and seats (the cloud backend) ----------------------------------------------------
def _file_page(view: Page, license_id: str, reply: Reply, heading: str) -> web.Response:
    document = reply.body["credential_file"]
    text = orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() if not isinstance(document, str) else document
    encoded = base64.b64encode(text.encode()).decode()
    return view.render("credential_file.html", heading=heading, license_id=license_id, text=text, encoded=encoded)


@page(signed_in=True)
async def create_credential(view: Page) -> web.StreamResponse:
    license_id = view.request.match_info["license"]
    await view.own_license(license_id)
    data = await view.form()
    label = str(data.get("label", "")).strip()
    reply = await view.run("create_credential", {"id": license_id}, {"label": label} if label else {})
    return _file_page(view, license_id, reply, "Your new credential file")


@page(signed_in=True)
async def change_credential(view: Page) -> web.StreamResponse:
    info = view.request.match_info
    action = info["action"]
    data = await view.form()
    await view.own(CREDENTIAL, info["credential"], info["license"])
    path = {"id": info["credential"]}
    if action == "label":
        await view.run("label_credential", path, {"label": str(data.get("label", "")).strip()[:200] or "unnamed"})
    elif action == "revoke":
        await view.run("revoke_credential", path, {"reason": "revoked in the License Portal"})
    elif action == "reissue":
        reply = await view.run("reissue_credential", path, {})
        return _file_page(view, info["license"], reply, "Your reissued credential file")
    else:
        raise NotFoundError("no such action", code="NOT_FOUND")
    view.redirect(f"licenses/{info['license']}", f"credential-{action}")


@page(signed_in=True)
async def end_lease(view: Page) -> web.StreamResponse:
    info = view.request.match_info
    await view.form()
    await view.own(LEASE, info["lease"], info["license"])
    await view.run("end_lease", {"id": info["lease"]}, {"reason": "released in the License Portal"})
    view.redirect(f"licenses/{info['license']}", "seat-released")


# --- the routes ----------------------------------------------------------------------------------------
def install(app: web.Application) -> None:
    """Add the portal's routes and its static files to the gateway."""
    base = "/portal/{tenant}/"
    lic = base + "licenses/{license}"
    app.router.add_get(base, home)
    app.router.add_post(base + "sign-in/key", sign_in_with_key)
    app.router.add_post(base + "sign-in/password", sign_in_with_password)
    app.router.add_get(base + "{kind:password|link}", ask_for_link)
    app.router.add_post(base + "{kind:password|link}", send_link)
    app.router.add_get(base + "{kind:password|link}/{token}", open_link)
    app.router.add_post(base + "{kind:password|link}/{token}", use_link)
    app.router.add_post(base + "sign-out", sign_out)
    app.router.add_get(base + "licenses", list_licenses)
    app.router.add_get(lic, show_license)
    app.router.add_get(lic + "/releases/{release}/{artifact}", download_release)
    app.router.add_post(lic + "/devices/{activation}/remove", remove_device)
    app.router.add_post(lic + "/offline", answer_request_file)
    app.router.add_post(lic + "/receipt", enter_receipt)
    app.router.add_post(lic + "/credentials", create_credential)
    app.router.add_post(lic + "/credentials/{credential}/{action:label|revoke|reissue}", change_credential)
    app.router.add_post(lic + "/leases/{lease}/release", end_lease)
    app.router.add_static("/portal/static/", __file__.rsplit("/", 1)[0] + "/static", append_version=True)
