"""The warm pool through the real hub and dev cloud: a start claims a pooled VM, which becomes
the user's (their uid, home and data, mounted after its boot); the pool refills; a pooled VM
that fails to take its user is removed and the start boots a new VM instead; a pool whose
image is missing is not kept, and the hub says so once, not at every look."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from hepsdesk_spawner.pool import INTERVAL, POOL_KEY

from ..conftest import SESSION, running_hub, sign_in_without_browser
from ..kernel import run_in_kernel
from .test_data import CHECK, sign_in, spawn, user_token
from .test_metrics import scrape, total
from .test_spawner import vm_of

pytestmark = pytest.mark.devcloud

PROFILES = [{"slug": "pooled", "display_name": "Pooled desktop", "image": "hepsdesk-desktop", "flavor": "c1.small",
             "default": True},
            {"slug": "pooled-missing", "display_name": "Pooled, its image deleted", "image": "hepsdesk-no-such-image",
             "flavor": "c1.small"}]
UID = 23517


@pytest.fixture(scope="module")
def pool_hub(devcloud, tmp_path_factory):
    with running_hub(devcloud, tmp_path_factory.mktemp("pool-hub"), (18420, 18421, 19420), profiles=PROFILES,
                     HEPSDESK_DATA_SERVER=devcloud.settings.storage_server,
                     HEPSDESK_WARM_POOL=json.dumps({"pooled": 1, "pooled-missing": 1}),
                     HEPSDESK_POOL_CLAIM_TIMEOUT="40") as hub:
        hub.up_since = time.monotonic()
        yield hub


def pooled_vms(devcloud) -> list:
    admin = devcloud.connect("devcloud-admin")
    return [s for s in admin.compute.servers(all_projects=True)
            if POOL_KEY in (s.metadata or {}) and (s.metadata or {}).get("hepsdesk-hub") == f"hepsdesk-test-{SESSION}"]


def wait_pool_ready(hub, devcloud, timeout: float = 240):
    """The pooled VM whose guest waits for a user (the hub's metrics say so), once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if total(scrape(hub, hub.api.session.headers), "hepsdesk_pool_size", profile="pooled", state="ready") == 1:
            [vm] = pooled_vms(devcloud)
            return vm
        time.sleep(1)
    raise AssertionError(f"no pooled VM became ready within {timeout:.0f} s: {pooled_vms(devcloud)}")


def break_nfs_client(devcloud, server_id: str) -> None:
    """As an admin in the VM would: remove its NFS mount helpers (the dev cloud's guest init)."""
    record = json.loads((devcloud.guest_dir(server_id) / "vm.json").read_text())
    children = Path(f"/proc/{record['monitor_pid']}/task/{record['monitor_pid']}/children").read_text().split()
    subprocess.run(["nsenter", "-t", children[0], "-m", "-r", "--", "rm", "-f", "/usr/sbin/mount.nfs4",
                    "/usr/sbin/mount.nfs"], check=True, timeout=30)


def test_a_start_claims_a_pooled_vm_which_becomes_the_users_and_the_pool_refills(pool_hub, devcloud):
    user, mine = f"pooled-{SESSION}", f"P-{SESSION}-pool"
    home = devcloud.storage_directory(f"home/{user}", UID, UID)
    mine_dir = devcloud.storage_directory(f"proposals/{mine}", UID, UID, 0o770)
    password = secrets.token_urlsafe(12)
    pool_hub.oidc.set_user(user, password, groups=["heps-users"], proposals=[mine],
                           posix={"uidNumber": UID, "gidNumber": UID, "homeDirectory": f"/home/{user}"})
    browser = sign_in_without_browser(pool_hub, user, password)
    pooled = wait_pool_ready(pool_hub, devcloud)
    assert "hepsdesk-user" not in pooled.metadata  # nobody's yet

    events = spawn(pool_hub, user)
    assert events[-1].get("ready"), events[-1]
    messages = [e["message"] for e in events]
    assert any("Taking a prepared VM from the warm pool" in m for m in messages), messages
    assert not any("Booting your VM" in m for m in messages), messages
    [vm] = vm_of(devcloud, user)
    assert vm.id == pooled.id and POOL_KEY not in vm.metadata and vm.name == f"jupyter-{user}"

    # The user's own uid, home and data, mounted after the VM's boot.
    token = user_token(pool_hub, user)
    seen = json.loads(run_in_kernel(f"{pool_hub.url}/user/{user}/", token, CHECK.format(mine=mine))
                      .strip().splitlines()[-1])
    assert (seen["uid"], seen["gid"]) == (UID, UID) and seen["home"] == seen["cwd"] == f"/home/{user}"
    assert seen["data"] == [mine] and seen["root_write"] is False
    assert (home / "notes.txt").read_text() == "kept" and (mine_dir / "result.txt").stat().st_uid == UID
    # Its JupyterLab is the server's, as a booted one would be (its login cookie is the server's
    # alone: JupyterHub's modules, loaded ahead, would have taken "/").
    lab = browser.get(f"{pool_hub.url}/user/{user}/lab", timeout=60)
    assert lab.status_code == 200 and lab.url.endswith(f"/user/{user}/lab"), lab.url
    assert {c.path for c in browser.cookies if c.name.startswith("jupyterhub-user-")} == {f"/user/{user}/"}

    # The pool refills with a new VM, and the claim is counted.
    refilled = wait_pool_ready(pool_hub, devcloud)
    assert refilled.id != pooled.id
    assert total(scrape(pool_hub, pool_hub.api.session.headers), "hepsdesk_pool_claims_total", profile="pooled",
                 outcome="claimed") == 1

    # A pooled VM serves one user once: it goes with the server.
    assert pool_hub.api("DELETE", f"/users/{user}/server").status_code in (202, 204)
    pool_hub.api.wait_stopped(user)
    assert vm_of(devcloud, user) == [] and not devcloud.guest_dir(pooled.id).exists()


def test_a_pooled_vm_that_fails_to_take_its_user_is_removed_and_a_new_vm_boots(pool_hub, devcloud):
    user, mine = f"pool-fallback-{SESSION}", f"P-{SESSION}-fallback"
    devcloud.storage_directory(f"home/{user}", UID + 1, UID + 1)
    devcloud.storage_directory(f"proposals/{mine}", UID + 1, UID + 1, 0o770)
    sign_in(pool_hub, user, [mine], {"uidNumber": UID + 1, "gidNumber": UID + 1, "homeDirectory": f"/home/{user}"})
    pooled = wait_pool_ready(pool_hub, devcloud)
    break_nfs_client(devcloud, pooled.id)  # its user's data cannot be mounted in it

    events = spawn(pool_hub, user)
    assert events[-1].get("ready"), events[-1]
    messages = [e["message"] for e in events]
    taken = next(i for i, m in enumerate(messages) if "Taking a prepared VM from the warm pool" in m)
    fallback = next(i for i, m in enumerate(messages) if "could not be set up for you" in m)
    # (Not "Booting your VM": the watcher may see the new VM only once it is already active.)
    assert taken < fallback < next(i for i, m in enumerate(messages) if "Creating your VM" in m), messages
    [vm] = vm_of(devcloud, user)
    assert vm.id != pooled.id and not devcloud.guest_dir(pooled.id).exists()
    assert total(scrape(pool_hub, pool_hub.api.session.headers), "hepsdesk_pool_claims_total", profile="pooled",
                 outcome="fallback") == 1
    assert pool_hub.api("DELETE", f"/users/{user}/server").status_code in (202, 204)
    pool_hub.api.wait_stopped(user)


def test_a_pool_whose_image_is_missing_is_not_kept_and_is_reported_once(pool_hub, devcloud):
    time.sleep(max(0.0, pool_hub.up_since + 3.5 * INTERVAL - time.monotonic()))  # the pool has looked 3 times
    samples = scrape(pool_hub, pool_hub.api.session.headers)
    assert total(samples, "hepsdesk_pool_size", profile="pooled-missing", state="target") == 0
    assert total(samples, "hepsdesk_pool_size", profile="pooled", state="target") == 1
    assert not [vm for vm in pooled_vms(devcloud) if vm.metadata.get("hepsdesk-profile") == "pooled-missing"]
    said = pool_hub.log_path.read_text().count("the image, flavor or network of pooled-missing does not exist")
    assert said == 1, said
