"""The desktop on a link that gets slower, in Chromium: the stream follows the link (Chromium's
REMB), the picture is live again within 2 s, and when motion stops a sharp refresh follows.

The link is the one fake (``shaper.py``): loopback cannot lose bandwidth on demand."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from benchmarks.desktop_scenes import STAMP_BITS, STAMP_BLOCK, STAMP_LEFT
from benchmarks.desktop_stream import MEASURE_JS
from desktop_proxy.xdisplay import XDisplay

from .desktop_checks import route_through
from .shaper import Shaper
from .test_desktop_server import start_desktop, stop_desktop

ROOT = Path(__file__).resolve().parents[2]
PORT = 18768


@pytest.fixture
def moving_desktop():
    """A 1280x720 X display showing the benchmark's photo-like motion, and its desktop server."""
    display = XDisplay(1280, 720, session="", terminal=[])
    with concurrent.futures.ThreadPoolExecutor(1) as thread:  # Playwright has this thread's loop
        thread.submit(asyncio.run, display.start()).result(30)
    animator = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "desktop_scenes.py"), "--display",
                                 display.name, "--scene", "motion", "--fps", "30", "--seconds", "120"],
                                stdout=subprocess.PIPE, text=True)
    desktop = None
    try:
        assert animator.stdout.readline().strip() == "ready"
        desktop = start_desktop(PORT, {**os.environ, "HEPSDESK_DESKTOP_ICE_ADDRESSES": "127.0.0.1"},
                                "--display", display.name)
        yield f"http://127.0.0.1:{PORT}/", animator
    finally:
        if desktop is not None:
            stop_desktop(desktop)
        if animator.poll() is None:
            animator.terminate()
            animator.wait(10)
        display.stop()



def window(page, seconds: float) -> dict:
    """Received bitrate and picture age over the next ``seconds``."""
    page.evaluate("window.__measure && (window.__measure.samples = [])")
    before = received(page)
    page.wait_for_timeout(seconds * 1000)
    ages = sorted(age for _, age in page.evaluate("window.__measure.samples"))
    return {"mbps": (received(page) - before) * 8 / seconds / 1e6, "frames": len(ages),
            "age_p50_ms": ages[len(ages) // 2] if ages else None}


def frames_until_quiet(page, quiet_seconds: float, within_seconds: float) -> int | None:
    """The count of frames received when no frame came for ``quiet_seconds``; None if that
    did not happen within ``within_seconds``."""
    def count() -> int:
        return page.evaluate("window.hepsdesk.stats()")["framesReceived"]
    last, changed = count(), time.monotonic()
    deadline = changed + within_seconds
    while time.monotonic() < deadline:
        page.wait_for_timeout(250)
        now = count()
        if now != last:
            last, changed = now, time.monotonic()
        elif time.monotonic() - changed >= quiet_seconds:
            return now
    return None


def desktop_stats(url: str) -> dict:
    with urllib.request.urlopen(url + "stats", timeout=10) as response:
        return json.load(response)


def received(page) -> int:
    return page.evaluate("""async () => {
        for (const s of (await window.hepsdesk.pc.getStats()).values())
            if (s.type === 'inbound-rtp' && s.kind === 'video') return s.bytesReceived || 0;
        return 0; }""")


def test_a_bandwidth_drop_is_followed_within_2_s_and_a_sharp_refresh_ends_motion(moving_desktop, browser):
    url, animator = moving_desktop
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    with Shaper(rate_bps=50e6) as shaper:
        route_through(page, shaper)
        page.goto(url)
        page.wait_for_function("window.hepsdesk.firstFrameAt !== null", timeout=30000)
        page.evaluate(MEASURE_JS, [STAMP_BITS, STAMP_BLOCK, STAMP_LEFT, 1280])
        page.wait_for_timeout(2000)
        before = window(page, 2)
        assert before["mbps"] > 2.0 and before["frames"] > 30, (before, desktop_stats(url))  # unconstrained

        shaper.set_rate(1.2e6)  # the link drops to 1.2 Mbit/s
        dropped_at = time.monotonic()
        page.wait_for_timeout(2000)
        after = window(page, 2)  # seconds 2 to 4 after the drop
        # The sender follows the link (else its queue would make every picture old and lose
        # packets), and the picture is live again: frames keep coming, fresh.
        stream = desktop_stats(url)["stream"]
        assert stream["target_bps"] <= 1.2e6, (stream, desktop_stats(url)["links"])
        assert after["frames"] > 10 and after["age_p50_ms"] < 250, (before, after, shaper.dropped)
        assert time.monotonic() - dropped_at < 6

        # Motion stops: a refresh at a higher bitrate follows (text and plots become sharp),
        # then nothing at all.
        refreshes = desktop_stats(url)["stream"]["refreshes"]
        animator.terminate()
        animator.wait(10)
        page.wait_for_timeout(1500)
        stream = desktop_stats(url)["stream"]
        assert stream["refreshes"] > refreshes, stream
        # Then the stream goes quiet: 2 s without a frame, at most a key frame or two later
        # (a repair, when the receiver reports pictures lost in the last of the motion).
        frames = page.evaluate("window.hepsdesk.stats()")["framesReceived"]
        quiet_from = frames_until_quiet(page, quiet_seconds=2.0, within_seconds=6.0)
        assert quiet_from is not None, desktop_stats(url)["stream"]
        assert quiet_from - frames <= 2, desktop_stats(url)["stream"]
        links = desktop_stats(url)["links"]
        assert links and links[0]["drops"] >= 1 and links[0]["remb_bps"], links
    context.close()
