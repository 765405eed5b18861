"""hepsdesk's figures on the hub's own ``/hub/metrics`` (scope ``read:metrics``).

JupyterHub serves prometheus_client's default registry there, so hepsdesk adds its metrics to
that registry (one registry per process) and runs no endpoint of its own. No label names a
user or a server: a thousand users make no more series than one. Labels are bounded by the
configuration (profile slugs, GPU models, groups) or by a fixed list (stages, reasons).

Nothing here calls the cloud when scraped: gauges are set by whoever reads the cloud anyway
(the watcher's lists, the capacity reader's cached Placement readings), and what is computed
at scrape time (``SiteCollector``) reads only what the hub's process already holds. (The
authenticator counts sign-ins, ``hepsdesk_sign_ins``, beside itself.)
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# A start goes through these stages (a resumed or pooled VM skips or shortens some):
# "prepare": the profile, the account, leftovers, image/flavor/network, port (until the VM
# is asked for); "boot": Nova schedules and runs it (ACTIVE); "guest": until JupyterLab
# answers at the server's URL; "total": the whole start.
STAGES = ("prepare", "boot", "guest", "total")
SPAWN_SECONDS = Histogram(
    "hepsdesk_spawn_duration_seconds", "Seconds each stage of a successful start took, by profile and stage",
    ["profile", "stage"], buckets=(0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600))
SPAWN_FAILURES = Counter(
    "hepsdesk_spawn_failures", "Starts that failed, by reason (SpawnError reasons: refusals the user can act "
    "on; timeout, cloud, hub_config, error: failures JupyterHub counts; cancelled)", ["reason"])
CLOUD_REQUESTS = Counter(
    "hepsdesk_cloud_requests", "Requests of the hub's OpenStack client (each attempt), by outcome", ["outcome"])
WATCHER_LIST_SECONDS = Histogram(
    "hepsdesk_watcher_list_seconds", "Seconds one list of the hub's servers took (the shared watcher)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
GPUS = Gauge("hepsdesk_gpus", "GPUs per model as Placement last reported them (state: free, used)",
             ["model", "state"])


def failure_reason(error: BaseException) -> str:
    """The ``reason`` label of a failed start: a SpawnError's own reason, or what kind of
    failure JupyterHub counts."""
    from .errors import CloudFailure, SpawnError

    if isinstance(error, asyncio.CancelledError):  # the user stopped the start, or the hub stops
        return "cancelled"
    if isinstance(error, SpawnError):
        return str(getattr(error, "reason", "") or "refused")
    if isinstance(error, CloudFailure):
        return {504: "timeout", 500: "hub_config"}.get(error.status_code, "cloud")
    return "error"


class SpawnTimer:
    """The stages of one start: ``stage(name)`` ends the one before; ``succeeded()`` observes
    each stage and the total into ``SPAWN_SECONDS``, ``failed(error)`` counts the reason."""

    def __init__(self) -> None:
        self.profile = "unknown"  # the profile's slug, once the start chose it
        self._started = time.monotonic()
        self._marks: list[tuple[str, float]] = [("prepare", self._started)]
        self._done = False

    def stage(self, name: str) -> None:
        assert name in STAGES, name
        self._marks.append((name, time.monotonic()))

    def succeeded(self) -> None:
        if self._done:
            return
        self._done = True
        now = time.monotonic()
        ends = [at for _, at in self._marks[1:]] + [now]
        spent: dict[str, float] = {}  # (a stage may come twice: a pooled VM failed, a new one booted)
        for (name, began), ended in zip(self._marks, ends, strict=True):
            spent[name] = spent.get(name, 0.0) + ended - began
        for name, seconds in spent.items():
            SPAWN_SECONDS.labels(self.profile, name).observe(seconds)
        SPAWN_SECONDS.labels(self.profile, "total").observe(now - self._started)

    def failed(self, error: BaseException) -> None:
        if not self._done:
            self._done = True
            SPAWN_FAILURES.labels(failure_reason(error)).inc()


class SiteCollector(Collector):
    """What the hub's cloud sites hold, read at scrape time: the age of each watcher's newest
    list of servers (how stale ``poll()`` may be); what each group's servers hold and its quota
    (groups are those of the configuration: quotas and profiles' ``allowed_groups``); the warm
    pool's VMs per profile."""

    def __init__(self) -> None:
        self.sites: weakref.WeakSet = weakref.WeakSet()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        age = GaugeMetricFamily("hepsdesk_watcher_lag_seconds",
                                "Seconds since the newest complete list of the hub's servers was asked for",
                                labels=["hub_tag"])
        now = time.monotonic()
        for site in list(self.sites):
            watcher = site.watcher
            if watcher.listed_at:
                age.add_metric([site.hub_tag], now - watcher.listed_at)
        yield age
        used = GaugeMetricFamily("hepsdesk_group_quota_used", "What a group's servers hold (resource: vms, vcpus, "
                                 "gpus of a model)", labels=["group", "resource", "model"])
        limit = GaugeMetricFamily("hepsdesk_group_quota_limit", "A group's quota (only the limits it has)",
                                  labels=["group", "resource", "model"])
        for site in list(self.sites):
            usage = site.quotas.usage()
            for group in sorted(set(usage) | set(site.group_quotas)):
                held = usage.get(group)
                if held is not None:
                    used.add_metric([group, "vms", ""], held.vms)
                    used.add_metric([group, "vcpus", ""], held.vcpus)
                    for model, count in sorted(held.gpus.items()):
                        used.add_metric([group, "gpus", model], count)
                quota = site.group_quotas.get(group)
                if quota is not None:
                    for resource in ("vms", "vcpus"):
                        if getattr(quota.limits, resource) is not None:
                            limit.add_metric([group, resource, ""], getattr(quota.limits, resource))
                    for model, count in sorted(quota.limits.gpus.items()):
                        limit.add_metric([group, "gpus", model], count)
        yield used
        yield limit
        pool = GaugeMetricFamily("hepsdesk_pool_size", "VMs of the warm pool (state: ready, waiting for a user; "
                                 "booting; target, what the pool is kept at now)", labels=["profile", "state"])
        for site in list(self.sites):
            for slug in sorted(site.pool.settings):
                ready, booting = site.pool.count(slug)
                pool.add_metric([slug, "ready"], ready)
                pool.add_metric([slug, "booting"], booting)
                pool.add_metric([slug, "target"], site.pool.target(slug))
        yield pool


SITES = SiteCollector()
REGISTRY.register(SITES)
