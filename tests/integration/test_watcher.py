"""The spawner's shared server watcher against the dev cloud's real Nova."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from hepsdesk_spawner.cloud import OpenStackClient
from hepsdesk_spawner.watcher import ServerWatcher, WatcherUnavailable

from ..conftest import SESSION
from ..faults import Fault, FaultProxy, clouds_yaml_through
from .test_devcloud_servers import guest_record

pytestmark = pytest.mark.devcloud


async def wait_for(predicate, timeout: float, step: float = 0.1) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(step)
    return time.monotonic() - started


async def test_one_list_per_interval_serves_every_server_and_sees_a_crash(devcloud, servers, conn, tmp_path):
    tag = f"hepsdesk-watch-{SESSION}"
    tagged = [servers.create("#!/bin/sh\nsleep 600 &\n", tags=[tag]) for _ in range(3)]
    untagged = servers.create(flavor="t1.empty")
    # Through a pass-through proxy, which counts exactly this watcher's requests.
    async with FaultProxy(conn.endpoint_for("compute"), 18773) as proxy:
        client = OpenStackClient("devcloud", clouds_yaml_through(devcloud, tmp_path, compute=proxy.url))
        watcher = ServerWatcher(client, tag, interval=0.5)
        try:
            # The first poll waits for the first complete list.
            views = [await watcher.get(s.id, wait=30) for s in tagged]
            assert [v.status for v in views] == ["ACTIVE"] * 3
            assert await watcher.get(untagged.id) is None, "only this hub's servers are listed"

            # Many polls over 3 s: the cloud sees one list per interval, not a request per poll.
            before = len(proxy.requests)
            started = time.monotonic()
            while time.monotonic() - started < 3:
                for s in tagged:
                    assert (await watcher.get(s.id)).status == "ACTIVE"
                await asyncio.sleep(0.05)
            made = proxy.requests[before:]
            assert all("/servers/detail?" in path for _, path in made), made
            assert 3 <= len(made) <= (time.monotonic() - started) / 0.5 + 2, made
            # After the first, full list: only what changed (Nova's changes-since).
            assert all("changes-since=" in path for _, path in made), made

            # A guest that crashes shows as SHUTOFF in the view within Nova's sync plus one interval.
            os.kill(guest_record(devcloud, tagged[0])["monitor_pid"], signal.SIGKILL)

            def crashed():
                view = watcher.servers.get(tagged[0].id)
                return view is not None and view.status == "SHUTOFF"

            await wait_for(crashed, timeout=30)
            assert (await watcher.get(tagged[1].id)).status == "ACTIVE"

            # A server deleted behind the hub's back leaves the view (deleted servers lose their
            # tags, so the incremental lists cannot filter by tag), and an untagged server that
            # changes does not enter it.
            conn.compute.delete_server(tagged[2])
            conn.compute.stop_server(untagged)
            await wait_for(lambda: tagged[2].id not in watcher.servers, timeout=30)
            await asyncio.sleep(2)
            assert untagged.id not in watcher.servers
            assert (await watcher.get(tagged[1].id)).status == "ACTIVE"
        finally:
            await watcher.stop()


async def test_a_full_list_every_resync_interval(devcloud, servers, conn, tmp_path):
    tag = f"hepsdesk-resync-{SESSION}"
    server = servers.create(flavor="t1.empty", tags=[tag])
    async with FaultProxy(conn.endpoint_for("compute"), 18773) as proxy:
        client = OpenStackClient("devcloud", clouds_yaml_through(devcloud, tmp_path, compute=proxy.url))
        watcher = ServerWatcher(client, tag, interval=0.2, min_gap=0.1, resync_interval=1.0)
        try:
            assert (await watcher.get(server.id, wait=30)).status == "ACTIVE"
            await asyncio.sleep(3.5)
            full = [path for _, path in proxy.requests if f"tags={tag}" in path]
            incremental = [path for _, path in proxy.requests if "changes-since=" in path]
            assert 3 <= len(full) <= 5 and len(incremental) >= 5, (full, incremental)
            assert (await watcher.get(server.id)).status == "ACTIVE"
        finally:
            await watcher.stop()


def lists(proxy: FaultProxy) -> int:
    return sum(1 for _, path in proxy.requests if "/servers/detail" in path)


async def test_a_nova_outage_keeps_the_last_view_and_backs_off(devcloud, servers, tmp_path):
    tag = f"hepsdesk-outage-{SESSION}"
    server = servers.create(flavor="t1.empty", tags=[tag])
    nova = devcloud.connect().endpoint_for("compute")
    async with FaultProxy(nova, 18774) as proxy:
        client = OpenStackClient("devcloud", clouds_yaml_through(devcloud, tmp_path, compute=proxy.url))
        watcher = ServerWatcher(client, tag, interval=0.2, max_backoff=5)
        try:
            assert (await watcher.get(server.id, wait=30)).status == "ACTIVE"
            proxy.inject(Fault("GET", r"/servers/detail", 503))
            await wait_for(lambda: watcher.failures >= 1, timeout=10)
            failing_since, lists_before = time.monotonic(), lists(proxy)
            await asyncio.sleep(4)
            attempts = lists(proxy) - lists_before
            # Without backoff: about 4 / 0.2 = 20 attempts; doubling from 0.4 s: at most 4.
            assert 1 <= attempts <= 5, attempts
            assert (await watcher.get(server.id)).status == "ACTIVE", "the last good view is kept"
            proxy.clear()
            await wait_for(lambda: watcher.failures == 0, timeout=15)
            assert time.monotonic() - failing_since < 15
        finally:
            await watcher.stop()


async def test_polls_do_not_wait_forever_for_a_cloud_that_never_answers(devcloud, tmp_path):
    async with FaultProxy(devcloud.connect().endpoint_for("compute"), 18775) as proxy:
        proxy.inject(Fault("GET", r"/servers/detail", 503))
        client = OpenStackClient("devcloud", clouds_yaml_through(devcloud, tmp_path, compute=proxy.url))
        watcher = ServerWatcher(client, f"hepsdesk-never-{SESSION}", interval=0.2)
        try:
            with pytest.raises(WatcherUnavailable, match="failed attempts"):
                await watcher.get("any-server", wait=2)
        finally:
            await watcher.stop()


async def test_fifty_starts_asking_for_fresh_news_share_one_list(devcloud, servers):
    tag = f"hepsdesk-fresh-{SESSION}"
    server = servers.create(flavor="t1.empty", tags=[tag])
    client = OpenStackClient("devcloud", str(devcloud.settings.clouds_yaml))
    watcher = ServerWatcher(client, tag, interval=60, min_gap=0.5)
    try:
        assert (await watcher.get(server.id, wait=30)).status == "ACTIVE"
        before, asked = watcher.list_calls, time.monotonic()
        views = await asyncio.wait_for(asyncio.gather(*(watcher.fresh(server.id, asked) for _ in range(50))), 10)
        assert [v.status for v in views] == ["ACTIVE"] * 50
        assert watcher.list_calls - before == 1, "one early list answered all fifty (the interval is 60 s)"
        assert watcher.listed_at >= asked
    finally:
        await watcher.stop()
