"""The License Portal in a real headless Chromium (Debian's, driven by Playwright), as a customer uses it: sign in
with a license key; set a password by the mailed link and sign in with it; see the licenses of all three backends;
remove a device; create and download a credential file; activate an offline device by its request file; download
an entitled release. Every page is saved as a screenshot at a desktop and a phone width
(``$LICENSOR_ARTIFACTS/portal``, default ``.venv/artifacts/portal``)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from licensor.testing import Gateway
from licensor.testing.infrastructure import free_port
from licensor_client.activation import read_license_file
from licensor_client.formats import published_keys
from licensor_client.leases import read_credential_file
from playwright.async_api import Browser, Page, async_playwright

from .world import ARTIFACT, World, build_world

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("LICENSOR_ARTIFACTS", Path(__file__).resolve().parents[2] / ".venv" / "artifacts")) / "portal"
WIDTHS = {"desktop": {"width": 1280, "height": 860}, "phone": {"width": 390, "height": 844}}


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[Browser]:
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def downloads() -> AsyncIterator[str]:
    """A file server on 127.0.0.1 where the release's artifact lives (its URL in the release)."""
    app = web.Application()

    async def artifact(request: web.Request) -> web.Response:
        return web.Response(body=ARTIFACT, headers={"Content-Disposition": 'attachment; filename="studio-2.0.tar.gz"'})

    app.router.add_get("/studio-2.0.tar.gz", artifact)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/studio-2.0.tar.gz"
    finally:
        await runner.cleanup()


class Shots:
    """Screenshots of each page at both widths, named in the order taken."""

    def __init__(self, page: Page, store: str) -> None:
        self.page = page
        self.store = store
        self.taken: list[str] = []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async def take(self, name: str) -> None:
        for width, size in WIDTHS.items():
            await self.page.set_viewport_size(size)
            path = ARTIFACTS / f"{len(self.taken) // 2 + 1:02d}-{name}-{width}.png"
            if self.store == "sqlite":  # one set is enough; the PostgreSQL run checks the same pages
                await self.page.screenshot(path=str(path), full_page=True)
            self.taken.append(path.name)
        await self.page.set_viewport_size(WIDTHS["desktop"])


async def test_a_customer_uses_the_portal_in_chromium(
    licensor_gateway: Gateway, tmp_path: Path, chromium: Browser, downloads: str, licensor_store_url: str
) -> None:
    world: World = await build_world(licensor_gateway, str(tmp_path), artifact_url=downloads)
    context = await chromium.new_context(accept_downloads=True, viewport=WIDTHS["desktop"])
    page = await context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "Remove this device?" and the like
    shots = Shots(page, "sqlite" if licensor_store_url.startswith("sqlite") else "postgresql")
    portal = licensor_gateway.url + world.base
    act, cloud, lite = (world.licenses[b]["id"] for b in ("activation", "cloud", "cloud-lite"))

    # 1. Sign in with a license key (typed the way people type): that license only.
    await page.goto(portal)
    await shots.take("sign-in")
    await page.get_by_label("License key").fill(world.licenses["activation"]["key"].lower())
    await page.get_by_role("button", name="Sign in with the key").click()
    await page.wait_for_url("**/licenses")
    assert await page.get_by_role("heading", name="Studio").count() == 1
    assert await page.get_by_role("heading", name="Render").count() == 0
    await shots.take("licenses-by-key")
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/?notice=signed-out")

    # 2. Set a password through the mailed single-use link, then sign in with it.
    await page.get_by_role("link", name="Set or reset my password").click()
    await shots.take("password-request")
    await page.get_by_label("E-mail address").fill("ada@example.com")
    await page.get_by_role("button", name="Send the link").click()
    assert await page.get_by_text("a link is on its way").count() == 1
    await page.goto(licensor_gateway.url + world.link_in_last_mail("ada@example.com"))
    await shots.take("password-choose")
    await page.get_by_label("New password").fill("a long and good password")
    await page.get_by_role("button", name="Save and sign in").click()
    await page.wait_for_url("**/licenses")
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/?notice=signed-out")
    await page.locator("#email").fill("ada@example.com")
    await page.locator("#password").fill("a long and good password")
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_url("**/licenses")

    # 3. Every backend's license in one view.
    for name in ("Studio", "Render", "Cloud Suite"):
        assert await page.get_by_role("heading", name=name).count() == 1, name
    await shots.take("licenses-all-backends")

    # 4. The activation license: remove a device (the consequence is explained and confirmed).
    await page.get_by_role("link", name="Studio").click()
    await page.wait_for_url(f"**/licenses/{act}")
    await shots.take("license-activation")
    laptop = world.activations[1]
    await page.get_by_role("button", name="Remove Laptop").click()
    await page.wait_for_url("**?notice=device-removed")
    assert await page.get_by_text("Its seat comes back when its license file lapses").count() == 1
    assert (await world.tenant.ok("GET", f"/v1/admin/activations/{laptop['id']}"))["state"] == "withdrawn"
    await shots.take("device-removed")

    # 5. Offline activation: upload the device's request file, download the response file.
    request_file = world.device_request(name="Offline PC")
    await page.locator("#request_file").set_input_files(
        files=[{"name": "activation-request.lic", "mimeType": "text/plain", "buffer": request_file.encode()}]
    )
    async with page.expect_download() as answered:
        await page.get_by_role("button", name="Get the response file").click()
    response_file = Path(await (await answered.value).path()).read_text()
    assert response_file.startswith("lf1.")
    keys = published_keys((await licensor_gateway.call("GET", "/v1/keys", params={"tenant": world.tenant.id})).body)
    license_file = read_license_file(response_file.strip(), keys, tenant=world.tenant.id, product="studio")
    assert license_file.license_id == act

    # 6. An entitled release, downloaded through the portal (the file's checksum matches the release's).
    async with page.expect_download() as fetched:
        await page.get_by_role("link", name="studio-2.0.tar.gz").click()
    content = Path(await (await fetched.value).path()).read_bytes()
    assert hashlib.sha256(content).hexdigest() == world.releases[-1]["artifacts"][0]["sha256"]

    # 7. The cloud license: create a credential file and download it, once.
    await page.goto(portal + f"licenses/{cloud}")
    await shots.take("license-cloud")
    await page.get_by_label("Label of a new credential file").fill("Design team")
    await page.get_by_role("button", name="Create a credential file").click()
    await shots.take("credential-file")
    async with page.expect_download() as saved:
        await page.get_by_role("link", name="Download credential.json").click()
    credential = read_credential_file(Path(await (await saved.value).path()).read_bytes())
    assert credential.tenant == world.tenant.id
    await page.goto(portal + f"licenses/{cloud}")
    assert await page.get_by_text("Design team").count() + await page.locator("input[value='Design team']").count() >= 1

    # 8. The cloud-lite license's terms.
    await page.goto(portal + f"licenses/{lite}")
    assert await page.get_by_text(world.licenses["cloud-lite"]["subject"]).count() == 1
    await shots.take("license-cloud-lite")
    await context.close()
    assert len(shots.taken) == 20
    print("\nportal screenshots:", ", ".join(shots.taken))
