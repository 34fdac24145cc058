"""The License Portal over real HTTP on both stores: signing in (license key, password set by a single-use link,
a mailed sign-in link), the cookie's flags, CSRF on every form, rate limits, every action's event, and the walk:
every portal route, with another customer's session or another tenant's, reaches nothing of the first customer."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pytest
from licensor.testing import Gateway

from .world import World, build_world

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    """A cookie-keeping HTTP client of the portal that reads each page's CSRF token (what a browser does)."""

    def __init__(self, gateway: Gateway) -> None:
        self.url = gateway.url
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str]:
        kwargs.setdefault("allow_redirects", True)
        async with self.session.get(self.url + path, **kwargs) as response:
            text = await response.text()
            if found := CSRF.search(text):
                self.csrf = found.group(1)
            return response.status, text

    async def post(
        self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, follow: bool = False
    ) -> tuple[int, str, Any]:
        form = dict(data or {})
        if csrf:
            form["csrf"] = self.csrf
        async with self.session.post(self.url + path, data=form, allow_redirects=follow) as response:
            return response.status, await response.text(), response

    async def close(self) -> None:
        await self.session.close()


@pytest.fixture
async def world(licensor_gateway: Gateway, tmp_path: Any) -> World:
    return await build_world(licensor_gateway, str(tmp_path))


async def signed_in_with_key(world: World, key: str) -> Browser:
    browser = Browser(world.gateway)
    await browser.get(world.base)
    status, _, response = await browser.post(world.base + "sign-in/key", {"license_key": key})
    assert status == 303 and response.headers["Location"].endswith("/licenses"), status
    return browser


async def signed_in_as_customer(world: World, address: str, password: str = "correct horse battery") -> Browser:
    browser = Browser(world.gateway)
    await browser.get(world.base + "password")
    status, text, _ = await browser.post(world.base + "password", {"email": address}, follow=True)
    assert status == 200 and "a link is on its way" in text
    link = world.link_in_last_mail(address)
    assert (await browser.get(link))[0] == 200
    status, _, _ = await browser.post(link, {"password": password})
    assert status == 303, status
    return browser


# --- signing in ----------------------------------------------------------------------------------------
async def test_a_license_key_signs_in_to_that_license_with_a_safe_cookie(world: World) -> None:
    browser = Browser(world.gateway)
    try:
        status, text = await browser.get(world.base)
        assert status == 200 and "Sign in" in text and "Acme Software" in text
        key = world.licenses["activation"]["key"].lower().replace("-", " ")  # as a person types it
        status, _, response = await browser.post(world.base + "sign-in/key", {"license_key": key})
        assert status == 303
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and f"Path={world.base}" in cookie
        status, text = await browser.get(world.base + "licenses")
        assert status == 200 and "Studio" in text and "Render" not in text  # that license only
        async with browser.session.get(browser.url + world.base + "licenses") as page:
            assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
            assert page.headers["Cache-Control"] == "no-store"
    finally:
        await browser.close()
    events = [e for e in await world.tenant.list_all("/v1/admin/events") if e["type"] == "portal.signed_in"]
    assert events[-1]["actor"] == f"portal:{world.licenses['activation']['id']}"


async def test_a_password_set_by_a_single_use_link_signs_in_and_shows_every_backend(world: World) -> None:
    browser = await signed_in_as_customer(world, "ada@example.com")
    try:
        status, text = await browser.get(world.base + "licenses")
        assert status == 200 and all(name in text for name in ("Studio", "Render", "Cloud Suite"))
        used = world.link_in_last_mail("ada@example.com")
        assert (await browser.get(used))[0] == 410  # spent
    finally:
        await browser.close()
    fresh = Browser(world.gateway)
    try:
        await fresh.get(world.base)
        status, text, _ = await fresh.post(
            world.base + "sign-in/password", {"email": "ada@example.com", "password": "nope nope nope"}
        )
        assert status == 401 and "not right" in text
        status, _, _ = await fresh.post(
            world.base + "sign-in/password", {"email": "ADA@example.com", "password": "correct horse battery"}
        )
        assert status == 303
    finally:
        await fresh.close()
    customer = await world.tenant.ok("GET", f"/v1/admin/customers/{world.customer['id']}")
    assert "password_hash" not in customer
    kinds = [e["type"] for e in await world.tenant.list_all("/v1/admin/events") if e["type"].startswith("portal.")]
    assert {"portal.password_link_sent", "portal.password_set", "portal.signed_in", "portal.sign_in_failed"} <= set(kinds)


