"""The fault suite: a hub whose every Nova and Neutron request passes a fault proxy.

Faults the real services cannot produce on demand are injected at the network boundary
(tests/faults.py): lost answers to creates (the resource exists, the spawner never learns
its id), transient 5xx while a VM starts and while it is deleted, Nova down in the middle of a
start. Crashed VMs and hub restarts are in test_spawner.py and test_reaper.py. The last test
checks that the suite left no server and no port behind (the dev cloud has no block storage
service, so the spawner creates no volumes).
"""

from __future__ import annotations

import time

import pytest

from ..conftest import SESSION, running_hub
from ..faults import Fault, FaultProxy, clouds_yaml_through
from .test_spawner import create_user

pytestmark = pytest.mark.devcloud

SERVER = r"/servers/[0-9a-f-]{36}$"


UNPLACEABLE, HUGE = f"t-unplaceable-{SESSION}", f"t-huge-{SESSION}"


@pytest.fixture(scope="module")
def flavors(admin_conn):
    """A flavor Placement has room for but Nova's scheduler filters refuse on every host (its
    ComputeCapabilitiesFilter: no host has this hypervisor type), and one no host has room for (disk:
    the quotas count CPUs and memory, not local disk)."""
    unplaceable = admin_conn.compute.create_flavor(name=UNPLACEABLE, vcpus=1, ram=256, disk=1)
    admin_conn.compute.create_flavor_extra_specs(unplaceable, {"capabilities:hypervisor_type": "no-such-hypervisor"})
    huge = admin_conn.compute.create_flavor(name=HUGE, vcpus=1, ram=256, disk=100_000)  # 100 TB of disk
    yield
    for flavor in (unplaceable, huge):
        admin_conn.compute.delete_flavor(flavor, ignore_missing=True)


@pytest.fixture(scope="module")
def faulty_hub(devcloud, tmp_path_factory, flavors):
    directory = tmp_path_factory.mktemp("faulty-hub")
    conn = devcloud.connect()
    with FaultProxy(conn.endpoint_for("compute"), 18776) as nova, \
            FaultProxy(conn.endpoint_for("network"), 18697) as neutron:
        clouds_yaml = clouds_yaml_through(devcloud, directory, compute=nova.url, network=neutron.url)
        desktop = {"image": "hepsdesk-desktop", "flavor": "c1.small"}
        profiles = [{"slug": "desktop", "display_name": "Desktop", "default": True, **desktop},
                    {"slug": "keep", "display_name": "Kept desktop", "stop_mode": "shelve", **desktop},
                    {"slug": "unplaceable", "display_name": "Refused", "image": "hepsdesk-desktop",
                     "flavor": UNPLACEABLE},
                    {"slug": "huge", "display_name": "Too big", "image": "hepsdesk-desktop", "flavor": HUGE}]
        # With a floating IP per VM: one more thing created, to be found and deleted on failure.
        with running_hub(devcloud, directory, (18700, 18781, 19970), profiles, clouds_yaml=clouds_yaml,
                         HEPSDESK_FLOATING_IP_NETWORK="hepsdesk-public") as hub:
            hub.nova, hub.neutron = nova, neutron
            try:
                yield hub
            finally:
                nova.clear()
                neutron.clear()


@pytest.fixture(autouse=True)
def no_faults_left(faulty_hub):
    yield
    faulty_hub.nova.clear()
    faulty_hub.neutron.clear()


def mine(conn, user: str) -> tuple[list, list]:
    servers = [s for s in conn.compute.servers() if (s.metadata or {}).get("hepsdesk-user") == user]
    ports = [p for p in conn.network.ports() if p.name.startswith(f"jupyter-{user}")]
    return servers, ports


def floating_ips_of(conn, user: str) -> list:
    return [ip for ip in conn.network.ips() if f"): {user}'s server" in (ip.description or "")]


def spawn(hub, user: str, **options) -> dict:
    return spawn_events(hub, user, **options)[-1]


