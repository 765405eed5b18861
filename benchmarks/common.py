"""What the benchmarks share: their ports, checked free, the dev cloud they run on, a progress
bar and percentiles."""

from __future__ import annotations

import argparse
import sys
import time

from hepsdesk_devcloud import DevCloud, DevCloudSettings
from hepsdesk_devcloud.processes import port_owner


def free_ports(parser: argparse.ArgumentParser, ports: str) -> list[int]:
    """``"hub,hub API,SSO[,...]"`` as ints, each free (and the proxy API's, hub API - 80)."""
    numbers = [int(p) for p in ports.split(",")]
    for port in (*numbers, numbers[1] - 80):
        if port_owner(port):
            parser.error(f"port {port} is in use by {port_owner(port)}")
    return numbers


def dev_cloud(state_dir: str) -> tuple[DevCloud, bool]:
    """The dev cloud in ``state_dir``, up; and whether it was running already (then leave it so)."""
    cloud = DevCloud(DevCloudSettings.load(state_dir), stream=sys.stderr)
    reused = cloud.is_running()
    cloud.up()
    return cloud, reused


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


class Bar:
    """A one-line progress bar on stderr."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.started = label, total, time.monotonic()

    def update(self, done: int, note: str = "") -> None:
        width = 30
        filled = int(width * done / max(1, self.total))
        sys.stderr.write(f"\r{self.label}: [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                         f"{time.monotonic() - self.started:.0f} s {note}   ")
        sys.stderr.flush()

    def done(self, note: str = "") -> None:
        self.update(self.total, note)
        sys.stderr.write("\n")
