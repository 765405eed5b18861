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
import re
import time
from dataclasses import dataclass

from .cloud import OpenStackClient

MICROVERSION = "1.18"  # `required=` trait filter on GET /resource_providers


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


@dataclass(frozen=True)
class GpuCapacity:
    model: str
    total: int
    free: int

    def __str__(self) -> str:
        return f"{self.free} of {self.total} {self.model} free"


class CapacityReader:
    """Cached free GPU counts of one cloud; shared by all spawners of the hub."""

    _shared: dict[tuple, CapacityReader] = {}

    def __init__(self, client: OpenStackClient, ttl: float = 10.0):
        self.client = client
        self.ttl = ttl
        self._cache: dict[str, tuple[float, GpuCapacity]] = {}
        self._pending: dict[str, asyncio.Future] = {}
        self.reads = 0

    @classmethod
    def shared(cls, client: OpenStackClient, ttl: float = 10.0) -> CapacityReader:
        key = (client.cloud, client.clouds_yaml)
        if key not in cls._shared:
            cls._shared[key] = cls(client, ttl)
        return cls._shared[key]

    async def gpus(self, trait: str, model: str) -> GpuCapacity:
        """Free and total GPUs with ``trait`` (shown as ``model``; cached ``ttl`` s).
        Raises on Placement errors."""
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
        self._cache[trait] = (time.monotonic(), capacity)
        return capacity
