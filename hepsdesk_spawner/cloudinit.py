"""The cloud-init user-data that starts a user's JupyterLab in their VM.

Kept within the subset any cloud-init and the dev cloud's process VMs both honour:
``write_files``, ``runcmd`` and ``mounts``. The hub's environment for the single-user server
(its API token among it) goes into a root-only file that a small start script sources, so the
token appears neither on the command line, nor in the console log, nor in server metadata.

With the user's POSIX identity, the start script creates their account (same uid, gid and
groups as on the storage), checks that every required data mount is there, and runs
JupyterLab as that user in their home; without one, JupyterLab runs as root (dev images).
Every value is shell-quoted, on top of the identity's own checks (``identity.py``).
"""

from __future__ import annotations

import shlex

import yaml

from .datamounts import DataMount
from .identity import PosixIdentity

SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

ENV_FILE = "/etc/hepsdesk/singleuser.env"
START_SCRIPT = "/usr/local/sbin/hepsdesk-start-singleuser"
LOG_FILE = "/var/log/hepsdesk-singleuser.log"
# Printed on the console when the guest starts JupyterLab, and when JupyterLab exits (with
# the end of its log): the spawner reads both, for its progress and to fail a spawn at once.
STARTING_MARKER = "hepsdesk: starting JupyterLab"
EXITED_MARKER = "hepsdesk: JupyterLab exited"
LOG_LINE_PREFIX = "hepsdesk: | "
# Printed instead of starting JupyterLab when a required data mount is missing.
MISSING_MOUNT_MARKER = "hepsdesk: data not mounted:"


def render_singleuser_user_data(command: list[str], env: dict[str, str], workdir: str = "",
                                identity: PosixIdentity | None = None,
                                mounts: list[DataMount] = ()) -> str:
    """#cloud-config that mounts ``mounts`` and starts ``command`` with ``env`` at every boot,
    as ``identity`` (root without one), in ``workdir`` (empty: the home)."""
    if identity is not None:
        env = {**env, "HOME": identity.home, "USER": identity.username, "LOGNAME": identity.username,
               "SHELL": identity.shell}
    workdir = workdir or (identity.home if identity is not None else "/root")
    env_lines = "".join(f"export {key}={shlex.quote(str(value))}\n" for key, value in sorted(env.items())
                        if _valid_name(key))
    log = shlex.quote(LOG_FILE)
    run = shlex.join(command)
    if identity is not None:
        # The groups by number: another account of the image may share the uid (see useradd -o).
        groups = ",".join(str(gid) for gid in dict.fromkeys([identity.gid, *(g for _, g in identity.groups)]))
        run = f"setpriv --reuid={identity.uid} --regid={identity.gid} --groups={groups} -- {run}"
    script = (
        "#!/bin/sh\n"
        "# Started at boot by cloud-init (runcmd); JupyterHub's environment is in the env file.\n"
        "# Its output is the console: if JupyterLab exits, the end of its log goes there.\n"
        f". {ENV_FILE}\n"
        + (_account_lines(identity) if identity is not None else "")
        + "".join(_mount_check_lines(m) for m in mounts if m.required)
        + _workdir_lines(workdir, identity)
        + f"{run} >> {log} 2>&1\n"
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
    if mounts:
        config["mounts"] = [[m.source, m.target, m.fstype, m.options, "0", "0"] for m in mounts]
    # libyaml's emitter: PyYAML's pure-Python one takes milliseconds, on the hub's event loop.
    return "#cloud-config\n" + yaml.dump(config, Dumper=SafeDumper, default_flow_style=False, sort_keys=False,
                                         width=1000)


def _account_lines(identity: PosixIdentity) -> str:
    """Shell lines that give the VM the user's account: groups by gid, then the user by uid
    (``-o``: an image's own account may already hold the number)."""
    q = shlex.quote
    lines = [f"getent group {identity.gid} >/dev/null || groupadd -o -g {identity.gid} {q(identity.group)}"]
    for name, gid in identity.groups:
        lines.append(f"getent group {gid} >/dev/null || groupadd -o -g {gid} {q(name)}")
    supplementary = ",".join(str(gid) for _, gid in identity.groups)
    options = (f"-o -u {identity.uid} -g {identity.gid} -d {q(identity.home)} -s {q(identity.shell)}"
               + (f" -G {supplementary}" if supplementary else ""))
    lines.append(f"if id -u {q(identity.username)} >/dev/null 2>&1; then usermod {options} {q(identity.username)}; "
                 f"else useradd -M {options} {q(identity.username)}; fi")
    return "".join(line + "\n" for line in lines)


def _workdir_lines(workdir: str, identity: PosixIdentity | None) -> str:
    """Go to ``workdir``; a home that is not on the storage is made on the VM's disk, the user's."""
    q = shlex.quote(workdir)
    owner = f" && chown {identity.uid}:{identity.gid} {q}" if identity is not None else ""
    return f"[ -d {q} ] || {{ mkdir -p {q}{owner}; }}\ncd {q} || exit 1\n"


def _mount_check_lines(mount: DataMount) -> str:
    """Refuse to start JupyterLab without a required mount: what it wrote would be lost with the VM."""
    target = shlex.quote(mount.target)
    shown = shlex.quote(f"{MISSING_MOUNT_MARKER} {mount.source} on {mount.target}")
    return (f"if ! mountpoint -q {target}; then echo {shown}; "
            f"echo \"{EXITED_MARKER} with status 3; the end of {LOG_FILE}:\"; exit 3; fi\n")


def _valid_name(name: str) -> bool:
    return name.replace("_", "a").isalnum() and not name[0].isdigit()