def spawn_events(hub, user: str, **options) -> list[dict]:
    create_user(hub.api, user)
    assert hub.api("POST", f"/users/{user}/server", json=options).status_code in (201, 202)
    return hub.api.progress(user, timeout=300)


@pytest.mark.parametrize("service, fault", [
    ("nova", Fault("POST", r"/servers$", 502, times=1, lost_answer=True)),
    ("neutron", Fault("POST", r"/ports$", 500, times=1, lost_answer=True)),
    ("neutron", Fault("POST", r"/floatingips$", 500, times=1, lost_answer=True)),
], ids=["server-create", "port-create", "floating-ip-create"])
def test_a_lost_answer_to_a_create_leaves_nothing(faulty_hub, conn, service, fault):
    """The service created the server (or port) but its answer never came: the spawner never
    saw the id, and still finds and deletes it by name and owner."""
    user = f"lost-{service}-{SESSION}"
    getattr(faulty_hub, service).inject(fault)
    last = spawn(faulty_hub, user)
    assert last.get("failed") and "The cloud could not start your VM" in last["message"], last
    assert "anything created for it has been removed" in last["message"]
    assert fault.hits == 1
    assert mine(conn, user) == ([], [])
    assert floating_ips_of(conn, user) == []


def test_transient_errors_while_starting_and_stopping_are_retried(faulty_hub, conn, devcloud):
    user = f"transient-{SESSION}"
    # The shared list fails all along (so the start reads its server itself), and so do the
    # first two of those reads: retried, the start goes on.
    lists = faulty_hub.nova.inject(Fault("GET", r"/servers/detail\?.*(tags|changes-since)=", 503))
    reads = faulty_hub.nova.inject(Fault("GET", SERVER, 503, times=2))
    assert spawn(faulty_hub, user).get("ready"), "failed lists and reads did not fail the start"
    assert lists.hits >= 1 and reads.hits == 2
    # The VM has its floating IP, tagged, on its port, and knows the address.
    state = faulty_hub.api("GET", f"/users/{user}").json()["servers"][""]["state"]
    [ip] = floating_ips_of(conn, user)
    assert ip.port_id == state["port_id"] and ip.floating_ip_address == state["floating_address"]
    assert f"hepsdesk-test-{SESSION}" in ip.tags and ip.floating_ip_address.startswith("127.201.")
    env_file = devcloud.guest_dir(state["server_id"]) / "disk/upper/etc/hepsdesk/singleuser.env"
    assert f"HEPSDESK_PUBLIC_ADDRESS={ip.floating_ip_address}" in env_file.read_text()
    faulty_hub.nova.clear()
    deletes = faulty_hub.nova.inject(Fault("DELETE", SERVER, 503, times=2, lost_answer=True))
    assert faulty_hub.api("DELETE", f"/users/{user}/server").status_code in (202, 204)
    faulty_hub.api.wait_stopped(user)
    assert deletes.hits == 2
    assert mine(conn, user) == ([], [])
    assert floating_ips_of(conn, user) == [], "deleting the port alone would have kept the floating IP"


def test_nova_down_in_the_middle_of_a_start_fails_it_and_removes_the_vm(faulty_hub, conn):
    user = f"nova-down-{SESSION}"
    # Every list and every read of the server, until cleared.
    faulty_hub.nova.inject(Fault("GET", r"/servers/detail|" + SERVER, 503))
    last = spawn(faulty_hub, user)
    assert last.get("failed") and "anything created for it has been removed" in last["message"], last
    assert "Traceback" not in last["message"]
    assert mine(conn, user) == ([], [])


def test_stop_returns_only_once_the_vm_is_gone_while_nova_fails(faulty_hub, conn):
    """Nova answers 500 to every delete and every read of the server for a while: the hub's
    stop waits (retrying) until the VM is really gone, and never takes a failed read for "gone"."""
    user = f"stop-500-{SESSION}"
    assert spawn(faulty_hub, user).get("ready")
    [vm], _ = mine(conn, user)
    deletes = faulty_hub.nova.inject(Fault("DELETE", SERVER, 500, seconds=8))
    reads = faulty_hub.nova.inject(Fault("GET", SERVER, 500, seconds=8))
    asked = time.monotonic()
    assert faulty_hub.api("DELETE", f"/users/{user}/server").status_code in (202, 204)
    faulty_hub.api.wait_stopped(user)
    assert time.monotonic() - asked >= 7, "stop returned while Nova was still failing"
    assert deletes.hits >= 2 and reads.hits >= 1
    assert conn.compute.find_server(vm.id) is None, "the hub reported the server stopped while its VM exists"
    assert mine(conn, user) == ([], [])