async def test_a_mailed_sign_in_link_works_once_and_unknown_addresses_learn_nothing(world: World) -> None:
    browser = Browser(world.gateway)
    try:
        await browser.get(world.base + "link")
        known = await browser.post(world.base + "link", {"email": "ada@example.com"}, follow=True)
        unknown = await browser.post(world.base + "link", {"email": "eve@example.com"}, follow=True)
        assert known[0] == unknown[0] == 200 and known[1].replace("ada", "X") == unknown[1].replace("eve", "X")
        assert world.mails("eve@example.com") == []
        link = world.link_in_last_mail("ada@example.com")
        await browser.get(link)
        assert (await browser.post(link))[0] == 303
        assert (await browser.get(link))[0] == 410  # once
        assert (await browser.post(link))[0] == 410
    finally:
        await browser.close()


async def test_every_form_needs_its_csrf_token(world: World) -> None:
    browser = await signed_in_with_key(world, world.licenses["activation"]["key"])
    try:
        device = world.activations[0]
        lic = world.licenses["activation"]["id"]
        for path in (f"licenses/{lic}/devices/{device['id']}/remove", "sign-out", f"licenses/{lic}/receipt"):
            status, text, _ = await browser.post(world.base + path, {}, csrf=False)
            assert status == 403 and "CSRF_TOKEN_INVALID" in text, path
            status, text, _ = await browser.post(world.base + path, {"csrf": "forged"}, csrf=False)
            assert status == 403, path
        anonymous = Browser(world.gateway)
        try:
            status, _, _ = await anonymous.post(
                world.base + "sign-in/key", {"license_key": world.licenses["cloud"]["key"]}, csrf=False
            )
            assert status == 403  # sign-in forms too (no login CSRF)
        finally:
            await anonymous.close()
        activation = await world.tenant.ok("GET", f"/v1/admin/activations/{device['id']}")
        assert activation["state"] == "active"
    finally:
        await browser.close()


async def test_sign_in_attempts_are_rate_limited(world: World) -> None:
    world.gateway.set_rate_limits(rate_limit_sign_in="10/5m")
    browser = Browser(world.gateway)
    try:
        await browser.get(world.base)
        statuses = []
        for _ in range(12):
            status, _, response = await browser.post(
                world.base + "sign-in/password", {"email": "ada@example.com", "password": "guess guess"}
            )
            statuses.append(status)
        assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
        assert int(response.headers["Retry-After"]) > 0
        assert response.headers["RateLimit-Policy"] == '"sign-in";q=10;w=300'
    finally:
        await browser.close()


# --- the walk ------------------------------------------------------------------------------------------
def routes(world: World) -> list[tuple[str, str]]:
    """Every portal route that names an object, filled with the first customer's objects."""
    act, cloud = world.licenses["activation"]["id"], world.licenses["cloud"]["id"]
    release = world.releases[-1]
    return [
        ("GET", f"licenses/{act}"),
        ("GET", f"licenses/{cloud}"),
        ("GET", f"licenses/{world.licenses['cloud-lite']['id']}"),
        ("GET", f"licenses/{act}/releases/{release['id']}/{release['artifacts'][0]['name']}"),
        ("POST", f"licenses/{act}/devices/{world.activations[0]['id']}/remove"),
        ("POST", f"licenses/{act}/offline"),
        ("POST", f"licenses/{act}/receipt"),
        ("POST", f"licenses/{cloud}/credentials"),
        ("POST", f"licenses/{cloud}/credentials/{world.credentials[0]['id']}/label"),
        ("POST", f"licenses/{cloud}/credentials/{world.credentials[0]['id']}/revoke"),
        ("POST", f"licenses/{cloud}/credentials/{world.credentials[0]['id']}/reissue"),
        ("POST", f"licenses/{cloud}/leases/{world.leases[0]['id']}/release"),
    ]


