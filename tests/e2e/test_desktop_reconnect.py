"""Reconnecting to the same desktop, in Chromium: after a reload, after the media path fails
(its port blocked at the relay in between), and after the signalling websocket drops, the page
brings the picture back by itself, with "Reconnecting" shown, within 2 s of noticing; the
desktop's windows are the ones it had.
"""

from __future__ import annotations

import json
import os
import urllib.request

import pytest
from playwright.sync_api import expect

from .desktop_checks import route_through, wait_until
from .hubflow import frames_decoded, wait_for_frames
from .shaper import Shaper
from .test_desktop_server import start_desktop, stop_desktop

PORT = 18769
RESUME_S = 2.0


@pytest.fixture(scope="module")
def desktop():
    process = start_desktop(PORT, {**os.environ, "HEPSDESK_DESKTOP_ICE_ADDRESSES": "127.0.0.1"}, "--size", "1280x720")
    yield f"http://127.0.0.1:{PORT}/"
    stop_desktop(process)


def windows(url: str) -> list[int]:
    with urllib.request.urlopen(url + "api/windows", timeout=10) as response:
        return sorted(w["id"] for w in json.load(response)["windows"])



def outage(page) -> dict | None:
    """The page's last outage, once it is over."""
    outages = page.evaluate("window.hepsdesk.outages")
    return outages[-1] if outages and outages[-1]["resumedAt"] is not None else None


def test_a_reload_resumes_the_same_desktop_at_once(desktop, browser):
    page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
    page.goto(desktop)
    wait_for_frames(page, 1, timeout_s=30)
    before = wait_until(lambda: windows(desktop), 20)
    assert before, "the desktop has its terminal"
    page.reload()
    wait_for_frames(page, 1, timeout_s=10)
    took = page.evaluate("(window.hepsdesk.firstFrameAt - performance.timeOrigin) / 1000")
    assert took < RESUME_S, f"the first picture came {took:.2f} s after the reload"
    assert windows(desktop) == before, "the same desktop, with its windows"
    page.context.close()


def test_a_network_failure_and_a_dropped_websocket_reconnect_by_themselves(desktop, browser):
    page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
    with Shaper(rate_bps=100e6) as link:
        sockets = route_through(page, link)  # the media through the link; its websocket, to drop it
        page.goto(desktop)
        wait_for_frames(page, 1, timeout_s=30)
        before = windows(desktop)

        # The media path fails: the page notices (the connection goes "disconnected"), says
        # it is reconnecting, and is back within 2 s of noticing once the path works again.
        link.blocked = True
        assert wait_until(lambda: page.evaluate("window.hepsdesk.outages.length"), 30), "the page noticed"
        link.blocked = False
        expect(page.locator("#status")).to_have_text("Reconnecting to your desktop\u2026")
        lost = wait_until(lambda: outage(page), 15)
        assert lost, page.evaluate("window.hepsdesk.outages")
        assert lost["why"].startswith("the video connection is")
        assert (lost["resumedAt"] - lost["noticedAt"]) / 1000 < RESUME_S, lost
        decoded = frames_decoded(page)
        page.locator("#screen").click(position={"x": 600, "y": 400})  # a change on the desktop
        assert wait_until(lambda: frames_decoded(page) > decoded, 10), "live pictures again"
        expect(page.locator("#status")).to_have_class("connected")

        # The signalling websocket drops (a proxy restarted): a new one, a new peer connection.
        count = len(page.evaluate("window.hepsdesk.outages"))
        sockets[-1].close()
        dropped = wait_until(lambda: len(page.evaluate("window.hepsdesk.outages")) > count and outage(page), 15)
        assert dropped and dropped["why"] == "the signalling connection closed", dropped
        assert (dropped["resumedAt"] - dropped["noticedAt"]) / 1000 < RESUME_S, dropped
        assert windows(desktop) == before, "the same desktop, with its windows"
    page.context.close()
