"""A profile with ``stop_mode: shelve``: stopping shelves the VM (its disk kept as an image, no
host process), the next start resumes the same VM and gives it the new start's token through
the hub (so JupyterLab works again), and the shelved VM goes with its server, for another
profile, or when the server is removed. The reaper leaves shelved VMs alone."""

from __future__ import annotations

import secrets
import time

import pytest
import requests

from hepsdesk_spawner.reaper import find_orphans, owned_by_hub

from ..conftest import SESSION, running_hub, sign_in_without_browser
from ..kernel import run_in_kernel
from .test_data import user_token
from .test_spawner import create_user, vm_of

pytestmark = pytest.mark.devcloud

IDLE_TIMEOUT = 20
ENV_FILE = "etc/hepsdesk/singleuser.env"


@pytest.fixture(scope="module")
def shelve_hub(devcloud, tmp_path_factory):
    desktop = {"image": "hepsdesk-desktop", "flavor": "c1.small"}
    profiles = [
        {"slug": "keep", "display_name": "Kept desktop", "stop_mode": "shelve", "default": True, **desktop},
        {"slug": "keep-idle", "display_name": "Kept, stopped when idle", "stop_mode": "shelve",
         "idle_timeout": IDLE_TIMEOUT, **desktop},
        {"slug": "plain", "display_name": "Plain desktop", **desktop},
    ]
    with running_hub(devcloud, tmp_path_factory.mktemp("shelve-hub"), (18960, 18961, 19960), profiles) as hub:
        yield hub


def start(hub, user: str, profile: str, server: str = "") -> list[str]:
    path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
    response = hub.api("POST", path, json={"profile": profile})
    assert response.status_code in (201, 202), response.text
    events = hub.api.progress(user, server=server)
    assert events[-1].get("ready"), events
    return [e["message"] for e in events]


def stop(hub, user: str, server: str = "", remove: bool = False) -> None:
    path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
    response = hub.api("DELETE", path, json={"remove": True} if remove else None)
    assert response.status_code in (202, 204), response.text
    hub.api.wait_stopped(user)


def in_vm(hub, user: str, code: str) -> str:
    return run_in_kernel(f"{hub.url}/user/{user}/", user_token(hub, user), code).strip().splitlines()[-1]


def resume_env(hub, user: str, token: str, server: str = "") -> requests.Response:
    """What the VM's start script asks for at a later boot."""
    return requests.post(f"{hub.url}/hub/api/hepsdesk/resume-env", json={"user": user, "server": server},
                         headers={"Authorization": f"hepsdesk-resume {token}"}, timeout=30)


