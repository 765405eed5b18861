"""OpenStackSpawner driven through the real hub's REST API against the dev cloud."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import sqlite3
import sys
import tempfile
import time

import openstack
import pytest
import requests

from hepsdesk_devcloud.service_plugins import hepsdesk_process_image as process_image
from hepsdesk_spawner.cloudinit import BOOT_KEY, ENV_FILE, STARTING_MARKER

from ..conftest import ROOT, SESSION, HubAPI, start_hub, stop_hub

pytestmark = pytest.mark.devcloud


def create_user(api: HubAPI, name: str) -> None:
    response = api("POST", f"/users/{name}")
    assert response.status_code in (201, 409), response.text


def vm_of(devcloud, user: str):
    admin = devcloud.connect("devcloud-admin")
    return [s for s in admin.compute.servers(all_projects=True)
            if (s.metadata or {}).get("hepsdesk-user") == user
            and (s.metadata or {}).get("hepsdesk-hub") == f"hepsdesk-test-{SESSION}"]


def test_spawn_reports_real_stages_serves_and_stop_removes_the_vm(hub, hub_api, devcloud, conn):
    user = f"spawn-{SESSION}"
    create_user(hub_api, user)
    assert hub_api("POST", f"/users/{user}/server").status_code in (201, 202)
    events = hub_api.progress(user)
    messages = [e["message"] for e in events]
    assert events[-1].get("ready"), messages
    for stage in ("Reserving a network address", "Creating your VM", "Your VM is running",
                  "starting JupyterLab", "JupyterLab is answering"):
        assert any(stage in m for m in messages), (stage, messages)
    assert all(re.search(r"\(\d+ s\)$", m) for m in messages[1:-1]), "each stage says how long the spawn has taken"
    progress = [e["progress"] for e in events if "progress" in e]
    assert progress == sorted(progress), "progress only moves forward"

    # The server answers through the hub's proxy.
    model = hub_api("GET", f"/users/{user}").json()
    url = model["servers"][""]["url"]
    answer = requests.get(f"{hub.url}{url}api", headers=hub_api.session.headers, timeout=30)
    assert answer.status_code == 200 and "version" in answer.json()

    # The VM: this hub's tag and the user in its metadata, its address from its Neutron port.
    [server] = vm_of(devcloud, user)
    assert server.metadata["hepsdesk-hub"] == f"hepsdesk-test-{SESSION}"
    assert f"hepsdesk-test-{SESSION}" in server.tags
    # Its port is only in the hub's managed security group: the hub in, the desktop's media in.
    [port] = conn.network.ports(device_id=server.id)
    [group] = [conn.network.get_security_group(g) for g in port.security_group_ids]
    assert group.name == f"hepsdesk-test-{SESSION}-vms"
    ingress = {(r.protocol, r.port_range_min, r.port_range_max, r.remote_ip_prefix)
               for r in conn.network.security_group_rules(security_group_id=group.id, direction="ingress")}
    assert ingress == {("tcp", 8888, 8888, "127.0.0.1/32"), ("udp", 32768, 60999, "0.0.0.0/0")}
    state = hub_api("GET", f"/users/{user}").json()["servers"][""]["state"]
    assert state["server_id"] == server.id and state["address"] == server.addresses["hepsdesk-net"][0]["addr"]
    assert state["port_id"] and state["version"]

    # The API token reaches the VM only in a root-only file: never in metadata, console or logs.
    env_file = devcloud.guest_dir(server.id) / "disk" / "upper" / ENV_FILE.lstrip("/")
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    token = re.search(r"JUPYTERHUB_API_TOKEN=(\S+)", env_file.read_text()).group(1).strip("'")
    assert len(token) >= 32
    console = conn.compute.get_server_console_output(server.id)["output"]
    assert token not in console and token not in str(server.metadata)
    # User-data (which a cloud's metadata service serves to any process in the guest) holds only
    # a one-time boot key, dead once the VM fetched its environment with it.
    admin = devcloud.connect("devcloud-admin")
    user_data = base64.b64decode(admin.compute.get_server(server.id).user_data).decode()
    assert token not in user_data and "export JUPYTERHUB_API_TOKEN" not in user_data
    boot_key = re.search(rf"{BOOT_KEY}=(\S+)", user_data).group(1).strip("'")
    for key in (boot_key, token):  # the token: no start is under way
        answer = requests.post(f"{hub.url}/hub/api/hepsdesk/resume-env", json={"user": user, "server": ""},
                               headers={"Authorization": f"hepsdesk-resume {key}"}, timeout=30)
        assert answer.status_code == (403 if key == boot_key else 409), answer.text
    logs = [hub.log_path, *devcloud.settings.logs_dir.glob("*.log")]
    leaked = [str(p) for p in logs if token in p.read_text(errors="replace")]
    assert leaked == [], f"the API token appears in {leaked}"

    # A hub restart finds the server again from the saved state.
    hub.processes.stop("jupyterhub", timeout=20)
    hub.start()
    model = hub_api("GET", f"/users/{user}").json()
    assert model["servers"][""]["ready"] and model["servers"][""]["state"]["server_id"] == server.id
    answer = requests.get(f"{hub.url}{url}api", headers=hub_api.session.headers, timeout=30)
    assert answer.status_code == 200

    # stop() returns only when the VM is gone; its port goes with it.
    port_ids = [p.id for p in conn.network.ports(device_id=server.id)]
    assert hub_api("DELETE", f"/users/{user}/server").status_code in (202, 204)
    hub_api.wait_stopped(user)
    assert vm_of(devcloud, user) == []
    assert all(conn.network.find_port(p) is None for p in port_ids)


def test_a_security_group_deleted_behind_the_hubs_back_is_made_again(hub, hub_api, conn):
    """An operator deleted the hub's group (no VM of the hub uses it now): the next start makes
    it again instead of failing on the id the hub remembered."""
    for group in conn.network.security_groups(name=f"hepsdesk-test-{SESSION}-vms"):
        conn.network.delete_security_group(group)
    user = f"sg-again-{SESSION}"
    create_user(hub_api, user)
    assert hub_api("POST", f"/users/{user}/server").status_code in (201, 202)
    assert hub_api.progress(user)[-1].get("ready")
    [group] = conn.network.security_groups(name=f"hepsdesk-test-{SESSION}-vms")
    assert any(p.security_group_ids == [group.id] for p in conn.network.ports(name=f"jupyter-{user}-port"))
    assert hub_api("DELETE", f"/users/{user}/server").status_code in (202, 204)
    hub_api.wait_stopped(user)


@pytest.fixture(scope="module")
def broken_hub(devcloud, tmp_path_factory):
    """A second hub whose image is whatever the test puts under its name, and a 75 s start_timeout."""
    image_name = f"hepsdesk-broken-{SESSION}"
    hub = start_hub(devcloud, tmp_path_factory.mktemp("broken-hub"), (18100, 18181, 19500),
                    HEPSDESK_IMAGE=image_name, HEPSDESK_START_TIMEOUT="75")
    hub.image_name = image_name
    yield hub
    stop_hub(hub, devcloud)
    conn = devcloud.connect()
    for image in conn.image.images(name=image_name):
        conn.image.delete_image(image)


def put_image(conn, name: str, data: bytes | None = None, manifest: dict | None = None):
    for old in conn.image.images(name=name):
        conn.image.delete_image(old)
    with tempfile.TemporaryDirectory() as tmp:
        blob = os.path.join(tmp, "image.tar")
        if manifest is not None:
            process_image.write_base_image(blob, manifest)
        else:
            with open(blob, "wb") as f:
                f.write(data)
        return conn.image.create_image(name=name, filename=blob, disk_format="raw", container_format="bare",
                                       visibility="private", wait=True)


def spawn_and_fail(hub, user: str) -> str:
    api = HubAPI(hub)
    create_user(api, user)
    started = time.monotonic()
    assert api("POST", f"/users/{user}/server").status_code in (201, 202)
    events = api.progress(user, timeout=200)
    assert events[-1].get("failed"), events
    return events[-1]["message"], time.monotonic() - started


def test_a_vm_that_fails_to_boot_is_explained_and_removed(broken_hub, devcloud, conn):
    put_image(conn, broken_hub.image_name, data=b"not a disk image at all")
    user = f"badimage-{SESSION}"
    message, _ = spawn_and_fail(broken_hub, user)
    assert "The cloud could not start your VM" in message and "not a hepsdesk process image" in message
    assert vm_of(devcloud, user) == []
    assert [p for p in conn.network.ports() if p.name.startswith(f"jupyter-{user}")] == []


def test_a_vm_without_jupyterlab_fails_at_once_with_the_reason(broken_hub, devcloud, conn):
    """The image boots but has no jupyterhub-singleuser: the spawn fails as soon as the start
    script reports the exit on the console, with the end of the log, not at the deadline."""
    put_image(conn, broken_hub.image_name,
              manifest=process_image.make_manifest("no-jupyter", path=["/nonexistent/bin"]))
    user = f"nojupyter-{SESSION}"
    message, took = spawn_and_fail(broken_hub, user)
    assert "JupyterLab could not start in your VM (it exited with status 127)" in message, message
    assert "jupyterhub-singleuser: not found" in message and "has been removed" in message
    assert took < 30, f"the spawn failed when JupyterLab exited, not at the deadline ({took:.0f} s)"
    assert vm_of(devcloud, user) == []


def test_a_vm_that_never_answers_is_removed_at_the_deadline(broken_hub, devcloud, conn, tmp_path):
    """The image's jupyterhub-singleuser runs but never listens: the spawner's deadline
    (start_timeout minus 15 s) ends the spawn with its own message, before the hub's generic
    timeout."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    silent = bin_dir / "jupyterhub-singleuser"
    silent.write_text("#!/bin/sh\nexec sleep 600\n")
    silent.chmod(0o755)
    put_image(conn, broken_hub.image_name,
              manifest=process_image.make_manifest("silent-jupyter", path=[str(bin_dir)]))
    user = f"deadline-{SESSION}"
    message, took = spawn_and_fail(broken_hub, user)
    assert "was not ready within 60 seconds" in message and "has been removed" in message
    assert took < 75, "the spawner's deadline, not the hub's start_timeout, ended the spawn"
    assert vm_of(devcloud, user) == []


