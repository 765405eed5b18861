"""When the hub will stop this server for being idle, so JupyterLab and the desktop can warn
their user (a Jupyter server extension, in the VM's single-user server).

The spawner sets ``HEPSDESK_IDLE_TIMEOUT`` for a profile with an ``idle_timeout``. Then:

- Only a person's use counts as the server's activity: JupyterLab polls kernels, sessions and
  terminals and saves its layout (``lab/api/workspaces``) every few seconds, and an open tab
  nobody touches would keep the VM (and its GPU) forever. So read-only requests (GET, HEAD)
  and layout saves no longer count; changes do (saving a notebook, starting or running a
  kernel), and so do kernels' and terminals' own activity, and the desktop's input
  (``activity.py``).
- Every ``interval`` seconds it asks the hub when it will stop the server if nobody uses it
  (``GET <JUPYTERHUB_API_URL>/hepsdesk/idle-deadline``, with the server's token).
- ``GET <base_url>hepsdesk/idle`` tells the page: ``{"idle_deadline": seconds since the epoch
  or null, "warn_before": seconds, "now": the server's clock}``; asking does not count as use.
  JupyterLab (the lab extension) and the desktop page (``static/idle.js``) warn from it.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.parse

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.ioloop import IOLoop, PeriodicCallback

log = logging.getLogger("desktop_proxy")
IDLE_TIMEOUT = "HEPSDESK_IDLE_TIMEOUT"  # set by the spawner (hepsdesk_spawner/spawner.py)


class IdleWatch:
    """The hub's idle deadline for this server, asked every ``interval`` seconds."""

    def __init__(self, api_url: str, token: str, server_name: str, idle_timeout: int):
        self.url = f"{api_url.rstrip('/')}/hepsdesk/idle-deadline?server={urllib.parse.quote(server_name, safe='')}"
        self._token = token
        self.idle_timeout = idle_timeout
        self.interval = max(5.0, min(60.0, idle_timeout / 6))
        self.deadline: float | None = None
        self.warn_before = min(600, idle_timeout // 4)
        self.failed = 0
        self._timer: PeriodicCallback | None = None

    def start(self) -> None:
        self._timer = PeriodicCallback(self.refresh, self.interval * 1000)
        self._timer.start()
        IOLoop.current().add_callback(self.refresh)  # the first answer at once, not after an interval

    async def refresh(self) -> None:
        try:
            response = await AsyncHTTPClient().fetch(self.url, request_timeout=10,
                                                     headers={"Authorization": f"token {self._token}"})
            answer = json.loads(response.body)
        except (HTTPClientError, OSError, ValueError) as e:
            self.failed += 1
            log.warning("could not ask the hub when this server stops if idle (%s)", getattr(e, "code", None) or e)
            return
        deadline, warn = answer.get("idle_deadline"), answer.get("warn_before")
        self.deadline = float(deadline) if isinstance(deadline, (int, float)) else None
        if isinstance(warn, int) and warn >= 0:
            self.warn_before = warn

    def as_dict(self) -> dict:
        return {"idle_deadline": self.deadline, "warn_before": self.warn_before, "now": time.time()}


class IdleHandler(APIHandler):
    _track_activity = False  # looking at the deadline is not using the server

    def initialize(self, watch: IdleWatch | None):
        self.watch = watch

    def check_xsrf_cookie(self):
        """A GET that changes nothing: the desktop page (which JupyterLab's XSRF cookie may not
        reach) reads it with the session's cookie alone; other origins cannot read it."""

    @web.authenticated
    def get(self):
        self.set_header("Cache-Control", "no-store")
        if self.watch is None:
            self.finish({"idle_deadline": None, "warn_before": 0, "now": time.time()})
        else:
            self.finish(self.watch.as_dict())


def count_only_changes() -> None:
    """Read-only API requests stop counting as the server's activity (see the module's text)."""
    if getattr(APIHandler.update_api_activity, "hepsdesk", False):
        return
    counted = APIHandler.update_api_activity

    def update_api_activity(self) -> None:
        if self.request.method not in ("GET", "HEAD", "OPTIONS") and "/lab/api/workspaces" not in self.request.path:
            counted(self)

    update_api_activity.hepsdesk = True
    APIHandler.update_api_activity = update_api_activity


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "desktop_proxy.idle_watch"}]


def _load_jupyter_server_extension(serverapp) -> None:
    watch = None
    try:
        timeout = int(os.environ.get(IDLE_TIMEOUT) or 0)
    except ValueError:
        timeout = 0
    api_url, token = os.environ.get("JUPYTERHUB_API_URL", ""), os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if timeout > 0 and api_url and token:
        count_only_changes()
        watch = IdleWatch(api_url, token, os.environ.get("JUPYTERHUB_SERVER_NAME", ""), timeout)
        watch.start()
        serverapp.log.info("hepsdesk: this server stops after %d s without use; its user is warned %d s before",
                           timeout, watch.warn_before)
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [(url_path_join(base, "hepsdesk", "idle"), IdleHandler, {"watch": watch})])
