"""Encoding the screen for WebRTC: colour conversion and the video encoders.

aiortc's own encoders are made for cameras: x264 at preset *medium*, bitrates clamped to
0.5-3 Mbps (VP8 0.25-1.5), 30 fps at most, and the BGRA->YUV conversion done by swscale
inside the encode call. Measured on a 2-core VM at 1080p: swscale 7-23 ms a frame, x264
medium 25 ms, ultrafast 10 ms; OpenCV's ``cvtColor`` converts in 1-2 ms. So the screen is
converted here with OpenCV and encoded here with desktop settings; the encoded frames go to
aiortc, which only packetizes them (``RTCRtpSender`` sends an ``av.Packet`` as it is).

H.264 (Constrained Baseline, the profile every browser decodes) is preferred; VP8 is the
fallback for a browser that offers no H.264. Key frames come only when asked for (a new
viewer, a lost picture): a desktop has no scene cuts and key frames are 5-10 times larger.
"""

from __future__ import annotations

import fractions
import logging
from dataclasses import dataclass

import av
import numpy

try:
    import cv2
except ImportError:  # the desktop still works, with the slower swscale conversion
    cv2 = None

log = logging.getLogger("desktop_proxy")

VIDEO_CLOCK_RATE = 90000
TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
CODECS = ("H264", "VP8")


@dataclass(frozen=True)
class BitrateRange:
    """What a resolution needs, in bits per second: the floor below which text becomes
    unreadable, the start value, and the ceiling beyond which quality no longer improves."""

    low: int
    start: int
    high: int

    def clamp(self, bitrate: float) -> int:
        return int(min(self.high, max(self.low, bitrate)))


def bitrate_range(width: int, height: int, fps: float = 30.0) -> BitrateRange:
    """Bitrates for a desktop of ``width`` x ``height`` at ``fps``.

    Scaled from 1080p at 30 fps (0.6 / 4 / 8 Mbps) by pixels and, with less than
    proportional growth, by frame rate (fast motion between frames is cheaper to code)."""
    scale = (width * height) / (1920 * 1080)
    scale *= (max(fps, 1.0) / 30.0) ** 0.5
    return BitrateRange(low=int(600_000 * scale ** 0.75), start=int(4_000_000 * scale),
                        high=int(8_000_000 * scale))


def to_yuv420(bgra: numpy.ndarray) -> av.VideoFrame:
    """A BGRA screen grab as a yuv420p frame (even width and height; the grab is cropped)."""
    height, width = bgra.shape[0] & ~1, bgra.shape[1] & ~1
    if (height, width) != bgra.shape[:2]:
        bgra = bgra[:height, :width]
    if cv2 is None:
        return av.VideoFrame.from_ndarray(numpy.ascontiguousarray(bgra), format="bgra").reformat(format="yuv420p")
    return av.VideoFrame.from_ndarray(cv2.cvtColor(bgra, cv2.COLOR_BGRA2YUV_I420), format="yuv420p")


@dataclass
class EncodedFrame:
    data: bytes
    pts: int  # in TIME_BASE, from the capture clock
    keyframe: bool
    captured: float  # time.monotonic() of the grab


class VideoEncoder:
    """One encoder of one codec; not thread-safe (the stream's encode thread owns it)."""

    codec_name = ""

    def __init__(self, width: int, height: int, fps: float, bitrate: int, threads: int = 2):
        self.width, self.height, self.fps, self.threads = width, height, fps, threads
        self.bitrate = bitrate
        self._context: av.CodecContext | None = None
        self._keyframe_next = True

    def request_keyframe(self) -> None:
        self._keyframe_next = True

    def set_bitrate(self, bitrate: int) -> None:
        """Change the target bitrate; x264 and libvpx take it at the next frame, without a key
        frame (FFmpeg reconfigures the encoder when ``bit_rate`` changes)."""
        if int(bitrate) != self.bitrate:
            self.bitrate = int(bitrate)
            if self._context is not None:
                self._context.bit_rate = self.bitrate

    def encode(self, frame: av.VideoFrame, pts: int) -> tuple[bytes, bool]:
        """Encode one frame; the coded picture and whether it is a key frame."""
        if self._context is None or (frame.width, frame.height) != (self._context.width, self._context.height):
            self._context = self._open(frame.width, frame.height)
            self._keyframe_next = True
        frame.pts = pts
        frame.time_base = TIME_BASE
        frame.pict_type = av.video.frame.PictureType.I if self._keyframe_next else av.video.frame.PictureType.NONE
        self._keyframe_next = False
        packets = self._context.encode(frame)
        data = b"".join(bytes(p) for p in packets)
        return data, any(p.is_keyframe for p in packets)

    def _open(self, width: int, height: int) -> av.CodecContext:
        context = av.CodecContext.create(self.codec_name, "w")
        context.width, context.height = width, height
        context.pix_fmt = "yuv420p"
        context.time_base = TIME_BASE
        context.framerate = fractions.Fraction(round(self.fps), 1)
        context.bit_rate = self.bitrate
        context.options = self._options()
        context.open()
        log.info("%s encoder: %dx%d, %.1f Mbps, up to %.0f fps", self.codec_name, width, height,
                 self.bitrate / 1e6, self.fps)
        return context

    def _options(self) -> dict[str, str]:
        raise NotImplementedError

    def close(self) -> None:
        self._context = None


class H264Encoder(VideoEncoder):
    """x264 for a desktop: preset ultrafast and zerolatency (no lookahead, no B-frames, sliced
    threads), Constrained Baseline, SPS/PPS on every key frame (a viewer can join at any),
    no periodic key frames, and a VBV buffer of half a second so one frame cannot flood the
    link."""

    codec_name = "libx264"

    def _options(self) -> dict[str, str]:
        kbps = self.bitrate // 1000
        return {
            "preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
            "maxrate": f"{kbps * 3 // 2}k", "bufsize": f"{kbps // 2}k",
            "x264-params": f"keyint=infinite:scenecut=0:repeat-headers=1:threads={self.threads}",
        }


class VP8Encoder(VideoEncoder):
    """libvpx VP8 in real-time mode at its fastest setting, with two threads and error
    resilience (the browser can decode after a lost packet)."""

    codec_name = "libvpx"

    def _options(self) -> dict[str, str]:
        kbps = self.bitrate // 1000
        return {
            "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1",
            "threads": str(self.threads), "auto-alt-ref": "0", "static-thresh": "0",
            "maxrate": f"{kbps * 3 // 2}k", "bufsize": f"{kbps // 2}k", "g": "100000",
            "undershoot-pct": "95", "overshoot-pct": "50",
        }


def make_encoder(codec: str, width: int, height: int, fps: float, bitrate: int) -> VideoEncoder:
    """The encoder for a codec name from the SDP (``"H264"`` or ``"VP8"``)."""
    classes = {"H264": H264Encoder, "VP8": VP8Encoder}
    if codec.upper() not in classes:
        raise ValueError(f"the desktop cannot encode {codec}; it offers {', '.join(CODECS)}")
    return classes[codec.upper()](width, height, fps, bitrate)
