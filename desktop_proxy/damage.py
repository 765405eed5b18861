"""When the screen changed: the X DAMAGE extension, so a still screen costs nothing.

Grabbing a 1080p screen to compare it with the last one costs ~10 ms a frame (0.3 cores at
30 fps); the X server already knows what was drawn. ``Damage`` asks it to report each
rectangle added to the root window's damaged region; ``wait()`` sleeps on the X connection's
socket until a report arrives, and ``take_changes()`` hands over the rectangles (so only they
are grabbed) and empties the region. Xvfb, Xorg and Xtigervnc all have DAMAGE.

python-xlib, not libX11 through ctypes: libX11 ends the whole process when the X server goes
away, python-xlib raises. The connection is used from one thread only, the capture thread.
"""

from __future__ import annotations

import select

from Xlib import X
from Xlib import display as xlib_display
from Xlib import error as xlib_error
from Xlib.ext import damage as xdamage


class DamageUnavailable(RuntimeError):
    """No display, or a server without the DAMAGE extension."""


class Damage:
    """Changes of an X display's screen, as reported by the X server: that it changed
    (``wait``) and where (``take_changes``, for grabbing only that; call it before each grab)."""

    MAX_RECTS = 512  # beyond this many rectangles between two grabs: "everything"

    def __init__(self, display: str):
        try:
            self._display = xlib_display.Display(display)
        except (xlib_error.DisplayError, OSError) as e:
            raise DamageUnavailable(f"cannot open display {display}: {e}") from None
        if not self._display.has_extension("DAMAGE"):
            self._display.close()
            raise DamageUnavailable(f"display {display} has no DAMAGE extension")
        self._display.damage_query_version()
        root = self._display.screen().root
        # An event for each rectangle added to the damaged region; subtracting empties it.
        self._damage = root.damage_create(xdamage.DamageReportDeltaRectangles)
        self._display.flush()
        self._rects: list[tuple[int, int, int, int]] | None = []

    def wait(self, timeout: float) -> bool:
        """Until the screen changed since the last ``take_changes`` (True) or ``timeout``
        seconds passed (False)."""
        if self._drain() or self._rects != []:
            return True
        readable, _, _ = select.select([self._display.fileno()], [], [], max(0.0, timeout))
        return bool(readable) and self._drain()

    def screen_size(self) -> tuple[int, int]:
        """The root window's size now (it changes with RandR)."""
        geometry = self._display.screen().root.get_geometry()
        return geometry.width, geometry.height

    def take_changes(self) -> list[tuple[int, int, int, int]] | None:
        """The rectangles (x, y, width, height) drawn since the last call, as far as events
        have been read (``wait``); None when there were too many to list."""
        self._drain()
        # Empty the damaged region: drawing there reports again. (Drawing between the last
        # event and this is in the grab that follows, which reads the screen after it.)
        self._display.damage_subtract(self._damage, X.NONE, X.NONE)
        self._display.flush()
        rects, self._rects = self._rects, []
        return rects

    def _drain(self) -> bool:
        """Take every pending event (the connection asked for damage only); any at all?"""
        seen = False
        while self._display.pending_events():
            event = self._display.next_event()
            seen = True
            if self._rects is not None and hasattr(event, "area"):
                area = event.area
                self._rects.append((area.x, area.y, area.width, area.height))
                if len(self._rects) > self.MAX_RECTS:
                    self._rects = None
        return seen

    def close(self) -> None:
        try:
            self._display.close()
        except (xlib_error.ConnectionClosedError, OSError):
            pass
