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

    def grab_area(self, left: int, top: int, width: int, height: int) -> numpy.ndarray:
        """The pixels of one rectangle of the screen."""
        shot = self._mss.grab({"left": left, "top": top, "width": width, "height": height})
        return numpy.frombuffer(shot.raw, numpy.uint8).reshape(shot.height, shot.width, 4)

    def close(self) -> None:
        try:
            self._mss.close()
        except mss.ScreenShotError:  # the X server is gone already
            pass


GrabError = mss.ScreenShotError
TILE = 64  # changed rectangles are grabbed as runs of tiles of this size


def changed_areas(rects: list[tuple[int, int, int, int]], width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Few rectangles (x, y, width, height) that cover ``rects`` within the screen: the tiles
    they touch, joined into runs along each row of tiles, and runs of the same span in
    consecutive rows joined into one rectangle."""
    columns, rows = -(-width // TILE), -(-height // TILE)
    dirty = numpy.zeros((rows, columns), bool)
    for x, y, w, h in rects:
        x0, y0 = max(0, x) // TILE, max(0, y) // TILE
        x1, y1 = min(width, x + w), min(height, y + h)
        if x1 > x0 * TILE and y1 > y0 * TILE:
            dirty[y0:-(-y1 // TILE), x0:-(-x1 // TILE)] = True
    boxes: dict[tuple[int, int], list[int]] = {}  # (first column, end column) -> [first row, end row]
    areas = []
    for row in range(rows):
        runs, column = [], 0
        while column < columns:
            if dirty[row, column]:
                start = column
                while column < columns and dirty[row, column]:
                    column += 1
                runs.append((start, column))
            column += 1
        for span in list(boxes):
            if span not in runs:  # the box above ends here
                first, end = boxes.pop(span)
                areas.append((span, first, end))
        for span in runs:
            if span in boxes:
                boxes[span][1] = row + 1
            else:
                boxes[span] = [row, row + 1]
    areas += [(span, first, end) for span, (first, end) in boxes.items()]
    return [(c0 * TILE, r0 * TILE, min(width, c1 * TILE) - c0 * TILE, min(height, r1 * TILE) - r0 * TILE)
            for (c0, c1), r0, r1 in areas]
