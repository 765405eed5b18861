"""Idle servers: a profile's ``idle_timeout`` stops a server nobody used for that long.

This is the hub's one culler (``OpenStackSpawner.poll``: per profile, stop mode delete or
shelve); jupyterhub-idle-culler, with its one global timeout, is not needed beside it. Idle
time counts from the last activity the hub saw or from the moment the server became ready in
this hub process, whichever is later: a server that just started is not idle because its last
activity is old. Only a person's use counts: the desktop reports input, not its video
(``desktop_proxy/activity.py``), and in the VM, JupyterLab's polling does not count, its
changes, kernels and terminals do (``desktop_proxy/idle_watch.py``).

Before the stop, the user is warned, in JupyterLab and on the desktop: the VM asks
``GET /hub/api/hepsdesk/idle-deadline?server=<name>`` (its server's token) when the hub will
stop it, and warns ``warn_before`` seconds ahead.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import has_scope
from tornado import web


def idle_seconds(last_activity: datetime | None, ready_at: float, now: float | None = None) -> float:
    """Seconds without activity (``ready_at`` and ``now``: ``time.time()``; JupyterHub keeps
    ``last_activity`` as naive UTC)."""
    since = last_activity.replace(tzinfo=last_activity.tzinfo or UTC).timestamp() if last_activity else 0.0
    return (time.time() if now is None else now) - max(since, ready_at)


ACTIVITY_INTERVAL = "HEPSDESK_DESKTOP_ACTIVITY_INTERVAL"  # read by desktop_proxy/server.py
IDLE_TIMEOUT = "HEPSDESK_IDLE_TIMEOUT"  # read by desktop_proxy/idle_watch.py


def activity_interval(idle_timeout: int) -> int:
    """How often (seconds) the desktop reports a person's input to the hub, for a profile that
    stops servers idle for ``idle_timeout`` seconds: a sixth of it, between 5 s and a minute."""
    return max(5, min(60, idle_timeout // 6))


def warn_before(idle_timeout: int) -> int:
    """How long before an idle stop the user is warned: a quarter of the timeout, at most 10 minutes."""
    return min(600, idle_timeout // 4)


def idle_deadline(spawner, now: float | None = None) -> float | None:
    """When the hub will stop ``spawner``'s server if nobody uses it (``time.time()``), or None."""
    vm = getattr(spawner, "vm", None)
    timeout = getattr(vm, "idle_timeout", 0)
    if not timeout:
        return None
    last = spawner.orm_spawner.last_activity if spawner.orm_spawner is not None else None
    now = time.time() if now is None else now
    return now + max(0.0, timeout - idle_seconds(last, getattr(spawner, "_ready_at", 0.0), now))


def own_server(handler: APIHandler, server_name: str):
    """The spawner of the request's token's own running server ``server_name`` (a server's token
    may report its user's activity); an HTTPError for anyone else, a cookie, or no such server."""
    user = handler.current_user
    if user is None or getattr(user, "kind", "") != "user" or handler.get_auth_token() is None \
            or not has_scope(f"users:activity!user={user.name}", handler.parsed_scopes, db=handler.db):
        raise web.HTTPError(403, "Only a user's own server, with its token, may ask this.")
    if not isinstance(server_name, str) or server_name not in user.orm_spawners:
        raise web.HTTPError(404, "No such server.")
    spawner = user.spawners[server_name]
    if not spawner.active:
        raise web.HTTPError(409, "This server is not running.")
    return spawner


class IdleDeadlineHandler(APIHandler):
    """``GET /hub/api/hepsdesk/idle-deadline?server=<name>``: when the hub stops this server if
    nobody uses it, for the VM to warn its user."""

    async def get(self):
        spawner = own_server(self, self.get_argument("server", ""))
        timeout = getattr(getattr(spawner, "vm", None), "idle_timeout", 0)
        self.set_header("Cache-Control", "no-store")
        self.finish({"idle_deadline": idle_deadline(spawner), "idle_timeout": timeout,
                     "warn_before": warn_before(timeout)})


handlers = [(r"/api/hepsdesk/idle-deadline", IdleDeadlineHandler)]
