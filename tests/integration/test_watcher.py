"""The spawner's shared server watcher against the dev cloud's real Nova."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from hepsdesk_spawner.cloud import OpenStackClient
from hepsdesk_spawner.watcher import ServerWatcher

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
