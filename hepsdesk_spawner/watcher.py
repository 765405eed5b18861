"""One view of all of this hub's servers, shared by every spawner: one list call per interval.

The naive way, each spawner asking Nova about its own server every poll, costs the cloud one
request per user per interval: 1000 idle users, 1000 requests. Here one background task per
(cloud, hub tag) lists the hub's servers (``GET /servers/detail?tags=<hub tag>``, one page up
to Nova's page size) every ``interval`` seconds and keeps the result; ``poll()`` is a lookup
in it. Polls wait for the first complete list, so a hub that just started never declares a
server gone because it has not looked yet; when listing fails, the watcher backs off
(doubling up to ``max_backoff``) and keeps the last good view. A server missing from the view
is confirmed with one direct request before anyone calls it gone (it may have been created
after the list began). Like KubeSpawner's shared reflector, for Nova.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from .cloud import OpenStackClient

log = logging.getLogger("hepsdesk.watcher")


class WatcherUnavailable(RuntimeError):
    """The cloud has not answered a list yet (within the caller's patience)."""


@dataclass(frozen=True)
class ServerView:
    id: str
    name: str
    status: str
    task_state: str | None
    fault: str
    metadata: dict = field(default_factory=dict)

    @classmethod
    def of(cls, server) -> ServerView:
        return cls(id=server.id, name=server.name, status=server.status, task_state=server.task_state,
                   fault=(server.fault or {}).get("message", ""), metadata=dict(server.metadata or {}))


class ServerWatcher:
    _shared: dict[tuple, ServerWatcher] = {}

    def __init__(self, client: OpenStackClient, hub_tag: str, interval: float = 10.0, max_backoff: float = 120.0):
        self.client = client
        self.hub_tag = hub_tag
        self.interval = interval
        self.max_backoff = max_backoff
        self.servers: dict[str, ServerView] = {}
        self.list_calls = 0
        self.failures = 0
        self.listed_at = 0.0  # monotonic time at which the newest complete list was requested
        self._loaded: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    @classmethod
    def shared(cls, client: OpenStackClient, hub_tag: str, interval: float) -> ServerWatcher:
        """The watcher of this cloud and hub tag, started on first use (one per hub process)."""
        key = (client.cloud, client.clouds_yaml, hub_tag)
        watcher = cls._shared.get(key)
        if watcher is None or watcher.stopped:
            watcher = cls._shared[key] = cls(client, hub_tag, interval)
        watcher.interval = min(watcher.interval, interval)
        watcher.start()
        return watcher

    @property
    def stopped(self) -> bool:
        return self._task is not None and self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._loaded = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"hepsdesk-watch-{self.hub_tag}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def get(self, server_id: str, wait: float = 30.0) -> ServerView | None:
        """The server as last listed, None if it was not in the list.

        Raises WatcherUnavailable if no list has succeeded within ``wait`` seconds.
        """
        self.start()
        try:
            await asyncio.wait_for(self._loaded.wait(), wait)
        except TimeoutError:
            raise WatcherUnavailable(f"no list of the servers tagged {self.hub_tag} yet "
                                     f"({self.failures} failed attempts)") from None
        return self.servers.get(server_id)

    async def _run(self) -> None:
        while True:
            requested = time.monotonic()
            try:
                servers = await self.client.list_servers(tag=self.hub_tag)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any failure: keep the last view, back off, try again
                self.failures += 1
                delay = min(self.max_backoff, self.interval * 2 ** min(self.failures, 10))
                log.warning("Listing the servers tagged %s failed (%d in a row), next try in %.1f s: %s",
                            self.hub_tag, self.failures, delay, e)
            else:
                self.list_calls += 1
                self.failures = 0
                self.servers = {s.id: ServerView.of(s) for s in servers}
                self.listed_at = requested
                self._loaded.set()
                delay = self.interval
            await asyncio.sleep(delay)
