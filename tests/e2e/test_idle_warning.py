"""Before the hub stops an idle server, its user is warned, in JupyterLab and on the desktop;
using the desktop keeps the server and takes the warning away."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from ..conftest import running_hub
from .hubflow import new_context, open_desktop, sign_in, wait_for_frames, wait_for_lab

pytestmark = pytest.mark.devcloud

IDLE_TIMEOUT = 72  # warned a quarter before: 18 s
WARNING = re.compile(r"Nobody has used this server for a while: it stops in \d+ seconds")


@pytest.fixture(scope="module")
def idle_hub(devcloud, tmp_path_factory):
    profiles = [{"slug": "short", "display_name": "Short-lived desktop", "image": "hepsdesk-desktop",
                 "flavor": "c1.small", "idle_timeout": IDLE_TIMEOUT}]
    with running_hub(devcloud, tmp_path_factory.mktemp("idle-warning-hub"), (18950, 18951, 19950), profiles) as hub:
        yield hub


def test_the_user_is_warned_before_an_idle_stop_and_using_the_desktop_keeps_the_server(idle_hub, browser):
    context = new_context(browser)
    lab = context.new_page()
    sign_in(lab, idle_hub.url, "alice", idle_hub.users["alice"])
    wait_for_lab(lab, "alice")
    ready = time.monotonic()
    desktop = open_desktop(lab)
    wait_for_frames(desktop)
    # An open JupyterLab and an open desktop that nobody touches are not use: both warn.
    expect(lab.get_by_text(WARNING)).to_be_visible(timeout=(IDLE_TIMEOUT + 10) * 1000)
    expect(desktop.locator("#idle-warning")).to_have_text(WARNING, timeout=15_000)
    warned = time.monotonic() - ready
    assert IDLE_TIMEOUT - IDLE_TIMEOUT // 4 - 15 <= warned < IDLE_TIMEOUT, warned
    # A click on the desktop is use: the hub hears of it, the warnings go, the server stays.
    desktop.locator("#screen").click(position={"x": 300, "y": 300})
    expect(desktop.locator("#idle-warning")).to_be_hidden(timeout=40_000)
    expect(lab.get_by_text(WARNING)).to_be_hidden(timeout=30_000)
    # Past the deadline it had before the click (and a poll of the hub's), the server is still there.
    lab.wait_for_timeout(max(0.0, IDLE_TIMEOUT + 12 - (time.monotonic() - ready)) * 1000)
    assert idle_hub.api("GET", "/users/alice").json()["servers"], "the server in use was not stopped"
    context.close()
