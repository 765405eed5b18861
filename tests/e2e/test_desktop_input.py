"""Mouse, wheel, touch and the locks, from Chromium to a real desktop, as an X client on the
desktop receives them: smooth scrolling becomes wheel clicks, a tap clicks where it was, two
fingers scroll and pinch zooms the picture, the pointer locked moves relatively, and full
screen asks for the Keyboard Lock (which headless Chromium cannot grant: asserted as requested)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import urllib.request

import pytest
from playwright.sync_api import expect
from Xlib import X
from Xlib import display as xlib_display

from .desktop_checks import wait_until
from .hubflow import wait_for_frames
from .test_desktop_server import start_desktop, stop_desktop

PORT = 18773
# Test-only: records what the page asks of the browser's locks (headless cannot grant them).
SPY_LOCKS = """
window.lockRequests = [];
const lock = navigator.keyboard && navigator.keyboard.lock && navigator.keyboard.lock.bind(navigator.keyboard);
if (lock) {
  navigator.keyboard.lock = (keys) => { window.lockRequests.push(['keyboard', keys || null]); return lock(keys); };
}
const pointer = Element.prototype.requestPointerLock;
Element.prototype.requestPointerLock = function (options) {
  window.lockRequests.push(['pointer', this.id, options || null]);
  return pointer.call(this, options);
};
"""


class EventWindow:
    """An X window on the desktop (at 200,150, 600x400) that records the pointer events it gets."""

    def __init__(self, display_name: str):
        self.x = xlib_display.Display(display_name)
        root = self.x.screen().root
        self.window = root.create_window(200, 150, 600, 400, 0, self.x.screen().root_depth,
                                         override_redirect=True, background_pixel=self.x.screen().white_pixel,
                                         event_mask=X.ButtonPressMask | X.ButtonReleaseMask | X.PointerMotionMask)
        self.window.map()
        self.window.configure(stack_mode=X.Above)
        self.x.sync()
        self.events: list[tuple] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        while not self._stop:
            while self.x.pending_events():
                e = self.x.next_event()
                if e.type in (X.ButtonPress, X.ButtonRelease):
                    self.events.append(("press" if e.type == X.ButtonPress else "release", e.detail,
                                        e.event_x, e.event_y))
            time.sleep(0.01)

    def presses(self, button: int) -> list[tuple]:
        return [e for e in self.events if e[0] == "press" and e[1] == button]

    def pointer(self) -> tuple[int, int]:
        reply = self.x.screen().root.query_pointer()
        return reply.root_x, reply.root_y

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.window.destroy()
        self.x.close()


@pytest.fixture(scope="module")
def desktop():
    process = start_desktop(PORT, {**os.environ, "HEPSDESK_DESKTOP_ICE_ADDRESSES": "127.0.0.1"}, "--size", "1280x720")
    url = f"http://127.0.0.1:{PORT}/"
    with urllib.request.urlopen(url + "stats", timeout=10) as response:
        name = json.load(response)["display"]["name"]
    yield url, name
    stop_desktop(process)


@pytest.fixture
def page(desktop, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 720}, has_touch=True)  # 1:1 with the desktop
    context.add_init_script(SPY_LOCKS)
    page = context.new_page()
    page.goto(desktop[0])
    wait_for_frames(page, 1, timeout_s=30)
    page.wait_for_function("window.hepsdesk.inputReady", timeout=10_000)
    yield page
    context.close()



def test_smooth_scrolling_adds_up_to_wheel_clicks(desktop, page):
    target = EventWindow(desktop[1])
    try:
        page.mouse.move(500, 350)
        for _ in range(5):  # a touchpad: 5 x 10 px is one click
            page.mouse.wheel(0, 10)
        assert wait_until(lambda: len(target.presses(5)) == 1), target.events
        page.mouse.wheel(0, -100)  # a wheel's notch upwards: two clicks of 50 px
        assert wait_until(lambda: len(target.presses(4)) == 2), target.events
        time.sleep(0.3)
        assert len(target.presses(5)) == 1 and len(target.presses(4)) == 2, "no more than that"
    finally:
        target.close()


def test_a_tap_clicks_where_it_is_two_fingers_scroll_and_a_pinch_zooms_the_picture(desktop, page):
    target = EventWindow(desktop[1])
    cdp = page.context.new_cdp_session(page)

    def touch(kind: str, points: list[tuple[int, int]]):
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [
            {"x": x, "y": y, "id": i} for i, (x, y) in enumerate(points)]})
    try:
        touch("touchStart", [(400, 300)])
        touch("touchEnd", [])
        assert wait_until(lambda: target.presses(1)), target.events
        _, _, x, y = target.presses(1)[0]
        assert abs(x - 200) <= 2 and abs(y - 150) <= 2, "at the tap (400,300 on the screen, 200,150 in the window)"
        assert wait_until(lambda: [e for e in target.events if e[:2] == ("release", 1)])

        # Two fingers moving up 150 px: the content scrolls down, three clicks of button 5.
        touch("touchStart", [(500, 500), (600, 500)])
        for step in range(1, 6):
            touch("touchMove", [(500, 500 - 30 * step), (600, 500 - 30 * step)])
        touch("touchEnd", [])
        assert wait_until(lambda: len(target.presses(5)) == 3), target.events
        assert len(target.presses(1)) == 1, "two fingers press no button"

        # A pinch: the picture zooms here, the desktop does not change size.
        touch("touchStart", [(600, 360), (700, 360)])
        for step in range(1, 6):
            touch("touchMove", [(600 - 20 * step, 360), (700 + 20 * step, 360)])
        touch("touchEnd", [])
        zoom = page.evaluate("window.hepsdesk.zoom")
        assert 2.5 < zoom["scale"] <= 3.0 + 1e-6, zoom
        assert page.evaluate("window.hepsdesk.desktopSize")["width"] == 1280
    finally:
        target.close()


def test_the_locks_are_asked_for_and_locked_motion_moves_relatively(desktop, page):
    page.get_by_role("button", name="Full screen (keeps Ctrl+W, Alt+Tab for the desktop)").click()
    page.wait_for_function("document.fullscreenElement !== null", timeout=5000)
    assert wait_until(lambda: ["keyboard", None] in page.evaluate("window.lockRequests")), \
        page.evaluate("window.lockRequests")
    page.get_by_role("button", name="Lock the pointer (for 3D views; Escape releases it)").click()
    assert wait_until(lambda: any(r[:2] == ["pointer", "screen"] for r in page.evaluate("window.lockRequests")))
    expect(page.locator("#keyboard")).to_be_focused()
    page.evaluate("document.exitFullscreen()")
    page.wait_for_function("!document.fullscreenElement && window.hepsdesk.desktopSize.width === 1280")

    # Locked (headless Chromium grants it when the page has the focus; under a busy test run
    # it may not): the mouse's movement moves the desktop's pointer relatively, wherever it is.
    # Not locked: the same message, as the page sends it, straight down the input channel.
    locked = page.evaluate("document.pointerLockElement && document.pointerLockElement.id") == "screen"
    target = EventWindow(desktop[1])
    try:
        if locked:
            page.mouse.move(640, 360)  # some movement first; then wait until the pointer rests

            def resting():
                before = target.pointer()
                time.sleep(0.2)
                return before if target.pointer() == before else None
            start = wait_until(resting)
            page.mouse.move(640 + 30, 360 - 45)
        else:
            page.mouse.move(640, 360)
            assert wait_until(lambda: target.pointer() == (640, 360)), target.pointer()
            start = target.pointer()
            page.evaluate("window.hepsdesk.inputChannel.send(JSON.stringify({v: 1, type: 'motion', dx: 30, dy: -45}))")
        assert wait_until(lambda: target.pointer() == (start[0] + 30, start[1] - 45)), (locked, start, target.pointer())
        page.evaluate("document.exitPointerLock()")
        page.wait_for_function("document.pointerLockElement === null")
        page.mouse.move(400, 300)  # not locked: absolute
        assert wait_until(lambda: target.pointer() == (400, 300)), target.pointer()
    finally:
        target.close()


# Test-only: a German keyboard as the Keyboard Map API reports it (headless Chromium's is the
# machine's, and the OS layout cannot be switched headless).
GERMAN_KEYBOARD = """
const german = new Map(Object.entries({ KeyY: 'z', KeyZ: 'y', Minus: 'ß', Semicolon: 'ö', Quote: 'ä',
                                        BracketLeft: 'ü', KeyQ: 'q', KeyA: 'a' }));
