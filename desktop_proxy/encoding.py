"""Encoding the screen for WebRTC: colour conversion and the video encoders.

aiortc's own encoders are made for cameras: x264 at preset *medium*, bitrates clamped to
0.5-3 Mbps (VP8 0.25-1.5), 30 fps at most, and the BGRA->YUV conversion done by swscale
inside the encode call. Measured on a 2-core VM at 1080p: swscale 7-23 ms a frame, x264
medium 25 ms, ultrafast 10 ms; OpenCV's ``cvtColor`` converts in 1-2 ms. So the screen is
converted here with OpenCV and encoded here with desktop settings; the encoded frames go to
aiortc, which only packetizes them (``RTCRtpSender`` sends an ``av.Packet`` as it is).

H.264 (Constrained Baseline, the profile every browser decodes) is preferred, from NVENC
where the VM has an NVIDIA GPU (``h264_encoder``), else from x264; VP8 is the fallback for a
browser that offers no H.264. Key frames come only when asked for (a new
viewer, a lost picture): a desktop has no scene cuts and key frames are 5-10 times larger.
"""

from __future__ import annotations

import fractions
import logging
import time
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

    Scaled from 1080p at 30 fps (0.6 / 4 / 8 Mbps) with less than proportional growth, by
    pixels (a 4K desktop shows the same windows with finer detail, not four times the
    content) and by frame rate (fast motion between frames is cheaper to code)."""
    pixels = (width * height) / (1920 * 1080)
    rate = (max(fps, 1.0) / 30.0) ** 0.5
    return BitrateRange(low=int(600_000 * (pixels ** 0.5) * rate), start=int(4_000_000 * (pixels ** 0.75) * rate),
                        high=int(8_000_000 * (pixels ** 0.75) * rate))


def to_yuv420(bgra: numpy.ndarray, size: tuple[int, int] | None = None) -> av.VideoFrame:
    """A BGRA screen grab as a yuv420p frame of ``size`` (default: the grab's, cropped to even
    width and height), scaled with area averaging when smaller (text stays legible)."""
    height, width = bgra.shape[0] & ~1, bgra.shape[1] & ~1
    if (height, width) != bgra.shape[:2]:
        bgra = bgra[:height, :width]
    width, height = size or (width, height)
    if cv2 is None:
        frame = av.VideoFrame.from_ndarray(numpy.ascontiguousarray(bgra), format="bgra")
        return frame.reformat(width=width, height=height, format="yuv420p")
    if (width, height) != (bgra.shape[1], bgra.shape[0]):
        bgra = cv2.resize(bgra, (width, height), interpolation=cv2.INTER_AREA)
    return i420_frame(cv2.cvtColor(bgra, cv2.COLOR_BGRA2YUV_I420))


def i420_planes(yuv: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Views of the Y, U and V planes of OpenCV's I420 layout (U and V follow Y as flat runs of
    ``height / 2 * width / 2`` bytes, which need not fill whole rows of the array)."""
    height, width = yuv.shape[0] * 2 // 3, yuv.shape[1]
    chroma = yuv[height:].reshape(-1)
    size = (height // 2) * (width // 2)
    return (yuv[:height], chroma[:size].reshape(height // 2, width // 2),
            chroma[size:2 * size].reshape(height // 2, width // 2))


def i420_frame(yuv: numpy.ndarray) -> av.VideoFrame:
    """A yuv420p frame from OpenCV's I420 layout (the Y rows, then U, then V, as one array of
    ``height * 3 / 2`` rows), copied plane by plane into the frame's own buffers: four times
    faster than ``VideoFrame.from_ndarray`` (0.6 against 2.3 ms at 3840x2160)."""
    height, width = yuv.shape[0] * 2 // 3, yuv.shape[1]
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, source in zip(frame.planes, i420_planes(yuv), strict=True):
        rows = source.shape[0]
        numpy.frombuffer(plane, numpy.uint8).reshape(rows, plane.line_size)[:, :source.shape[1]] = source
    return frame


class YuvScreen:
    """The screen in yuv420p between grabs, converted again only where it changed.

    Converting all of a 3840x2160 grab costs ~8 ms of CPU, however little changed; a
    terminal, a plot or a dragged window change a fraction of it. The areas must start and
    end on even pixels (the grab's tiles do), so that each 2x2 block of colour is converted
    from the same four pixels as a whole-screen conversion would take. One thread only."""

    def __init__(self):
        self._yuv: numpy.ndarray | None = None

    def forget(self) -> None:
        """The screen changed without ``update`` seeing it: convert all of it next time."""
        self._yuv = None

    def update(self, bgra: numpy.ndarray, areas: list[tuple[int, int, int, int]] | None) -> av.VideoFrame:
        """The screen as a frame, after ``bgra`` changed in ``areas`` (x, y, width, height;
        None: anywhere)."""
        if cv2 is None:
            return to_yuv420(bgra)
        height, width = bgra.shape[0] & ~1, bgra.shape[1] & ~1
        if areas is None or self._yuv is None or self._yuv.shape != (height * 3 // 2, width):
            self._yuv = cv2.cvtColor(bgra[:height, :width], cv2.COLOR_BGRA2YUV_I420)
        else:
            planes = i420_planes(self._yuv)
            for x, y, w, h in areas:
                changed = i420_planes(cv2.cvtColor(bgra[y:y + h, x:x + w], cv2.COLOR_BGRA2YUV_I420))
                for plane, part, scale in zip(planes, changed, (1, 2, 2), strict=True):
                    plane[y // scale:(y + h) // scale, x // scale:(x + w) // scale] = part
        return i420_frame(self._yuv)


@dataclass
class EncodedFrame:
    data: bytes
    pts: int  # in TIME_BASE, from the capture clock
    keyframe: bool


class VideoEncoder:
    """One encoder of one codec; not thread-safe (the stream's encode thread owns it).

    FFmpeg's encoders take their bitrate and frame rate when they open: x264's rate control
    ignores a later ``bit_rate`` for seconds (it averages over the whole stream) and budgets
    every frame as 1/fps of a second whatever the timestamps say. So ``retarget`` records the
    bitrate, the frame rate the screen really has and the quality (``crf``), and ``encode``
    opens the encoder again (with a key frame) when the bitrate or frame rate is off by more
    than ``RETARGET`` (a quarter) and the last opening is ``REOPEN_AFTER`` seconds old; a new
    size, a new quality, or a bitrate that must fall, opens it at once.
    """

    codec_name = ""
    VBV_SECONDS = 0.25  # no frame larger than this many seconds at the bitrate: a router queues it
    PEAK = 1.5  # the highest bitrate over a VBV buffer, as a multiple of ``bitrate``
    # ``crf``: the constant quality, for an encoder that keeps one under its bitrate (x264);
    # the others average to their bitrate and ignore it.
    RETARGET = 0.25
    REOPEN_AFTER = 1.0

    def __init__(self, width: int, height: int, fps: float, bitrate: int, threads: int = 2, crf: int = 23):
        self.width, self.height, self.threads = width, height, threads
        self.fps = self._wanted_fps = fps
        self.bitrate = self._wanted_bitrate = int(bitrate)
        self.crf = self._wanted_crf = crf
        self._context: av.CodecContext | None = None
        self._opened = 0.0
        self._keyframe_next = True

    def request_keyframe(self) -> None:
        self._keyframe_next = True

    def retarget(self, bitrate: int, fps: float | None = None, crf: int | None = None) -> None:
        """The bitrate to aim at, the frame rate the screen changes at, and the quality
        (an encoder that keeps a constant quality spends up to ``bitrate``)."""
        self._wanted_bitrate = int(bitrate)
        if fps:
            self._wanted_fps = fps
        if crf is not None:
            self._wanted_crf = crf

    def _off_target(self) -> bool:
        """Whether to open again: the bitrate must fall by a quarter (at once: the link is
        congested), the quality changed (at once: the user chose it), or the bitrate rose by
        a quarter or the frame rate changed (after a second)."""
        if self._wanted_bitrate < (1 - self.RETARGET) * self.bitrate or self._wanted_crf != self.crf:
            return True
        def off(wanted, now):
            return abs(wanted - now) > self.RETARGET * now
        return (off(self._wanted_bitrate, self.bitrate) or off(self._wanted_fps, self.fps)) and \
            time.monotonic() - self._opened >= self.REOPEN_AFTER

    def encode(self, frame: av.VideoFrame, pts: int) -> tuple[bytes, bool]:
        """Encode one frame; the coded picture and whether it is a key frame."""
        if self._context is None or (frame.width, frame.height) != (self._context.width, self._context.height) \
                or self._off_target():
            self.bitrate, self.fps, self.crf = self._wanted_bitrate, self._wanted_fps, self._wanted_crf
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
        context.framerate = fractions.Fraction(max(1, round(self.fps)), 1)
        context.bit_rate = self._average_bitrate()
        context.options = self._options()
        context.open()
        self._opened = time.monotonic()
        log.info("%s encoder: %dx%d, %.2f Mbps at %.0f fps", self.codec_name, width, height,
                 self.bitrate / 1e6, self.fps)
        return context

    def _average_bitrate(self) -> int:
        """What the rate control averages to (0: none, a constant quality under ``_vbv``)."""
        return self.bitrate

    def _vbv(self) -> dict[str, str]:
        """The rate's limits: peaks of ``PEAK`` times the bitrate, and a buffer of
        ``VBV_SECONDS``, so that a key frame, sent in one burst, fits in a router's queue
        instead of being lost (and asked for again, and lost again)."""
        kbps = self.bitrate // 1000
        return {"maxrate": f"{int(kbps * self.PEAK)}k", "bufsize": f"{max(1, int(kbps * self.VBV_SECONDS))}k"}

    def _options(self) -> dict[str, str]:
        raise NotImplementedError

    def close(self) -> None:
        self._context = None


class H264Encoder(VideoEncoder):
    """x264 for a desktop: preset ultrafast and zerolatency (no lookahead, no B-frames, sliced
    threads), Constrained Baseline, SPS/PPS on every key frame (a viewer can join at any),
    no periodic key frames, and a small VBV buffer (``_vbv``).

    Constant quality (``crf``) with the bitrate as its ceiling, not an average bitrate: a
    desktop is mostly still, and an average-bitrate encoder spends its budget on whatever
    little changes, refining the still parts over and over (a plot redrawn over a still
    1280x720 desktop cost 2.9 Mbit/s with 4 allowed and 4.1 with 20; now 1.6 with either).
    Full-screen motion, or a whole session moving at once, still reaches the ceiling, which
    follows the link."""

    codec_name = "libx264"
    PEAK = 1.0  # the ceiling is what the link may carry

    def _average_bitrate(self) -> int:
        return 0

    def _options(self) -> dict[str, str]:
        return {
            "preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "crf": str(self.crf), **self._vbv(),
            "x264-params": f"keyint=infinite:scenecut=0:repeat-headers=1:threads={self.threads}",
        }


class VP8Encoder(VideoEncoder):
    """libvpx VP8 in real-time mode at its fastest setting, with two threads and error
    resilience (the browser can decode after a lost packet)."""

    codec_name = "libvpx"

    def _options(self) -> dict[str, str]:
        return {
            "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1",
            "threads": str(self.threads), "auto-alt-ref": "0", "static-thresh": "0", "g": "100000", **self._vbv(),
            "undershoot-pct": "95", "overshoot-pct": "50",
        }


class NvencH264Encoder(VideoEncoder):
    """NVIDIA's hardware H.264 encoder, on a VM with an NVIDIA GPU (a GPU flavor with the
    driver in its image): preset p1 with the ultra-low-latency tune, constant bitrate, no
    B-frames, Constrained Baseline, key frames on request. It takes the encode off the CPU."""

    codec_name = "h264_nvenc"

    def _options(self) -> dict[str, str]:
        return {
            "preset": "p1", "tune": "ull", "zerolatency": "1", "delay": "0", "rc": "cbr", "bf": "0",
            "profile": "baseline", "forced-idr": "1", "g": "100000", **self._vbv(),
        }


class EncoderUnavailable(RuntimeError):
    pass


ENCODERS = ("auto", "x264", "nvenc")
_nvenc_probe: str | None = None  # why NVENC cannot be used ("" when it can), once probed


def nvenc_unavailable() -> str:
    """Why NVENC cannot encode here ("" when it can): opening it on a small picture fails
    without an NVIDIA GPU and driver. Probed once per process."""
    global _nvenc_probe
    if _nvenc_probe is None:
        if NvencH264Encoder.codec_name not in av.codecs_available:
            _nvenc_probe = "this FFmpeg has no h264_nvenc"
        else:
            try:
                NvencH264Encoder(256, 256, 30, 1_000_000).encode(av.VideoFrame(256, 256, "yuv420p"), 0)
                _nvenc_probe = ""
            except Exception as e:  # FFmpeg says EPERM, ENOSYS or "no capable devices"
                _nvenc_probe = f"no NVIDIA encoder ({e})"
    return _nvenc_probe


def h264_encoder(choice: str = "auto") -> type[VideoEncoder]:
    """The H.264 encoder for ``choice``: ``x264`` (software), ``nvenc`` (NVIDIA; an error if
    there is none) or ``auto`` (NVENC where there is one, else x264)."""
    if choice not in ENCODERS:
        raise EncoderUnavailable(f"unknown encoder {choice!r}; choose one of {', '.join(ENCODERS)}")
    if choice == "x264":
        return H264Encoder
    reason = nvenc_unavailable()
    if not reason:
        return NvencH264Encoder
    if choice == "nvenc":
        raise EncoderUnavailable(f"NVENC was asked for, but this machine has {reason}")
    return H264Encoder


def make_encoder(codec: str, width: int, height: int, fps: float, bitrate: int,
                 h264: type[VideoEncoder] = H264Encoder, crf: int = 23) -> VideoEncoder:
    """The encoder for a codec name from the SDP (``"H264"`` or ``"VP8"``)."""
    classes = {"H264": h264, "VP8": VP8Encoder}
    if codec.upper() not in classes:
        raise ValueError(f"the desktop cannot encode {codec}; it offers {', '.join(CODECS)}")
    return classes[codec.upper()](width, height, fps, bitrate, crf=crf)
