"""WebRTC sessions with the browser: one screen stream shared by every viewer.

The browser offers (video receive-only, H.264 preferred, plus an ``input`` data channel);
this side answers with the screen. The screen is captured and encoded once for all peers
(``stream.py``), and capture stops when the last viewer leaves. Each peer's RTCP feedback
steers the stream: a lost picture (PLI/FIR) asks for a key frame, and the link estimate
(REMB, loss; ``congestion.py``) of the owner's slowest page sets the bitrate; a guest of a
shared desktop (``sharing.py``) on a slower link gets the stream's low tier instead of
lowering the owner's picture. Peers that fail or
close are cleaned up; input messages are typed JSON with a version (``{"v": 1, ...}``).
The answer keeps the browser's playout-delay extension (``playout_delay.py``), so the browser
shows each picture when it is decoded instead of holding it in a jitter buffer.

ICE: ``ice_addresses`` pins the host candidates this side offers. A VM with one NIC does not
need it; the dev cloud's VMs have loopback addresses (127.x.y.z) that no interface carries, so
there the VM's address must be named, and the browser's non-loopback candidates, which a
loopback-only peer cannot reach, are dropped from its offer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import re
import statistics
from collections.abc import Callable

import aioice.ice
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtcpRrPacket, RtcpSrPacket, unpack_remb_fci

from .activity import ActivityReporter
from .congestion import LinkEstimate
from .encoding import h264_encoder
from .ice_servers import HubIceServers, IceServers
from .injector import LAYOUTS, InputInjector
from .messages import INPUT, DropCounter, Rejected
from .pixelflux_engine import PixelfluxStream, PixelfluxUnavailable, pixelflux
from .playout_delay import offer_playout_delay, send_playout_delay
from .presets import DEFAULT, PRESETS, Preset
from .sharing import Participant, Sharing
from .sound import DesktopSound
from .stream import LOW, MAIN, EncodedTrack, ScreenStream, StreamBase
from .xdisplay import XDisplay

ENGINES = ("own", "pixelflux")  # stream.ScreenStream, pixelflux_engine.PixelfluxStream
LOST_PICTURES = 256 * 2 // 100  # a receiver report's fraction lost: beyond 2%, pictures broke
SLOW_GUEST = 0.7  # a guest's link carries less than this of the owner's picture: the low tier
FAST_GUEST = 1.3  # ...and back to the owner's picture when it carries this much more

log = logging.getLogger("desktop_proxy")


def pin_host_candidates(addresses: list[str]) -> None:
    """Offer only ``addresses`` as ICE host candidates (aioice has no option for this)."""
    if addresses:
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addresses)


def drop_unreachable_candidates(sdp: str, addresses: list[str]) -> str:
    """When this side only has loopback addresses, remove the peer's other candidates."""
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        return sdp
    kept = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            try:
                if not ipaddress.ip_address(fields[4]).is_loopback:
                    continue
            except (IndexError, ValueError):  # an mDNS name (.local) or garbage
                continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n"


def negotiated_video_codec(sdp: str) -> str:
    """The codec the first video section of an SDP sends with (its first payload type)."""
    section = re.search(r"^m=video \S+ \S+ (\d+)", sdp, re.MULTILINE)
    if section:
        rtpmap = re.search(rf"^a=rtpmap:{section.group(1)} ([\w-]+)/", sdp, re.MULTILINE)
        if rtpmap:
            return rtpmap.group(1).upper()
    raise ValueError("the answer has no video codec")


def watch_feedback(sender: RTCRtpSender, on_keyframe, on_remb, on_loss) -> None:
    """Route a sender's RTCP feedback to the stream. aiortc would pass key frame requests and
    REMB to its own encoder, which the stream's pre-encoded pictures bypass."""
    handle = sender._handle_rtcp_packet

    async def handle_and_watch(packet) -> None:
        await handle(packet)
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == sender._ssrc:
                    on_loss(report.fraction_lost)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if sender._ssrc in ssrcs:
                on_remb(bitrate)

    sender._handle_rtcp_packet = handle_and_watch
    sender._send_keyframe = on_keyframe