if (navigator.keyboard) navigator.keyboard.getLayoutMap = async () => german;
"""


def test_the_desktop_takes_the_browsers_keyboard_layout_and_still_types_what_the_keys_say(desktop, browser, tmp_path):
    url, display = desktop
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.add_init_script(GERMAN_KEYBOARD)
    page = context.new_page()
    try:
        page.goto(url)
        wait_for_frames(page, 1, timeout_s=30)
        page.wait_for_function("window.hepsdesk.layout === 'de'", timeout=10_000)
        query = subprocess.run(["setxkbmap", "-display", display, "-query"], capture_output=True, text=True).stdout
        assert re.search(r"^layout:\s+de$", query, re.MULTILINE), query
        # Keys still type the characters they say: z and y are not swapped by the German layout.
        out = tmp_path / "typed.txt"
        page.wait_for_function("window.hepsdesk.inputReady", timeout=10_000)
        page.locator("#screen").click(position={"x": 300, "y": 200})
        page.keyboard.type(f"printf yz@ > {out}")
        page.keyboard.press("Enter")
        assert wait_until(lambda: out.exists() and out.read_text() == "yz@", 10), out.exists() and out.read_text()
    finally:
        context.close()
        subprocess.run(["setxkbmap", "-display", display, "-layout", "us"], check=False)
