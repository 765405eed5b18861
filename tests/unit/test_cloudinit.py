"""The user-data the spawner renders: valid for the dev cloud's (and cloud-init's) parser,
with the hub's environment only in a root-only file."""

import base64

from hepsdesk_devcloud.service_plugins.hepsdesk_cloudconfig import build_boot_plan
from hepsdesk_identity import PosixIdentity
from hepsdesk_spawner.cloudinit import (
    ENV_FILE,
    EXITED_MARKER,
    FETCH_ENV_SCRIPT,
    PER_BOOT_SCRIPT,
    START_SCRIPT,
    STARTING_MARKER,
    render_singleuser_user_data,
    singleuser_environment,
)
from hepsdesk_spawner.datamounts import DataMount, expand_all


def test_singleuser_user_data_is_honoured_and_keeps_the_token_in_a_private_file():
    env = {"JUPYTERHUB_API_TOKEN": "s3cr3t-token", "JUPYTERHUB_USER": "alice", "QUOTED": "it's $HOME",
           "not valid": "dropped"}
    user_data = render_singleuser_user_data(["jupyterhub-singleuser", "--allow-root"], env, workdir="/root")
    assert "\nusers: []\n" in user_data  # no default user (the dev cloud honours it: it makes none)
    plan = build_boot_plan(user_data)
    files = {f["path"]: f for f in plan["write_files"]}
    assert files[ENV_FILE]["permissions"] == 0o600 and files[ENV_FILE]["owner"] == "root:root"
    env_text = base64.b64decode(files[ENV_FILE]["content_b64"]).decode()
    assert "export JUPYTERHUB_API_TOKEN=s3cr3t-token" in env_text
    assert "export QUOTED='it'\"'\"'s $HOME'" in env_text
    assert "not valid" not in env_text
    script = base64.b64decode(files[START_SCRIPT]["content_b64"]).decode()
    assert "jupyterhub-singleuser --allow-root >> /var/log/hepsdesk-singleuser.log 2>&1" in script
    # Nicer than the desktop's capture and encode, which may take the difference back.
    assert "prlimit --pid $$ --nice=20 2>/dev/null; renice -n 5 -p $$ > /dev/null 2>&1\n" in script
    assert EXITED_MARKER in script and "s3cr3t-token" not in script
    # Started by a per-boot script, which cloud-init runs again after a reboot or an unshelve
    # (runcmd it does not): at later boots the start script first asks the hub for the env.
    assert plan["scripts"] == []
    per_boot = base64.b64decode(files[PER_BOOT_SCRIPT]["content_b64"]).decode()
    assert STARTING_MARKER in per_boot and START_SCRIPT in per_boot and "s3cr3t-token" not in per_boot
    assert files[PER_BOOT_SCRIPT]["permissions"] == 0o700
    assert script.index(FETCH_ENV_SCRIPT) < script.index(f". {ENV_FILE}")
    fetch = base64.b64decode(files[FETCH_ENV_SCRIPT]["content_b64"]).decode()
    compile(fetch, FETCH_ENV_SCRIPT, "exec")  # valid Python
    assert "s3cr3t-token" not in fetch and files[FETCH_ENV_SCRIPT]["permissions"] == 0o700


def test_the_desktop_learns_the_data_directories_it_may_move_files_to_and_from():
    alice = PosixIdentity(username="alice", uid=21001, gid=21001, group="alice", groups=(), home="/home/alice",
                          shell="/bin/bash")
    templates = [DataMount("nfs:/home/{username}", "{home}"),
                 DataMount("nfs:/proposals/{proposal}", "/data/{proposal}")]
    mounts = expand_all(templates, alice, ["p-2026-001", "p-2026-007"])
    env = singleuser_environment({"JUPYTERHUB_USER": "alice"}, alice, mounts)
    assert env["HEPSDESK_DESKTOP_FILE_ROOTS"] == "/home/alice:/data/p-2026-001:/data/p-2026-007"
    assert "HEPSDESK_DESKTOP_FILE_ROOTS" not in singleuser_environment({"JUPYTERHUB_USER": "alice"}, alice)
