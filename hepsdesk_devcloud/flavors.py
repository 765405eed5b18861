"""The CPU and GPU flavors a fresh dev cloud offers (its images come from the image
catalogue, ``hepsdesk_images``).

GPU flavors ask Placement for VGPU resources with a model trait, exactly as on hosts with
mediated devices, so the fake GPU inventory is scheduled, counted and exhausted for real.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .service_plugins.hepsdesk_flavor_specs import NO_PROCESS_SPEC, gpu_trait


@dataclass(frozen=True)
class FlavorSpec:
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    description: str
    extra_specs: dict[str, str] = field(default_factory=dict)


def flavors(gpus: dict[str, int]) -> list[FlavorSpec]:
    specs = [
        FlavorSpec("c1.small", 2, 4096, 20, "2 vCPU, 4 GB: notebooks and light desktop work"),
        FlavorSpec("c1.medium", 4, 16384, 40, "4 vCPU, 16 GB: everyday analysis desktop"),
        FlavorSpec("c1.large", 8, 32768, 80, "8 vCPU, 32 GB: large data reduction"),
        FlavorSpec("t1.empty", 1, 512, 1, "Dev cloud only: a server that runs no guest processes (load tests)",
                   {NO_PROCESS_SPEC: "none"}),
    ]
    for model in gpus:
        for count in (1, 2):
            specs.append(FlavorSpec(
                f"g1.{model.lower()}.{count}", 8 * count, 65536 * count, 100,
                f"{8 * count} vCPU, {64 * count} GB, {count}x {model} GPU: 3D visualisation and GPU analysis",
                {"resources1:VGPU": str(count), f"trait1:{gpu_trait(model)}": "required",
                 "hepsdesk:gpu_model": model, "hepsdesk:gpu_count": str(count)}))
    return specs
