"""STUN and TURN servers for the desktop's WebRTC connection, with TURN credentials minted
per session.

The media goes straight from the VM to the browser. Where the browser cannot reach the VM
(a home network behind NAT, a facility that lets media out only through a relay), a TURN
server relays it. Both sides get the same servers: the browser gathers a relay candidate
and this side does too (aiortc's ``RTCConfiguration``).

TURN credentials are never configured as a fixed user and password handed to every
browser: each session gets a user name ``<expiry>:<user>`` and its HMAC-SHA1 under the TURN
server's shared secret as the password (coturn's ``use-auth-secret``, the "TURN REST API"
scheme every major TURN server implements), good for ``ttl`` seconds (10 minutes: coturn
checks the expiry only when a relay is allocated, so a reconnect asks for fresh ones).

In a VM the secret is not the desktop's to hold: the person in the VM could mint credentials
of any lifetime and name with it. There the hub mints them (``hepsdesk_spawner/turn.py``)
and the desktop asks for them at every connect with its server's token (``HubIceServers``).
A desktop run on its own (development, benchmarks) may hold the secret (``IceServers``).

``policy="relay"`` makes the browser use only relayed candidates (a facility whose
firewall lets media out through the TURN server only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

POLICIES = ("all", "relay")
log = logging.getLogger("desktop_proxy")


class IceConfigError(ValueError):
    pass


@dataclass(frozen=True)
class IceServers:
    """``urls``: ``stun:``/``turn:``/``turns:`` URLs; ``secret``: the TURN server's shared
    secret (needed when there is a TURN URL); ``user``: who the credentials are for (it
    shows in the TURN server's log); ``ttl``: how long they stay good, in seconds."""

    urls: tuple[str, ...] = ()
    secret: str = field(default="", repr=False)
    user: str = "hepsdesk"
    ttl: int = 600
    policy: str = "all"

    def __post_init__(self):
        for url in self.urls:
            if not url.startswith(("stun:", "turn:", "turns:")):
                raise IceConfigError(f"{url!r} is no STUN or TURN URL (stun:, turn: or turns:)")
        if any(url.startswith("turn") for url in self.urls) and not self.secret:
            raise IceConfigError("a TURN server needs its shared secret (--turn-secret-file)")
        if self.policy not in POLICIES:
            raise IceConfigError(f"unknown ICE transport policy {self.policy!r}; choose one of {', '.join(POLICIES)}")
        if self.policy == "relay" and not any(url.startswith("turn") for url in self.urls):
            raise IceConfigError("relay-only ICE needs a TURN server (--ice-servers turn:...)")
        if ":" in self.user:
            raise IceConfigError("a TURN user name must not contain ':'")

    @classmethod
    def from_settings(cls, urls: str, secret_file: str = "", user: str = "", policy: str = "all",
                      ttl: int = 600) -> IceServers:
        """From the command line or the environment: comma-separated URLs, a file holding
        the shared secret (read once, here), the user the desktop belongs to."""
        secret = ""
        if secret_file:
            try:
                secret = Path(secret_file).read_text().strip()
            except OSError as e:
                raise IceConfigError(f"cannot read the TURN secret file {secret_file}: {e.strerror}") from None
            if not secret:
                raise IceConfigError(f"the TURN secret file {secret_file} is empty")
        return cls(urls=tuple(u.strip() for u in urls.split(",") if u.strip()), secret=secret,
                   user=(user or "hepsdesk").replace(":", "_"), ttl=ttl, policy=policy or "all")

    def credentials(self, now: float | None = None) -> tuple[str, str]:
        """A user name and password for the TURN server, good for ``ttl`` seconds."""
        expiry = int(now if now is not None else time.time()) + self.ttl
        username = f"{expiry}:{self.user}"
        digest = hmac.new(self.secret.encode(), username.encode(), hashlib.sha1).digest()
        return username, base64.b64encode(digest).decode()

    def for_session(self) -> list[dict]:
        """The servers for one session, as ``RTCConfiguration.iceServers`` of the browser's
        WebRTC API (TURN URLs with fresh credentials)."""
        stun = [url for url in self.urls if url.startswith("stun:")]
        turn = [url for url in self.urls if not url.startswith("stun:")]
        servers = [{"urls": stun}] if stun else []
        if turn:
            username, credential = self.credentials()
            servers.append({"urls": turn, "username": username, "credential": credential})
        return servers

    async def session(self) -> tuple[list[dict], str]:
        """The servers for one session and the ICE transport policy."""
        return self.for_session(), self.policy

    @staticmethod
    def configuration(servers: list[dict]):
        """The same servers for this side's aiortc peer."""
        from aiortc import RTCConfiguration, RTCIceServer  # the hub mints with this module, without aiortc

        return RTCConfiguration(iceServers=[RTCIceServer(**server) for server in servers])


@dataclass(frozen=True)
class HubIceServers:
    """The servers the hub gives this desktop's user for each session (``POST
    <api_url>/hepsdesk/ice-servers`` with the server's own token): the TURN secret stays in
    the hub. A hub without the endpoint, or that cannot answer, gives none (the browser then
    reaches the VM directly, as without TURN), and the log says why."""

    api_url: str
    token: str = field(repr=False)

    async def session(self) -> tuple[list[dict], str]:
        try:
            response = await AsyncHTTPClient().fetch(
                self.api_url.rstrip("/") + "/hepsdesk/ice-servers", method="POST", body="{}", request_timeout=10,
                headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
            answer = json.loads(response.body)
            servers, policy = answer["iceServers"], answer["iceTransportPolicy"]
            if not isinstance(servers, list) or policy not in POLICIES:
                raise ValueError("not ICE servers")
        except (HTTPClientError, OSError, ValueError, KeyError, TypeError) as e:
            log.warning("no STUN/TURN servers from the hub (%s): the browser must reach the VM directly",
                        getattr(e, "code", None) or type(e).__name__)
            return [], "all"
        return servers, policy
