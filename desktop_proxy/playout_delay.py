"""The playout-delay RTP header extension, which aiortc does not know: the desktop asks the
browser to show every picture as soon as it is decoded.

Without it, Chromium plays a WebRTC video like a film: each picture waits in a jitter
buffer and is shown when its RTP time comes, and the compositor replaces a picture that
has not been shown yet by a newer one. At 60 pictures a second on a 60 Hz screen, any
jitter puts two pictures into one refresh and one of them is never seen (measured:
59.6 pictures decoded a second, 45-51 shown, at 1920x1080).

With a playout delay of at least 0 and at most ``maximum_ms`` (the extension's values;
``http://www.webrtc.org/experiments/rtp-hdrext/playout-delay``), Chromium's low-latency
path renders a picture at once and queues the next for the following refresh, dropping
pictures only when more than ``maximum_ms`` worth of them wait. A maximum of 0 would make
it drop every picture but the newest whenever two can be decoded at once, which breaks
H.264's chain of references: the maximum must be above 0 (Chromium takes this path up to
500 ms).

The browser offers the extension; the answer keeps it when ``offer_playout_delay`` added it
to aiortc's list, and ``send_playout_delay`` makes a sender put it on every packet.
"""

from __future__ import annotations

from aiortc import RTCRtpSender, rtp
from aiortc.codecs import HEADER_EXTENSIONS
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

URI = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
UNIT_MS = 10  # the extension counts in tens of milliseconds, 12 bits each
LARGEST = (1 << 12) - 1


def offer_playout_delay() -> None:
    """Let aiortc's answers keep the extension when the browser offers it."""
    video = HEADER_EXTENSIONS["video"]
    if not any(extension.uri == URI for extension in video):
        # The id is only this side's preference; an answer uses the offer's.
        video.append(RTCRtpHeaderExtensionParameters(id=max(e.id for e in video) + 1, uri=URI))


def encode(minimum_ms: int, maximum_ms: int) -> bytes:
    """The extension's 3 bytes: minimum and maximum in tens of milliseconds, 12 bits each."""
    low, high = (min(LARGEST, max(0, round(ms / UNIT_MS))) for ms in (minimum_ms, maximum_ms))
    if high < low:
        raise ValueError(f"a playout delay's maximum ({maximum_ms} ms) is below its minimum ({minimum_ms} ms)")
    return ((low << 12) | high).to_bytes(3, "big")


class _ExtensionsWithPlayoutDelay(rtp.HeaderExtensionsMap):
    """aiortc's header extensions of one sender, plus the playout delay where negotiated."""

    def __init__(self, value: bytes):
        super().__init__()
        self._value = value
        self._id: int | None = None

    def configure(self, parameters: RTCRtpParameters) -> None:
        super().configure(parameters)
        self._id = next((e.id for e in parameters.headerExtensions if e.uri == URI), None)

    def set(self, values: rtp.HeaderExtensions) -> tuple[int, bytes]:
        profile, packed = super().set(values)
        if self._id is None:
            return profile, packed
        extensions = rtp.unpack_header_extensions(profile, packed) if packed else []
        return rtp.pack_header_extensions([*extensions, (self._id, self._value)])


def send_playout_delay(sender: RTCRtpSender, minimum_ms: int = 0, maximum_ms: int = 50) -> None:
    """Make ``sender`` (before the answer is made) mark its packets with a playout delay of
    ``minimum_ms`` to ``maximum_ms`` when the browser negotiated the extension."""
    if maximum_ms <= 0:
        raise ValueError("a playout delay's maximum must be above 0 (see playout_delay.py)")
    # aiortc's sender keeps its extensions map private and asks nothing else of it.
    sender._RTCRtpSender__rtp_header_extensions_map = _ExtensionsWithPlayoutDelay(encode(minimum_ms, maximum_ms))