async def test_no_portal_route_reaches_another_customers_or_tenants_objects(world: World, licensor_gateway: Gateway) -> None:
    other = await world.tenant.customer("bob@example.com")
    policy = (await world.tenant.list_all("/v1/admin/policies"))[0]
    await world.tenant.license(policy["id"], customer_id=other["id"])
    bob = await signed_in_as_customer(world, "bob@example.com")
    # Bob's own objects of the same kinds, to aim the routes at: his license paired with Ada's objects.
    bob_license = (await world.tenant.list_all("/v1/admin/licenses", params={"customer_id": other["id"]}))[0]["id"]
    intruder_tenant = await licensor_gateway.tenant("Intruder")
    intruder_policy = await intruder_tenant.policy((await intruder_tenant.product("x"))["id"], backend="activation")
    intruder_key = (await intruder_tenant.license(intruder_policy["id"]))["key"]
    intruder = Browser(licensor_gateway)
    await intruder.get(f"/portal/{intruder_tenant.id}/")
    await intruder.post(f"/portal/{intruder_tenant.id}/sign-in/key", {"license_key": intruder_key})
    before = await world.tenant.list_all("/v1/admin/events")
    try:
        for method, path in routes(world):
            targets = [path]
            # Bob's own license with Ada's device, credential file or seat, and Ada's request file on Bob's license.
            if re.search(r"/(devices|credentials/crd_|leases)/|/offline$", path):
                targets.append(re.sub(r"licenses/lic_[0-9A-Z]+", f"licenses/{bob_license}", path))
            for target in targets:
                data = {"label": "x", "request": world.device_request(), "receipt": "LDR1-XXXX"}
                if method == "GET":
                    status, text = await bob.get(world.base + target, allow_redirects=False)
                else:
                    status, text, _ = await bob.post(world.base + target, data)
                assert status == 404, (method, target, status, text[:200])
                # Another tenant's session on this tenant's portal is no session at all.
                if method == "GET":
                    status, text = await intruder.get(world.base + target)
                    assert "Sign in to your licenses" in text, target
                else:
                    status, _, _ = await intruder.post(world.base + target, data)
                    assert status in (303, 403), (target, status)
        status, text = await bob.get(world.base + "licenses")
        assert "Studio" not in text or bob_license in text
    finally:
        await bob.close()
        await intruder.close()
    after = await world.tenant.list_all("/v1/admin/events")
    changed = [e["type"] for e in after[len(before) :] if not e["type"].startswith("portal.") and e["type"] != "license.checked"]
    assert changed == [], changed  # nothing of Ada's changed
    assert (await world.tenant.ok("GET", f"/v1/admin/activations/{world.activations[0]['id']}"))["state"] == "active"
    assert (await world.tenant.ok("GET", f"/v1/admin/credentials/{world.credentials[0]['id']}"))["state"] == "active"


# --- actions -------------------------------------------------------------------------------------------
async def test_portal_actions_write_their_events_as_the_customer(world: World) -> None:
    browser = await signed_in_as_customer(world, "ada@example.com")
    act, cloud = world.licenses["activation"]["id"], world.licenses["cloud"]["id"]
    try:
        await browser.get(world.base + f"licenses/{act}")
        status, _, _ = await browser.post(world.base + f"licenses/{act}/devices/{world.activations[1]['id']}/remove")
        assert status == 303
        await browser.get(world.base + f"licenses/{cloud}")
        status, text, _ = await browser.post(world.base + f"licenses/{cloud}/credentials", {"label": "Laptop"})
        assert status == 200 and "credential.json" in text and "only time" in text
        status, _, _ = await browser.post(world.base + f"licenses/{cloud}/leases/{world.leases[0]['id']}/release")
        assert status == 303
        status, _, response = await browser.post(
            world.base + f"licenses/{act}/offline", {"request": world.device_request(name="Offline PC")}
        )
        assert status == 200 and response.headers["Content-Disposition"].startswith("attachment")
    finally:
        await browser.close()
    actor = f"portal:{world.customer['id']}"
    events = await world.tenant.list_all("/v1/admin/events")
    mine = {e["type"] for e in events if e["actor"] == actor}
    assert {"activation.withdrawn", "credential.created", "lease.revoked"} <= mine, mine
    # The offline activation is the device's own request (its event names the device), answered through the portal.
    offline = [e for e in events if e["type"] == "activation.created" and e["data"]["device_name"] == "Offline PC"]
    assert len(offline) == 1 and offline[0]["data"]["mode"] == "offline"


