"""Grabbing the screen's pixels: MIT-SHM through mss (XCB), ~13 ms at 1080p on 2 cores.

mss 10 looks for the root window's visual in the *first* entry of the screen's depth list
with the root's depth. Xtigervnc lists depth 24 twice (GLX visuals first, then the one with
the root's visual), so mss refuses it ("drawable's visual not found"). ``_depths`` lists the
depth that holds the root's visual first, which changes nothing on other servers.
"""

from __future__ import annotations

import mss
import numpy
from mss.linux import xcb as mss_xcb

_allowed_depths = mss_xcb.screen_allowed_depths


def _depths(screen):
    root_visual = screen.root_visual.value

    def holds_root_visual(depth) -> bool:
        return any(v.visual_id.value == root_visual for v in mss_xcb.depth_visuals(depth))
    return sorted(_allowed_depths(screen), key=lambda depth: not holds_root_visual(depth))


mss_xcb.screen_allowed_depths = _depths


class ScreenGrabber:
    """Pixels of an X display's top-left ``width`` x ``height``, as BGRA. One thread only."""

    def __init__(self, display: str):
        self.display = display
        self._mss = mss.MSS(display=display)

    def grab(self, width: int, height: int) -> numpy.ndarray:
        """Raises ``mss.ScreenShotError`` when the screen is smaller than that (a resize)."""
        region = {"left": 0, "top": 0, "width": width, "height": height}
        try:
            shot = self._mss.grab(region)
        except mss.ScreenShotError:
            # mss sizes its shared memory for the screen it connected to: after the screen grew,
            # connect again (and if the screen is smaller than asked for, this fails again).
            self.close()
            self._mss = mss.MSS(display=self.display)
            shot = self._mss.grab(region)
        return numpy.frombuffer(shot.raw, numpy.uint8).reshape(shot.height, shot.width, 4)

    def close(self) -> None:
        try:
            self._mss.close()
        except mss.ScreenShotError:  # the X server is gone already
            pass


GrabError = mss.ScreenShotError
