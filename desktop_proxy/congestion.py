"""How fast a viewer's link is, from its RTCP feedback, and what the encoder may send.

The browser tells the sender two things: REMB, the bitrate its delay-based estimator
thinks the path carries (Chromium sends it because the desktop negotiates ``goog-remb``),
and receiver reports with the fraction of packets lost. A desktop stream is bursty (nothing
is sent while the screen is still), and a receiver estimate never exceeds about 1.5 times
what arrived, so REMB is taken as a *cap* only when it is below what is being sent, that
is when the path is congested; while it is above, the cap grows back by a quarter per
report until it no longer binds. Loss of more than 10% lowers the cap too.
"""

from __future__ import annotations

import math
import time
from collections import deque


class RateMeter:
    """Bits per second sent over the last ``window`` seconds."""

    def __init__(self, window: float = 1.0):
        self.window = window
        self._sent: deque[tuple[float, int]] = deque()

    def add(self, size: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._sent.append((now, size))
        self._expire(now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._expire(now)
        return 8 * sum(size for _, size in self._sent) / self.window

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0][0] < now - self.window:
            self._sent.popleft()


class LinkEstimate:
    """The bitrate one viewer's link allows (``cap``; infinite while nothing says otherwise)."""

    OVERUSE = 0.9  # REMB below this fraction of the sending rate: the path is full
    LOSS_LIMIT = 0.10
    GROWTH = 1.25

    def __init__(self, ceiling: float):
        self.ceiling = ceiling  # above this the cap is lifted
        self.cap = math.inf
        self.remb: int | None = None
        self.loss = 0.0
        self.drops = 0  # times the cap was lowered

    def on_remb(self, bitrate: int, sending: float) -> None:
        self.remb = bitrate
        if sending > 0 and bitrate < self.OVERUSE * sending:
            self._lower(bitrate)
        elif self.cap < math.inf:
            self.cap = max(bitrate, self.cap * self.GROWTH) if bitrate > self.cap else self.cap
            if self.cap >= self.ceiling:
                self.cap = math.inf

    def on_loss(self, fraction_lost: int, sending: float) -> None:
        """``fraction_lost`` as in a receiver report: lost/received * 256."""
        self.loss = fraction_lost / 256
        if self.loss > self.LOSS_LIMIT and sending > 0:
            self._lower(sending * (1 - self.loss / 2))

    def _lower(self, bitrate: float) -> None:
        if bitrate < self.cap:
            self.cap = bitrate
            self.drops += 1
