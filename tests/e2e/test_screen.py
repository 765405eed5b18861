"""The screen track on a real Xvfb: a still screen is neither grabbed nor encoded (only a
keepalive frame now and then), and a drawing is sent at once (X DAMAGE)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import time

from desktop_proxy.screen import ScreenTrack
from desktop_proxy.xdisplay import XDisplay

KEEPALIVE = 1.0


async def still_then_drawn() -> dict:
    display = XDisplay(640, 480, window_manager="", terminal=[])
    await display.start()
    track = ScreenTrack(display.name, fps=30, keepalive=KEEPALIVE)
    try:
        await asyncio.wait_for(track.recv(), 5)  # the first frame comes at once
        for _ in range(5):  # until the display's own start has been drawn and sent
            await asyncio.wait_for(track.recv(), 5)
            if track.keepalives:
                break
        track.keepalives = 0
        grabs = []
        original = track._grab
        track._grab = lambda: grabs.append(1) or original()
        started, still_frames = time.monotonic(), 0
        while time.monotonic() - started < 3:
            await asyncio.wait_for(track.recv(), 5)
            still_frames += 1
        keepalives = track.keepalives
        subprocess.run(["xsetroot", "-display", display.name, "-solid", "#ff0000"], check=True, timeout=10)
        drawn_at = time.monotonic()
        frame = await asyncio.wait_for(track.recv(), 5)
        return {"still_frames": still_frames, "keepalives": keepalives, "grabs_while_still": len(grabs) - 1,
                "delay": time.monotonic() - drawn_at, "after_drawing_is_keepalive": track.keepalives > keepalives,
                "pixel": frame.to_ndarray(format="bgra")[10, 10, :3].tolist()}
    finally:
        track.stop()
        display.stop()


def test_a_still_screen_sends_only_keepalives_and_a_drawing_comes_at_once():
    # A thread of its own: the browser tests' Playwright keeps an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        seen = thread.submit(asyncio.run, still_then_drawn()).result(timeout=60)
    # Three seconds of a still screen: about one keepalive a second, no grab at all.
    assert 2 <= seen["still_frames"] <= 4 and seen["keepalives"] == seen["still_frames"], seen
    assert seen["grabs_while_still"] == 0, seen
    # The drawing: grabbed and sent at once, not at the next keepalive.
    assert not seen["after_drawing_is_keepalive"] and seen["delay"] < 0.5, seen
    assert seen["pixel"] == [0, 0, 255], seen  # BGR red