def test_unknown_image_name_is_a_clear_error(broken_hub, devcloud, conn):
    for old in conn.image.images(name=broken_hub.image_name):
        conn.image.delete_image(old)
    message, took = spawn_and_fail(broken_hub, f"noimage-{SESSION}")
    assert f"The image '{broken_hub.image_name}' does not exist on the cloud" in message
    assert took < 30


def test_a_crashed_vm_shows_as_stopped_in_the_hub_and_is_cleaned_up(hub, hub_api, devcloud):
    """Polls are lookups in the shared watcher's list: a VM that dies is noticed within
    watch_interval + poll_interval (5 + 10 s by default, plus Nova's power-state sync)."""
    user = f"crash-{SESSION}"
    create_user(hub_api, user)
    assert hub_api("POST", f"/users/{user}/server").status_code in (201, 202)
    assert hub_api.progress(user)[-1].get("ready")
    [server] = vm_of(devcloud, user)
    record = json.loads((devcloud.guest_dir(server.id) / "vm.json").read_text())
    crashed = time.monotonic()
    os.kill(record["monitor_pid"], signal.SIGKILL)
    hub_api.wait_stopped(user, timeout=60)
    noticed = time.monotonic() - crashed
    assert noticed < 45, f"the hub noticed the crash after {noticed:.0f} s"
    deadline = time.monotonic() + 60
    while vm_of(devcloud, user) and time.monotonic() < deadline:
        time.sleep(1)
    assert vm_of(devcloud, user) == [], "the hub's stop() removed the crashed VM"


