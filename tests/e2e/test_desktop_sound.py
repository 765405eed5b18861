"""The desktop's sound in Chromium: muted until the person unmutes it, a tone played on the
desktop arrives at its frequency (a WebAudio analyser on the page's audio), and a silent
desktop records and sends nothing."""

from __future__ import annotations

import json
import math
import os
import subprocess
import urllib.request

import numpy
import pytest
from playwright.sync_api import expect

from .desktop_checks import LISTEN, hears, program_environment, wait_until
from .hubflow import wait_for_frames
from .test_desktop_server import start_desktop, stop_desktop

PORT = 18772
TONE_HZ = 1000


@pytest.fixture(scope="module")
def desktop():
    process = start_desktop(PORT, {**os.environ, "HEPSDESK_DESKTOP_ICE_ADDRESSES": "127.0.0.1"}, "--size", "1280x720")
    yield f"http://127.0.0.1:{PORT}/"
    stop_desktop(process)


def stats(url: str) -> dict:
    with urllib.request.urlopen(url + "stats", timeout=10) as response:
        return json.load(response)["sound"]



def tone(seconds: float) -> bytes:
    t = numpy.arange(int(48000 * seconds)) / 48000
    wave = (0.5 * 32767 * numpy.sin(2 * math.pi * TONE_HZ * t)).astype("<i2")
    return numpy.repeat(wave[:, None], 2, axis=1).tobytes()  # stereo



def test_a_tone_on_the_desktop_is_heard_at_its_frequency_once_unmuted(desktop, browser):
    page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
    page.goto(desktop)
    wait_for_frames(page, 1, timeout_s=30)
    assert page.evaluate("window.hepsdesk.sound.muted") is True, "muted until the person unmutes"
    button = page.get_by_role("button", name="Unmute the desktop's sound")
    assert wait_until(lambda: page.evaluate("Boolean(window.hepsdesk.sound.srcObject)"), 10), "the audio track came"

    # Silent: nothing is recorded, nothing sent.
    before = stats(desktop)
    page.wait_for_timeout(1000)
    assert not stats(desktop)["recording"] and stats(desktop)["frames"] == before["frames"]

    button.click()
    expect(page.get_by_role("button", name="Mute the desktop's sound")).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("window.hepsdesk.sound.muted") is False
    page.evaluate(LISTEN)
    server = program_environment("xterm")["PULSE_SERVER"]  # as the programs on the desktop see it
    player = subprocess.Popen(["pacat", f"--server={server}", "--raw", "--format=s16le", "--rate=48000",
                               "--channels=2"], stdin=subprocess.PIPE)
    try:
        player.stdin.write(tone(4.0))
        player.stdin.close()
        heard = hears(page, TONE_HZ)
        assert heard, page.evaluate("window.loudest()")
        assert stats(desktop)["recording"]
    finally:
        player.wait(15)
    # Quiet again: the recording stops a moment later.
    assert wait_until(lambda: not stats(desktop)["recording"], 10)
    page.context.close()
