"""The desktop's state, reported to the hub: who watches it and how the stream does.

Under a hub (in a VM), the desktop server posts, every ``interval`` seconds while someone is
connected, and at once when the first viewer comes or the last one goes, to
``POST <api_url>/hepsdesk/desktop-report`` with the server's own token (as the activity
reports do)::

    {"server": "", "viewers": 1, "guests": 0, "fps": 59.8, "bitrate_bps": 5600000, "rtt_ms": 1.2}

The hub keeps the newest report of each server for the admins' dashboard and folds them into
its metrics without naming anyone (``hepsdesk_spawner/desktop_reports.py``). A hub that cannot
be reached costs a line in the log, never a picture.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

log = logging.getLogger("desktop_proxy")

REPORT_PATH = "/hepsdesk/desktop-report"  # below JUPYTERHUB_API_URL


class HubReporter:
    def __init__(self, api_url: str, token: str, server_name: str, sessions, interval: float = 30.0):
        self.url = f"{api_url.rstrip('/')}{REPORT_PATH}"
        self._token = token
        self.server_name = server_name
        self.sessions = sessions  # DesktopSessions: ``report()``
        self.interval = interval
        self.reported = 0
        self.failed = 0
        self._watched = False  # someone was connected at the last report
        self._last: tuple[float, int] | None = None  # (monotonic, pictures encoded) at the last report
        self._nudge = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def nudge(self) -> None:
        """Someone connected or left: report soon, not at the end of the interval."""
        self._nudge.set()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._nudge.wait(), self.interval)
                await asyncio.sleep(1.0)  # a page reconnecting: one report, not two
            except TimeoutError:
                pass
            self._nudge.clear()
            try:
                await self.report()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the reports end the desktop
                log.exception("reporting the desktop's state to the hub failed")

    async def report(self) -> None:
        state = await self.sessions.report()
        watched = bool(state["viewers"] or state["guests"])
        if not watched and not self._watched:
            return  # nobody came since the last report said so
        now = time.monotonic()
        fps = 0.0
        if self._last is not None and now > self._last[0] and state["encoded"] >= self._last[1]:
            fps = (state["encoded"] - self._last[1]) / (now - self._last[0])
        # The rate is counted from this report on while someone watches (a stream that stopped
        # starts its count again).
        self._last = (now, state["encoded"]) if watched else None
        body = {"server": self.server_name, "viewers": state["viewers"], "guests": state["guests"],
                "fps": round(fps, 1) if watched else 0.0, "bitrate_bps": state["sending_bps"] if watched else 0,
                "rtt_ms": state["rtt_ms"]}
        try:
            await AsyncHTTPClient().fetch(
                self.url, method="POST", body=json.dumps(body), request_timeout=10,
                headers={"Authorization": f"token {self._token}", "Content-Type": "application/json"})
        except (HTTPClientError, OSError) as e:
            self.failed += 1
            log.warning("could not report the desktop's state to the hub (%s)", getattr(e, "code", None) or e)
            return
        self.reported += 1
        self._watched = watched

    def stats(self) -> dict:
        return {"reported": self.reported, "failed": self.failed}
