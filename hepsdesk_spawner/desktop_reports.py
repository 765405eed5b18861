"""The desktops' reports: who watches each desktop and how its stream does.

Each desktop server in a VM posts its state (``desktop_proxy/hub_report.py``) to
``POST /hub/api/hepsdesk/desktop-report`` with its server's token, every half minute while
someone is connected and at once when the first viewer comes or the last goes. The hub keeps
the newest report of each server in its memory (``DesktopReports``): the admins' dashboard
shows whether a desktop is connected, and the hub's metrics count the sessions and the
distribution of their frame rates, round trips and bitrates without naming anyone. A report
older than ``STALE_AFTER`` seconds says nothing any more (the VM stopped reporting).

Register the handler with the hub::

    from hepsdesk_spawner.desktop_reports import handlers as report_handlers
    c.JupyterHub.extra_handlers = [..., *report_handlers]
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from jupyterhub.apihandlers.base import APIHandler
from prometheus_client import REGISTRY, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from tornado import web

from .idle import own_server

STALE_AFTER = 120.0  # seconds: a desktop reports every 30 s while watched
MAX_PEOPLE = 1000

FPS = Histogram("hepsdesk_desktop_fps", "Frames per second the desktops sent, one observation per report",
                buckets=(1, 5, 10, 15, 20, 25, 30, 45, 55, 60, 90, 120))
RTT = Histogram("hepsdesk_desktop_rtt_seconds", "Round trip between a desktop and its owner's browser (RTCP)",
                buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1))
BITRATE = Histogram("hepsdesk_desktop_bitrate_bps", "Bits per second a desktop sent, one observation per report",
                    buckets=(2.5e5, 5e5, 1e6, 2e6, 4e6, 8e6, 16e6, 32e6, 64e6))


@dataclass(frozen=True)
class DesktopReport:
    viewers: int  # the owner's pages
    guests: int  # people it is shared with
    fps: float
    bitrate_bps: int
    rtt_ms: float | None
    at: float  # time.time() when the hub got it

    @property
    def connected(self) -> bool:
        return self.viewers > 0 or self.guests > 0

    @classmethod
    def parse(cls, body: dict, at: float) -> DesktopReport:
        """A report from a request's JSON (ValueError naming what is wrong)."""
        def number(key: str, top: float, whole: bool = False, optional: bool = False):
            value = body.get(key)
            if value is None and optional:
                return None
            kinds = int if whole else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) \
                    or not 0 <= value <= top:
                raise ValueError(f"{key} must be a number from 0 to {top:g}")
            return value
        return cls(viewers=number("viewers", MAX_PEOPLE, whole=True), guests=number("guests", MAX_PEOPLE, whole=True),
                   fps=float(number("fps", 1000)), bitrate_bps=int(number("bitrate_bps", 1e10)),
                   rtt_ms=number("rtt_ms", 60000, optional=True), at=at)


class DesktopReports(Collector):
    """The newest report of each server ("user/server"), in the hub's process; also the
    metrics that are read when scraped (sessions, viewers and guests now)."""

    def __init__(self) -> None:
        self.reports: dict[str, DesktopReport] = {}

    def put(self, key: str, report: DesktopReport) -> None:
        self.reports[key] = report
        if report.connected:
            FPS.observe(report.fps)
            BITRATE.observe(report.bitrate_bps)
            if report.rtt_ms is not None:
                RTT.observe(report.rtt_ms / 1000)

    def get(self, key: str, now: float | None = None) -> DesktopReport | None:
        """The server's report if it is fresh."""
        report = self.reports.get(key)
        now = time.time() if now is None else now
        if report is not None and now - report.at > STALE_AFTER:
            self.reports.pop(key, None)
            return None
        return report

    def forget(self, key: str) -> None:
        """The server stopped."""
        self.reports.pop(key, None)

    def collect(self):
        now = time.time()
        fresh = [r for r in self.reports.values() if now - r.at <= STALE_AFTER and r.connected]
        sessions = GaugeMetricFamily("hepsdesk_desktop_sessions", "Desktops someone is connected to now")
        sessions.add_metric([], len(fresh))
        yield sessions
        people = GaugeMetricFamily("hepsdesk_desktop_viewers", "People connected to desktops now (role: owner, "
                                   "guest)", labels=["role"])
        people.add_metric(["owner"], sum(r.viewers for r in fresh))
        people.add_metric(["guest"], sum(r.guests for r in fresh))
        yield people


REPORTS = DesktopReports()  # one per hub process
REGISTRY.register(REPORTS)


class DesktopReportHandler(APIHandler):
    """``POST /hub/api/hepsdesk/desktop-report``: a desktop's state, from its server's token."""

    def check_xsrf_cookie(self):
        """Only a token is taken (below), never a cookie: nothing for a browser to forge."""

    async def post(self):
        if self.current_user is None or self.get_auth_token() is None:
            raise web.HTTPError(403, "Only a user's own server, with its token, reports its desktop.")
        try:
            body = json.loads(self.request.body or b"{}")
            if not isinstance(body, dict):
                raise ValueError("send a JSON object")
            server = body.get("server", "")
            if not isinstance(server, str) or len(server) > 255:
                raise ValueError("server must be the server's name")
            report = DesktopReport.parse(body, time.time())
        except ValueError as e:
            raise web.HTTPError(400, f"Not a desktop report: {e}.") from None
        own_server(self, server)
        REPORTS.put(f"{self.current_user.name}/{server}", report)
        self.set_status(204)
        self.finish()


handlers = [(r"/api/hepsdesk/desktop-report", DesktopReportHandler)]