def wait_status(conn, server_id: str, status: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = conn.compute.get_server(server_id)
        if server.status == status:
            return server
        time.sleep(1)
    raise AssertionError(f"server {server_id} is {server.status}, not {status}, after {timeout:.0f} s")


def images_named(conn, name: str) -> list:
    return [image for image in conn.image.images() if image.name == name]


def test_a_shelved_vm_keeps_its_disk_and_resumes_with_the_new_token(shelve_hub, devcloud, conn):
    user, password = f"shelve-{SESSION}", secrets.token_urlsafe(12)
    shelve_hub.oidc.set_user(user, password, groups=["heps-users"])
    browser = sign_in_without_browser(shelve_hub, user, password)
    start(shelve_hub, user, "keep")
    [vm] = vm_of(devcloud, user)
    assert in_vm(shelve_hub, user, "open('/root/kept.txt', 'w').write('on the disk'); print('ok')") == "ok"
    token = next(line.split("=", 1)[1] for line in (devcloud.guest_dir(vm.id) / "disk/upper" / ENV_FILE)
                 .read_text().splitlines() if line.startswith("export JUPYTERHUB_API_TOKEN="))
    # Running, nothing to resume: the VM (after a reboot) keeps its environment.
    assert resume_env(shelve_hub, user, token).status_code == 409

    stop(shelve_hub, user)
    shelved = wait_status(conn, vm.id, "SHELVED_OFFLOADED")
    assert not devcloud.guest_dir(vm.id).exists(), "a shelved VM has no disk or process on a host"
    assert len(images_named(conn, f"{vm.name}-shelved")) == 1, "its disk is kept as an image"
    assert [p.id for p in conn.network.ports(device_id=vm.id)], "its port (and address) is kept"
    # The hub's database names it (a stopped server's state): never an orphan.
    owned = owned_by_hub(f"{shelve_hub.url}/hub/api", shelve_hub.secrets()["admin_token"])
    assert vm.id in owned.server_ids
    assert vm.id not in {o.id for o in find_orphans(conn, f"hepsdesk-test-{SESSION}", owned, grace_s=0)}
    # The spawn page offers it first, and says what choosing another environment does.
    page = browser.get(f"{shelve_hub.url}/hub/spawn/{user}", timeout=30)
    assert 'value="keep" checked' in page.text and "Your VM of this environment is shelved" in page.text
    # Only the VM's last token opens a resume, and only of its own server.
    for who, key in ((user, "not-the-token"), (user, ""), ("someone-else", token)):
        refused = resume_env(shelve_hub, who, key)
        assert refused.status_code == 403, refused.text
        assert token not in refused.text

    messages = start(shelve_hub, user, "keep")
    assert any("Resuming your shelved VM" in m for m in messages), messages
    assert [s.id for s in vm_of(devcloud, user)] == [vm.id], "the same VM, not a new one"
    # JupyterLab answers with the new token (the old one was revoked at stop), on the old disk.
    assert in_vm(shelve_hub, user, "print(open('/root/kept.txt').read())") == "on the disk"
    assert "Gave the resumed VM of" in shelve_hub.log_path.read_text()
    assert resume_env(shelve_hub, user, token).status_code == 403, "the old token opened one resume only"
    assert images_named(conn, f"{vm.name}-shelved") == [], "unshelving removes the snapshot"

    # Another profile: the shelved VM is not resumed but replaced, and nothing of it is left.
    stop(shelve_hub, user)
    wait_status(conn, vm.id, "SHELVED_OFFLOADED")
    messages = start(shelve_hub, user, "plain")
    assert any("Not resuming your shelved VM (you chose Plain desktop)" in m for m in messages), messages
    [new] = vm_of(devcloud, user)
    assert new.id != vm.id and shelved.name == new.name
    assert images_named(conn, f"{vm.name}-shelved") == []
    stop(shelve_hub, user)
    assert vm_of(devcloud, user) == [], "a plain profile's VM is deleted at stop"
    assert list(conn.network.ports(name=f"{vm.name}-port")) == []


def test_an_idle_server_is_shelved_and_removing_it_deletes_the_shelved_vm(shelve_hub, devcloud, conn):
    user = f"shelve-idle-{SESSION}"
    create_user(shelve_hub.api, user)
    start(shelve_hub, user, "keep-idle", server="analysis")
    [vm] = vm_of(devcloud, user)
    shelve_hub.api.wait_stopped(user, timeout=IDLE_TIMEOUT + 90)
    wait_status(conn, vm.id, "SHELVED_OFFLOADED")
    assert "is idle: shelving it" in shelve_hub.log_path.read_text()

    stop(shelve_hub, user, server="analysis", remove=True)
    deadline = time.monotonic() + 60
    while vm_of(devcloud, user) and time.monotonic() < deadline:
        time.sleep(1)
    assert vm_of(devcloud, user) == [], "removing the server deletes its shelved VM"
    assert images_named(conn, f"{vm.name}-shelved") == []
    assert list(conn.network.ports(name=f"{vm.name}-port")) == []


def test_a_vm_shelved_or_left_running_behind_the_hubs_back_is_still_resumed(shelve_hub, devcloud, conn):
    """An operator shelves a running VM (the hub sees it stop and keeps it), then the VM is
    running again while the hub thinks it shelved (what a hub restarted in the middle of a
    resume leaves): the next start shelves it first and resumes it, disk and all."""
    user = f"shelve-ops-{SESSION}"
    create_user(shelve_hub.api, user)
    start(shelve_hub, user, "keep", server="ops")
    [vm] = vm_of(devcloud, user)
    conn.compute.shelve_server(vm.id)
    shelve_hub.api.wait_stopped(user, timeout=120)
    wait_status(conn, vm.id, "SHELVED_OFFLOADED")

    conn.compute.unshelve_server(vm.id)
    wait_status(conn, vm.id, "ACTIVE")
    messages = start(shelve_hub, user, "keep", server="ops")
    assert any("left running by an interrupted start: shelving it first" in m for m in messages), messages
    assert any("Resuming your shelved VM" in m for m in messages), messages
    assert [s.id for s in vm_of(devcloud, user)] == [vm.id]
    token = user_token(shelve_hub, user)
    assert run_in_kernel(f"{shelve_hub.url}/user/{user}/ops/", token, "print('ok')").strip().endswith("ok")

    stop(shelve_hub, user, server="ops")
    stop(shelve_hub, user, server="ops", remove=True)
    assert vm_of(devcloud, user) == [] and images_named(conn, f"{vm.name}-shelved") == []
