"""The spawner's shared server watcher against the dev cloud's real Nova."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.parse

import pytest
import yaml

from hepsdesk_spawner.cloud import OpenStackClient
from hepsdesk_spawner.watcher import ServerWatcher, WatcherUnavailable

from ..conftest import SESSION
from .test_devcloud_servers import guest_record

pytestmark = pytest.mark.devcloud


def nova_list_requests(devcloud, tag: str) -> int:
    """How many server lists filtered by ``tag`` nova-api has answered (its own request log)."""
    log = devcloud.settings.logs_dir / "nova-api.log"
    return sum(1 for line in log.read_text(errors="replace").splitlines()
               if "requestlog" in line and "/servers/detail?" in line and f"tags={tag}" in line)


async def wait_for(predicate, timeout: float, step: float = 0.1) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(step)
    return time.monotonic() - started


async def test_one_list_per_interval_serves_every_server_and_sees_a_crash(devcloud, servers):
    tag = f"hepsdesk-watch-{SESSION}"
    tagged = [servers.create("#!/bin/sh\nsleep 600 &\n", tags=[tag]) for _ in range(3)]
    untagged = servers.create(flavor="t1.empty")
    client = OpenStackClient("devcloud", str(devcloud.settings.clouds_yaml))
    watcher = ServerWatcher(client, tag, interval=0.5)
    before = nova_list_requests(devcloud, tag)
    try:
        # The first poll waits for the first complete list.
        views = [await watcher.get(s.id, wait=30) for s in tagged]
        assert [v.status for v in views] == ["ACTIVE"] * 3
        assert await watcher.get(untagged.id) is None, "only this hub's servers are listed"

        # Many polls over 3 s: the cloud sees one list per interval, not a request per poll.
        started = time.monotonic()
        while time.monotonic() - started < 3:
            for s in tagged:
                assert (await watcher.get(s.id)).status == "ACTIVE"
            await asyncio.sleep(0.05)
        made = nova_list_requests(devcloud, tag) - before
        assert made == watcher.list_calls
        assert 3 <= made <= (time.monotonic() - started) / 0.5 + 3, made

        # A guest that crashes shows as SHUTOFF in the view within Nova's sync plus one interval.
        os.kill(guest_record(devcloud, tagged[0])["monitor_pid"], signal.SIGKILL)

        def crashed():
            view = watcher.servers.get(tagged[0].id)
            return view is not None and view.status == "SHUTOFF"

        await wait_for(crashed, timeout=30)
        assert (await watcher.get(tagged[1].id)).status == "ACTIVE"
    finally:
        await watcher.stop()


class FaultyNova:
    """A pass-through HTTP proxy in front of nova-api that answers 503 to server lists on demand:
    the fault the real Nova cannot produce when asked (injected at the network boundary)."""

    def __init__(self, upstream: str, port: int):
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = f"{parts.scheme}://{parts.netloc}"  # paths pass through unchanged
        self.port = port
        self.failing = False
        self.lists = 0

    async def handle(self, request):
        from aiohttp import web

        if "/servers/detail" in request.path:
            self.lists += 1
            if self.failing:
                return web.json_response({"message": "injected outage"}, status=503)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        body = await request.read()
        async with self.session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                        data=body or None) as answer:
            body = await answer.read()
            keep = {k: v for k, v in answer.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection")}
            return web.Response(status=answer.status, body=body, headers=keep)

    async def __aenter__(self):
        import aiohttp
        from aiohttp import web

        self.session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()
        await self.session.close()


def clouds_yaml_through(devcloud, tmp_path, compute_url: str) -> str:
    config = yaml.safe_load(devcloud.settings.clouds_yaml.read_text())
    cloud = config["clouds"]["devcloud"]
    cloud["compute_endpoint_override"] = compute_url
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": {"devcloud": cloud}}))
    return str(path)


async def test_a_nova_outage_keeps_the_last_view_and_backs_off(devcloud, servers, tmp_path):
    tag = f"hepsdesk-outage-{SESSION}"
    server = servers.create(flavor="t1.empty", tags=[tag])
    nova = devcloud.connect().endpoint_for("compute")
    async with FaultyNova(nova, 18774) as proxy:
        client = OpenStackClient("devcloud", clouds_yaml_through(devcloud, tmp_path, "http://127.0.0.1:18774/v2.1"))
        watcher = ServerWatcher(client, tag, interval=0.2, max_backoff=5)
        try:
            assert (await watcher.get(server.id, wait=30)).status == "ACTIVE"
            proxy.failing = True
            await wait_for(lambda: watcher.failures >= 1, timeout=10)
            failing_since, lists_before = time.monotonic(), proxy.lists
            await asyncio.sleep(4)
            attempts = proxy.lists - lists_before
            # Without backoff: about 4 / 0.2 = 20 attempts; doubling from 0.4 s: at most 4.
            assert 1 <= attempts <= 5, attempts
            assert (await watcher.get(server.id)).status == "ACTIVE", "the last good view is kept"
            proxy.failing = False
            await wait_for(lambda: watcher.failures == 0, timeout=15)
            assert time.monotonic() - failing_since < 15
        finally:
            await watcher.stop()


async def test_polls_do_not_wait_forever_for_a_cloud_that_never_answers(devcloud, tmp_path):
    async with FaultyNova(devcloud.connect().endpoint_for("compute"), 18775) as proxy:
        proxy.failing = True
        client = OpenStackClient("devcloud", clouds_yaml_through(devcloud, tmp_path, "http://127.0.0.1:18775/v2.1"))
        watcher = ServerWatcher(client, f"hepsdesk-never-{SESSION}", interval=0.2)
        try:
            with pytest.raises(WatcherUnavailable, match="failed attempts"):
                await watcher.get("any-server", wait=2)
        finally:
            await watcher.stop()
