"""The admins' dashboard in Chromium: every VM of the hub with its fields, orphans, actions."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from ..conftest import SESSION
from .hubflow import new_context, sign_in

pytestmark = pytest.mark.devcloud

TAG = f"hepsdesk-test-{SESSION}"


def operator_page(browser, hub):
    """alice is in hepsdesk-admins, whose members get the hepsdesk-operator role at sign-in."""
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, hub.url, "alice", hub.users["alice"], next_path="/hub/home")
    page.wait_for_url(re.compile(r".*/hub/home"))
    return context, page


def test_the_dashboard_lists_every_vm_and_deletes_an_orphan(hub, hub_api, devcloud, browser):
    user = "dash-ann"
    assert hub_api("POST", f"/users/{user}").status_code in (201, 409)
    assert hub_api("POST", f"/users/{user}/server").status_code in (201, 202)
    conn = devcloud.connect()
    # A VM tagged with the hub that no server of it owns (a hub killed in the middle of a start).
    orphan = conn.compute.create_server(
        name="jupyter-ghost", image_id=conn.image.find_image("hepsdesk-desktop", ignore_missing=False).id,
        flavor_id=conn.compute.find_flavor("t1.empty", ignore_missing=False).id, networks="none", tags=[TAG],
        metadata={"hepsdesk-hub": TAG, "hepsdesk-user": "ghost", "hepsdesk-server": ""})
    context = None
    try:
        assert hub_api.progress(user)[-1].get("ready")
        # A desktop reports it is watched (with a token that may report its user's activity, as
        # the server's own token may).
        token = hub_api("POST", f"/users/{user}/tokens", json={"scopes": [f"users:activity!user={user}"]}).json()
        report = requests.post(f"{hub.url}/hub/api/hepsdesk/desktop-report", timeout=30,
                               headers={"Authorization": f"token {token['token']}"},
                               json={"server": "", "viewers": 1, "guests": 2, "fps": 58.5,
                                     "bitrate_bps": 4_000_000, "rtt_ms": 3.5})
        assert report.status_code == 204, report.text
        bad = requests.post(f"{hub.url}/hub/api/hepsdesk/desktop-report", timeout=30,
                            headers={"Authorization": f"token {token['token']}"},
                            json={"server": "", "viewers": -1, "guests": 0, "fps": 1, "bitrate_bps": 1})
        assert bad.status_code == 400 and "viewers must be a number from 0" in bad.text

        context, page = operator_page(browser, hub)
        page.get_by_role("link", name="Dashboard").click()
        row = page.locator(f'#dashboard-vms tr[data-user="{user}"]')
        expect(row).to_have_count(1, timeout=30_000)
        cells = row.locator("td").all_inner_texts()
        assert cells[:5] == [user, "", "desktop", "hepsdesk-desktop", "c1.small"], cells
        assert cells[8].startswith("ACTIVE") and cells[7], cells  # state, host
        assert re.fullmatch(r"\d+ (s|min)", cells[9]) and cells[10].endswith("ago"), cells  # age, last activity
        assert cells[11] == "connected (1 + 2 guest(s), 58.5 fps)", cells
        ghost = page.locator('#dashboard-vms tr[data-user="ghost"]')
        expect(ghost).to_have_count(1, timeout=30_000)
        assert "orphan" in ghost.locator("td.vm-state").inner_text()
        expect(ghost.get_by_role("button")).to_have_text(["Delete"])
        expect(page.locator("#dashboard-summary")).to_contain_text("1 desktop(s) connected")

        # Delete the orphan, confirming the question.
        page.once("dialog", lambda dialog: dialog.accept())
        ghost.get_by_role("button", name="Delete").click()
        expect(page.locator("#dashboard-message")).to_have_text(f"Deleting the orphan VM {orphan.id}.")
        conn.compute.wait_for_delete(orphan, wait=120)
        expect(ghost).to_have_count(0, timeout=30_000)
        # Once gone, an action on it says so and changes nothing.
        xsrf = page.locator("#hepsdesk-dashboard").get_attribute("data-xsrf")
        gone = page.request.post(f"{hub.url}/hub/hepsdesk/dashboard/actions", headers={"X-XSRFToken": xsrf},
                                 data={"action": "delete", "vm": orphan.id})
        assert gone.status == 409 and gone.json()["message"] == "That VM is already gone.", gone.text()

        # Stop: declining the question does nothing; accepting stops the server.
        page.once("dialog", lambda dialog: dialog.dismiss())
        row.get_by_role("button", name="Stop").click()
        page.wait_for_timeout(500)
        assert hub_api("GET", f"/users/{user}").json()["servers"], "a dismissed question stops nothing"
        page.once("dialog", lambda dialog: dialog.accept())
        row.get_by_role("button", name="Stop").click()
        expect(page.locator("#dashboard-message")).to_have_text(f"Stopped {user}'s server.", timeout=60_000)
        hub_api.wait_stopped(user, timeout=60)
        expect(row).to_have_count(0, timeout=30_000)
    finally:
        if context is not None:
            context.close()
        conn.compute.delete_server(orphan, ignore_missing=True)
        hub_api("DELETE", f"/users/{user}/server")
        hub_api.wait_stopped(user)


def test_the_dashboard_is_only_for_operators(hub, hub_api, browser):
    # Anonymous: no page, no state, no action.
    assert requests.get(f"{hub.url}/hub/hepsdesk/dashboard/state", timeout=30).status_code == 403
    assert requests.post(f"{hub.url}/hub/hepsdesk/dashboard/actions", json={"action": "stop", "vm": "x"},
                         timeout=30).status_code == 403
    # bob signs in but holds no operator role: refused, and no link in the navigation.
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, hub.url, "bob", hub.users["bob"], next_path="/hub/home")
    page.wait_for_url(re.compile(r".*/hub/home"))
    expect(page.get_by_role("link", name="Home")).to_be_visible()
    assert page.get_by_role("link", name="Dashboard").count() == 0
    response = page.goto(f"{hub.url}/hub/hepsdesk/dashboard")
    assert response.status == 403 and "custom:hepsdesk:operate" in page.content()
    assert page.request.get(f"{hub.url}/hub/hepsdesk/dashboard/state").status == 403
    context.close()
    # A token of a role with the scope reads the state (Prometheus-style tools).
    state = hub_api.session.get(f"{hub.url}/hub/hepsdesk/dashboard/state", timeout=30)
    assert state.status_code == 200 and isinstance(state.json()["vms"], list)
    # A desktop report without a token (a browser's cookie) or for another's server is refused.
    assert requests.post(f"{hub.url}/hub/api/hepsdesk/desktop-report", json={}, timeout=30).status_code == 403
