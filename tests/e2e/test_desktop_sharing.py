"""A shared desktop's picture, on a local desktop: a guest on a slow link gets the low tier (a
second, smaller encode at what its link carries) while the owner keeps their picture; and the
guests' socket takes nothing before the relay's hello.

The guest here is an aiortc peer that speaks the hub relay's side of ``/share/ws`` itself; the
whole path through the hub, with three browsers, is in test_desktop_workplace.py. The slow link
is the one fake (``shaper.py``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
import urllib.request

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from tornado import websocket

from .desktop_checks import wait_until
from .shaper import Shaper
from .test_desktop_congestion import moving_desktop  # noqa: F401  (a fixture)


def stats(url: str) -> dict:
    with urllib.request.urlopen(url + "stats", timeout=10) as response:
        return json.load(response)


class Guest:
    """A guest's peer through ``shaper``, in a thread of its own; counts the pictures it decodes."""

    def __init__(self, url: str, shaper: Shaper, name: str = "slow-guest"):
        self.url = url.replace("http", "ws", 1) + "share/ws"
        self.shaper, self.name = shaper, name
        self.frames = 0
        self.sizes: set[tuple[int, int]] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Guest:
        # Its ICE candidates on loopback, as the desktop's are (a browser's are there too).
        self.host_addresses = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._join(), self.loop).result(30)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._leave(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        aioice.ice.get_host_addresses = self.host_addresses

    async def _join(self) -> None:
        self.ws = await websocket.websocket_connect(self.url)
        await self.ws.write_message(json.dumps({"type": "viewer", "name": self.name, "role": "viewer", "share": "t"}))
        while (message := json.loads(await self.ws.read_message()))["type"] != "ice":
            pass
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # not aiortc's default STUN server
        video = self.pc.addTransceiver("video", direction="recvonly")
        video.setCodecPreferences([c for c in RTCRtpReceiver.getCapabilities("video").codecs
                                   if c.mimeType in ("video/H264", "video/rtx")])  # as the page does
        self.pc.createDataChannel("input")

        @self.pc.on("track")
        def on_track(track):
            async def count():
                while True:
                    frame = await track.recv()
                    self.frames += 1
                    self.sizes.add((frame.width, frame.height))
            self.counting = asyncio.ensure_future(count())

        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.ws.write_message(json.dumps({"type": "offer", "sdp": self.pc.localDescription.sdp}))
        while (message := json.loads(await self.ws.read_message()))["type"] != "answer":
            pass
        await self.pc.setRemoteDescription(RTCSessionDescription(self.shaper.rewrite_answer(message["sdp"]), "answer"))

    async def _leave(self) -> None:
        if getattr(self, "counting", None):
            self.counting.cancel()
        await self.pc.close()
        self.ws.close()


def test_a_guest_on_a_slow_link_gets_a_smaller_picture_and_the_owner_keeps_theirs(moving_desktop, browser):  # noqa: F811
    url, _ = moving_desktop
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    owner = context.new_page()
    owner.goto(url)
    owner.wait_for_function("window.hepsdesk.firstFrameAt !== null", timeout=30000)
    owner.wait_for_timeout(2000)
    alone = stats(url)["stream"]["target_bps"]

    with Shaper(rate_bps=1e6, queue_ms=200) as shaper, Guest(url, shaper) as guest:
        def guest_link():
            return next((link for link in stats(url)["links"] if not link["owner"]), None)
        assert wait_until(lambda: (guest_link() or {}).get("tier") == "low", timeout=20), stats(url)
        # The guest's picture follows its link down, below what the link carries...
        assert wait_until(lambda: stats(url)["stream"]["low_target_bps"] < 1e6, timeout=20), \
            (stats(url)["stream"], stats(url)["links"])
        # The guest sees pictures again (fewer and cheaper), through the slow link: aiortc's
        # receiver takes a few seconds to get over the loss of the first seconds.
        decoded = guest.frames
        assert wait_until(lambda: guest.frames - decoded > 30, timeout=20), (guest.frames, shaper.dropped, stats(url))
        frames_before = owner.evaluate("window.hepsdesk.stats()")["framesDecoded"]
        owner.wait_for_timeout(3000)
        stream = stats(url)["stream"]
        # ...while the owner's picture is not lowered for the guest.
        assert stream["target_bps"] >= 0.8 * alone, (alone, stream, stats(url)["links"])
        assert stream["low_encoded"] > 30 and stream["low_target_bps"] < 0.5 * stream["target_bps"], stream
        assert owner.evaluate("window.hepsdesk.stats()")["framesDecoded"] - frames_before > 45  # ~30 fps motion
    # When the guest leaves, the second encoder goes with it.
    assert wait_until(lambda: stats(url)["viewers"] == 1, timeout=10)
    owner.wait_for_timeout(1000)  # a picture being encoded as it left
    low = stats(url)["stream"]["low_encoded"]
    owner.wait_for_timeout(1500)
    assert stats(url)["stream"]["low_encoded"] == low
    context.close()


def test_the_guests_socket_takes_nothing_before_the_relays_hello(moving_desktop):  # noqa: F811
    url, _ = moving_desktop

    async def first_message_refused(message: dict) -> tuple[int, str]:
        ws = await websocket.websocket_connect(url.replace("http", "ws", 1) + "share/ws")
        await ws.write_message(json.dumps(message))
        started = time.monotonic()
        while await ws.read_message() is not None and time.monotonic() - started < 5:
            pass
        return ws.close_code, ws.close_reason

    for message in ({"type": "offer", "sdp": "v=0"},  # no hello: nobody named
                    {"type": "viewer", "name": "mallory", "role": "owner", "share": ""}):  # not an owner's socket
        with concurrent.futures.ThreadPoolExecutor(1) as thread:  # Playwright has this thread's loop
            code, reason = thread.submit(asyncio.run, first_message_refused(message)).result(30)
        assert code == 4403 and reason.startswith("The relay's first message was refused"), (code, reason)
    assert stats(url)["sharing"]["viewers"] == 0
