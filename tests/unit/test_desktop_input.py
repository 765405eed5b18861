"""The input queue to the X display (desktop_proxy/injector.py), on a real X server: bounded,
and a flood never loses a key release."""

from __future__ import annotations

import time

import pytest
from Xlib import XK
from Xlib import display as xlib_display

from desktop_proxy.injector import MAX_QUEUED, InputInjector, char_keysym
from desktop_proxy.xdisplay import XDisplay


@pytest.fixture
async def x_display():
    display = XDisplay(640, 480, session="", terminal=[])
    await display.start()
    yield display
    display.stop()


def held_keycodes(name: str) -> set[int]:
    viewer = xlib_display.Display(name)
    try:
        keymap = viewer.query_keymap()
    finally:
        viewer.close()
    return {8 * byte + bit for byte, bits in enumerate(keymap) for bit in range(8) if bits & (1 << bit)}


def drained(injector: InputInjector, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with injector._queued:
            if not injector._queue:
                break
        time.sleep(0.02)
    time.sleep(0.2)  # the last message is being handled
    return not injector._queue


async def test_a_flood_of_input_is_bounded_and_never_loses_a_key_release(x_display):
    injector = InputInjector(x_display.name, x_display.width, x_display.height)
    try:
        a = XK.string_to_keysym("a")
        injector.submit({"v": 1, "type": "key", "keysym": a, "down": True})
        assert drained(injector)
        assert held_keycodes(x_display.name), "the key is down on the X server"

        with injector._queued:  # the X thread waits: everything below queues up
            for n in range(3000):
                injector.submit({"v": 1, "type": "pointer", "x": n / 3000, "y": 0.5})
                if n == 10:
                    injector.submit({"v": 1, "type": "key", "keysym": a, "down": False})
            assert len(injector._queue) == MAX_QUEUED
            assert injector.dropped == 3001 - MAX_QUEUED
            assert {"v": 1, "type": "key", "keysym": a, "down": False} in injector._queue
        assert drained(injector)
        assert held_keycodes(x_display.name) == set(), "the release of a flood's first key was kept"
    finally:
        injector.close()
    assert not injector._thread.is_alive()


def test_committed_text_becomes_keysyms_one_character_at_a_time():
    assert char_keysym("a") == ord("a") and char_keysym("ß") == 0xDF and char_keysym("€") == 0x10020AC
    assert char_keysym("你") == 0x1000000 + ord("你") and char_keysym("😀") == 0x1000000 + 0x1F600
    assert char_keysym("\n") == XK.XK_Return and char_keysym("\t") == XK.XK_Tab
    assert char_keysym("\x1b") is None and char_keysym("\x7f") is None, "control characters type nothing"