class DesktopSessions:
    def __init__(self, display: XDisplay, ice_addresses: list[str], fps: float = 60.0, keepalive: float = 0.0,
                 engine: str = "own", encoder: str = "auto", playout_delay: int = 50,
                 ice_servers: IceServers | HubIceServers | None = None, activity: ActivityReporter | None = None,
                 sound: DesktopSound | None = None):
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
        if engine == "pixelflux" and pixelflux is None:
            raise PixelfluxUnavailable("the pixelflux engine was asked for, but pixelflux is not installed "
                                       "(pip install pixelflux)")
        self.engine = engine
        self.h264 = h264_encoder(encoder)  # EncoderUnavailable: NVENC asked for, none here
        log.info("H.264 encoder: %s", self.h264.codec_name)
        self.display = display
        self.ice_addresses = ice_addresses
        self.ice = ice_servers or IceServers()  # STUN/TURN for both sides (``ice_servers.py``)
        self.fps = fps
        self.keepalive = keepalive
        self.playout_delay = playout_delay  # ms, the browser's most queued pictures (0: its jitter buffer)
        if playout_delay:
            offer_playout_delay()
        self.preset = PRESETS[DEFAULT]
        self.peers: set[RTCPeerConnection] = set()
        self.links: dict[RTCPeerConnection, LinkEstimate] = {}
        self.tracks: dict[RTCPeerConnection, EncodedTrack] = {}
        self.stream: StreamBase | None = None
        self._resizing = asyncio.Lock()
        self._stopping: set[StreamBase] = set()
        self.injector = InputInjector(display.name, display.width, display.height)
        self.layout = "us"  # the desktop's keyboard layout (the X server starts with it)
        self.input_drops = DropCounter("input", log)  # messages the page sent that the desktop does not take
        self.activity = activity  # input reported to the hub as the server's activity (under a hub)
        self.sound = sound  # the desktop's sound, an audio track for each viewer that asks
        self._audio: dict[RTCPeerConnection, object] = {}
        # Who each peer connection is (None: the owner's page of a desktop without sharing).
        self.participant_of: dict[RTCPeerConnection, Participant | None] = {}
        self.sharing = Sharing(on_control_lost=self._release_all, on_leave=self._participant_left)
        self.input_without_control = 0  # a viewer's input while someone else had control
        self.on_change: Callable[[], None] | None = None  # a peer came or went (hub_report.HubReporter.nudge)
        self.reporter = None  # under a hub: the hub_report.HubReporter that reports this desktop's state
        pin_host_candidates(ice_addresses)

    def _screen(self) -> StreamBase:
        if self.stream is None:
            size = (self.display.name, self.display.width, self.display.height, self.preset)
            if self.engine == "pixelflux":
                self.stream = PixelfluxStream(*size, max_fps=self.fps)
            else:
                self.stream = ScreenStream(*size, max_fps=self.fps, keepalive=self.keepalive, h264=self.h264)
        return self.stream

    def _is_owner(self, pc: RTCPeerConnection) -> bool:
        participant = self.participant_of.get(pc)
        return participant is None or participant.role == "owner"

    def _steer(self) -> None:
        """The bitrate the slowest of the owner's pages allows (without the owner, the slowest
        guest's): a guest on a slower link does not lower the owner's picture, it gets the low
        tier's (``stream.py``), which follows the slowest of those guests."""
        stream = self.stream
        if stream is None:
            return
        owners = [link for pc, link in self.links.items() if self._is_owner(pc)]
        stream.set_link(min((link.cap for link in owners or self.links.values()), default=math.inf))
        if not owners or not stream.tiers:
            return
        slow = []
        for pc, link in self.links.items():
            track = self.tracks.get(pc)
            if self._is_owner(pc) or track is None:
                continue
            if track.tier == MAIN and link.cap < SLOW_GUEST * stream.target_bitrate:
                stream.set_guest_link(min(link.cap, *slow) if slow else link.cap)
                stream.move(track, LOW)
            elif track.tier == LOW and (math.isinf(link.cap) or link.cap > FAST_GUEST * stream.target_bitrate):
                stream.move(track, MAIN)
            if track.tier == LOW:
                slow.append(link.cap)
        stream.set_guest_link(min(slow, default=math.inf))

    async def report(self) -> dict:
        """What the hub gets (``hub_report.py``): who watches (the owner's pages, guests), how
        many pictures were encoded so far, the sending rate and the owner's round trip (RTCP)."""
        owners = [pc for pc in self.peers if self._is_owner(pc)]
        trips = []
        for pc in owners:
            try:
                stats = await pc.getStats()
            except Exception as e:  # a connection closing meanwhile: its figures are not needed
                log.debug("no stats of peer %s: %s", id(pc), e)
                continue
            trips += [s.roundTripTime for s in stats.values() if getattr(s, "type", "") == "remote-inbound-rtp"
                      and getattr(s, "kind", "") == "video" and getattr(s, "roundTripTime", None) is not None]
        stream = self.stream
        return {"viewers": len(owners), "guests": len(self.peers) - len(owners),
                "encoded": stream.stats.encoded if stream is not None else 0,
                "sending_bps": int(stream.sending_rate()) if stream is not None else 0,
                "rtt_ms": round(1000 * statistics.median(trips), 1) if trips else None}

    def stats(self) -> dict:
        stream = self.stream
        return {
            "viewers": len(self.peers), "preset": self.preset.name,
            "display": {"name": self.display.name, "width": self.display.width, "height": self.display.height,
                        "dpi": self.display.dpi},
            "input": {"refused": self.input_drops.total, "dropped_when_queue_full": self.injector.dropped,
                      "without_control": self.input_without_control},
            "sharing": self.sharing.stats(),
            "activity": None if self.activity is None else self.activity.stats(),
            "hub_report": None if self.reporter is None else self.reporter.stats(),
            "sound": None if self.sound is None else self.sound.stats(),
            "links": [{"cap_bps": None if math.isinf(link.cap) else int(link.cap), "remb_bps": link.remb,
                       "loss": link.loss, "drops": link.drops, "owner": self._is_owner(pc),
                       "tier": self.tracks[pc].tier if pc in self.tracks else None}
                      for pc, link in self.links.items()],
            "stream": None if stream is None else {
                "fps": stream.fps, "encoder": stream.encoder, "encoded_size": list(stream.encoded_size),
                "low_size": list(stream.low_size), "low_target_bps": stream.low_bitrate,
                "guest_link_bps": None if math.isinf(stream.guest_link) else int(stream.guest_link),
                "target_bps": stream.target_bitrate, "sending_bps": int(stream.sending_rate()),
                **stream.stats.as_dict()},
        }

    async def set_layout(self, name: str) -> str:
        """Give the desktop the browser's keyboard layout (an XKB name of ``LAYOUTS``);
        ValueError for another, DisplayError when setxkbmap fails."""
        if name not in LAYOUTS:
            raise ValueError(f"unknown keyboard layout {name!r}")
        if name != self.layout:
            await asyncio.get_running_loop().run_in_executor(None, self.display.set_layout, name)
            self.layout = name
            self.injector.keymap_changed()
            log.info("keyboard layout: %s", name)
        return name

    def set_preset(self, name: str) -> Preset:
        """Use a quality preset (``presets.py``) for every viewer; KeyError if unknown."""
        self.preset = PRESETS[name]
        if self.stream is not None:
            self.stream.set_preset(self.preset)
        log.info("quality preset: %s", self.preset.title)
        return self.preset

    def _watch(self, pc: RTCPeerConnection, sender: RTCRtpSender, stream: StreamBase, track: EncodedTrack) -> None:
        link = self.links[pc] = LinkEstimate(ceiling=stream.bitrates.high)
        self.tracks[pc] = track

        def on_remb(bitrate: int) -> None:
            # While pictures flow, what the encoder aims at counts as sent: skipping pictures
            # to drain a queue must not hide that the estimate is still below the aim.
            sending = stream.sending_rate(track.tier)
            link.on_remb(bitrate, max(sending, stream.aim(track.tier)) if sending else 0.0)
            self._steer()

        def on_loss(fraction_lost: int) -> None:
            link.on_loss(fraction_lost, stream.sending_rate(track.tier))
            self._steer()
            if fraction_lost > LOST_PICTURES:
                # Pictures were lost: the browser can decode nothing more until a key frame,
                # and Chromium asks for one only after 3 s of nothing decodable. A guest on the
                # owner's tier does not hold the owner's pictures back.
                stream.lost(track.tier, hold=self._is_owner(pc) or track.tier == LOW)

        watch_feedback(sender, lambda: stream.request_keyframe(tier=track.tier), on_remb, on_loss)

    async def answer(self, offer_sdp: str, ice_servers: list[dict] = (),
                     participant: Participant | None = None) -> tuple[RTCPeerConnection, str]:
        """Answer a browser's offer; ``ice_servers`` are the STUN/TURN servers the browser was
        given for this session (``IceServers.for_session``); ``participant``: whose page it is
        (a guest gets the picture, no sound, and types only with control)."""
        # No servers means none: aiortc's own default would ask Google's STUN server.
        pc = RTCPeerConnection(IceServers.configuration(list(ice_servers or [])))
        self.peers.add(pc)
        self.participant_of[pc] = participant
        if self.on_change is not None:
            self.on_change()
        owner = participant is None or participant.role == "owner"

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("peer %s: %s", id(pc), pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self.close(pc)

        @pc.on("datachannel")
        def on_channel(channel) -> None:
            if channel.label == "input":
                channel.on("message", lambda message: self._on_input(message, participant))

        try:
            sdp = drop_unreachable_candidates(offer_sdp, self.ice_addresses)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            tracks = []
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "video":
                    stream = self._screen()
                    track = EncodedTrack(stream)
                    sender = pc.addTrack(track)
                    if self.playout_delay:
                        send_playout_delay(sender, 0, self.playout_delay)
                    self._watch(pc, sender, stream, track)
                    tracks.append(track)
                elif transceiver.kind == "audio" and owner and self.sound is not None and pc not in self._audio:
                    self._audio[pc] = audio = self.sound.track()
                    pc.addTrack(audio)
            await pc.setLocalDescription(await pc.createAnswer())
            if tracks:
                codec = negotiated_video_codec(pc.localDescription.sdp)
                for track in tracks:
                    track.codec = codec
        except Exception:
            await self.close(pc)
            raise
        return pc, pc.localDescription.sdp

    async def resize(self, width: float, height: float, scale: float = 1.0) -> tuple[int, int]:
        """Fit the desktop to a viewer's window (device pixels); the size it took."""
        async with self._resizing:  # one xrandr sequence at a time
            size = await asyncio.get_running_loop().run_in_executor(
                None, self.display.resize, width, height, scale)
        self.injector.width, self.injector.height = size
        if self.stream is not None:
            self.stream.resize(*size)
        return size

    def _on_input(self, message, participant: Participant | None = None) -> None:
        if not self.sharing.may_type(participant):
            self.input_without_control += 1
            return
        try:
            self.injector.submit(INPUT.parse(message))
        except Rejected as e:
            self.input_drops.drop(e.reason)
            return
        if self.activity is not None:
            self.activity.touch()

    def _release_all(self) -> None:
        """A guest lost control: release every key and button it held."""
        self.injector.submit({"v": INPUT.version, "type": "release-all"})

    def _participant_left(self, participant: Participant) -> None:
        """A guest left or was sent away: its picture stops now, not when its page notices."""
        for pc, whose in list(self.participant_of.items()):
            if whose is participant:
                asyncio.ensure_future(self.close(pc))

    async def close(self, pc: RTCPeerConnection) -> None:
        if pc in self.peers:
            self.peers.discard(pc)
            self.links.pop(pc, None)
            self.tracks.pop(pc, None)
            self.participant_of.pop(pc, None)
            if self.on_change is not None:
                self.on_change()
            await pc.close()
        audio = self._audio.pop(pc, None)
        if audio is not None:
            audio.stop()  # the relay stops feeding it
        if not self.peers and self.stream is not None:
            stream, self.stream = self.stream, None
            stream.stop()
            self.injector.submit({"v": INPUT.version, "type": "release-all"})
            await self._join(stream)

    async def _join(self, stream: StreamBase) -> None:
        """Wait for a stopped stream's threads (they end within half a second): the X display
        must outlive them."""
        self._stopping.add(stream)
        try:
            await asyncio.get_running_loop().run_in_executor(None, stream.join, 2.0)
        finally:
            self._stopping.discard(stream)

    async def shutdown(self) -> None:
        await asyncio.gather(*(self.close(pc) for pc in list(self.peers)), return_exceptions=True)
        await asyncio.gather(*(self._join(s) for s in list(self._stopping)))
        self.injector.close()
