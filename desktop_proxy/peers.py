"""WebRTC sessions with the browser: one screen source shared by every viewer.

The browser offers (video receive-only, H.264 preferred, plus an ``input`` data channel);
this side answers with the screen track. The screen is captured once and fanned out to all
peers (``MediaRelay``), and capture stops when the last viewer leaves. Peers that fail or
close are cleaned up; input messages are typed JSON with a version (``{"v": 1, ...}``).

ICE: ``ice_addresses`` pins the host candidates this side offers. A VM with one NIC does not
need it; the dev cloud's VMs have loopback addresses (127.x.y.z) that no interface carries, so
there the VM's address must be named, and the browser's non-loopback candidates, which a
loopback-only peer cannot reach, are dropped from its offer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging

import aioice.ice
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from .injector import InputInjector
from .screen import ScreenTrack
from .xdisplay import XDisplay

log = logging.getLogger("desktop_proxy")
PROTOCOL_VERSION = 1


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


class DesktopSessions:
    def __init__(self, display: XDisplay, ice_addresses: list[str], fps: float = 30.0):
        self.display = display
        self.ice_addresses = ice_addresses
        self.fps = fps
        self.peers: set[RTCPeerConnection] = set()
        self.relay = MediaRelay()
        self.source: ScreenTrack | None = None
        self.injector = InputInjector(display.name, display.width, display.height)
        pin_host_candidates(ice_addresses)

    def _screen(self) -> ScreenTrack:
        if self.source is None or self.source.readyState != "live":
            self.source = ScreenTrack(self.display.name, self.fps)
        return self.source

    async def answer(self, offer_sdp: str) -> tuple[RTCPeerConnection, str]:
        pc = RTCPeerConnection()
        self.peers.add(pc)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("peer %s: %s", id(pc), pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self.close(pc)

        @pc.on("datachannel")
        def on_channel(channel) -> None:
            if channel.label == "input":
                channel.on("message", self._on_input)

        try:
            sdp = drop_unreachable_candidates(offer_sdp, self.ice_addresses)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "video":
                    pc.addTrack(self.relay.subscribe(self._screen(), buffered=False))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception:
            await self.close(pc)
            raise
        return pc, pc.localDescription.sdp

    def _on_input(self, message) -> None:
        try:
            data = json.loads(message)
        except (TypeError, ValueError):
            log.warning("input: not JSON")
            return
        if not isinstance(data, dict) or data.get("v") != PROTOCOL_VERSION:
            log.warning("input: unsupported message version %r", data.get("v") if isinstance(data, dict) else None)
            return
        self.injector.submit(data)

    async def close(self, pc: RTCPeerConnection) -> None:
        if pc in self.peers:
            self.peers.discard(pc)
            await pc.close()
        if not self.peers and self.source is not None:
            self.source.stop()
            self.source = None
            self.injector.submit({"v": PROTOCOL_VERSION, "type": "release-all"})

    async def shutdown(self) -> None:
        await asyncio.gather(*(self.close(pc) for pc in list(self.peers)), return_exceptions=True)
        self.injector.close()
