"""A bottleneck link for one WebRTC session, at the network boundary: a UDP relay between the
browser and the desktop whose rate towards the browser can be changed while it runs, and which
can go down altogether (``blocked``: the media port blocked, a network failure).

A real link's bandwidth cannot be dropped on demand on loopback (tc would shape every test's
traffic), so this is the one fake: packets from the desktop leave at most at ``rate`` bits
per second, wait in a queue of at most ``queue_ms`` (like a router's buffer), and are dropped
beyond it. The browser is sent the relay's port instead of the desktop's in the answer; ICE
then learns the relay's address as a peer-reflexive candidate and all media crosses it.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time


class Shaper:
    def __init__(self, rate_bps: float = 100e6, queue_ms: float = 200, listen: str = "127.0.0.1"):
        self.target: tuple[str, int] | None = None  # the desktop's ICE address (from the answer)
        self.rate_bps = rate_bps
        self.queue_ms = queue_ms
        self.blocked = False  # the link is down: every packet, either way, is lost
        self.listen = listen  # the address the browser sends to (the desktop's own, for a VM's)
        self.port = 0
        self.sent = self.dropped = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="shaper", daemon=True)

    def __enter__(self) -> Shaper:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(10)
        return self

    def __exit__(self, *exc) -> None:
        def close():
            for transport in (self._browser_side, self._desktop_side):
                transport.close()
            self._loop.stop()
        self._loop.call_soon_threadsafe(close)
        self._thread.join(10)

    def set_rate(self, rate_bps: float) -> None:
        self.rate_bps = rate_bps

    async def _open(self) -> None:
        shaper = self
        self._browser = None  # the browser's address, from its first packet
        self._free_at = 0.0  # when the link has sent everything queued

        class BrowserSide(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                shaper._browser = addr
                if shaper.target and not shaper.blocked:
                    shaper._desktop_side.sendto(data, shaper.target)

        class DesktopSide(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                shaper._towards_browser(data)

        self._browser_side, _ = await self._loop.create_datagram_endpoint(BrowserSide, local_addr=(self.listen, 0))
        self._desktop_side, _ = await self._loop.create_datagram_endpoint(DesktopSide, local_addr=("127.0.0.1", 0))
        self.port = self._browser_side.get_extra_info("sockname")[1]

    def _towards_browser(self, data: bytes) -> None:
        if self._browser is None or self.blocked:
            return
        now = time.monotonic()
        start = max(now, self._free_at)
        if (start - now) * 1000 > self.queue_ms:
            self.dropped += 1
            return
        self._free_at = start + len(data) * 8 / self.rate_bps
        self.sent += 1
        self._loop.call_at(self._loop.time() + (self._free_at - now), self._browser_side.sendto, data, self._browser)

    def rewrite_answer(self, sdp: str, host: str = "127.0.0.1") -> str:
        """The desktop's answer with its candidate on ``host`` moved to the relay, which
        forwards to where the candidate was."""
        pattern = rf"(a=candidate:\S+ \d+ udp \d+ {re.escape(host)} )(\d+)( typ host)"
        found = re.search(pattern, sdp, re.IGNORECASE)
        if found is None:
            raise ValueError(f"the answer has no UDP host candidate on {host}")
        self.target = (host, int(found.group(2)))
        return re.sub(pattern, rf"\g<1>{self.port}\g<3>", sdp, flags=re.IGNORECASE)
