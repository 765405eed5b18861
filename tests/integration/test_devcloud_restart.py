"""`down` then `up` is a host reboot: the same cloud comes back with its servers running."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

from .guest_web import WEB_USER_DATA, address, wait_answer, wait_silent

pytestmark = pytest.mark.devcloud


def processes_using(path: Path) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(path).encode() in cmdline:
                found.append(cmdline.replace(b"\0", b" ").decode(errors="replace")[:100])
    return found


def test_down_stops_everything_and_up_brings_the_same_cloud_back(devcloud, conn, servers):
    server = servers.create(WEB_USER_DATA)
    addr = address(server)
    disk_marker = wait_answer(addr, "/first-boot")
    images = sorted(image.name for image in conn.image.images())
    flavors = sorted(flavor.name for flavor in conn.compute.flavors())

    stopped = devcloud.down()
    assert f"guest {server.id}" in stopped and "nova-compute" in stopped and "mariadb" in stopped
    assert processes_using(devcloud.settings.state_dir) == [], "down leaves no process of the cloud behind"
    wait_silent(addr, timeout=5)

    report = devcloud.up()
    assert not report.already_running
    # Members listing networks at once right after the start all see the external network
    # (a fresh Neutron process misses it in concurrent first lists; `up` warms it).
    members = [devcloud.connect() for _ in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        seen = list(pool.map(lambda c: [n.name for n in c.network.networks(name="hepsdesk-public")], members))
    assert seen == [["hepsdesk-public"]] * 4
    again = devcloud.connect()
    server = again.compute.wait_for_server(again.compute.get_server(server.id), status="ACTIVE",
                                           failures=["ERROR"], wait=60)
    assert address(server) == addr
    assert wait_answer(addr, "/first-boot", timeout=60) == disk_marker, "the server came back with its disk"
    assert sorted(image.name for image in again.image.images()) == images
    assert sorted(flavor.name for flavor in again.compute.flavors()) == flavors
