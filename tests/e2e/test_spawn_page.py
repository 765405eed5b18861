"""The spawn page as a scientist sees it: environment cards for their groups, free GPUs, a choice."""

from __future__ import annotations

import re
import secrets

from playwright.sync_api import expect

from ..conftest import SESSION
from .hubflow import new_context, sign_in, wait_for_lab


def test_a_scientist_sees_the_environments_of_their_groups_and_starts_the_one_they_pick(
        hub, hub_api, browser, devcloud):
    name = f"dana-{SESSION}"
    password = secrets.token_urlsafe(12)
    hub.oidc.set_user(name, password, groups=["heps-users"], proposals=["P-2026-0042"])
    context = new_context(browser)
    page = context.new_page()
    try:
        sign_in(page, hub.url, name, password)
        page.wait_for_url(re.compile(r".*/hub/spawn.*"), timeout=60_000)
        cards = page.locator(".hepsdesk-profile")
        expect(cards).to_have_count(5)
        assert cards.evaluate_all("cards => cards.map(c => c.dataset.profile)") == [
            "desktop", "imaging", "imaging-gpu", "diffraction", "xrf"]
        gpu = page.locator('.hepsdesk-profile[data-profile="imaging-gpu"]')
        expect(gpu).to_contain_text("1x A100 GPU (4 of 4 A100 free)")
        expect(gpu).to_contain_text("napari 0.9.2")
        expect(gpu.locator(".hepsdesk-production-only")).to_contain_text("TomoPy")
        expect(page.locator('input[name="profile"][value="desktop"]')).to_be_checked()

        wait_for_lab(page, name, profile="imaging")
        admin = devcloud.connect("devcloud-admin")
        [vm] = [s for s in admin.compute.servers(all_projects=True) if (s.metadata or {}).get("hepsdesk-user") == name]
        assert vm.metadata["hepsdesk-profile"] == "imaging" and vm.flavor["original_name"] == "c1.medium"
    finally:
        context.close()
        hub_api("DELETE", f"/users/{name}/server")
        hub_api.wait_stopped(name)
