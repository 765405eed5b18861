"""What the benchmarks share: their ports, checked free, and the dev cloud they run on."""

from __future__ import annotations

import argparse
import sys

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
