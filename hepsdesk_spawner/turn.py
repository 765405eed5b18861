"""TURN credentials for the desktops, minted by the hub: the relay's secret never enters a VM.

The person in a VM is root-adjacent there, so a secret the desktop could read, they could read,
and mint credentials of any lifetime and any name for the facility's relay with it. So the hub
holds the TURN server's shared secret (coturn's ``static-auth-secret``) and the desktop asks, at
every connect and reconnect of a viewer, with its server's own token::

    POST {JUPYTERHUB_API_URL}/hepsdesk/ice-servers
    -> {"iceServers": [{"urls": [...stun]}, {"urls": [...turn], "username": "<expiry>:<user>",
                       "credential": "..."}], "iceTransportPolicy": "all" | "relay"}

The credentials are bound to the token's owner (the user name is part of them, and coturn logs
it) and live ``TurnRelay.ttl`` seconds: coturn checks the expiry only when a relay is allocated,
so short-lived ones need no renewal. Register the handler (``jupyterhub_config.py``)::

    from hepsdesk_spawner.turn import handlers as turn_handlers
    c.JupyterHub.extra_handlers = [..., *turn_handlers]
"""

from __future__ import annotations

import dataclasses

from jupyterhub.apihandlers.base import APIHandler
from tornado import web
from traitlets import Enum, Integer, List, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from desktop_proxy.ice_servers import POLICIES, IceConfigError, IceServers


class TurnRelay(LoggingConfigurable):
    """The STUN/TURN servers the hub gives the desktops, and the TURN secret it mints with."""

    urls = List(
        Unicode(),
        config=True,
        help="STUN/TURN URLs for browsers that cannot reach the VMs directly, e.g. "
        "['stun:turn.heps.ac.cn:3478', 'turn:turn.heps.ac.cn:3478?transport=udp', 'turns:turn.heps.ac.cn:5349']. "
        "Empty: the browser reaches the VM directly.",
    )
    secret_file = Unicode(
        "",
        config=True,
        help="A file, readable by the hub only, with the TURN server's shared secret (coturn's "
        "static-auth-secret); needed with a turn: URL. Never give it to the VMs.",
    )
    ttl = Integer(
        600,
        config=True,
        help="Seconds the credentials of one session stay good (coturn checks them when the relay is "
        "allocated; each connect and reconnect gets fresh ones).",
    )
    policy = Enum(
        list(POLICIES),
        default_value="all",
        config=True,
        help="'relay': browsers send media only through the TURN server (a firewall that lets media out "
        "only there); 'all': directly when they can.",
    )

    _servers: IceServers | None = None  # the settings, read once

    @validate("ttl")
    def _valid_ttl(self, proposal):
        if not 60 <= proposal.value <= 3600:
            raise TraitError(f"TurnRelay.ttl must be 60 to 3600 seconds, not {proposal.value}")
        return proposal.value

    def servers_for(self, user_name: str) -> IceServers:
        """The servers for one session of ``user_name`` (IceConfigError: the settings cannot work).
        The secret file is read at the first call, not at every session (on the hub's loop)."""
        if self._servers is None:
            self._servers = IceServers.from_settings(",".join(self.urls), self.secret_file, "", self.policy, self.ttl)
        return dataclasses.replace(self._servers, user=user_name.replace(":", "_"))


class IceServersHandler(APIHandler):
    """``POST /hub/api/hepsdesk/ice-servers``: a session's STUN/TURN servers, for the token's user."""

    def check_xsrf_cookie(self):
        """Called with the server's token, never with a cookie: nothing for a browser to forge."""

    async def post(self):
        user = self.current_user
        if user is None or getattr(user, "kind", "") != "user":
            raise web.HTTPError(403, "Only a user's own server (with its token) gets TURN credentials.")
        relay = self.settings.get("hepsdesk_turn_relay")
        if relay is None:
            relay = self.settings["hepsdesk_turn_relay"] = TurnRelay(config=self.settings.get("config"), log=self.log)
        try:
            servers = relay.servers_for(user.name)
        except IceConfigError as e:
            self.log.error("TurnRelay settings: %s", e)
            raise web.HTTPError(503, "The hub's TURN settings are wrong; its administrators have been told.") from None
        self.set_header("Cache-Control", "no-store")
        self.finish({"iceServers": servers.for_session(), "iceTransportPolicy": servers.policy})


handlers = [(r"/api/hepsdesk/ice-servers", IceServersHandler)]
