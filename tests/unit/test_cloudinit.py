"""The user-data the spawner renders: valid for the dev cloud's (and cloud-init's) parser,
with the hub's environment only in a root-only file."""

import base64
import json

from hepsdesk_devcloud.service_plugins.hepsdesk_cloudconfig import build_boot_plan
from hepsdesk_identity import PosixIdentity
from hepsdesk_spawner.cloudinit import (
    ENV_FILE,
    GUEST_START,
    PER_BOOT_SCRIPT,
    START_SCRIPT,
    guest_plan,
    render_pool_user_data,
    render_singleuser_user_data,
    singleuser_environment,
)
from hepsdesk_spawner.datamounts import DataMount, expand_all
from hepsdesk_spawner.guest_start import PLAN_FILE, POOL_FILE, check_plan

ALICE = PosixIdentity(username="alice", uid=21001, gid=21001, group="alice", groups=(("p-2026-001", 30001),),
                      home="/home/alice", shell="/bin/bash")


def files_of(user_data: str) -> dict[str, dict]:
    plan = build_boot_plan(user_data)  # the dev cloud (and cloud-init) accept it
    assert plan["scripts"] == []  # started by a per-boot script, which runs again after a reboot or an unshelve
    return {f["path"]: {**f, "text": base64.b64decode(f["content_b64"]).decode()} for f in plan["write_files"]}


def test_singleuser_user_data_is_honoured_and_keeps_the_token_in_a_private_file():
    env = {"JUPYTERHUB_API_TOKEN": "s3cr3t-token", "JUPYTERHUB_USER": "alice", "QUOTED": "it's $HOME",
           "not valid": "dropped"}
    user_data = render_singleuser_user_data(["jupyterhub-singleuser", "--allow-root"], env, workdir="/root")
    assert "\nusers: []\n" in user_data  # no default user (the dev cloud honours it: it makes none)
    files = files_of(user_data)
    assert files[ENV_FILE]["permissions"] == 0o600 and files[ENV_FILE]["owner"] == "root:root"
    env_text = files[ENV_FILE]["text"]
    assert "export JUPYTERHUB_API_TOKEN=s3cr3t-token" in env_text
    assert "export QUOTED='it'\"'\"'s $HOME'" in env_text
    assert "not valid" not in env_text
    # The start program is guest_start.py as it is; what it runs is data, in a root-only plan.
    assert files[START_SCRIPT]["text"] == GUEST_START and files[START_SCRIPT]["permissions"] == 0o700
    compile(GUEST_START, START_SCRIPT, "exec")
    assert files[PLAN_FILE]["permissions"] == 0o600
    assert json.loads(files[PLAN_FILE]["text"]) == {"command": ["jupyterhub-singleuser", "--allow-root"],
                                                    "workdir": "/root", "identity": None, "mounts": []}
    per_boot = files[PER_BOOT_SCRIPT]["text"]
    assert START_SCRIPT in per_boot and files[PER_BOOT_SCRIPT]["permissions"] == 0o700
    assert all("s3cr3t-token" not in f["text"] for path, f in files.items() if path != ENV_FILE)


def test_the_plan_carries_the_account_and_mounts_and_the_vm_checks_it():
    mounts = expand_all([DataMount("nfs:/home/{username}", "{home}"),
                         DataMount("nfs:/raw/{proposal}", "/data/raw/{proposal}", options="ro", required=False)],
                        ALICE, ["P-1"])
    plan = guest_plan(["jupyterhub-singleuser"], "", ALICE, mounts)
    assert plan["identity"] == {"username": "alice", "uid": 21001, "gid": 21001, "group": "alice",
                                "home": "/home/alice", "shell": "/bin/bash", "groups": [["p-2026-001", 30001]]}
    assert plan["workdir"] == "/home/alice"
    assert plan["mounts"][1] == {"source": "nfs:/raw/P-1", "target": "/data/raw/P-1", "fstype": "nfs4",
                                 "options": "ro", "required": False}
    assert check_plan(json.loads(json.dumps(plan))) == plan  # what the VM accepts, through JSON


def test_a_pooled_vm_holds_no_ones_identity_environment_or_data():
    files = files_of(render_pool_user_data("https://hub.example/hub/api", "one-time-key", allow_http=False,
                                           command=["jupyterhub-singleuser"]))
    assert set(files) == {POOL_FILE, START_SCRIPT, PER_BOOT_SCRIPT}
    assert json.loads(files[POOL_FILE]["text"]) == {"api_url": "https://hub.example/hub/api", "key": "one-time-key",
                                                    "allow_http": False, "command": ["jupyterhub-singleuser"]}
    assert files[POOL_FILE]["permissions"] == 0o600
    assert "mounts" not in build_boot_plan(render_pool_user_data("https://h/hub/api", "k", False)) or \
        build_boot_plan(render_pool_user_data("https://h/hub/api", "k", False))["mounts"] == []


def test_the_desktop_learns_the_data_directories_it_may_move_files_to_and_from():
    alice = PosixIdentity(username="alice", uid=21001, gid=21001, group="alice", groups=(), home="/home/alice",
                          shell="/bin/bash")
    templates = [DataMount("nfs:/home/{username}", "{home}"),
                 DataMount("nfs:/proposals/{proposal}", "/data/{proposal}")]
    mounts = expand_all(templates, alice, ["p-2026-001", "p-2026-007"])
    env = singleuser_environment({"JUPYTERHUB_USER": "alice"}, alice, mounts)
    assert env["HEPSDESK_DESKTOP_FILE_ROOTS"] == "/home/alice:/data/p-2026-001:/data/p-2026-007"
    assert "HEPSDESK_DESKTOP_FILE_ROOTS" not in singleuser_environment({"JUPYTERHUB_USER": "alice"}, alice)
