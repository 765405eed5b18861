"""The user-data the spawner renders: valid for the dev cloud's (and cloud-init's) parser,
with the hub's environment only in a root-only file."""

import base64

from hepsdesk_devcloud.service_plugins.hepsdesk_cloudconfig import build_boot_plan
from hepsdesk_spawner.cloudinit import (
    ENV_FILE,
    EXITED_MARKER,
    START_SCRIPT,
    STARTING_MARKER,
    render_singleuser_user_data,
)


def test_singleuser_user_data_is_honoured_and_keeps_the_token_in_a_private_file():
    env = {"JUPYTERHUB_API_TOKEN": "s3cr3t-token", "JUPYTERHUB_USER": "alice", "QUOTED": "it's $HOME",
           "not valid": "dropped"}
    user_data = render_singleuser_user_data(["jupyterhub-singleuser", "--allow-root"], env, workdir="/root")
    plan = build_boot_plan(user_data)
    files = {f["path"]: f for f in plan["write_files"]}
    assert files[ENV_FILE]["permissions"] == 0o600 and files[ENV_FILE]["owner"] == "root:root"
    env_text = base64.b64decode(files[ENV_FILE]["content_b64"]).decode()
    assert "export JUPYTERHUB_API_TOKEN=s3cr3t-token" in env_text
    assert "export QUOTED='it'\"'\"'s $HOME'" in env_text
    assert "not valid" not in env_text
    script = base64.b64decode(files[START_SCRIPT]["content_b64"]).decode()
    assert "jupyterhub-singleuser --allow-root >> /var/log/hepsdesk-singleuser.log 2>&1" in script
    assert EXITED_MARKER in script and "s3cr3t-token" not in script
    runcmd = base64.b64decode(next(s for s in plan["scripts"] if s["name"] == "runcmd")["content_b64"]).decode()
    assert STARTING_MARKER in runcmd and "s3cr3t-token" not in runcmd
