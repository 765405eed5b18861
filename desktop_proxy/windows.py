"""The desktop's windows, as the window manager lists them (EWMH), and pictures of them.

Openbox keeps the top-level windows in the root's ``_NET_CLIENT_LIST``; each has a title
(``_NET_WM_NAME``, else ``WM_NAME``), usually the pid of its process (``_NET_WM_PID``), and a
place on the screen. A window belongs to a launch (``apps.Launch``) when its process is the
launched one or a descendant of it, else when its title holds the application's ``window``
text (the most recent such launch that still runs).

X calls block: they run in one thread of their own, on a connection of their own, with the
server's signals blocked (``xdisplay.without_signals``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import time

import cv2
from Xlib import Xatom
from Xlib import display as xlib_display
from Xlib import error as xerror

from .apps import Launch, is_descendant, live_groups
from .grab import GrabError, ScreenGrabber
from .xdisplay import without_signals


class UnknownWindow(LookupError):
    pass


class WindowOffScreen(RuntimeError):
    pass


@without_signals
def _block_signals() -> None:
    pass


class Windows:
    """The windows of the X display ``display_name``, listed and photographed off the event loop."""

    def __init__(self, display_name: str):
        self.display_name = display_name
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "windows", initializer=_block_signals)
        self._x: xlib_display.Display | None = None
        self._grabber: ScreenGrabber | None = None

    async def list(self, launches: list[Launch] = ()) -> list[dict]:
        """The top-level windows: id, title, pid, x, y, width, height (on the screen), launch."""
        windows = await self._run(self._list)
        return attribute(windows, list(launches))

    async def screenshot(self, window_id: int | None = None) -> bytes:
        """A PNG of the whole screen, or of the part of it where the window ``window_id`` is
        (with whatever covers it)."""
        return await self._run(self._screenshot, window_id)

    async def wait_drawn(self, window_id: int, limit: float, interval: float = 0.15) -> bool:
        """Wait up to ``limit`` seconds until the window has been drawn: its picture is not one
        flat colour and is the same twice in a row (a window is mapped before it paints).
        Whether it settled; a window that stays blank just costs ``limit``."""
        deadline = time.monotonic() + limit
        last = None
        while True:
            try:
                look = await self._run(self._look, window_id)
            except (UnknownWindow, WindowOffScreen):
                return False
            if look is not None and look == last:
                return True
            last = look
            if time.monotonic() + interval > deadline:
                return False
            await asyncio.sleep(interval)

    def close(self) -> None:
        self._executor.submit(self._disconnect)
        self._executor.shutdown(wait=True)

    async def _run(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # In the thread.

    def _connect(self) -> xlib_display.Display:
        if self._x is None:
            self._x = xlib_display.Display(self.display_name)
        return self._x

    def _disconnect(self) -> None:
        if self._x is not None:
            try:
                self._x.close()
            except Exception:
                pass
            self._x = None
        if self._grabber is not None:
            self._grabber.close()
            self._grabber = None

    def _with_x(self, function):
        try:
            return function(self._connect())
        except (xerror.ConnectionClosedError, OSError):
            self._disconnect()  # the next call connects again
            raise

    def _list(self) -> list[dict]:
        return self._with_x(self._windows)

    def _windows(self, x: xlib_display.Display) -> list[dict]:
        root = x.screen().root
        screen = root.get_geometry()
        atom = x.intern_atom
        clients = root.get_full_property(atom("_NET_CLIENT_LIST"), Xatom.WINDOW)
        windows = []
        for wid in (clients.value if clients else []):
            window = x.create_resource_object("window", int(wid))
            try:
                name = window.get_full_property(atom("_NET_WM_NAME"), atom("UTF8_STRING"))
                title = _text(name.value) if name else _text(window.get_wm_name() or "")
                pid = window.get_full_property(atom("_NET_WM_PID"), Xatom.CARDINAL)
                geometry = window.get_geometry()
                origin = root.translate_coords(window, 0, 0)
            except xerror.XError:  # it closed while we looked
                continue
            x0, y0 = max(0, origin.x), max(0, origin.y)
            x1 = min(screen.width, origin.x + geometry.width)
            y1 = min(screen.height, origin.y + geometry.height)
            windows.append({"id": int(wid), "title": title,
                            "pid": int(pid.value[0]) if pid is not None and len(pid.value) else None,
                            "x": x0, "y": y0, "width": max(0, x1 - x0), "height": max(0, y1 - y0)})
        return windows

    def _screenshot(self, window_id: int | None) -> bytes:
        if window_id is None:
            geometry = self._with_x(lambda x: x.screen().root.get_geometry())
            area = (0, 0, geometry.width, geometry.height)
        else:
            area = self._area(window_id)
        ok, png = cv2.imencode(".png", self._grab(area))
        if not ok:
            raise RuntimeError("the picture could not be encoded as PNG")
        return png.tobytes()

    def _look(self, window_id: int) -> str | None:
        """A digest of the window's picture and place, or None while it is one flat colour."""
        area = self._area(window_id)
        pixels = self._grab(area)
        if (pixels == pixels[0, 0]).all():
            return None
        return hashlib.blake2b(pixels.tobytes(), digest_size=16).hexdigest() + repr(area)

    def _area(self, window_id: int) -> tuple[int, int, int, int]:
        window = next((w for w in self._list() if w["id"] == window_id), None)
        if window is None:
            raise UnknownWindow(f"there is no window {window_id} on the desktop")
        if not window["width"] or not window["height"]:
            raise WindowOffScreen(f"the window {window['title']!r} is not on the screen")
        return window["x"], window["y"], window["width"], window["height"]

    def _grab(self, area: tuple[int, int, int, int]):
        """The screen's pixels in ``area`` (BGR)."""
        for attempt in range(2):
            if self._grabber is None:
                self._grabber = ScreenGrabber(self.display_name)
            try:
                return self._grabber.grab_area(*area)[:, :, :3]
            except GrabError:  # the screen changed size since the grabber connected: connect again
                self._grabber.close()
                self._grabber = None
                if attempt:
                    raise


def _text(value) -> str:
    if isinstance(value, str):
        return value
    return bytes(value).decode("utf-8", errors="replace")


def attribute(windows: list[dict], launches: list[Launch]) -> list[dict]:
    """Set each window's ``launch``: the id of the launch it belongs to, or None."""
    groups = live_groups()
    alive = [launch for launch in launches if launch.running or launch.pid in groups]
    by_pid = {launch.pid: launch for launch in alive}
    for window in windows:
        owner = None
        if window["pid"] is not None:
            owner = by_pid.get(is_descendant(window["pid"], set(by_pid)))
        if owner is None:
            matches = [launch for launch in alive if launch.app.window and launch.app.window in window["title"]]
            owner = max(matches, key=lambda launch: launch.started, default=None)
        window["launch"] = owner.id if owner else None
    return windows

