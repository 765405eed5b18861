"""The screen as encoded video for every viewer: capture, convert and encode, overlapped.

Two threads per display, so the event loop that carries RTP, RTCP and signalling never waits
for the X server or the encoder, and capturing the next frame overlaps encoding this one:

- **capture**: sleeps until the X server reports damage (``damage.py``), grabs what changed
  with MIT-SHM (mss; the whole screen when most of it changed), converts what changed to
  YUV (``encoding.YuvScreen``), and leaves it in a slot of one frame: a frame the encoder has
  not taken yet is replaced by the newer one (the newest frame wins; no queue builds up
  behind a slow encoder).
- **encode**: encodes the frame in the slot once per negotiated codec and hands the coded
  picture to every viewer's track (``EncodedTrack``), which aiortc packetizes as it is.
  With nothing new to encode it re-encodes the last frame when there is a reason:
  a key frame was asked for (a viewer joined, a picture was lost), or motion just stopped
  (a *refresh*: the still picture as a key frame, which x264 codes at a finer quantizer and
  without motion's leftovers, so text and plots become sharp).
- **sustained motion** on a screen larger than the preset's ``motion_pixels`` (1920x1080
  for Smooth motion) is encoded at that size; when it stops, the full picture follows as
  the refresh.
- **congestion**: the encoder aims below what the owner's slowest link carries
  (``congestion.py``); while the link's queue holds more than 50 ms by the sender's count,
  new pictures are skipped; after lost pictures, the queue drains and a key frame follows.
- **tiers**: a guest of a shared desktop whose link carries less than the owner's picture
  needs is moved to the ``low`` tier: a second encoder, opened only while such a guest is
  there, codes the same grabs smaller and at the rate the slowest of those guests' links
  allows, and skips pictures while their queue is full. The owner's picture is never lowered
  for a guest (aiortc has no simulcast).

StreamBase holds what any engine shares (viewers, key frame requests, presets, the link);
``pixelflux_engine.py`` is the other engine.

A still screen therefore costs neither a grab nor an encode, and sends no video: the
session is kept alive by ICE consent checks and RTCP sender reports, which cost nothing
measurable, and the browser shows the last picture. For players that flag a long gap as
a freeze, ``keepalive`` re-sends the last picture every so many seconds (an almost
empty P-frame of a few dozen bytes).
Timestamps are the capture's wall clock, so the browser's jitter buffer follows real time
(aiortc's default adds a fixed 1/30 s per frame, and the buffer grows when frames are late).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .congestion import RateMeter, SendBudget
from .cpu import name_thread
from .damage import Damage, DamageUnavailable
from .encoding import (
    TIME_BASE,
    VIDEO_CLOCK_RATE,
    BitrateRange,
    EncodedFrame,
    H264Encoder,
    VideoEncoder,
    YuvScreen,
    bitrate_range,
    make_encoder,
    to_yuv420,
)
from .grab import GrabError, ScreenGrabber, changed_areas
from .presets import DEFAULT, PRESETS, Preset, encoded_scale
from .xdisplay import without_signals

log = logging.getLogger("desktop_proxy")


def named(name: str, target):
    """``target`` run in a thread named ``name`` in the kernel (``cpu.py``)."""
    def run(*args, **kwargs):
        name_thread(name)
        return target(*args, **kwargs)
    return run


@dataclass
class StreamStats:
    """Counters since the stream started (read from any thread; written by its threads)."""

    grabs: int = 0
    encoded: int = 0
    keyframes: int = 0
    keepalives: int = 0
    refreshes: int = 0
    keyframe_requests: int = 0  # from the viewers (PLI, FIR)
    still_requests: int = 0  # key frame requests ignored on a still screen
    partial_grabs: int = 0  # grabs of the changed areas only
    dropped: int = 0  # grabs replaced in the slot before the encoder took them
    skipped: int = 0  # grabs not encoded because the link's queue was full
    low_encoded: int = 0  # pictures of the low tier (guests on slow links)
    low_skipped: int = 0  # grabs the low tier skipped (its links' queue was full)
    bytes: int = 0
    grab_ms: deque = field(default_factory=lambda: deque(maxlen=120))  # from the X server
    convert_ms: deque = field(default_factory=lambda: deque(maxlen=120))  # to YUV (and scaled)
    encode_ms: deque = field(default_factory=lambda: deque(maxlen=120))

    def as_dict(self) -> dict:
        def mean(values):
            return round(sum(values) / len(values), 2) if values else None
        return {"grabs": self.grabs, "encoded": self.encoded, "keyframes": self.keyframes,
                "keepalives": self.keepalives, "refreshes": self.refreshes, "dropped": self.dropped,
                "keyframe_requests": self.keyframe_requests, "still_requests": self.still_requests,
                "skipped": self.skipped, "partial_grabs": self.partial_grabs,
                "low_encoded": self.low_encoded, "low_skipped": self.low_skipped,
                "bytes": self.bytes, "grab_ms": mean(list(self.grab_ms)), "convert_ms": mean(list(self.convert_ms)),
                "encode_ms": mean(list(self.encode_ms))}


RATE_STEPS = (15, 30, 60)
RATE_SLACK = 1.15  # the screen may change this much more often than the encoder budgets for
RATE_COVER = 1.05  # a lower step is taken when the screen changes at most this much more often


def budget_rate(current: float, measured: float, cap: float) -> float:
    """The frame rate the encoder budgets its bits for, from how often the screen changes
    (``measured``): a step of ``RATE_STEPS`` (typing and a 60 fps animation differ; 40 and 50
    fps do not), at most ``cap``.

    The encoder spreads its bitrate, the link's share, over that many frames a second: with
    more frames coming than budgeted for, it sends more than the link carries, by as much;
    with fewer, it spends less than it may. So the step is the lowest that covers the
    measured rate (less ``RATE_SLACK``). Each change costs a key frame (the encoder opens
    again), so the step goes up only beyond ``RATE_SLACK`` and down only within
    ``RATE_COVER`` of the lower step: a screen wavering between 32 and 36 changes a second
    does not flip between 30 and 60 (at 3840x2160 such flips cost a key frame every 2 s)."""
    steps = [step for step in RATE_STEPS if step < cap] + [cap]
    current = min(current, cap)
    lower = [step for step in steps if step < current]
    if measured > RATE_SLACK * current or (lower and measured <= RATE_COVER * lower[-1]):
        return next((step for step in steps if measured <= RATE_SLACK * step), cap)
    return current


def next_grab_after(due: float, started: float, interval: float) -> float:
    """When the capture may grab again, after a grab at ``started`` that was due at ``due``:
    one ``interval`` after the due time, but never more than half an interval before now
    (a token bucket of 1.5 grabs), so the capture keeps to 1/``interval`` a second on average.

    Counting from the grab itself would be a ratchet: with an application that draws at the
    same 60 Hz, every picture that came late (a busy CPU) would push all later grabs back by
    as much, for good. At 1920x1080 pictures so waited 9 ms (median) before they were grabbed;
    now 2 ms."""
    return max(due + interval, started - interval / 2)


MAIN, LOW = "main", "low"  # the tiers: the owner's picture, and a smaller one for guests on slow links
TIERS = (MAIN, LOW)


@dataclass
class _Grab:
    frame: av.VideoFrame
    scaled: bool = False  # encoded smaller than ``encoded_size`` (sustained motion)
    refresh: bool = False  # the full picture after scaled motion stopped


class StreamBase:
    """A display's pictures for all its viewers: what every engine shares (viewers, key frame
    requests, presets, the link, counters). An engine captures and encodes, and hands each
    coded picture to ``_deliver``.

    ``preset`` (``presets.py``) sets the frame rate, bitrate and how small the picture may be
    encoded; ``max_fps`` caps its frame rate.
    """

    STILL_REQUEST_AGE = 2.0  # seconds after the last picture: a key frame request is a timeout
    LINK_SHARE = 0.85  # of what the link carries, what the encoder aims at
    DRAIN = 0.2  # seconds without new pictures after a viewer lost some
    codecs: tuple[str, ...] = ("H264", "VP8")

    def __init__(self, display: str, width: int, height: int, preset: Preset = PRESETS[DEFAULT],
                 max_fps: float = 60.0):
        self.display = display
        self.size = (width & ~1, height & ~1)  # the screen's
        self.preset = preset
        self.max_fps = max_fps
        self.stats = StreamStats()
        self._meter = RateMeter(window=0.5)
        self._budget = SendBudget(queue=0.05)
        self.link_bitrate = math.inf  # what the owner's slowest link carries (``set_link``)
        self.guest_link = math.inf  # what the slowest link of the low tier's guests carries
        self._low_budget = SendBudget(queue=0.05)
        self._low_meter = RateMeter(window=0.5)
        self._tracks: set[EncodedTrack] = set()
        self._lock = threading.Condition()
        self._keyframe_wanted = False  # by some tier: those in ``_keyframe_tiers``
        self._keyframe_tiers: set[str] = set()
        self._last_keyframes: dict[str, float] = {}
        self._last_sent = 0.0  # when the last picture was encoded
        self._running = False
        self._stopped = False
        self._started = time.monotonic()
        self._threads: list[threading.Thread] = []
        self._retune()

    # -- viewers ----------------------------------------------------------------------------

    def attach(self, track: EncodedTrack) -> None:
        """Start sending to a viewer's track (the first picture it gets is a key frame)."""
        with self._lock:
            if self._stopped:
                raise MediaStreamError("the screen stream has stopped")
            if track.codec not in self.codecs:
                raise MediaStreamError(f"this desktop cannot send {track.codec}")
            self._open_codec(track.codec, track.tier)
            self._tracks.add(track)
        self.request_keyframe(urgent=True, tier=track.tier)
        with self._lock:
            if self._running or self._stopped:
                return
            self._running = True
        self._start()

    def detach(self, track: EncodedTrack) -> None:
        """Stop sending to a track (the stream goes on until ``stop``: a viewer may be joining)."""
        with self._lock:
            self._tracks.discard(track)
            self._close_unused(track.codec, track.tier)

    def _close_unused(self, codec: str, tier: str) -> None:
        if not any((t.codec, t.tier) == (codec, tier) for t in self._tracks):
            self._close_codec(codec, tier)

    tiers = False  # whether this engine has the low tier (``move``)

    def move(self, track: EncodedTrack, tier: str) -> None:
        """Send ``track`` the pictures of another tier (from its next key frame)."""
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}")
        with self._lock:
            if track.tier == tier or not self.tiers:
                return
            old, track.tier = track.tier, tier
            track.resync()
            if track in self._tracks:
                self._open_codec(track.codec, tier)
                self._close_unused(track.codec, old)
        log.info("a guest's link carries %s: it gets the %s picture", _mbps(self.guest_link), tier)
        self.request_keyframe(urgent=True, tier=tier)

    def sending_rate(self, tier: str = MAIN) -> float:
        """Bits per second encoded (for ``tier``) over the last half second."""
        with self._lock:
            return (self._meter if tier == MAIN else self._low_meter).rate()

    def aim(self, tier: str = MAIN) -> int:
        """The bitrate a tier's encoder aims at."""
        return self.target_bitrate if tier == MAIN else self.low_bitrate

    def request_keyframe(self, urgent: bool = False, tier: str = MAIN) -> None:
        """Make the next frame a key frame. Requests from the network (PLI/FIR) are honoured at
        most once a second: each key frame is large, and when loss comes from congestion,
        answering every request makes more loss (a key frame storm).

        A request that comes seconds after the last picture, with nothing sent since, is not a
        loss (a lost picture is asked for again within a round trip or two, after NACK): it is
        Chromium's "no decodable frame in 3 s" timer, which fires once on a still screen and
        stops when nothing arrived for 5 s. Answering it would send a key frame every few
        seconds to an idle desktop, so it is counted and ignored. ``tier``: whose pictures."""
        now = time.monotonic()
        with self._lock:
            self.stats.keyframe_requests += not urgent
            if not urgent and now - self._last_keyframes.get(tier, 0.0) < 1.0:
                return
            if not urgent and not self._picture_pending() and now - self._last_sent > self.STILL_REQUEST_AGE:
                self.stats.still_requests += 1
                return
            self._last_keyframes[tier] = now
            self._keyframe_wanted = True
            self._keyframe_tiers.add(tier)
            self._keyframe_now()
            self._lock.notify_all()

    def resize(self, width: int, height: int) -> None:
        """The display has a new size: send that (the encoder restarts with a key frame)."""
        with self._lock:
            self.size = (width & ~1, height & ~1)
            self._retune()

    def set_preset(self, preset: Preset) -> None:
        with self._lock:
            self.preset = preset
            self._retune()

    def set_link(self, bitrate: float) -> int:
        """What the viewers' links carry (bits per second, ``math.inf`` when nothing limits
        it); returns the target bitrate now."""
        with self._lock:
            if abs(bitrate - self.link_bitrate) > 0.05 * min(bitrate, self.link_bitrate):
                self.link_bitrate = bitrate
                self._retune()
            return self.target_bitrate

    def set_guest_link(self, bitrate: float) -> None:
        """What the slowest link of the low tier's guests carries."""
        with self._lock:
            if abs(bitrate - self.guest_link) > 0.05 * min(bitrate, self.guest_link):
                self.guest_link = bitrate
                self._retune()

    def lost(self, tier: str = MAIN, hold: bool = True) -> None:
        """A viewer lost pictures: let its tier's queue drain (``DRAIN`` seconds without new
        pictures; not for a guest on the owner's tier, whose link does not steer it), then
        send a key frame."""
        if hold:
            with self._lock:
                if tier == LOW:
                    self._low_budget.hold(self.guest_link, self.DRAIN)
                else:
                    self._budget.hold(self.link_bitrate, self.DRAIN)
        self.request_keyframe(tier=tier)

    def _retune(self) -> None:
        """(With the lock held, or from ``__init__``.) Frame rate, encoded size and bitrate
        from the preset, the screen's size and the link; then ``_apply`` them."""
        preset = self.preset
        self.fps = min(self.max_fps, preset.fps)
        screen_floor = bitrate_range(*self.size, self.fps).low
        scale = encoded_scale(preset, *self.size, self.link_bitrate, screen_floor)
        self.encoded_size = (int(self.size[0] * scale) & ~1, int(self.size[1] * scale) & ~1)
        self.bitrates, self.target_bitrate = self._aim(self.encoded_size)
        width, height = self.encoded_size
        shrink = min(1.0, (preset.motion_pixels / (width * height)) ** 0.5)
        self.motion_size = (int(width * shrink) & ~1, int(height * shrink) & ~1)
        self.motion_bitrate = self._aim(self.motion_size)[1]
        # The low tier: as small as its guests' links need, at what they carry.
        low_scale = min(scale, encoded_scale(preset, *self.size, self.guest_link, screen_floor))
        self.low_size = (int(self.size[0] * low_scale) & ~1, int(self.size[1] * low_scale) & ~1)
        low_range = bitrate_range(*self.low_size, self.fps)
        self.low_bitrate = low_range.clamp(min(self.LINK_SHARE * self.guest_link, low_range.start * preset.quality))
        self._apply()

    def _aim(self, size: tuple[int, int]) -> tuple[BitrateRange, int]:
        """The bitrate range of pictures of ``size`` and the bitrate to aim at: the preset's
        share of the normal one, below the link's rate by a margin (key frames and
        retransmissions ride on top)."""
        bitrates = bitrate_range(*size, self.fps)
        return bitrates, bitrates.clamp(min(self.LINK_SHARE * self.link_bitrate,
                                            bitrates.start * self.preset.quality))

    def _deliver(self, coded: list[tuple[str | tuple[str, str], EncodedFrame]], reason: str = "new") -> None:
        """Count coded pictures and hand them to the viewers of their codec and tier (from the
        engine's thread; a codec alone is the main tier's). The counters first: a viewer that
        got the picture sees them counted."""
        coded = [((key, MAIN) if isinstance(key, str) else key, frame) for key, frame in coded]
        with self._lock:
            self._last_sent = time.monotonic()
            self.stats.encoded += any(tier == MAIN for (_, tier), _ in coded) or not coded
            self.stats.keepalives += reason == "keepalive"
            self.stats.refreshes += reason == "refresh"
            for (_, tier), frame in coded:
                self.stats.bytes += len(frame.data)
                self.stats.keyframes += frame.keyframe
                if tier == MAIN:
                    self._meter.add(len(frame.data))
                    self._budget.add(len(frame.data), self.link_bitrate)
                else:
                    self.stats.low_encoded += 1
                    self._low_meter.add(len(frame.data))
                    self._low_budget.add(len(frame.data), self.guest_link)
            tracks = list(self._tracks)
        for key, frame in coded:
            for track in tracks:
                if (track.codec, track.tier) == key:
                    track.deliver(frame, key[1])

    def stop(self) -> None:
        """Stop capturing and encoding (``join`` waits for the threads)."""
        with self._lock:
            self._running = False
            self._stopped = True  # a stream is not restarted: the next viewer gets a new one
            self._lock.notify_all()
            tracks = list(self._tracks)
            self._tracks.clear()
        self._halt()
        for track in tracks:
            track.end()

    def join(self, timeout: float = 5.0) -> None:
        for thread in self._threads:
            thread.join(timeout)
        self._threads = [t for t in self._threads if t.is_alive()]

    # -- what an engine provides (called with the lock held, except ``_start``/``_halt``) ----

    def _open_codec(self, codec: str, tier: str = MAIN) -> None:
        """A viewer of ``codec`` (and ``tier``) joins."""

    def _close_codec(self, codec: str, tier: str = MAIN) -> None:
        """The last viewer of ``codec`` (and ``tier``) left."""

    def _picture_pending(self) -> bool:
        """Whether a captured picture is waiting to be encoded."""
        return False

    @property
    def encoder(self) -> str:
        """What encodes the owner's picture: FFmpeg's encoder (libx264, h264_nvenc, libvpx), or
        the engine's name."""
        return ""

    def _keyframe_now(self) -> None:
        """``_keyframe_wanted`` was set: make the next coded picture a key frame."""

    def _apply(self) -> None:
        """``fps``, ``encoded_size`` or ``target_bitrate`` changed."""

    def _start(self) -> None:
        """Start capturing (the first viewer attached; called once)."""

    def _halt(self) -> None:
        """Stop capturing (threads end by themselves)."""


