"""How a VM gets its server's environment (its API token among it) from the hub, at every boot.

At the first boot the VM holds only a one-time boot key from its user-data (which a cloud's
metadata service serves to any process in the guest for the VM's life: nothing reusable may be
there); the hub answers once, while that start is under way, and from then on the key is the
token the VM got. The same exchange serves a resumed VM:

A profile with ``stop_mode: shelve`` keeps the user's VM as a Nova shelved server when it
stops, and the next start unshelves it instead of creating one. JupyterHub gives every start
a new API token (and revokes the old one at stop), but the VM's env file still holds the old
one and cloud-init does not run the user-data again. So at every boot after the first, the
VM's start script asks the hub, at ``POST {JUPYTERHUB_API_URL}/hepsdesk/resume-env``, for its
server's current environment, presenting the token it still has:

* the spawner keeps only a SHA-256 of the key or token its VM holds (``resume_key``), so the
  hub's database holds nothing usable;
* the hub answers only for that user's server, only while a start of it is under way, and
  only to the holder of that key or token; the answer replaces the key, so each opens one
  start;
* no start under way (the VM was rebooted while it runs): 409, and the VM keeps its env.

Register the handler with the hub (every VM needs it)::

    from hepsdesk_spawner.resume import handlers as resume_handlers
    c.JupyterHub.extra_handlers = [*resume_handlers]
"""

from __future__ import annotations

import hashlib
import hmac
import json

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from . import guest_start
from .state import ServerState

# Below the hub's API URL (JUPYTERHUB_API_URL, e.g. http://hub:8081/hub/api), as the VM's program asks.
RESUME_ENV_PATH, AUTH_SCHEME = guest_start.RESUME_ENV_PATH, guest_start.RESUME_SCHEME


def resume_key(token: str) -> str:
    """What the hub keeps of the token a VM holds (a token has 256 random bits: no salt needed)."""
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


class ResumeEnvHandler(APIHandler):
    """Gives a booting (new or resumed) VM its server's environment, as ``{"env": {name: value}}``."""

    def check_xsrf_cookie(self):
        """Authenticated by the VM's token, never by a cookie: nothing for a browser to forge."""

    async def post(self):
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        try:
            body = json.loads(self.request.body or b"{}")
            user_name, server_name = str(body["user"]), str(body.get("server", ""))
        except (ValueError, KeyError, TypeError):
            raise web.HTTPError(400, 'Send {"user": ..., "server": ...} as JSON.') from None
        user = self.find_user(user_name)
        # orm_spawners, not spawners: looking up a missing name in spawners would create it.
        spawner = user.spawners[server_name] if user is not None and server_name in user.orm_spawners else None
        key = spawner.vm.resume_key if isinstance(getattr(spawner, "vm", None), ServerState) else ""
        # The same answer for an unknown server and a wrong token: no oracle for either.
        if scheme.lower() != AUTH_SCHEME or not token or not key or not hmac.compare_digest(key, resume_key(token)):
            # repr: the names come from the request (no forged log lines).
            self.log.warning("Refused a resume-env request for %r/%r from %s", user_name[:100], server_name[:100],
                             self.request.remote_ip)
            raise web.HTTPError(403, "Unknown server, or not its VM's key.")
        env = spawner.take_resume_env() if spawner.pending == "spawn" else None
        if env is None:
            raise web.HTTPError(409, "This server is not being started: keep the environment you have.")
        # Saved before the VM has it: after a hub crash the saved key is still the VM's.
        spawner.orm_spawner.state = spawner.get_state()
        self.db.commit()
        self.log.info("Gave the %s VM of %s its environment", "resumed" if spawner.vm.shelved else "new",
                      spawner._log_name)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"env": env}))  # data: the VM quotes it itself (guest_start.py)


handlers = [(r"/api" + RESUME_ENV_PATH, ResumeEnvHandler)]
