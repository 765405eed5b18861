"""The desktop's input, reported as the server's activity: at once after a quiet spell, then
at most once per interval, whatever the number of keys; an unreachable hub costs no input.
(The real hub takes the report in tests/e2e/test_desktop_e2e.py.)"""

from __future__ import annotations

import asyncio
import json

from tornado import httpserver, netutil, web

from desktop_proxy.activity import ActivityReporter


class Activity(web.RequestHandler):
    def initialize(self, seen: list):
        self.seen = seen

    def post(self, user: str):
        self.seen.append((user, self.request.headers["Authorization"], json.loads(self.request.body)))
        self.set_status(204)


async def test_a_burst_of_input_is_one_report_and_the_next_comes_after_the_interval():
    seen: list = []
    [sock] = netutil.bind_sockets(0, "127.0.0.1")
    server = httpserver.HTTPServer(web.Application([(r"/hub/api/users/([^/]+)/activity", Activity, {"seen": seen})]))
    server.add_sockets([sock])
    api = f"http://127.0.0.1:{sock.getsockname()[1]}/hub/api"
    try:
        reporter = ActivityReporter(api, "secret-token", "alice", "ops", interval=0.5)
        for _ in range(200):
            reporter.touch()
        await asyncio.sleep(0.3)
        assert len(seen) == 1 and reporter.reported == 1
        user, auth, body = seen[0]
        assert (user, auth) == ("alice", "token secret-token")
        assert body["servers"]["ops"]["last_activity"] == body["last_activity"]
        assert body["last_activity"].endswith("Z")
        await asyncio.sleep(0.3)
        reporter.touch()
        await asyncio.sleep(0.3)
        assert len(seen) == 2, "input after the interval is reported again"
    finally:
        server.stop()


async def test_an_unreachable_hub_is_logged_not_raised(caplog):
    reporter = ActivityReporter("http://127.0.0.1:9/hub/api", "the-token-9f3a", "alice", interval=0)
    reporter.touch()
    await asyncio.sleep(0.5)
    assert reporter.failed == 1 and reporter.reported == 0
    assert "could not tell the hub" in caplog.text and "the-token-9f3a" not in caplog.text
