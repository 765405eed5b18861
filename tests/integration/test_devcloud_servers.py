"""Server life cycle on the dev cloud, through openstacksdk as the hub's member user."""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openstack
import pytest

from hepsdesk_devcloud.service_plugins.hepsdesk_procinfo import is_same_process

from .guest_web import WEB_USER_DATA, address, get, wait_answer, wait_silent

pytestmark = pytest.mark.devcloud


def guest_record(devcloud, server) -> dict:
    return json.loads((devcloud.guest_dir(server.id) / "vm.json").read_text())


def monitor_alive(record: dict) -> bool:
    return is_same_process(record.get("monitor_pid"), record.get("monitor_start"))


def wait_status(conn, server, status: str, timeout: float = 60):
    return conn.compute.wait_for_server(server, status=status, failures=["ERROR"], wait=timeout, interval=0.5)


def test_every_service_is_healthy_and_the_cli_works(devcloud):
    assert all(entry["healthy"] for entry in devcloud.status()), devcloud.status()
    openstack_cli = str(Path(sys.executable).with_name("openstack"))
    result = subprocess.run([openstack_cli, "--os-cloud", "devcloud", "server", "list", "-f", "json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)


def test_user_data_web_server_answers_on_its_own_address(conn, servers):
    server = servers.create(WEB_USER_DATA)
    addr = address(server)
    assert ipaddress.ip_address(addr) in ipaddress.ip_network("127.200.0.0/16")
    port = list(conn.network.ports(device_id=server.id))
    assert [ip["ip_address"] for ip in port[0].fixed_ips] == [addr], "the address comes from Neutron's IPAM"
    assert wait_answer(addr).startswith(server.name.lower()[:10])


def test_a_port_created_first_gives_the_address_before_boot(conn, servers):
    """The spawner's path: create the port, render its address into user-data, boot on it."""
    port = servers.create_port()
    addr = port.fixed_ips[0]["ip_address"]
    user_data = ("#cloud-config\nruncmd:\n"
                 f"  - [sh, -c, 'mkdir -p /srv && echo preplanned > /srv/boot && cd /srv && "
                 f"nohup python3 -m http.server --bind {addr} 8080 >/dev/null 2>&1 &']\n")
    server = servers.create(user_data, port=port)
    assert address(server) == addr
    assert wait_answer(addr).strip() == "preplanned"


def test_stop_start_and_reboot(conn, servers, devcloud):
    server = servers.create(WEB_USER_DATA)
    addr = address(server)
    first = wait_answer(addr)
    record = guest_record(devcloud, server)

    conn.compute.stop_server(server)
    wait_status(conn, server, "SHUTOFF")
    assert not monitor_alive(record), "stop leaves no guest process"
    wait_silent(addr)

    conn.compute.start_server(server)
    wait_status(conn, server, "ACTIVE")
    second = wait_answer(addr)
    assert second != first, "start boots the guest again"
    assert get(addr, "/first-boot") is not None
    # As cloud-init: the per-boot script ran again, runcmd did not (the same instance).
    assert (get(addr, "/boots"), get(addr, "/instance-runs")) == ("boot\nboot\n", "run\n")

    record = guest_record(devcloud, server)
    conn.compute.reboot_server(server, "SOFT")
    deadline = time.monotonic() + 60
    while monitor_alive(record) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not monitor_alive(record), "reboot replaces the guest's processes"
    wait_status(conn, server, "ACTIVE")
    assert wait_answer(addr) not in (first, second)
    assert (get(addr, "/boots"), get(addr, "/instance-runs")) == ("boot\n" * 3, "run\n")


def test_shelve_and_unshelve_keep_the_disk(conn, servers, devcloud):
    server = servers.create(WEB_USER_DATA)
    addr = address(server)
    marker = wait_answer(addr, "/first-boot")
    record = guest_record(devcloud, server)

    conn.compute.shelve_server(server)
    wait_status(conn, server, "SHELVED_OFFLOADED", timeout=90)
    assert not monitor_alive(record)
    assert not devcloud.guest_dir(server.id).exists(), "an offloaded server has no disk on the host"
    snapshot = conn.image.find_image(f"{server.name}-shelved")
    assert snapshot is not None and snapshot.status == "active"

    conn.compute.unshelve_server(server)
    wait_status(conn, server, "ACTIVE", timeout=90)
    assert address(conn.compute.get_server(server)) == addr, "the port survives shelving"
    assert wait_answer(addr, "/first-boot") == marker, "unshelve restores the disk from the snapshot"


def test_delete_leaves_no_process_no_directory_no_port(conn, servers, devcloud):
    server = servers.create(WEB_USER_DATA)
    wait_answer(address(server))
    record = guest_record(devcloud, server)
    assert monitor_alive(record)
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=60)
    assert not monitor_alive(record)
    assert not devcloud.guest_dir(server.id).exists()
    assert list(conn.network.ports(device_id=server.id)) == []


def test_console_log_shows_the_boot(conn, servers):
    server = servers.create(WEB_USER_DATA)
    wait_answer(address(server))
    output = conn.compute.get_server_console_output(server)["output"]
    assert f"process VM {server.id}" in output
    assert "Cloud-init v." in output and "running 'modules:final'" in output
    assert "web server started on" in output
    assert "finished at" in output


def test_guest_has_a_clean_environment_and_cannot_see_the_cloud(conn, servers, devcloud):
    state = devcloud.settings.state_dir
    server = servers.create("#cloud-config\nruncmd:\n"
                            "  - env > /root/env.txt\n"
                            "  - hostname > /root/hostname.txt\n"
                            f"  - ls -A {state} > /root/state-listing.txt\n")
    disk = devcloud.guest_dir(server.id) / "disk" / "upper" / "root"
    deadline = time.monotonic() + 30
    while not (disk / "state-listing.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.3)
    names = {line.split("=", 1)[0] for line in (disk / "env.txt").read_text().splitlines() if "=" in line}
    allowed = {"HOME", "USER", "LOGNAME", "SHELL", "LANG", "TERM", "PATH", "PWD", "SHLVL", "OLDPWD", "_",
               "HEPSDESK_IMAGE", "HEPSDESK_BEAMLINE",  # the image's own, from its manifest:
               "HEPSDESK_IMAGE_INFO", "JUPYTER_PATH", "HEPSDESK_SAMPLE_DATA"}
    assert names <= allowed, f"inherited from the host: {names - allowed}"
    assert (disk / "hostname.txt").read_text().strip() not in ("", os.uname().nodename)
    assert (disk / "state-listing.txt").read_text() == "", "the dev cloud's state is hidden from guests"


def test_a_crashed_guest_turns_shutoff(conn, servers, devcloud):
    server = servers.create(WEB_USER_DATA)
    wait_answer(address(server))
    record = guest_record(devcloud, server)
    os.kill(record["monitor_pid"], signal.SIGKILL)
    wait_status(conn, server, "SHUTOFF", timeout=30)


def test_user_data_the_guest_cannot_honour_puts_the_server_in_error(conn, servers):
    server = servers.create("#cloud-config\npackages: [mantid]\n", wait=False)
    server = conn.compute.wait_for_server(server, status="ERROR", failures=["ACTIVE"], wait=60)
    assert "packages not supported" in server.fault["message"]


def test_an_image_that_is_not_a_process_image_puts_the_server_in_error(conn, servers):
    image = conn.image.create_image(name=f"{servers.prefix}-junk", data=b"this is no disk image",
                                    disk_format="raw", container_format="bare", visibility="private")
    try:
        server = servers.create(WEB_USER_DATA, image=image.id, wait=False)
        server = conn.compute.wait_for_server(server, status="ERROR", failures=["ACTIVE"], wait=60)
        assert "not a hepsdesk process image" in server.fault["message"]
    finally:
        conn.image.delete_image(image, ignore_missing=True)


def test_gpu_servers_boot_until_the_gpus_run_out(conn, servers, devcloud):
    model, count = next(iter(devcloud.settings.gpus.items()))
    flavor = f"g1.{model.lower()}.1"
    booted = [servers.create(flavor=flavor, wait=False) for _ in range(count)]
    booted = [wait_status(conn, server, "ACTIVE", timeout=120) for server in booted]
    indices = sorted(guest_record(devcloud, s)["boot"]["gpus"][0]["index"] for s in booted)
    assert indices == list(range(count)), "each server holds its own fake GPU"

    extra = servers.create(flavor=flavor, wait=False)
    extra = conn.compute.wait_for_server(extra, status="ERROR", failures=["ACTIVE"], wait=60)
    assert "No valid host" in extra.fault["message"]


def test_exceeded_project_quota_is_refused(admin_conn, devcloud, servers):
    name = f"{servers.prefix}-quota"[:60]
    domain = admin_conn.identity.find_domain("default")
    project = admin_conn.identity.create_project(name=name, domain_id=domain.id)
    password = os.urandom(12).hex()
    user = admin_conn.identity.create_user(name=name, password=password, domain_id=domain.id,
                                           default_project_id=project.id)
    try:
        admin_conn.identity.assign_project_role_to_user(project, user, admin_conn.identity.find_role("member"))
        admin_conn.set_compute_quotas(project.id, instances=1)
        limited = openstack.connect(auth_url=devcloud.settings.auth_url, username=name, password=password,
                                    project_name=name, user_domain_name="Default", project_domain_name="Default",
                                    region_name=devcloud.settings.region, load_yaml_config=False,
                                    load_envvars=False)
        servers.create(conn=limited, flavor="t1.empty")
        with pytest.raises(openstack.exceptions.HttpException) as refused:
            servers.create(conn=limited, flavor="t1.empty")
        assert refused.value.status_code == 403
        assert "Quota exceeded" in str(refused.value)
    finally:
        servers.cleanup()
        admin_conn.identity.delete_user(user)
        admin_conn.identity.delete_project(project)


def test_ten_concurrent_creates_all_become_active(devcloud, servers):
    def boot(index: int):
        own = devcloud.connect()  # one connection per thread, as a hub's worker pool would
        server = servers.create(WEB_USER_DATA, conn=own, wait=False, name=f"{servers.prefix}-c{index}")
        return own.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], wait=240)

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        booted = list(pool.map(boot, range(10)))
    addresses = {address(server) for server in booted}
    assert len(addresses) == 10, "every server has its own loopback address"
    for addr in addresses:
        wait_answer(addr)
