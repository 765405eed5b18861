"""The cloud-init user-data that starts a user's JupyterLab in their VM.

Kept within the subset any cloud-init and the dev cloud's process VMs both honour:
``write_files`` and ``runcmd``. The hub's environment for the single-user server (its API
token among it) goes into a root-only file that a small start script sources, so the token
appears neither on the command line, nor in the console log, nor in server metadata.
"""

from __future__ import annotations

import shlex

import yaml

ENV_FILE = "/etc/hepsdesk/singleuser.env"
START_SCRIPT = "/usr/local/sbin/hepsdesk-start-singleuser"
LOG_FILE = "/var/log/hepsdesk-singleuser.log"
# Printed on the console when the guest starts JupyterLab, and when JupyterLab exits (with
# the end of its log): the spawner reads both, for its progress and to fail a spawn at once.
STARTING_MARKER = "hepsdesk: starting JupyterLab"
EXITED_MARKER = "hepsdesk: JupyterLab exited"
LOG_LINE_PREFIX = "hepsdesk: | "


def render_singleuser_user_data(command: list[str], env: dict[str, str], workdir: str = "/root") -> str:
    """#cloud-config that starts ``command`` with ``env`` in ``workdir`` at every boot."""
    env_lines = "".join(f"export {key}={shlex.quote(str(value))}\n" for key, value in sorted(env.items())
                        if _valid_name(key))
    log = shlex.quote(LOG_FILE)
    script = (
        "#!/bin/sh\n"
        "# Started at boot by cloud-init (runcmd); JupyterHub's environment is in the env file.\n"
        "# Its output is the console: if JupyterLab exits, the end of its log goes there.\n"
        f". {ENV_FILE}\n"
        f"mkdir -p {shlex.quote(workdir)} && cd {shlex.quote(workdir)}\n"
        f"{shlex.join(command)} >> {log} 2>&1\n"
        "status=$?\n"
        f"echo \"{EXITED_MARKER} with status $status; the end of {LOG_FILE}:\"\n"
        f"tail -n 8 {log} | sed 's/^/{LOG_LINE_PREFIX}/'\n"
        "exit $status\n"
    )
    config = {
        "write_files": [
            {"path": ENV_FILE, "permissions": "0600", "owner": "root:root", "content": env_lines},
            {"path": START_SCRIPT, "permissions": "0700", "owner": "root:root", "content": script},
        ],
        "runcmd": [
            ["sh", "-c", f"echo '{STARTING_MARKER}'; nohup {START_SCRIPT} &"],
        ],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, default_flow_style=False, sort_keys=False, width=1000)


def _valid_name(name: str) -> bool:
    return name.replace("_", "a").isalnum() and not name[0].isdigit()
