"""The screen through pixelflux (the capture and encode engine of Selkies, C++ on PyPI): XShm
capture gated by damage, libyuv colour conversion and x264 (NVENC where there is a GPU) in
its own threads, full-frame H.264 access units handed to Python one per callback.

Chosen with ``--engine pixelflux`` (the benchmark compares it with our own engine,
``stream.ScreenStream``). It is fed the same way: key frame requests become
``request_idr_frame`` (rate-limited by ``StreamBase``), the link's bitrate becomes its CBR
target, a resize moves its capture region. Differences: it encodes at the screen's size
(the presets' smaller encoding does not apply), H.264 only, and its "paint-over" burst (a few
frames at CRF 18 when the screen goes still) is its sharp refresh.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from .encoding import VIDEO_CLOCK_RATE, EncodedFrame
from .stream import StreamBase

log = logging.getLogger("desktop_proxy")

try:
    import pixelflux
except ImportError:  # optional: pip install pixelflux
    pixelflux = None


class PixelfluxUnavailable(RuntimeError):
    pass


def is_h264_keyframe(data: bytes) -> bool:
    """Whether an Annex-B access unit holds an IDR slice (NAL unit type 5)."""
    at = data.find(b"\x00\x00\x01")
    while at != -1 and at + 3 < len(data):
        if data[at + 3] & 0x1F == 5:
            return True
        at = data.find(b"\x00\x00\x01", at + 3)
    return False


class PixelfluxStream(StreamBase):
    codecs = ("H264",)

    def __init__(self, *args, **kwargs):
        if pixelflux is None:
            raise PixelfluxUnavailable("pixelflux is not installed (pip install pixelflux)")
        self._capture = None
        self._region = self._fps = None
        super().__init__(*args, **kwargs)

    def _settings(self):
        settings = pixelflux.CaptureSettings()
        settings.codec = "h264"
        settings.video_fullframe = True  # one standard stream, not Selkies' stripes
        settings.omit_stripe_headers = True
        settings.encode_node_index = -1  # software; NVENC is ``encoding.py``'s job for now
        settings.capture_width, settings.capture_height = self.size
        settings.target_fps = float(self.fps)
        settings.video_cbr_mode = True
        settings.video_bitrate_kbps = max(1, self.target_bitrate // 1000)
        settings.video_vbv_multiplier = 1.5
        settings.keyframe_interval_s = 0.0  # key frames on request only
        settings.capture_cursor = True
        settings.use_paint_over_quality = True
        return settings

    encoder = "pixelflux"

    def _start(self) -> None:
        # pixelflux's X11 backend connects to $DISPLAY; this process streams one display.
        os.environ["DISPLAY"] = self.display
        self._clock_offset = time.monotonic_ns()
        self._capture = pixelflux.ScreenCapture()
        self._region, self._fps = self.size, self.fps
        self._capture.start_capture(self._on_frame, self._settings())
        log.info("pixelflux capture of %s: %s", self.display, self._capture.stream_info())

    def _on_frame(self, frame) -> None:
        """From pixelflux's thread, one access unit per call."""
        data = bytes(frame)
        if not data or not self._running:
            return
        # capture_ns is CLOCK_MONOTONIC, like time.monotonic_ns().
        pts = int((frame.capture_ns - self._clock_offset) * VIDEO_CLOCK_RATE // 1_000_000_000)
        self._deliver([("H264", EncodedFrame(data, pts, is_h264_keyframe(data)))])

    def _keyframe_now(self) -> None:
        if self._capture is not None:
            self._capture.request_idr_frame()
            self._keyframe_wanted = False
            self._keyframe_tiers.clear()

    def _apply(self) -> None:
        if self._capture is None:
            return
        self._capture.update_video_bitrate(max(1, self.target_bitrate // 1000))
        if self._fps != self.fps:
            self._fps = self.fps
            self._capture.update_framerate(float(self.fps))
        if self._region != self.size:
            self._region = self.size
            self._capture.update_capture_region(0, 0, 0, 0)  # to the root's edges, after a resize

    def _halt(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            # stop_capture joins pixelflux's threads: not on the event loop.
            thread = threading.Thread(target=capture.stop_capture, name="pixelflux-stop", daemon=True)
            thread.start()
            self._threads.append(thread)