def test_no_host_while_placement_has_room_is_tried_once_more(faulty_hub, conn):
    """Nova's scheduler finds no host but Placement has room for the flavor (here a scheduler
    filter refuses every host; at scale, a lost race or a slow Placement): the spawner tries
    once more before it tells the user there is no room. With no room in Placement, it does not."""
    creates = len([r for r in faulty_hub.nova.requests if r[0] == "POST" and r[1].endswith("/servers")])
    events = spawn_events(faulty_hub, f"no-host-{SESSION}", profile="unplaceable")
    messages = [e["message"] for e in events]
    assert events[-1].get("failed") and "No machine of the cloud has room for your VM" in messages[-1], messages
    assert any("trying once more" in m for m in messages), messages
    made = len([r for r in faulty_hub.nova.requests if r[0] == "POST" and r[1].endswith("/servers")])
    assert made - creates == 2
    assert mine(conn, f"no-host-{SESSION}") == ([], [])

    events = spawn_events(faulty_hub, f"no-room-{SESSION}", profile="huge")
    messages = [e["message"] for e in events]
    assert events[-1].get("failed") and "No machine of the cloud has room for your VM" in messages[-1], messages
    assert not any("trying once more" in m for m in messages), "Placement has no room: no second try"
    assert mine(conn, f"no-room-{SESSION}") == ([], [])


def test_a_resume_the_cloud_refuses_keeps_the_vm_shelved(faulty_hub, conn):
    user, path = f"resume-{SESSION}", f"/users/resume-{SESSION}/servers/kept"
    create_user(faulty_hub.api, user)

    def start() -> dict:
        assert faulty_hub.api("POST", path, json={"profile": "keep"}).status_code in (201, 202)
        return faulty_hub.api.progress(user, server="kept")[-1]

    def stop(**body) -> None:
        assert faulty_hub.api("DELETE", path, json=body).status_code in (202, 204)
        faulty_hub.api.wait_stopped(user)

    assert start().get("ready")
    [vm], [port] = mine(conn, user)
    stop()
    assert conn.compute.get_server(vm.id).status == "SHELVED_OFFLOADED"
    assert [ip.port_id for ip in floating_ips_of(conn, user)] == [port.id], "the address stays with the port"

    unshelve = faulty_hub.nova.inject(Fault("POST", SERVER[:-1] + "/action$", 500, times=1))
    last = start()
    assert last.get("failed") and "it has been shelved again: nothing on its disk was lost" in last["message"], last
    assert unshelve.hits == 1
    assert conn.compute.get_server(vm.id).status == "SHELVED_OFFLOADED"
    assert start().get("ready"), "the next start resumes it"
    assert [s.id for s in mine(conn, user)[0]] == [vm.id]
    stop()
    stop(remove=True)  # removing the server deletes its shelved VM, port and floating IP
    assert mine(conn, user) == ([], []) and floating_ips_of(conn, user) == []


def test_the_fault_suite_leaves_no_server_no_port_and_no_floating_ip(faulty_hub, admin_conn):
    tag = f"hepsdesk-test-{SESSION}"
    servers = [s.id for s in admin_conn.compute.servers(all_projects=True)
               if (s.metadata or {}).get("hepsdesk-hub") == tag
               and (s.metadata or {}).get("hepsdesk-user", "").endswith(SESSION)]
    ports = [p.id for p in admin_conn.network.ports() if f"({tag})" in (p.description or "")]
    ips = [ip.id for ip in admin_conn.network.ips() if f"({tag})" in (ip.description or "")]
    assert servers == [] and ports == [] and ips == []
