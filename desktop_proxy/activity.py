"""A person's use of the desktop, reported to the hub as the server's activity.

Only a person's use counts (a key, a click, a move, text; a paste, a file going up or down):
an open desktop tab that nobody touches streams video and keeps its websocket busy, and must
still be seen as idle, so the proxy does not count its traffic (``setup_desktop``:
``update_last_activity`` off). The first use after a quiet ``interval`` is reported at once,
later ones at most once per ``interval`` (the spawner sets it from the profile's idle timeout:
``HEPSDESK_DESKTOP_ACTIVITY_INTERVAL``): ``POST <api_url>/users/<user>/activity`` with the
server's own token, as jupyterhub-singleuser reports JupyterLab's activity. A hub that cannot
be reached costs a line in the log, never input.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from datetime import UTC, datetime

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

log = logging.getLogger("desktop_proxy")


class ActivityReporter:
    def __init__(self, api_url: str, token: str, user: str, server_name: str = "", interval: float = 60.0):
        self.url = f"{api_url.rstrip('/')}/users/{urllib.parse.quote(user, safe='')}/activity"
        self._token = token
        self.server_name = server_name
        self.interval = interval
        self.reported = 0  # reports the hub took
        self.failed = 0
        self._sent_at = -float("inf")  # time.monotonic() of the last report
        self._task: asyncio.Task | None = None

    def touch(self) -> None:
        """A person used the desktop (called on the event loop for each input message)."""
        now = time.monotonic()
        if now - self._sent_at < self.interval or (self._task is not None and not self._task.done()):
            return
        self._sent_at = now
        self._task = asyncio.ensure_future(self._report(datetime.now(UTC)))

    async def _report(self, at: datetime) -> None:
        stamp = at.isoformat().replace("+00:00", "Z")
        body = {"last_activity": stamp, "servers": {self.server_name: {"last_activity": stamp}}}
        try:
            await AsyncHTTPClient().fetch(self.url, method="POST", body=json.dumps(body), request_timeout=10,
                                          headers={"Authorization": f"token {self._token}",
                                                   "Content-Type": "application/json"})
            self.reported += 1
        except (HTTPClientError, OSError) as e:
            self.failed += 1
            log.warning("could not tell the hub the desktop is in use (%s)", getattr(e, "code", None) or e)

    def stats(self) -> dict:
        return {"reported": self.reported, "failed": self.failed}
