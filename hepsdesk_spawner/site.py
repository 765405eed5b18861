"""``CloudSite``: what every spawner of one hub shares for one cloud and hub tag.

A hub serves thousands of users from one process; what they have in common lives here,
once: the openstacksdk client and its thread pool (openstacksdk is synchronous: its calls run
there, never on the event loop), the watcher whose one list answers every poll, the reader of
free GPUs, the warm pool of booted VMs, the managed security group, made sure of once per set of
rules, and the book of what each group's servers hold against its quota. KubeSpawner
keeps its reflectors the same way. Spawners get their site from ``CloudSite.of(spawner)``,
the one registry: one site per (cloud, clouds.yaml, hub tag) and event loop.
"""

from __future__ import annotations

import asyncio
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from . import metrics
from .capacity import CapacityReader
from .cloud import OpenStackClient
from .pool import WarmPool
from .quotas import QuotaBook, parse_quotas
from .watcher import ServerWatcher

if TYPE_CHECKING:
    from .settings import SpawnerSettings



CAPACITY_REFRESH = 60.0  # seconds between readings of GPU capacity for the metrics


class CloudSite:
    """The hub-wide view of one cloud for one hub tag."""

    _sites: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, CloudSite]] = \
        weakref.WeakKeyDictionary()

    def __init__(self, cloud: str, clouds_yaml: str, hub_tag: str, request_timeout: float = 30.0,
                 capacity_cloud: str = "", capacity_ttl: float = 10.0, watch_interval: float = 5.0,
                 min_gap: float = 1.0, threads: int = 4, group_quotas: dict | None = None):
        self.hub_tag = hub_tag
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"hepsdesk-{hub_tag}"[:40])
        self.client = OpenStackClient(cloud, clouds_yaml, request_timeout, executor=self.executor)
        capacity_client = self.client if capacity_cloud in ("", cloud) else \
            OpenStackClient(capacity_cloud, clouds_yaml, request_timeout, executor=self.executor)
        self.capacity = CapacityReader(capacity_client, capacity_ttl)
        self.watcher = ServerWatcher(self.client, hub_tag, watch_interval, min_gap=min_gap)
        self._security_groups: dict[tuple, asyncio.Future] = {}
        self.group_quotas = parse_quotas(group_quotas or {})
        self.quotas = QuotaBook(self.watcher)
        self._capacity_task: asyncio.Task | None = None
        self.pool = WarmPool(self)
        metrics.SITES.sites.add(self)

    @classmethod
    def of(cls, settings: SpawnerSettings) -> CloudSite:
        """The site of these settings' cloud and hub tag in the running event loop (made at
        first use, e.g. when the hub loads its configuration; see ``startup.check_config``).
        The settings are checked when the site is made (``ConfigError``)."""
        sites = cls._sites.setdefault(asyncio.get_running_loop(), {})
        key = (settings.cloud, settings.clouds_yaml, settings.hub_tag)
        site = sites.get(key)
        if site is None:
            settings.check_configuration()
            site = sites[key] = cls(settings.cloud, settings.clouds_yaml, settings.hub_tag,
                                    settings.api_request_timeout, settings.capacity_cloud, settings.capacity_ttl,
                                    settings.watch_interval, min_gap=settings.status_interval,
                                    threads=settings.api_threads, group_quotas=settings.group_quotas)
            site.pool.configure(settings)
        return site

    def start(self) -> None:
        """Start the watcher, the warm pool, and the reading of GPU capacity every
        ``CAPACITY_REFRESH`` seconds for the hub's metrics (only the models spawn pages asked
        for). Idempotent."""
        self.watcher.start()
        self.pool.start()
        if self._capacity_task is None:
            self._capacity_task = asyncio.get_running_loop().create_task(self._refresh_capacity(),
                                                                         name=f"hepsdesk-capacity-{self.hub_tag}")

    async def _refresh_capacity(self) -> None:
        while True:
            await asyncio.sleep(CAPACITY_REFRESH)
            await self.capacity.refresh()

    @classmethod
    def pools(cls) -> list[WarmPool]:
        """The warm pools of every site in the running event loop."""
        return [site.pool for site in cls._sites.get(asyncio.get_running_loop(), {}).values()]

    @classmethod
    def existing(cls, settings: SpawnerSettings) -> CloudSite | None:
        """The site of these settings if it was made (in the running event loop), else None."""
        return cls._sites.get(asyncio.get_running_loop(), {}).get(
            (settings.cloud, settings.clouds_yaml, settings.hub_tag))

    async def security_group(self, name: str, description: str, rules: set[tuple], renew: bool = False) -> str:
        """The id of the managed security group ``name`` with exactly ``rules``: made sure of
        once for all spawns (again with ``renew``: it was deleted behind the hub's back)."""
        key = (name, frozenset(rules))
        known = self._security_groups.get(key)
        if known is not None and (known.cancelled() or (renew and known.done())):
            known = None
        if known is None:
            known = self._security_groups[key] = asyncio.ensure_future(
                self.client.ensure_security_group(name, description, rules))
        try:
            return await asyncio.shield(known)
        except BaseException:
            if known.done():
                self._security_groups.pop(key, None)  # try again at the next spawn
            raise

    async def close(self) -> None:
        """Stop the watcher and the worker threads (a hub that stops; benchmarks)."""
        await self.watcher.stop()
        await self.pool.close()
        if self._capacity_task is not None:
            self._capacity_task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)
        for sites in self._sites.values():
            for key, site in list(sites.items()):
                if site is self:
                    del sites[key]
