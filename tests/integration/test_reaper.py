"""Leftovers: the orphan reaper service and a hub killed in the middle of a start.

This module's hub has its own tag (so nothing of the other test hubs looks orphaned to it) and
runs the reaper as a JupyterHub service in dry-run mode every 2 s with no grace period: its
log shows what it would delete; the deleting pass runs in the test, through the same code.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from hepsdesk_devcloud.processes import port_owner
from hepsdesk_spawner.reaper import find_orphans, owned_by_hub, run_once

from ..conftest import SESSION, HubAPI, start_hub, stop_hub
from .test_spawner import create_user

pytestmark = pytest.mark.devcloud

TAG = f"hepsdesk-reaper-{SESSION}"


@pytest.fixture(scope="module")
def reaper_hub(devcloud, tmp_path_factory):
    hub = start_hub(devcloud, tmp_path_factory.mktemp("reaper-hub"), (18500, 18581, 19900), HEPSDESK_HUB_TAG=TAG,
                    HEPSDESK_REAPER="dry-run", HEPSDESK_REAPER_ARGS="--grace 0 --interval 2",
                    HEPSDESK_FLOATING_IP_NETWORK="hepsdesk-public")
    hub.api = HubAPI(hub)
    try:
        yield hub
    finally:
        try:
            stop_hub(hub, devcloud)
        finally:
            admin = devcloud.connect("devcloud-admin")
            for server in admin.compute.servers(all_projects=True, tags=TAG):
                admin.compute.delete_server(server)
                admin.compute.wait_for_delete(server, wait=120)
            for ip in admin.network.ips(tags=TAG):
                admin.network.delete_ip(ip)
            for port in admin.network.ports(tags=TAG):
                admin.network.delete_port(port)
            for group in admin.network.security_groups(name=f"{TAG}-vms"):
                admin.network.delete_security_group(group)


def vms_of(conn, user: str) -> list:
    return [s for s in conn.compute.servers(tags=TAG) if (s.metadata or {}).get("hepsdesk-user") == user]


def tagged_port(conn, servers, name: str):
    port = conn.network.create_port(network_id=servers.network.id, name=f"{name}-{SESSION}")
    servers.ports.append(port.id)
    conn.network.set_tags(port, [TAG])
    return port


def reapers() -> list[int]:
    """Pids of this module's reaper services."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"hepsdesk_spawner.reaper" in cmdline and TAG.encode() in cmdline:
            found.append(int(proc.name))
    return found


def hub_api_url(hub) -> str:
    return f"{hub.url}/hub/api"


def wait_for_log(hub, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in hub.log_path.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not in the hub's log after {timeout:.0f} s")


def test_orphans_are_logged_then_removed_and_nothing_owned_is_touched(reaper_hub, servers, conn):
    api = reaper_hub.api
    owner = f"owner-{SESSION}"
    create_user(api, owner)
    assert api("POST", f"/users/{owner}/server").status_code in (201, 202)
    assert api.progress(owner)[-1].get("ready")
    [owned] = vms_of(conn, owner)

    orphan_port, lone_port = (tagged_port(conn, servers, name) for name in ("orphan", "lone"))
    orphan = servers.create(port=orphan_port, tags=[TAG])
    foreign = servers.create(tags=["another-hub"])
    lone_ip = conn.network.create_ip(floating_network_id=conn.network.find_network("hepsdesk-public").id,
                                     description=f"left by a failed delete ({SESSION})")
    conn.network.set_tags(lone_ip, [TAG])
    [owned_ip] = [ip for ip in conn.network.ips(tags=TAG) if ip.id != lone_ip.id]  # the owner's VM's

    # The service (dry run) names the orphans in the hub's log and deletes nothing.
    wait_for_log(reaper_hub, f"Orphan server {orphan.id}")
    wait_for_log(reaper_hub, f"Orphan port {lone_port.id}")
    wait_for_log(reaper_hub, f"Orphan floating IP {lone_ip.id}")
    assert "would delete it (dry run)" in reaper_hub.log_path.read_text()
    assert conn.compute.find_server(orphan.id) is not None

    token = reaper_hub.secrets()["admin_token"]
    owned_now = owned_by_hub(hub_api_url(reaper_hub), token)
    assert owned.id in owned_now.server_ids
    assert find_orphans(conn, TAG, owned_now, grace_s=3600) == [], "nothing is younger than the grace period"

    removed = run_once(conn, hub_api_url(reaper_hub), token, TAG, grace_s=0, dry_run=False)
    assert {o.id for o in removed} == {orphan.id, orphan_port.id, lone_port.id, lone_ip.id}
    assert conn.compute.find_server(orphan.id) is None
    assert conn.network.find_ip(lone_ip.id) is None and conn.network.find_ip(owned_ip.id) is not None
    assert conn.network.find_port(orphan_port.id) is None and conn.network.find_port(lone_port.id) is None
    assert conn.compute.get_server(owned.id).status == "ACTIVE" and conn.compute.find_server(foreign.id)
    assert api("GET", f"/users/{owner}").json()["servers"][""]["ready"]

    assert api("DELETE", f"/users/{owner}/server").status_code in (202, 204)
    api.wait_stopped(owner)


def test_a_hub_killed_in_the_middle_of_a_start_cleans_up_at_the_next_start(reaper_hub, conn):
    api = reaper_hub.api
    user = f"interrupted-{SESSION}"
    create_user(api, user)
    assert api("POST", f"/users/{user}/server").status_code in (201, 202)
    deadline = time.monotonic() + 120
    while not vms_of(conn, user) and time.monotonic() < deadline:
        time.sleep(0.2)
    [left] = vms_of(conn, user)
    # Killed like systemd kills a unit: the hub and its proxy at once, no cleanup.
    os.killpg(reaper_hub.processes.running("jupyterhub").pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while port_owner(reaper_hub.hub_port) and time.monotonic() < deadline:
        time.sleep(0.1)
    reaper_hub.start()

    deadline = time.monotonic() + 10
    while len(reapers()) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(reapers()) == 1, "the killed hub's reaper service exited by itself; the new hub's runs"

    model = api("GET", f"/users/{user}").json()
    assert not model["servers"], "the hub never saved the interrupted start"
    orphans = find_orphans(conn, TAG, owned_by_hub(hub_api_url(reaper_hub), reaper_hub.secrets()["admin_token"]), 0)
    assert left.id in {o.id for o in orphans}, "the reaper would remove it"

    assert api("POST", f"/users/{user}/server").status_code in (201, 202)
    events = api.progress(user)
    assert events[-1].get("ready"), events
    assert any("Removing a VM left over from an interrupted start" in e["message"] for e in events)
    [now] = vms_of(conn, user)
    assert now.id != left.id
    assert [p.name for p in conn.network.ports(tags=TAG) if p.name.startswith(f"jupyter-{user}")] == \
        [f"jupyter-{user}-port"], "one port: the old one went with its VM"

    assert api("DELETE", f"/users/{user}/server").status_code in (202, 204)
    api.wait_stopped(user)
    assert vms_of(conn, user) == []
