"""What the desktop benchmark shows on the X display: a scene redrawn at a fixed rate, with the
time of each redraw stamped into its pixels.

    python benchmarks/desktop_scenes.py --display :1 --scene motion|typical|idle [--fps 60]

- ``motion``: full screen, photo-like (a noisy heat-map texture scrolling 7 px a frame): the
  hard case for every codec and the worst case for VNC.
- ``typical``: a session: a terminal of text scrolling, a plot redrawing, a window dragged
  across a still background.
- ``idle``: drawn once, then still.

The stamp: the wall-clock time of the redraw in milliseconds (modulo 2**24) as 24 blocks of
24x24 pixels, black for 0 and white for 1, in the top-left corner, row 0 (``STAMP_*``).
A receiver that reads it from the picture it displays knows how old the picture is.
Every redraw is one batch of X requests followed by a round trip, so the stamp is drawn
together with the content it dates.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time

import numpy
from Xlib import X
from Xlib import display as xlib_display
from Xlib import error as xlib_error

STAMP_BITS = 24
STAMP_BLOCK = 24
STAMP_LEFT = STAMP_BLOCK  # one black block of margin on the left
TEXT = ("analysis of run 2042: integrating detector frames, background subtracted, "
        "peak fit chi2=1.03, q range 0.005-0.3 1/A, writing reduced data to proposal directory").split()


def stamp_value(now_ms: int) -> int:
    return now_ms % (1 << STAMP_BITS)


class Scene:
    def __init__(self, display_name: str):
        self.d = xlib_display.Display(display_name)
        screen = self.d.screen()
        self.root = screen.root
        geometry = self.root.get_geometry()
        self.width, self.height = geometry.width, geometry.height
        self.depth = screen.root_depth
        self.window = self.root.create_window(
            0, 0, self.width, self.height, 0, self.depth, X.InputOutput, X.CopyFromParent,
            background_pixel=0x202830, override_redirect=True, event_mask=0)
        self.window.map()
        self.black = self.window.create_gc(foreground=0x000000)
        self.white = self.window.create_gc(foreground=0xFFFFFF)
        self.d.sync()

    def gc(self, colour: int):
        return self.window.create_gc(foreground=colour, line_width=2, graphics_exposures=False)

    def stamp(self) -> None:
        value = stamp_value(int(time.time() * 1000))
        self.window.fill_rectangle(self.black, 0, 0, STAMP_LEFT + STAMP_BITS * STAMP_BLOCK + STAMP_BLOCK, STAMP_BLOCK)
        ones = [(STAMP_LEFT + bit * STAMP_BLOCK, 0, STAMP_BLOCK, STAMP_BLOCK)
                for bit in range(STAMP_BITS) if value >> (STAMP_BITS - 1 - bit) & 1]
        if ones:
            self.window.poly_fill_rectangle(self.white, ones)

    def frame(self, n: int) -> None:
        """Draw frame ``n`` (without the stamp)."""

    def run(self, fps: float, seconds: float) -> None:
        interval = 1.0 / fps
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            self.frame(n)
            self.stamp()
            self.d.sync()  # drawn (as far as the X server is concerned) when the stamp says
            n += 1
            delay = started + n * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                n = int((time.monotonic() - started) / interval)  # behind: skip, do not queue


class Motion(Scene):
    """A photo-like texture (smooth heat map plus noise) scrolling 7 px a frame."""

    def __init__(self, display_name: str):
        super().__init__(display_name)
        rng = numpy.random.default_rng(2042)
        w, h = self.width * 2, self.height
        y, x = numpy.mgrid[0:h, 0:w].astype(numpy.float32)
        heat = (numpy.sin(x / 97.0) * numpy.cos(y / 61.0) + numpy.sin((x + y) / 143.0)) * 0.25 + 0.5
        heat = heat + rng.normal(0, 0.08, heat.shape).astype(numpy.float32)
        heat = numpy.clip(heat, 0, 1)
        bgra = numpy.empty((h, w, 4), numpy.uint8)
        bgra[..., 2] = (255 * heat).astype(numpy.uint8)
        bgra[..., 1] = (255 * (1 - abs(heat - 0.5) * 2)).astype(numpy.uint8)
        bgra[..., 0] = (255 * (1 - heat)).astype(numpy.uint8)
        bgra[..., 3] = 0
        self.texture = self.window.create_pixmap(w, h, self.depth)
        gc = self.texture.create_gc()
        rows = max(1, 250_000 // (w * 4))  # put_image in pieces of a plain request (< 256 KiB)
        for top in range(0, h, rows):
            piece = bgra[top:top + rows]
            self.texture.put_image(gc, 0, top, w, piece.shape[0], X.ZPixmap, self.depth, 0, piece.tobytes())
        self.copy_gc = self.window.create_gc(graphics_exposures=False)
        self.d.sync()

    def frame(self, n: int) -> None:
        offset = (7 * n) % self.width
        self.window.copy_area(self.copy_gc, self.texture, offset, 0, self.width, self.height, 0, 0)


class Typical(Scene):
    """Text scrolling in a terminal, a plot redrawing, a window dragged over the background."""

    def __init__(self, display_name: str):
        super().__init__(display_name)
        w, h = self.width, self.height
        # Windows of their own, like an application's: what the dragged window uncovers gets
        # each one's background from the X server.
        self.term = self.child(w // 20, h // 10, w * 9 // 20, h * 7 // 10, 0x101010)
        self.plot = self.child(w * 11 // 20, h // 10, w * 8 // 20, h * 4 // 10, 0xFFFFFF)
        self.text_gc = self.term.create_gc(foreground=0xD0D0D0, background=0x101010, graphics_exposures=False)
        self.term_bg = self.term.create_gc(foreground=0x101010, graphics_exposures=False)
        self.plot_bg = self.plot.create_gc(foreground=0xFFFFFF, graphics_exposures=False)
        self.line_gc = self.plot.create_gc(foreground=0x1F77B4, line_width=2, graphics_exposures=False)
        self.axis_gc = self.plot.create_gc(foreground=0x404040, line_width=2, graphics_exposures=False)
        self.line_height = 16
        ww, wh = w // 4, h // 4
        self.dragged = self.root.create_window(0, 0, ww, wh, 0, self.depth, X.InputOutput, X.CopyFromParent,
                                               background_pixel=0xE8E8E8, override_redirect=True, event_mask=0)
        self.dragged.map()
        self.dragged.fill_rectangle(self.dragged.create_gc(foreground=0x3060A0), 0, 0, ww, 22)
        self.d.sync()

    def child(self, x: int, y: int, width: int, height: int, background: int):
        window = self.window.create_window(x, y, width, height, 0, self.depth, X.InputOutput, X.CopyFromParent,
                                           background_pixel=background, event_mask=0)
        window.map()
        window.size = (width, height)
        return window

    def frame(self, n: int) -> None:
        # The terminal scrolls one line every other frame.
        tw, th = self.term.size
        if n % 2 == 0:
            lh = self.line_height
            self.term.copy_area(self.text_gc, self.term, 0, lh, tw, th - lh, 0, 0)
            self.term.fill_rectangle(self.term_bg, 0, th - lh, tw, lh)
            words = " ".join(TEXT[(n // 2 + i) % len(TEXT)] for i in range(12))
            self.term.image_text(self.text_gc, 6, th - 4, f"[{n // 2:06d}] {words}"[:tw // 6])
        # The plot is redrawn every frame: axes and a travelling damped sine.
        pw, ph = self.plot.size
        self.plot.fill_rectangle(self.plot_bg, 0, 0, pw, ph)
        self.plot.poly_line(self.axis_gc, X.CoordModeOrigin, [(30, 10), (30, ph - 20), (pw - 10, ph - 20)])
        points = [(30 + i * (pw - 40) // 200, int(ph / 2 - (ph / 3) * math.exp(-i / 150) * math.sin(i / 12 - n / 5)))
                  for i in range(201)]
        self.plot.poly_line(self.line_gc, X.CoordModeOrigin, points)
        # A window dragged along an ellipse.
        ww = self.width // 4
        self.dragged.configure(x=int(self.width / 2 - ww / 2 + self.width / 3 * math.cos(n / 40)),
                               y=int(self.height * 0.62 + self.height / 8 * math.sin(n / 40)))


class Idle(Typical):
    """The typical scene's first frame, then nothing (not even the stamp)."""

    def run(self, fps: float, seconds: float) -> None:
        self.frame(0)
        self.stamp()
        self.d.sync()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


SCENES = {"motion": Motion, "typical": Typical, "idle": Idle}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--display", required=True)
    parser.add_argument("--scene", choices=sorted(SCENES), required=True)
    parser.add_argument("--fps", type=float, default=60)
    parser.add_argument("--seconds", type=float, default=600, help="stop by itself after this long")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    scene = SCENES[args.scene](args.display)
    print("ready", flush=True)
    try:
        scene.run(args.fps, args.seconds)
    except xlib_error.ConnectionClosedError:  # the X server went first
        pass


if __name__ == "__main__":
    main()
