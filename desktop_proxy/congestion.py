"""How fast a viewer's link is, from its RTCP feedback, and what the encoder may send.

The browser tells the sender two things: REMB, the bitrate its delay-based estimator
thinks the path carries (Chromium sends it because the desktop negotiates ``goog-remb``),
and receiver reports with the fraction of packets lost. When REMB falls and is below what
is being sent, queues are growing somewhere: the cap drops to it at once. While REMB is at or above
the sending rate, the cap grows back by at most ``GROWTH`` a second (never past REMB) until
it no longer binds. A desktop stream is bursty (nothing is sent while the screen is
still), so REMB's level alone, which follows what arrived, says nothing while the sender
is below it. Loss above 10% lowers the cap too.
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


class SendBudget:
    """A leaky bucket at the link's rate: what was sent and has not left the bottleneck yet,
    as far as the sender can tell. While more than ``queue`` seconds of it are waiting, the
    next new picture is skipped (the newest one after it is sent): frames get fewer instead
    of the router's queue longer, which would make every picture late and then lost."""

    def __init__(self, queue: float = 0.1):
        self.queue = queue
        self._level = 0.0  # bits
        self._at = 0.0

    def add(self, size: int, rate: float, now: float | None = None) -> None:
        self._drain(rate, time.monotonic() if now is None else now)
        self._level += 8 * size

    def hold(self, rate: float, seconds: float, now: float | None = None) -> None:
        """Count ``seconds`` of the link as queued: nothing new is sent until they drained
        (after heavy loss, the router's queue is full)."""
        self._drain(rate, time.monotonic() if now is None else now)
        if not math.isinf(rate):
            self._level = max(self._level, rate * (self.queue + seconds))

    def full(self, rate: float, now: float | None = None) -> bool:
        if math.isinf(rate):
            return False
        self._drain(rate, time.monotonic() if now is None else now)
        return self._level > rate * self.queue

    def drain_time(self, rate: float, now: float | None = None) -> float:
        """Seconds until the queue is no longer full (0 when it is not)."""
        if math.isinf(rate) or rate <= 0:
            return 0.0
        self._drain(rate, time.monotonic() if now is None else now)
        return max(0.0, self._level / rate - self.queue)

    def _drain(self, rate: float, now: float) -> None:
        self._level = 0.0 if math.isinf(rate) else max(0.0, self._level - rate * (now - self._at))
        self._at = now


class LinkEstimate:
    """The bitrate one viewer's link allows (``cap``; infinite while nothing says otherwise)."""

    OVERUSE = 0.9  # REMB below this fraction of the sending rate: the path is full
    FALL = 0.97  # REMB below this fraction of the previous one: the estimate is falling
    LOSS_LIMIT = 0.10
    GROWTH = 1.2  # per second

    def __init__(self, ceiling: float):
        self.ceiling = ceiling  # above this the cap is lifted
        self.cap = math.inf
        self.remb: int | None = None
        self.loss = 0.0
        self.drops = 0  # times the cap was lowered
        self._grown = 0.0
        self._lost = -math.inf

    def on_remb(self, bitrate: int, sending: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        previous, self.remb = self.remb, bitrate
        # Falling, and below what is sent: congested. (Below what is sent alone is not enough:
        # after a still spell the estimate has sunk to what arrived, and the first burst of a
        # change, or the key frames of a resize, would look like congestion.)
        falling = previous is not None and bitrate < self.FALL * previous
        if sending > 0 and bitrate < self.OVERUSE * sending and falling:
            self._lower(bitrate)
            self._grown = now
        elif self.cap < math.inf:
            seconds = min(1.0, now - self._grown)
            self._grown = now
            self.cap = max(self.cap, min(bitrate, self.cap * self.GROWTH ** seconds))
            if self.cap >= self.ceiling:
                self.cap = math.inf

    def on_loss(self, fraction_lost: int, sending: float, now: float | None = None) -> None:
        """``fraction_lost`` as in a receiver report: lost/received * 256. Acted on once a
        second at most: reports come several times a second and describe the same queue."""
        now = time.monotonic() if now is None else now
        self.loss = fraction_lost / 256
        if self.loss > self.LOSS_LIMIT and sending > 0 and now - self._lost >= 1.0:
            self._lost = now
            # From the cap, not from what was sent: a sender that skipped pictures to let the
            # queue drain sent little, and the cap would spiral down.
            self._lower(min(self.cap, sending) * (1 - self.loss / 2) if math.isinf(self.cap)
                        else self.cap * (1 - self.loss / 2))

    def _lower(self, bitrate: float) -> None:
        if bitrate < self.cap:
            self.cap = bitrate
            self.drops += 1
