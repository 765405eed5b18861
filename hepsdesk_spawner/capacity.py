"""Free GPUs per model, read from Placement, for the options form ("3 of 4 A100 free").

GPU hosts report their GPUs to Placement as VGPU inventory on resource providers carrying a
``CUSTOM_GPU_<MODEL>`` trait (nova's mediated devices, PCI-in-Placement, or the dev cloud's
fake inventory do exactly this), and GPU flavors ask for ``resources:VGPU`` with that trait.
So the free GPUs of a model are the providers with the trait: inventory minus usage.

Reading Placement needs more than a project member's role (its default policy allows admins
and system readers), so the spawner reads it through its own cloud entry
(``OpenStackSpawner.capacity_cloud``). One reading serves every form for ``ttl`` seconds,
however many users open it; if Placement cannot be read the form says so instead of failing.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass

from .cloud import CLOUD_ERRORS, OpenStackClient
from .metrics import GPUS

log = logging.getLogger("hepsdesk.capacity")
MICROVERSION = "1.18"  # `required=` trait filter on GET /resource_providers
# Granular request groups (resources1=..., required1=..., group_policy) in allocation candidates.
CANDIDATES_MICROVERSION = "1.29"


def flavor_gpu_request(extra_specs: dict[str, str]) -> tuple[str, int]:
    """(GPU trait, count) a flavor asks Placement for, or ("", 0) for a flavor without GPUs.

    Reads ``resources[N]:VGPU`` and a ``trait[N]:CUSTOM_GPU_*=required`` of the same group.
    """
    for key, value in extra_specs.items():
        match = re.fullmatch(r"resources(\w*):VGPU", key)
        if match:
            group = match.group(1)
            trait = next((k.split(":", 1)[1] for k, v in extra_specs.items()
                          if k.startswith(f"trait{group}:CUSTOM_GPU_") and v == "required"), "")
            return trait, int(value)
    return "", 0


def allocation_query(vcpus: int, ram_mb: int, disk_gb: int, extra_specs: dict[str, str]) -> dict[str, str]:
    """The ``GET /allocation_candidates`` query asking for what a flavor needs, as Nova's
    scheduler asks for it: its CPUs, memory and disk, plus the resources and required traits of
    its extra specs (``resources[N]:CLASS=amount``, ``trait[N]:TRAIT=required``), each
    numbered group as its own request group."""
    resources: dict[str, dict[str, int]] = {"": {"VCPU": vcpus, "MEMORY_MB": ram_mb, "DISK_GB": disk_gb}}
    required: dict[str, list[str]] = {}
    for key, value in sorted(extra_specs.items()):
        if match := re.fullmatch(r"resources(\d*):([A-Z0-9_]+)", key):
            resources.setdefault(match.group(1), {})[match.group(2)] = int(value)
        elif (match := re.fullmatch(r"trait(\d*):([A-Z0-9_]+)", key)) and value == "required":
            required.setdefault(match.group(1), []).append(match.group(2))
    query = {"limit": "1"}
    for group, amounts in resources.items():
        wanted = ",".join(f"{name}:{amount}" for name, amount in sorted(amounts.items()) if amount > 0)
        if wanted:
            query[f"resources{group}"] = wanted
    for group, traits in required.items():
        query[f"required{group}"] = ",".join(traits)
    if sum(1 for group in resources if group) > 1:
        query["group_policy"] = extra_specs.get("group_policy", "none")
    return query


@dataclass(frozen=True)
class GpuCapacity:
    model: str
    total: int
    free: int

    def __str__(self) -> str:
        return f"{self.free} of {self.total} {self.model} free"


class CapacityReader:
    """Cached free GPU counts of one cloud; one for all spawners of the hub (``CloudSite``)."""

    def __init__(self, client: OpenStackClient, ttl: float = 10.0):
        self.client = client
        self.ttl = ttl
        self._cache: dict[str, tuple[float, GpuCapacity]] = {}
        self._pending: dict[str, asyncio.Future] = {}
        self.reads = 0
        self.known: dict[str, str] = {}  # trait -> model: what the spawn pages asked for, kept fresh for metrics

    async def gpus(self, trait: str, model: str) -> GpuCapacity:
        """Free and total GPUs with ``trait`` (shown as ``model``; cached ``ttl`` s).
        Raises on Placement errors."""
        self.known[trait] = model
        cached = self._cache.get(trait)
        if cached and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        if trait not in self._pending:  # concurrent forms share one reading
            self._pending[trait] = asyncio.ensure_future(self._read(trait, model))
        try:
            return await asyncio.shield(self._pending[trait])
        finally:
            if trait in self._pending and self._pending[trait].done():
                self._pending.pop(trait, None)

    async def _read(self, trait: str, model: str) -> GpuCapacity:

        def read(conn):
            def get(path):
                response = conn.placement.get(path, microversion=MICROVERSION)
                response.raise_for_status()
                return response.json()
            total = used = 0
            for provider in get(f"/resource_providers?required={trait}")["resource_providers"]:
                vgpu = get(f"/resource_providers/{provider['uuid']}/inventories")["inventories"].get("VGPU")
                if not vgpu:
                    continue
                total += int((vgpu["total"] - vgpu["reserved"]) * vgpu["allocation_ratio"])
                used += get(f"/resource_providers/{provider['uuid']}/usages")["usages"].get("VGPU", 0)
            return GpuCapacity(model, total, max(0, total - used))

        self.reads += 1
        capacity = await self.client.call(read)
        GPUS.labels(model, "free").set(capacity.free)
        GPUS.labels(model, "used").set(capacity.total - capacity.free)
        self._cache[trait] = (time.monotonic(), capacity)
        return capacity

    async def refresh(self) -> None:
        """Read again every model read so far (the metrics' GPUs stay current without a spawn
        page being open); a model Placement cannot tell about now keeps its last figures."""
        for trait, model in list(self.known.items()):
            try:
                await self.gpus(trait, model)
            except (*CLOUD_ERRORS, ValueError) as e:
                log.warning("Cannot read free %s GPUs from Placement: %s", model, str(e)[:200])

    async def has_room(self, flavor) -> bool:
        """Does Placement offer a host for ``flavor`` right now (one allocation candidate)?
        Not cached: it is asked after the scheduler found no host. Raises on Placement errors."""
        query = allocation_query(flavor.vcpus, flavor.ram, flavor.disk or 0, dict(flavor.extra_specs or {}))

        def ask(conn):
            response = conn.placement.get("/allocation_candidates", params=query,
                                          microversion=CANDIDATES_MICROVERSION)
            response.raise_for_status()
            return bool(response.json().get("allocation_requests"))

        return await self.client.call(ask, idempotent=True)
