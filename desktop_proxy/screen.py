"""The screen as a WebRTC video track.

Frames are grabbed with MIT-SHM (mss) in a dedicated thread, so the event loop that carries
RTP, RTCP and signalling never waits for the X server. Presentation timestamps come from the
wall clock of the capture: aiortc's default adds a fixed 1/30 s per frame, and when the
sender runs slower than that, the browser's jitter buffer grows without bound (measured:
0.4-1.1 s within 15 s); with capture-time stamps it stays at 10-60 ms.

A still screen is neither grabbed nor encoded: the grab thread sleeps until the X server
reports damage (``damage.py``), and only every ``keepalive`` seconds the last frame is sent
again, so a viewer who joins (or lost a key frame) gets a picture. Without DAMAGE every
frame is grabbed, as before.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import av
import mss
import numpy
from aiortc.mediastreams import MediaStreamError, VideoStreamTrack

from .damage import Damage, DamageUnavailable

log = logging.getLogger("desktop_proxy")

VIDEO_CLOCK_RATE = 90000
TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)


class ScreenTrack(VideoStreamTrack):
    """Video of an X display, at most ``fps`` frames per second."""

    def __init__(self, display: str, fps: float = 30.0, keepalive: float = 1.0):
        super().__init__()
        self.display = display
        self.interval = 1.0 / fps
        self.keepalive = keepalive
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="screen-grab")
        self._local = threading.local()
        self._started: float | None = None
        self._next = 0.0
        self._last: numpy.ndarray | None = None  # the newest grab (only the grab thread touches it)
        self.frames = 0
        self.keepalives = 0  # frames sent again because the screen did not change

    def _grab(self) -> numpy.ndarray:
        grabber = getattr(self._local, "grabber", None)
        if grabber is None:
            grabber = self._local.grabber = mss.mss(display=self.display)
        shot = grabber.grab(grabber.monitors[1])
        return numpy.frombuffer(shot.bgra, numpy.uint8).reshape(shot.height, shot.width, 4)

    def _damage(self) -> Damage | None:
        if not hasattr(self._local, "damage"):
            try:
                self._local.damage = Damage(self.display)
            except DamageUnavailable as e:
                log.warning("Grabbing every frame: %s", e)
                self._local.damage = None
        return self._local.damage

    def _grab_changed(self) -> tuple[numpy.ndarray, bool]:
        """The screen once it changed, or after ``keepalive`` seconds the last grab again
        (then True)."""
        damage = self._damage()
        if damage is not None:
            changed = damage.wait(0 if self._last is None else self.keepalive)
            if not changed and self._last is not None:
                return self._last, True
        self._last = self._grab()
        return self._last, False

    def _close(self) -> None:
        damage = getattr(self._local, "damage", None)
        if damage is not None:
            damage.close()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._started is None:
            self._started = self._next = now
        elif now < self._next:
            await asyncio.sleep(self._next - now)
        pixels, again = await asyncio.get_running_loop().run_in_executor(self._executor, self._grab_changed)
        # The next grab one interval after this one (a wait for damage may have taken long).
        self._next = max(self._next + self.interval, time.monotonic())
        self.keepalives += again
        frame = av.VideoFrame.from_ndarray(pixels, format="bgra")
        frame.pts = int((time.monotonic() - self._started) * VIDEO_CLOCK_RATE)
        frame.time_base = TIME_BASE
        self.frames += 1
        return frame

    def stop(self) -> None:
        super().stop()
        self._executor.submit(self._close)  # in the grab thread, after a wait under way
        self._executor.shutdown(wait=False, cancel_futures=False)