# --- attacks a review tried ----------------------------------------------------------------------------
async def test_a_mailed_link_never_takes_its_host_from_the_request(world: World) -> None:
    browser = Browser(world.gateway)
    try:
        await browser.get(world.base + "password")
        async with browser.session.post(
            browser.url + world.base + "password",
            data={"csrf": browser.csrf, "email": "ada@example.com"},
            headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
        ) as response:
            assert response.status == 200
    finally:
        await browser.close()
    for _ in range(50):  # the mail goes out just after the answer
        if world.mails("ada@example.com"):
            break
        await asyncio.sleep(0.05)
    (text,) = world.mails("ada@example.com")
    assert "evil.example" not in text and "http://127.0.0.1:8080/portal/" in text


async def test_a_new_password_ends_every_other_session_and_link(world: World) -> None:
    first = await signed_in_as_customer(world, "ada@example.com", "first password 123")
    second = await signed_in_as_customer(world, "ada@example.com", "second password 456")
    try:
        status, text = await first.get(world.base + "licenses")
        assert "Sign in to your licenses" in text  # the older session ended with the new password
        status, text = await second.get(world.base + "licenses")
        assert status == 200 and "Studio" in text
    finally:
        await first.close()
        await second.close()


async def test_hostile_forms_cookies_and_ids_get_clear_answers(world: World) -> None:
    browser = await signed_in_with_key(world, world.licenses["activation"]["key"])
    lic = world.licenses["activation"]["id"]
    try:
        url = browser.url + world.base
        for headers, body in (
            ({"Content-Type": "application/x-www-form-urlencoded; charset=klingon"}, b"csrf=x"),
            ({"Content-Type": "multipart/form-data"}, b"--x\r\n\r\n"),  # no boundary
            ({"Content-Type": "application/x-www-form-urlencoded"}, b"csrf=\xff\xfe"),
        ):
            async with browser.session.post(url + f"licenses/{lic}/receipt", data=body, headers=headers) as response:
                assert response.status in (403, 422), response.status
        await browser.get(world.base + f"licenses/{lic}")  # the session's form token
        status, _, _ = await browser.post(world.base + f"licenses/{lic}/receipt", {"receipt": "not a receipt"})
        assert status == 422
        status, _, _ = await browser.post(world.base + f"licenses/{lic}/offline", {"request": "dv1.a.b.c"})
        assert status == 422
        policy = (await world.tenant.list_all("/v1/admin/policies"))[0]  # the activation policy: someone else's license
        foreign = world.device_request(license_key=(await world.tenant.license(policy["id"]))["key"])
        status, _, _ = await browser.post(world.base + f"licenses/{lic}/offline", {"request": foreign})
        assert status == 404  # another license's request file: nothing is activated
        assert len(await world.tenant.list_all(f"/v1/admin/licenses/{lic}/activations")) == 2
        for odd in ("act_%00", "lic_" + "x" * 500, "%ff"):
            status, _ = await browser.get(world.base + f"licenses/{odd}")
            assert status == 404, odd
        async with browser.session.get(url + "licenses", headers={"Cookie": "licensor_portal=pss_\udcff.x"}) as response:
            assert response.status == 200
        status, _, _ = await browser.post(world.base + "password/ptk_01ARZ3NDEKTSV4RRFFQ69G5FAV.nope", {"password": "x" * 20})
        assert status in (404, 410)
    finally:
        await browser.close()