class ScreenStream(StreamBase):
    """The engine of our own: a capture thread and an encode thread (see the module's doc).

    ``keepalive`` (seconds, 0 for none) is the longest silence on a still screen;
    ``refresh_after`` is how long the screen must be still before the sharp refresh;
    ``h264`` is the H.264 encoder (``encoding.h264_encoder``: x264 or NVENC).
    """

    PARTIAL_GRAB = 0.6  # grab only the changed areas while they are less than this of the screen
    LOW_VBV_SECONDS = 0.15  # the low tier's largest picture, in seconds of its bitrate
    MOTION_RUN = 8  # grabs this close together (MOTION_GAP seconds) are sustained motion
    MOTION_GAP = 0.1

    def __init__(self, display: str, width: int, height: int, preset: Preset = PRESETS[DEFAULT],
                 max_fps: float = 60.0, keepalive: float = 0.0, refresh_after: float = 0.25,
                 h264: type[VideoEncoder] = H264Encoder):
        self._encoders: dict[tuple[str, str], VideoEncoder] = {}  # (codec, tier)
        self.h264 = h264
        self._regrab = False  # grab even without damage (the size changed)
        super().__init__(display, width, height, preset, max_fps)
        self.keepalive = keepalive
        self.refresh_after = refresh_after
        self._interval = 1.0 / max(1.0, self.fps)  # between changes of the screen (moving average)
        self._rate = self.fps  # the frame rate the encoder budgets for (``budget_rate``)
        self._last_new = 0.0
        self._slot: _Grab | None = None  # the newest grab not yet encoded
        self._last: _Grab | None = None  # the last grab encoded (for key frames, refresh, keepalive)

    tiers = True

    def _open_codec(self, codec: str, tier: str = MAIN) -> None:
        if (codec, tier) not in self._encoders:
            size, bitrate = (self.encoded_size, self.target_bitrate) if tier == MAIN else \
                (self.low_size, self.low_bitrate)
            encoder = self._encoders[codec, tier] = make_encoder(codec, *size, self.fps, bitrate, self.h264,
                                                                 self.preset.crf)
            if tier == LOW:  # a slow link's queue is short in time too: smaller key frames
                encoder.VBV_SECONDS = self.LOW_VBV_SECONDS

    def _close_codec(self, codec: str, tier: str = MAIN) -> None:
        self._encoders.pop((codec, tier), None)

    def _picture_pending(self) -> bool:
        return self._slot is not None

    @property
    def encoder(self) -> str:
        with self._lock:
            main = [e for (_, tier), e in self._encoders.items() if tier == MAIN]
        return main[0].codec_name if main else self.h264.codec_name

    def _apply(self) -> None:
        self._regrab = True  # a smaller screen need not report damage

    # -- threads ----------------------------------------------------------------------------

    def _start(self) -> None:
        for name, target in (("hd-capture", self._capture_loop), ("hd-encode", self._encode_loop)):
            thread = threading.Thread(target=without_signals(named(name, target)), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _capture_loop(self) -> None:
        grabber = damage = None
        next_grab = 0.0
        grabbed = False
        try:
            grabber = ScreenGrabber(self.display)
            try:
                damage = Damage(self.display)
            except DamageUnavailable as e:
                log.warning("grabbing every frame: %s", e)
            screen = None  # the whole screen as last grabbed (BGRA), patched where it changed
            yuv = YuvScreen()  # the same in YUV, at the screen's size
            run, last_grab, scaled = 0, 0.0, False  # run: grabs in quick succession (motion)
            while self._running:
                if damage is not None and grabbed and not self._regrab \
                        and not damage.wait(self.refresh_after if scaled else 0.5):
                    if scaled:  # motion stopped: the full picture, from what was grabbed last
                        self._offer(_Grab(self._convert(yuv, screen, None, self.encoded_size), refresh=True))
                        run, scaled = 0, False
                    continue  # still: nothing to grab (the wait is bounded to notice a stop)
                whole = self._regrab or damage is None
                self._regrab = False
                delay = next_grab - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # at most ``fps``; damage meanwhile is in this grab too
                self._wait_for_encoder()
                started = time.monotonic()
                next_grab = next_grab_after(next_grab, started, 1.0 / self.fps)
                width, height = self.size
                encoded = self.encoded_size
                changes = damage.take_changes() if damage is not None else None
                try:
                    screen, areas = self._grab(grabber, screen, width, height, None if whole else changes)
                except GrabError:
                    # The screen shrank under us (a resize): take the size it has now.
                    if damage is None:
                        raise
                    self.resize(*damage.screen_size())
                    screen = None
                    time.sleep(0.05)
                    continue
                grabbed_at = time.monotonic()
                run = run + 1 if started - last_grab < self.MOTION_GAP else 0
                last_grab = started
                scaled = run >= self.MOTION_RUN and self.motion_size != encoded
                frame = self._convert(yuv, screen, areas, self.motion_size if scaled else encoded)
                self.stats.grab_ms.append((grabbed_at - started) * 1000)
                self.stats.convert_ms.append((time.monotonic() - grabbed_at) * 1000)
                self._offer(_Grab(frame, scaled))
                grabbed = True
                if damage is None:
                    time.sleep(max(0.0, next_grab - time.monotonic()))
        except Exception:
            if self._running:
                log.exception("screen capture failed; the stream ends")
                self.stop()
        finally:
            for connection in (grabber, damage):
                if connection is not None:
                    connection.close()

    def _wait_for_encoder(self) -> None:
        """Grab one picture ahead of the encoder, not more: while the slot still holds a grab
        the encoder has not taken, a new grab would only replace it (at 3840x2160 a third of
        the grabs were thrown away so, 20-30 ms of CPU each). Damage meanwhile is in the
        next grab."""
        with self._lock:
            deadline = time.monotonic() + 1.0
            while self._slot is not None and self._running and time.monotonic() < deadline:
                self._lock.wait(0.1)

    def _offer(self, grab: _Grab) -> None:
        """Put a grab in the slot for the encoder (replacing one it has not taken)."""
        with self._lock:
            self.stats.grabs += 1
            self.stats.dropped += self._slot is not None
            self._slot = grab
            self._lock.notify_all()
            if not grab.refresh:  # how often the screen really changes (at most ``fps``)
                # Counted at the grab, not the encode: pictures skipped on a congested link are
                # no slower screen (a new frame rate would cost a key frame just then).
                # Averaged over ~20 changes: one slow grab is no change of pace.
                now = time.monotonic()
                gap = min(1.0, now - self._last_new) if self._last_new else 1.0 / self.fps
                self._interval = 0.95 * self._interval + 0.05 * gap
                self._last_new = now

    def _grab(self, grabber: ScreenGrabber, screen, width: int, height: int, changes):
        """The screen now, and the areas of it grabbed (None: all of it): only the areas that
        changed (``changes``, from DAMAGE) grabbed into the last picture, or all of it (the
        first time, after a resize, without DAMAGE, or when the changes cover most of it).
        At 4K a full grab costs ~45 ms; a terminal and a plot redrawing are a fraction of that."""
        if screen is not None and screen.shape[:2] == (height, width) and changes is not None:
            areas = changed_areas(changes, width, height)
            if sum(w * h for _, _, w, h in areas) < self.PARTIAL_GRAB * width * height:
                for x, y, w, h in areas:
                    screen[y:y + h, x:x + w] = grabber.grab_area(x, y, w, h)
                self.stats.partial_grabs += 1
                return screen, areas
        return grabber.grab(width, height), None

    @staticmethod
    def _convert(yuv: YuvScreen, screen, areas, size: tuple[int, int]) -> av.VideoFrame:
        """The grab as a frame of ``size``: at the screen's size, converted where it changed."""
        if size == (screen.shape[1] & ~1, screen.shape[0] & ~1):
            return yuv.update(screen, areas)
        yuv.forget()  # changes to a smaller picture do not reach the screen-sized one
        return to_yuv420(screen, size)

    def _encode_loop(self) -> None:
        last_sent = time.monotonic()
        in_motion = False
        try:
            while True:
                with self._lock:
                    grab, reason = self._next_job(last_sent, in_motion)
                    if not self._running:
                        return
                    if grab is None:
                        continue
                    full = self._budget.full(self.link_bitrate)
                    if full and reason in ("refresh", "keyframe"):
                        # A key frame is large: sent into a full queue, it would be lost and
                        # asked for again. It waits until the queue drained (a new grab, a
                        # stop or the drain wakes this up; the job is then taken again).
                        self._lock.wait(max(0.005, self._budget.drain_time(self.link_bitrate)))
                        continue
                    low_full = self._low_budget.full(self.guest_link)
                    if low_full and reason == "keyframe" and self._keyframe_tiers == {LOW}:
                        # The same for the low tier's key frame, on its guests' queue.
                        self._lock.wait(max(0.005, self._low_budget.drain_time(self.guest_link)))
                        continue
                    # A full queue on the link: skip this picture (a key frame waits too).
                    skip = reason == "new" and full
                    keyframes = set(self._keyframe_tiers) if self._keyframe_wanted and not skip else set()
                    if keyframes:
                        self._keyframe_tiers.clear()
                        if low_full and LOW in keyframes:  # it waits for its queue
                            keyframes.discard(LOW)
                            self._keyframe_tiers.add(LOW)
                        self._keyframe_wanted = bool(self._keyframe_tiers)
                    encoders = dict(self._encoders)
                if reason == "new":
                    in_motion = True
                elif reason == "refresh":
                    in_motion = False
                if skip:
                    self.stats.skipped += 1
                    continue
                self._encode(grab, encoders, keyframes, reason, low_full)
                last_sent = self._last_sent
        except Exception:
            if self._running:
                log.exception("screen encoder failed; the stream ends")
                self.stop()

    def _next_job(self, last_sent: float, in_motion: bool) -> tuple[_Grab | None, str]:
        """(Called with the lock held.) What to encode next, waiting at most until a refresh or
        keepalive is due: a new grab, or the last one again for a key frame, a refresh after
        motion, or a keepalive."""
        if self._slot is not None:
            grab, self._slot = self._slot, None
            self._last = grab
            self._lock.notify_all()  # the capture thread may grab the next one
            return grab, "refresh" if grab.refresh else "new"
        if self._last is None:
            self._lock.wait(1.0)  # the first grab notifies
            return None, ""
        if self._keyframe_wanted:
            return self._last, "keyframe"
        if (not in_motion and not self.keepalive) or (in_motion and self._last.scaled):
            # (After scaled motion, the capture thread sends the full picture as the refresh.)
            self._lock.wait(1.0)  # a grab, a key frame request and the stop notify
            return None, ""
        due = last_sent + (self.refresh_after if in_motion else self.keepalive)
        wait = due - time.monotonic()
        if wait > 0:
            self._lock.wait(wait)
            if self._slot is not None or self._keyframe_wanted or not self._running:
                return None, ""
            if time.monotonic() < due:
                return None, ""
        return self._last, "refresh" if in_motion else "keepalive"

    def _encode(self, grab: _Grab, encoders: dict[tuple[str, str], VideoEncoder], keyframes: set[str],
                reason: str, low_full: bool = False) -> None:
        started = time.monotonic()
        pts = int((started - self._started) * VIDEO_CLOCK_RATE)
        self._rate = rate = budget_rate(self._rate, 1.0 / self._interval, self.fps)
        coded = []
        small = None  # the grab at the low tier's size
        for (codec, tier), encoder in encoders.items():
            if reason == "keyframe" and tier not in keyframes:
                continue  # another tier's key frame
            frame, bitrate = grab.frame, self.motion_bitrate if grab.scaled else self.target_bitrate
            if tier == LOW:
                if low_full and LOW not in keyframes:
                    self.stats.low_skipped += 1  # its guests' queue is full: they get fewer pictures
                    continue
                width, height = self.low_size
                if frame.width * frame.height > width * height:
                    small = small or frame.reformat(width=width, height=height)
                    frame = small
                bitrate = min(bitrate, self.low_bitrate)
            # The refresh after motion is a key frame: x264 codes it at a finer quantizer than
            # the frames of the motion, and it carries no motion's leftovers.
            if tier in keyframes or reason == "refresh":
                encoder.request_keyframe()
            encoder.retarget(bitrate, rate if reason == "new" else None, self.preset.crf)
            data, is_key = encoder.encode(frame, pts)
            if data:
                coded.append(((codec, tier), EncodedFrame(data, pts, is_key)))
        self.stats.encode_ms.append((time.monotonic() - started) * 1000)
        self._deliver(coded, reason)


class EncodedTrack(MediaStreamTrack):
    """One viewer's video: coded pictures from the stream, as ``av.Packet`` (aiortc sends them
    without encoding). Pictures before the first key frame are skipped (the decoder could not
    use them); a viewer too slow to keep up loses its backlog and gets a key frame."""

    kind = "video"
    MAX_BACKLOG = 30

    def __init__(self, stream: ScreenStream, codec: str = "H264"):
        super().__init__()
        self.stream = stream
        self.codec = codec.upper()  # set to the negotiated codec before the first ``recv``
        self.tier = MAIN  # whose pictures it gets (``ScreenStream.move``)
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[EncodedFrame | None] = asyncio.Queue()
        self._attached = False
        self._synced = False
        self.sent = 0

    def deliver(self, frame: EncodedFrame, tier: str = MAIN) -> None:
        """From the encode thread: queue a coded picture (of ``tier``) for this viewer."""
        try:
            self._loop.call_soon_threadsafe(self._put, frame, tier)
        except RuntimeError:  # the event loop is closed
            pass

    def resync(self) -> None:
        """Another tier's pictures follow: from its next key frame (its P-frames cannot follow
        the other tier's)."""
        self._loop.call_soon_threadsafe(self._drop_backlog)

    def _drop_backlog(self) -> None:
        while not self._queue.empty():
            if self._queue.get_nowait() is None:  # the end stays the end
                self._queue.put_nowait(None)
                break
        self._synced = False

    def end(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, None)
        except RuntimeError:
            pass

    def _put(self, frame: EncodedFrame, tier: str = MAIN) -> None:
        if tier != self.tier or (not self._synced and not frame.keyframe):
            return
        self._synced = True
        if self._queue.qsize() >= self.MAX_BACKLOG:
            # A P-frame without its predecessor cannot be decoded: drop the whole backlog and
            # wait for a key frame.
            while not self._queue.empty():
                self._queue.get_nowait()
            self._synced = frame.keyframe
            self.stream.request_keyframe(urgent=True, tier=self.tier)
            if not frame.keyframe:
                return
        self._queue.put_nowait(frame)

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if not self._attached:  # the connection is up: now the viewer needs pictures
            self._attached = True
            self.stream.attach(self)
        frame = await self._queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        packet = av.Packet(frame.data)
        packet.pts = frame.pts
        packet.time_base = TIME_BASE
        self.sent += 1
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            if self._attached:
                self.stream.detach(self)


def _mbps(bitrate: float) -> str:
    return "any rate" if math.isinf(bitrate) else f"{bitrate / 1e6:.2f} Mbit/s"
