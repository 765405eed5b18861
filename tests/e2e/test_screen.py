"""The screen stream on a real Xvfb, decoded with FFmpeg's H.264 decoder: a viewer starts
with a key frame; a still screen is neither grabbed nor encoded, and sends nothing (or, when
asked for, a tiny keepalive now and then); a drawing is sent at once, and a small one is
grabbed alone; sustained motion is encoded smaller and the full picture follows when it
stops; a key frame asked for on a still screen comes at once; and the threads end when the
stream stops."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import av
from Xlib import display as xlib_display

from desktop_proxy.presets import PRESETS
from desktop_proxy.stream import EncodedTrack, ScreenStream
from desktop_proxy.xdisplay import XDisplay

KEEPALIVE = 1.0
ROOT = Path(__file__).resolve().parents[2]


async def next_picture(track: EncodedTrack, decoder, timeout: float = 5) -> tuple[av.Packet, list]:
    packet = await asyncio.wait_for(track.recv(), timeout)
    return packet, decoder.decode(packet)


async def still_then_drawn(keepalive: float) -> dict:
    display = XDisplay(640, 480, session="", terminal=[])
    await display.start()
    stream = ScreenStream(display.name, 640, 480, max_fps=30, keepalive=keepalive, refresh_after=0.25)
    track = EncodedTrack(stream, "H264")
    decoder = av.CodecContext.create("h264", "r")
    seen: dict = {}
    try:
        first, pictures = await next_picture(track, decoder)
        seen["first_is_key"] = first.is_keyframe or stream.stats.keyframes == 1
        seen["first_size"] = (pictures[0].width, pictures[0].height) if pictures else None
        # Until the display's own start-up drawing is sent, and the refresh after it.
        deadline = time.monotonic() + 10
        while stream.stats.refreshes == 0 and time.monotonic() < deadline:
            await next_picture(track, decoder)
        await asyncio.sleep(0.5)
        while track._queue.qsize():
            await next_picture(track, decoder)
        grabs, encoded, sent = stream.stats.grabs, stream.stats.encoded, stream.stats.bytes
        started, still_pictures = time.monotonic(), 0
        while (remaining := 3 - (time.monotonic() - started)) > 0:
            try:
                await next_picture(track, decoder, timeout=remaining)
            except TimeoutError:
                break
            still_pictures += 1
        seen.update(still_pictures=still_pictures, grabs_while_still=stream.stats.grabs - grabs,
                    encoded_while_still=stream.stats.encoded - encoded,
                    bytes_per_still_picture=(stream.stats.bytes - sent) / max(1, still_pictures))

        keyframes = stream.stats.keyframes
        asked = time.monotonic()
        stream.request_keyframe(urgent=True)
        packet, _ = await next_picture(track, decoder)
        seen.update(keyframe_delay=time.monotonic() - asked, keyframe_sent=stream.stats.keyframes == keyframes + 1)

        subprocess.run(["xsetroot", "-display", display.name, "-solid", "#ff0000"], check=True, timeout=10)
        drawn_at = time.monotonic()
        _, pictures = await next_picture(track, decoder)
        seen["drawing_delay"] = time.monotonic() - drawn_at
        seen["pixel"] = pictures[0].to_ndarray(format="rgb24")[10, 10].tolist() if pictures else None

        # A small drawing: only its area is grabbed, and the picture has it and the rest.
        partial = stream.stats.partial_grabs
        x = xlib_display.Display(display.name)
        root = x.screen().root
        root.fill_rectangle(root.create_gc(foreground=0x0000FF), 300, 200, 40, 30)
        x.sync()
        x.close()
        # At least the next picture (the grab may already be counted, the red one is not it).
        deadline = time.monotonic() + 5
        while True:
            _, pictures = await next_picture(track, decoder)
            if stream.stats.partial_grabs > partial or time.monotonic() > deadline:
                break
        picture = pictures[-1].to_ndarray(format="rgb24") if pictures else None
        seen["partial_grabs"] = stream.stats.partial_grabs - partial
        seen["small_drawing"] = picture[215, 320].tolist() if picture is not None else None
        seen["around_it"] = picture[100, 100].tolist() if picture is not None else None
        seen["threads"] = len(stream._threads)
    finally:
        track.stop()
        stream.stop()
        await asyncio.get_running_loop().run_in_executor(None, stream.join, 5)
        display.stop()
    seen["threads_left"] = len(stream._threads)
    return seen


def run_apart(keepalive: float) -> dict:
    # A thread of its own: the browser tests' Playwright keeps an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, still_then_drawn(keepalive)).result(timeout=60)


def test_a_still_screen_sends_nothing_and_changes_and_key_frames_come_at_once():
    seen = run_apart(keepalive=0)
    assert seen["first_is_key"] and seen["first_size"] == (640, 480), seen
    # Three seconds of a still screen: no grab, no encode, no picture.
    assert seen["still_pictures"] == 0, seen
    assert seen["grabs_while_still"] == 0 and seen["encoded_while_still"] == 0, seen
    # A key frame asked for on a still screen (a new viewer, a lost picture) comes at once.
    assert seen["keyframe_sent"] and seen["keyframe_delay"] < 0.5, seen
    # The drawing: grabbed and sent at once, not at the next keepalive, and it decodes red.
    assert seen["drawing_delay"] < 0.5, seen
    red, green, blue = seen["pixel"]
    assert red > 200 and green < 60 and blue < 60, seen
    # A small drawing is grabbed alone (DAMAGE says where), into the last picture.
    assert seen["partial_grabs"] >= 1, seen
    red, green, blue = seen["small_drawing"]
    assert blue > 200 and red < 60 and green < 60, seen
    red, green, blue = seen["around_it"]
    assert red > 200 and green < 60 and blue < 60, seen
    assert seen["threads"] == 2 and seen["threads_left"] == 0, seen


def test_a_keepalive_when_asked_for_is_a_tiny_picture_about_once_per_interval():
    seen = run_apart(keepalive=KEEPALIVE)
    assert 2 <= seen["still_pictures"] <= 4, seen
    assert seen["grabs_while_still"] == 0 and seen["encoded_while_still"] == seen["still_pictures"], seen
    assert seen["bytes_per_still_picture"] < 500, seen
    assert seen["drawing_delay"] < 0.5 and seen["threads_left"] == 0, seen


async def motion_then_still() -> dict:
    display = XDisplay(640, 480, session="", terminal=[])
    await display.start()
    # A preset whose motion size is a quarter of this screen (as 1920x1080 is of 4K).
    preset = dataclasses.replace(PRESETS["auto"], motion_pixels=320 * 240)
    stream = ScreenStream(display.name, 640, 480, preset=preset, max_fps=30)
    track = EncodedTrack(stream, "H264")
    decoder = av.CodecContext.create("h264", "r")
    sizes = []
    try:
        await next_picture(track, decoder)
        animator = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "benchmarks" / "desktop_scenes.py"), "--display", display.name,
            "--scene", "motion", "--fps", "30", "--seconds", "1.5", stdout=asyncio.subprocess.DEVNULL)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            try:
                _, pictures = await next_picture(track, decoder, timeout=1.0)
            except TimeoutError:
                break
            sizes += [(p.width, p.height) for p in pictures]
        await animator.wait()
        return {"sizes": sizes, "refreshes": stream.stats.refreshes}
    finally:
        track.stop()
        stream.stop()
        await asyncio.get_running_loop().run_in_executor(None, stream.join, 5)
        display.stop()


def test_sustained_motion_is_encoded_smaller_and_the_full_picture_follows_when_it_stops():
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        seen = thread.submit(asyncio.run, motion_then_still()).result(timeout=60)
    sizes = seen["sizes"]
    assert (320, 240) in sizes, sizes  # during the motion
    assert sizes[-1] == (640, 480) and seen["refreshes"] >= 1, seen  # then the full picture, once
    assert sizes.count((320, 240)) > 10, sizes
