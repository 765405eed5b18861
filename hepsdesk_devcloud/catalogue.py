"""What a fresh dev cloud offers: per-beamline images and CPU/GPU flavors.

The images are hepsdesk process images (see ``service_plugins/hepsdesk_process_image.py``):
their Glance properties say which beamline and facility they serve and which software they
carry, the same properties the spawner's profiles read on a production cloud. GPU flavors
ask Placement for VGPU resources with a model trait, exactly as on hosts with mediated
devices, so the fake GPU inventory is scheduled, counted and exhausted for real.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .service_plugins.hepsdesk_flavor_specs import NO_PROCESS_SPEC, gpu_trait


@dataclass(frozen=True)
class ImageSpec:
    name: str
    beamline: str
    facility: str
    description: str
    software: tuple[str, ...]

    @property
    def properties(self) -> dict[str, str]:
        """Glance properties (the hepsdesk_* ones are read by the spawner's profiles)."""
        return {
            "hepsdesk_beamline": self.beamline,
            "hepsdesk_facility": self.facility,
            "hepsdesk_software": ", ".join(self.software),
            "hepsdesk_description": self.description,
            "hepsdesk_process_image": "1",
            "os_type": "linux",
            "os_distro": "debian",
            "os_version": "12",
        }


@dataclass(frozen=True)
class FlavorSpec:
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    description: str
    extra_specs: dict[str, str] = field(default_factory=dict)


IMAGES = (
    ImageSpec("hepsdesk-desktop", beamline="any", facility="HEPS, CSNS, BSRF",
              description="General analysis desktop: JupyterLab and a graphical desktop",
              software=("JupyterLab", "Python 3", "Xvfb desktop", "xterm")),
    ImageSpec("hepsdesk-imaging", beamline="HEPS X-ray imaging beamlines", facility="HEPS",
              description="Tomography and X-ray imaging analysis",
              software=("JupyterLab", "Python 3", "TomoPy", "napari", "Fiji")),
    ImageSpec("hepsdesk-neutron", beamline="CSNS neutron scattering instruments", facility="CSNS",
              description="Neutron scattering reduction and small-angle analysis",
              software=("JupyterLab", "Python 3", "Mantid Workbench", "SasView")),
)


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
