"""The scientist's path, in a real browser: SSO sign-in, a VM, JupyterLab, the WebRTC desktop."""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from ..conftest import ALICE_UID, SESSION
from .hubflow import (
    click_picture,
    new_context,
    open_desktop,
    picture_digest,
    pixel,
    sign_in,
    wait_for_frames,
    wait_for_lab,
)

pytestmark = pytest.mark.devcloud


def vms_of(devcloud, user: str) -> list:
    admin = devcloud.connect("devcloud-admin")
    return [s for s in admin.compute.servers(all_projects=True)
            if (s.metadata or {}).get("hepsdesk-user") == user
            and (s.metadata or {}).get("hepsdesk-hub") == f"hepsdesk-test-{SESSION}"]


def websocket_outcome(page, http_url: str) -> str:
    """Whether a websocket from this page to ``http_url`` opens ("open") or not ("refused")."""
    return page.evaluate("""(url) => new Promise((resolve) => {
        const socket = new WebSocket(url);
        socket.onopen = () => { socket.close(); resolve('open'); };
        socket.onerror = () => resolve('refused');
        setTimeout(() => resolve('no answer'), 15000);
    })""", "ws" + http_url[len("http"):])


def test_sign_in_spawn_lab_desktop_type_and_stop(hub, hub_api, devcloud, browser):
    context = new_context(browser)
    page = context.new_page()

    sign_in(page, hub.url, "alice", hub.users["alice"])
    stages = wait_for_lab(page, "alice")
    assert any("Creating your VM" in s for s in stages), stages
    assert any(later in s for s in stages for later in ("Booting", "booted", "JupyterLab")), stages
    assert len(stages) >= 3, f"the progress page moved through the stages: {stages}"

    # The lab extension adds "Open Desktop" to the command palette (the server has the desktop).
    page.keyboard.press("Control+Shift+C")
    page.keyboard.type("Open Desktop")
    expect(page.locator(".lm-CommandPalette-item", has_text="Open Desktop")).to_be_visible()
    page.keyboard.press("Escape")

    desktop = open_desktop(page)
    assert desktop.url.endswith("/user/alice/desktop/")
    wait_for_frames(desktop, 1, timeout_s=90)
    decoded = desktop.evaluate("window.hepsdesk.stats()")["framesDecoded"]

    # The terminal window (white, at the top left of the 1920x1080 desktop) appears.
    deadline = time.monotonic() + 60
    while min(pixel(desktop, 0.15, 0.2)) < 200 and time.monotonic() < deadline:
        desktop.wait_for_timeout(300)
    if min(pixel(desktop, 0.15, 0.2)) < 200:
        [server] = vms_of(devcloud, "alice")
        log = devcloud.guest_dir(server.id) / "disk" / "upper" / "var" / "log" / "hepsdesk-singleuser.log"
        desktop.screenshot(path=str(hub.state_dir / "desktop-without-terminal.png"))
        lines = [line for line in log.read_text(errors="replace").splitlines() if "ServerApp]" not in line]
        stats = desktop.evaluate("window.hepsdesk.stats()")
        pytest.fail(f"the terminal is not drawn on the desktop (video: {stats}, first: {decoded} frames); "
                    "the server's log, without the Jupyter server's access lines, ends with:\n"
                    + "\n".join(lines[-40:]))
    before = picture_digest(desktop)

    # Type a command into the terminal through the browser.
    before_typing = datetime.now(UTC)
    marker = f"hepsdesk-e2e-{secrets.token_hex(4)}"
    click_picture(desktop, 0.2, 0.3)
    expect(desktop.locator("#keyboard")).to_be_focused()  # the keys (and input methods) go there
    desktop.wait_for_function("window.hepsdesk.inputReady", timeout=10_000)
    desktop.keyboard.type(f"touch ~/{marker} && echo created {marker}")
    desktop.keyboard.press("Enter")

    [server] = vms_of(devcloud, "alice")
    created = devcloud.guest_dir(server.id) / "disk" / "upper" / "home" / "alice" / marker
    deadline = time.monotonic() + 20
    while not created.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert created.exists(), "the command typed in the browser ran in the VM"
    assert created.stat().st_uid == ALICE_UID, "the desktop runs as alice's account, not as root"

    # Her input is her server's activity: the desktop told the hub (its traffic alone does not count).
    reported = desktop.evaluate("fetch('stats').then(r => r.json()).then(s => s.activity)")
    assert reported["reported"] >= 1 and reported["failed"] == 0, reported
    activity = hub_api("GET", "/users/alice").json()["servers"][""]["last_activity"]
    assert datetime.fromisoformat(activity.replace("Z", "+00:00")) >= before_typing - timedelta(seconds=1), activity

    # Frames keep arriving and the picture changed (the typed text is on it).
    desktop.wait_for_timeout(1000)
    assert desktop.evaluate("window.hepsdesk.stats()")["framesDecoded"] > decoded
    assert picture_digest(desktop) != before

    # Another user, and an anonymous browser, reach nothing of alice's desktop: not its page,
    # its files, its statistics or its signalling websocket; nor the hub's endpoints for VMs
    # and the portal.
    other = new_context(browser)
    bob = other.new_page()
    sign_in(bob, hub.url, "bob", hub.users["bob"], next_path="/hub/home")
    bob.wait_for_url(re.compile(r".*/hub/home"))
    for path in ("", "stats", "static/desktop.js"):
        response = bob.goto(f"{hub.url}/user/alice/desktop/{path}")
        assert response.status == 403, (path, response.status)
    bob.goto(f"{hub.url}/hub/home")
    assert websocket_outcome(bob, f"{hub.url}/user/alice/desktop/ws") == "refused"
    for endpoint in ("hepsdesk/resume-env", "hepsdesk/portal-login/alice"):
        answer = bob.request.post(f"{hub.url}/hub/api/{endpoint}", data={"user": "alice"})
        assert answer.status == 403, (endpoint, answer.status)
    other.close()
    anonymous = new_context(browser)
    nobody = anonymous.new_page()
    for path in ("", "stats", "static/desktop.js"):
        nobody.goto(f"{hub.url}/user/alice/desktop/{path}")
        assert "/user/alice/desktop" not in nobody.url and "hepsdesk" not in nobody.content(), (path, nobody.url)
    nobody.goto(f"{hub.url}/hub/login")
    assert websocket_outcome(nobody, f"{hub.url}/user/alice/desktop/ws") == "refused"
    for endpoint in ("hepsdesk/resume-env", "hepsdesk/portal-login/alice", "hepsdesk/ice-servers"):
        assert nobody.request.post(f"{hub.url}/hub/api/{endpoint}", data={"user": "alice"}).status == 403
    anonymous.close()

    # Alice is an admin, so an operator: the dashboard shows her VM with its desktop connected
    # (the desktop reported it to the hub), and stops her server.
    page.goto(f"{hub.url}/hub/hepsdesk/dashboard")
    row = page.locator('#dashboard-vms tr[data-user="alice"]')
    expect(row.locator("td.vm-desktop")).to_contain_text("connected (1 + 0 guest(s)", timeout=30_000)
    desktop.close()
    expect(row.locator("td.vm-desktop")).to_have_text("—", timeout=30_000)  # she left: the desktop said so
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Stop").click()
    expect(page.locator("#dashboard-message")).to_contain_text("Stopped alice's server", timeout=240_000)
    hub_api.wait_stopped("alice", timeout=60)
    assert vms_of(devcloud, "alice") == [], "no VM is left for alice"
    context.close()


def test_a_user_outside_the_allowed_groups_is_told_why(hub, browser):
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, hub.url, "carol", hub.users["carol"])
    expect(page.get_by_role("heading", name=re.compile("Not allowed to use hepsdesk"))).to_be_visible()
    explanation = page.locator("p", has_text="not in a group allowed to use hepsdesk")
    expect(explanation).to_contain_text("signed in as carol")
    expect(explanation).to_contain_text("principal investigator")
    assert "Traceback" not in page.content()
    context.close()


def test_an_unknown_user_is_refused_by_the_sso(hub, browser):
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, hub.url, "mallory", "guess")
    expect(page.get_by_role("alert")).to_have_text("Unknown user or wrong password.")
    context.close()