def test_console_excerpts_shown_to_the_user_carry_no_secrets(broken_hub, devcloud, conn, tmp_path):
    """An image whose JupyterLab prints its environment and a password before it dies: the
    end of its log reaches the user, without the token or the password."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    leaky = bin_dir / "jupyterhub-singleuser"
    leaky.write_text('#!/bin/sh\necho "JUPYTERHUB_API_TOKEN=$JUPYTERHUB_API_TOKEN"\n'
                     'echo "connecting with password: hunter2-secret"\necho "giving up"\nexit 3\n')
    leaky.chmod(0o755)
    put_image(conn, broken_hub.image_name, manifest=process_image.make_manifest("leaky-jupyter", path=[str(bin_dir)]))
    user = f"leaky-{SESSION}"
    message, _ = spawn_and_fail(broken_hub, user)
    assert "exited with status 3" in message and "giving up" in message, message
    assert "JUPYTERHUB_API_TOKEN=[secret]" in message and "password: [secret]" in message, message
    assert "hunter2" not in message
    token = re.search(r"JUPYTERHUB_API_TOKEN=(\S+)", message).group(1)
    assert token == "[secret]"
    assert vm_of(devcloud, user) == []


def test_the_hubs_sqlite_database_uses_write_ahead_logging(hub):
    """JupyterHub commits on its event loop: in WAL mode a commit does not create, sync and
    delete a journal file (jupyterhub_config.py), the largest part of the loop's lag at 100 starts."""
    with contextlib.closing(sqlite3.connect(hub.state_dir / "jupyterhub.sqlite", timeout=30)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def console_of(devcloud, user: str) -> str:
    """The console of the user's VM ("" before it is on a host, or while Nova builds it: 409)."""
    vms = vm_of(devcloud, user)
    try:
        return devcloud.connect().compute.get_server_console_output(vms[0].id)["output"] if vms else ""
    except (openstack.exceptions.NotFoundException, openstack.exceptions.ConflictException):
        return ""


def test_a_named_server_is_ready_only_when_its_own_url_answers(broken_hub, devcloud, conn, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Its own URL answers after 8 s (404 before); the default server's URL at once.
    script = bin_dir / "jupyterhub-singleuser"
    stub = ROOT / "tests" / "stub_singleuser.py"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {stub} --own-prefix-after 8\n")
    script.chmod(0o755)
    put_image(conn, broken_hub.image_name, manifest=process_image.make_manifest("prefix-stub", path=[str(bin_dir)]))
    api, user = HubAPI(broken_hub), f"named-{SESSION}"
    create_user(api, user)
    assert api("POST", f"/users/{user}/servers/probe").status_code in (201, 202)
    try:
        deadline = time.monotonic() + 60
        while STARTING_MARKER not in console_of(devcloud, user):
            assert time.monotonic() < deadline, "the VM did not start its single-user server"
            time.sleep(1)
        time.sleep(3)  # the stub answers 404 at the server's own URL all this time
        server = api("GET", f"/users/{user}").json()["servers"]["probe"]
        assert not server["ready"] and server["pending"] == "spawn", "a 404 at the server's own URL counted as up"
        assert api.progress(user, server="probe", timeout=60)[-1].get("ready")
    finally:
        assert api("DELETE", f"/users/{user}/servers/probe").status_code in (202, 204, 400)
        api.wait_stopped(user)
    assert vm_of(devcloud, user) == []
