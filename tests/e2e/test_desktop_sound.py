"""The desktop's sound in Chromium: muted until the person unmutes it, a tone played on the
desktop arrives at its frequency (a WebAudio analyser on the page's audio), and a silent
desktop records and sends nothing."""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy
import pytest
from playwright.sync_api import expect

from .hubflow import wait_for_frames
from .test_desktop_server import start_desktop, stop_desktop

PORT = 18772
TONE_HZ = 1000

ANALYSER = """() => {
    const context = new AudioContext();
    const source = context.createMediaStreamSource(window.hepsdesk.sound.srcObject);
    const analyser = context.createAnalyser();
    analyser.fftSize = 8192;
    source.connect(analyser);
    window.loudest = () => {
        const levels = new Float32Array(analyser.frequencyBinCount);
        analyser.getFloatFrequencyData(levels);
        let best = 0;
        for (let i = 1; i < levels.length; i++) if (levels[i] > levels[best]) best = i;
        return { hz: best * context.sampleRate / analyser.fftSize, db: levels[best] };
    };
}"""


@pytest.fixture(scope="module")
def desktop():
    process = start_desktop(PORT, {**os.environ, "HEPSDESK_DESKTOP_ICE_ADDRESSES": "127.0.0.1"}, "--size", "1280x720")
    yield f"http://127.0.0.1:{PORT}/"
    stop_desktop(process)


def stats(url: str) -> dict:
    with urllib.request.urlopen(url + "stats", timeout=10) as response:
        return json.load(response)["sound"]


def pulse_server() -> str:
    """The desktop's sound server, as the programs on it see it (the terminal's environment)."""
    pid = subprocess.run(["pgrep", "-n", "-x", "xterm"], capture_output=True, text=True).stdout.strip()
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in environ if b"=" in item)["PULSE_SERVER"]


def tone(seconds: float) -> bytes:
    t = numpy.arange(int(48000 * seconds)) / 48000
    wave = (0.5 * 32767 * numpy.sin(2 * math.pi * TONE_HZ * t)).astype("<i2")
    return numpy.repeat(wave[:, None], 2, axis=1).tobytes()  # stereo


def wait_until(condition, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    return condition()


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
    page.evaluate(ANALYSER)
    player = subprocess.Popen(["pacat", f"--server={pulse_server()}", "--raw", "--format=s16le", "--rate=48000",
                               "--channels=2"], stdin=subprocess.PIPE)
    try:
        player.stdin.write(tone(4.0))
        player.stdin.close()
        heard = wait_until(lambda: (lambda p: p if p["db"] > -60 and abs(p["hz"] - TONE_HZ) < 20 else None)(
            page.evaluate("window.loudest()")), 10)
        assert heard, page.evaluate("window.loudest()")
        assert stats(desktop)["recording"]
    finally:
        player.wait(15)
    # Quiet again: the recording stops a moment later.
    assert wait_until(lambda: not stats(desktop)["recording"], 10)
    page.context.close()
