"""The user's data in their VM: their account (uid/gid from auth_state), their home and their
proposals from the facility's storage (the dev cloud's storage directory), kept when the VM
is deleted; and clear refusals, with nothing created, when the identity or the data is not there."""

from __future__ import annotations

import json
import secrets

import pytest
import requests

from ..conftest import SESSION, running_hub, sign_in_without_browser
from ..kernel import run_in_kernel
from .test_spawner import vm_of

pytestmark = pytest.mark.devcloud

UID = 23417


@pytest.fixture(scope="module")
def data_hub(devcloud, tmp_path_factory):
    with running_hub(devcloud, tmp_path_factory.mktemp("data-hub"), (18900, 18981, 19990),
                     HEPSDESK_DATA_SERVER=devcloud.settings.storage_server) as hub:
        yield hub


def sign_in(hub, user: str, proposals: list[str], posix: dict | None) -> None:
    """``user`` signs in through the SSO, which releases ``posix`` (uidNumber, ...) claims."""
    password = secrets.token_urlsafe(12)
    hub.oidc.set_user(user, password, groups=["heps-users"], proposals=proposals, posix=posix)
    sign_in_without_browser(hub, user, password)


def spawn(hub, user: str) -> list[dict]:
    response = hub.api("POST", f"/users/{user}/server")
    assert response.status_code in (201, 202), response.text
    return hub.api.progress(user)


def user_token(hub, user: str) -> str:
    response = hub.api("POST", f"/users/{user}/tokens", json={"note": "test_data", "expires_in": 600})
    assert response.status_code == 201, response.text
    return response.json()["token"]


CHECK = """
import json, os
home = os.path.expanduser("~")
with open(os.path.join(home, "notes.txt"), "w") as f:
    f.write("kept")
with open("/data/{mine}/result.txt", "w") as f:
    f.write("measured")
try:
    open("/etc/written-by-user", "w").close()
    root_write = True
except PermissionError:
    root_write = False
print(json.dumps({{"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "home": home,
                  "cwd": os.getcwd(), "data": sorted(os.listdir("/data")), "root_write": root_write}}))
"""


DESKTOP_OWNERS = """
import json, os
owners = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    except OSError:
        continue
    owners.setdefault(status["Name"].strip(), []).append(int(status["Uid"].split()[0]))
print(json.dumps({name: sorted(set(uids)) for name, uids in owners.items()}))
"""


def test_the_vm_runs_as_the_user_on_their_data_and_the_data_outlives_the_vm(data_hub, devcloud):
    user, mine, other = f"data-{SESSION}", f"P-{SESSION}-1", f"P-{SESSION}-other"
    home = devcloud.storage_directory(f"home/{user}", UID, UID)
    mine_dir = devcloud.storage_directory(f"proposals/{mine}", UID, UID, 0o770)
    devcloud.storage_directory(f"proposals/{other}", UID + 1, UID + 1, 0o770)
    sign_in(data_hub, user, [mine], {"uidNumber": UID, "gidNumber": UID, "homeDirectory": f"/home/{user}"})

    assert spawn(data_hub, user)[-1].get("ready")
    token = user_token(data_hub, user)
    server_url = f"{data_hub.url}/user/{user}/"
    seen = json.loads(run_in_kernel(server_url, token, CHECK.format(mine=mine)).strip().splitlines()[-1])
    assert (seen["uid"], seen["gid"], seen["groups"]) == (UID, UID, [UID])
    assert seen["home"] == seen["cwd"] == f"/home/{user}"
    assert seen["data"] == [mine]  # another experiment's data is not mounted
    assert seen["root_write"] is False
    # Written in the VM, it is on the storage, owned by the same uid/gid.
    for path in (home / "notes.txt", mine_dir / "result.txt"):
        assert (path.stat().st_uid, path.stat().st_gid) == (UID, UID)
    assert (home / "notes.txt").read_text() == "kept"
    # The desktop (X server, window manager, panel, sound server) runs as the user too.
    desktop = requests.get(f"{server_url}desktop/", headers={"Authorization": f"token {token}"}, timeout=60)
    assert desktop.status_code == 200 and "<title>Desktop</title>" in desktop.text, desktop.text[:300]
    owners = json.loads(run_in_kernel(server_url, token, DESKTOP_OWNERS).strip().splitlines()[-1])
    assert owners.get("Xtigervnc") == owners.get("xfwm4") == owners.get("xfce4-panel") == [UID], owners
    assert owners.get("pulseaudio") == owners.get("dbus-daemon") == [UID], owners

    [vm] = vm_of(devcloud, user)
    assert data_hub.api("DELETE", f"/users/{user}/server").status_code in (202, 204)
    data_hub.api.wait_stopped(user)
    assert vm_of(devcloud, user) == [] and not devcloud.guest_dir(vm.id).exists()
    assert (home / "notes.txt").read_text() == "kept" and (mine_dir / "result.txt").read_text() == "measured"

    # A new VM finds the same files.
    assert spawn(data_hub, user)[-1].get("ready")
    notes = data_hub.api.session.get(f"{server_url}api/contents/notes.txt", timeout=30,
                                     headers={"Authorization": f"token {token}"})
    assert notes.status_code == 200 and notes.json()["content"] == "kept", notes.text[:300]


def test_missing_storage_fails_the_spawn_clearly_and_removes_the_vm(data_hub, devcloud):
    user = f"nohome-{SESSION}"  # the storage has no home directory for this user
    sign_in(data_hub, user, [], {"uidNumber": UID + 2, "gidNumber": UID + 2})
    events = spawn(data_hub, user)
    assert events[-1].get("failed"), events[-3:]
    message = events[-1]["message"]
    assert "Your data could not be mounted" in message and f"/home/{user}" in message, message
    assert "access denied by server" in message and "nothing was written" in message, message
    data_hub.api.wait_stopped(user)
    assert vm_of(devcloud, user) == []


@pytest.mark.parametrize("case, posix, message", [
    ("none", None, "your account has no computing identity"),
    ("root", {"uidNumber": 0, "gidNumber": 0}, "the uid 0 is outside"),
    ("system", {"uidNumber": 1000, "gidNumber": 1000}, "the uid 1000 is outside"),  # below min_posix_id
    # Above min_posix_id, but the image's own "nobody" (its Glance properties declare it).
    ("image-account", {"uidNumber": 65534, "gidNumber": UID}, "your uid 65534 is used by an account of the VM image"),
    ("shell", {"uidNumber": UID, "gidNumber": UID, "homeDirectory": "/home/x; reboot"},
     "is not a plain absolute path"),
])
def test_no_or_unsafe_identity_is_refused_before_anything_is_created(data_hub, devcloud, case, posix, message):
    user = f"noid-{case}-{SESSION}"
    sign_in(data_hub, user, [], posix)
    events = spawn(data_hub, user)
    assert events[-1].get("failed") and message in events[-1]["message"], events[-1]
    assert vm_of(devcloud, user) == []
    assert "Traceback" not in events[-1]["message"]
