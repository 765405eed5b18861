"""The cloud-init user-data that starts a user's JupyterLab in their VM.

Kept within the subset any cloud-init and the dev cloud's process VMs both honour:
``write_files``, ``mounts`` and a script in ``/var/lib/cloud/scripts/per-boot``, which
cloud-init runs at every boot: the first, and after a reboot or an unshelve (when it runs
neither ``write_files`` nor ``runcmd`` again).

User-data carries nothing reusable: a real cloud's metadata service serves it to every process
in the guest, for as long as the VM lives. It holds the start program (``guest_start.py``),
its plan (the command, the user's POSIX identity and data mounts: data, checked again in the
VM, never shell) and a first environment of where the hub is, whose server this is, and a
one-time boot key (``boot_environment``). At every boot the start program first asks the hub
for the server's environment (its API token among it), presenting that key (or, at a later
boot, the token it got: see ``resume.py``); the hub answers once per start, and the key is
dead after its first use and outside the start. The environment goes into a root-only file:
the token appears neither on the command line, nor in the console log, nor in server
metadata or user-data.

A pooled VM's user-data (``render_pool_user_data``) holds only the program, the hub's URL
and a one-time pool key: its plan and environment come from the hub when a spawn claims it.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

import yaml

from hepsdesk_identity import PosixIdentity

from . import guest_start
from .datamounts import DataMount
from .guest_start import (  # noqa: F401 (the markers and names the spawner reads, from the program itself)
    ALLOW_HTTP_HUB,
    BOOT_KEY,
    ENV_FILE,
    EXITED_MARKER,
    IDENTITY_CONFLICT_MARKER,
    LOG_FILE,
    LOG_LINE_PREFIX,
    MISSING_MOUNT_MARKER,
    NO_ENV_MARKER,
    POOL_FAILED_MARKER,
    STARTING_MARKER,
)

SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

START_SCRIPT = "/usr/local/sbin/hepsdesk-start"  # guest_start.py
PER_BOOT_SCRIPT = "/var/lib/cloud/scripts/per-boot/hepsdesk-singleuser"
# What the first boot's env file holds besides the key: where the hub is and whose server this is.
BOOT_NAMES = ("JUPYTERHUB_API_URL", "JUPYTERHUB_USER", "JUPYTERHUB_SERVER_NAME")
VARIABLE_NAME = re.compile(guest_start.VARIABLE_NAME)
FILE_ROOTS = "HEPSDESK_DESKTOP_FILE_ROOTS"  # desktop_proxy/files.py
GUEST_START = Path(guest_start.__file__).read_text()  # the program, as the VM runs it


def singleuser_environment(env: dict[str, str], identity: PosixIdentity | None = None,
                           mounts: Sequence[DataMount] = ()) -> dict[str, str]:
    """The single-user server's environment: ``env`` and the identity's HOME, USER, ...; the
    data mounts' directories, where the desktop may put uploaded files and send files from
    (variables with a name a shell takes only)."""
    if identity is not None:
        env = {**env, "HOME": identity.home, "USER": identity.username, "LOGNAME": identity.username,
               "SHELL": identity.shell}
    if mounts:
        env = {**env, FILE_ROOTS: ":".join(mount.target for mount in mounts if ":" not in mount.target)}
    return {key: str(value) for key, value in sorted(env.items()) if VARIABLE_NAME.fullmatch(key)}


def boot_environment(env: dict[str, str], boot_key: str) -> dict[str, str]:
    """The first boot's environment: enough to ask the hub for the rest, with the one-time key."""
    return {**{name: env[name] for name in (*BOOT_NAMES, ALLOW_HTTP_HUB) if name in env}, BOOT_KEY: boot_key}


def render_env_file(env: dict[str, str], identity: PosixIdentity | None = None) -> str:
    """The env file the start script sources: the environment as shell-quoted exports."""
    environment = singleuser_environment(env, identity)
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in environment.items())


def guest_plan(command: list[str], workdir: str = "", identity: PosixIdentity | None = None,
               mounts: Sequence[DataMount] = ()) -> dict:
    """What the VM's start program does (``guest_start.check_plan``): run ``command`` as
    ``identity`` (root without one) in ``workdir`` (empty: the home), with ``mounts``."""
    return {
        "command": list(command),
        "workdir": workdir or (identity.home if identity is not None else "/root"),
        "identity": None if identity is None else {
            "username": identity.username, "uid": identity.uid, "gid": identity.gid, "group": identity.group,
            "home": identity.home, "shell": identity.shell, "groups": [[name, gid] for name, gid in identity.groups]},
        "mounts": [{"source": m.source, "target": m.target, "fstype": m.fstype, "options": m.options,
                    "required": m.required} for m in mounts],
    }


def render_singleuser_user_data(command: list[str], env: dict[str, str], workdir: str = "",
                                identity: PosixIdentity | None = None,
                                mounts: Sequence[DataMount] = ()) -> str:
    """#cloud-config that mounts ``mounts`` and starts ``command`` with ``env`` at every boot,
    as ``identity`` (root without one), in ``workdir`` (empty: the home)."""
    plan = guest_plan(command, workdir, identity, mounts)
    config = _start_config([
        {"path": guest_start.ENV_FILE, "permissions": "0600", "owner": "root:root",
         "content": render_env_file(env, identity)},
        {"path": guest_start.PLAN_FILE, "permissions": "0600", "owner": "root:root", "content": json.dumps(plan)},
    ])
    if mounts:
        config["mounts"] = [[m.source, m.target, m.fstype, m.options, "0", "0"] for m in mounts]
    return _cloud_config(config)


def render_pool_user_data(api_url: str, pool_key: str, allow_http: bool, command: Sequence[str] = ()) -> str:
    """#cloud-config of a pooled VM: no one's identity, environment or data; only where the hub
    is, the one-time key with which it asks for its user (``pool.py``), and the command its
    users' servers run (loaded ahead: ``guest_start.Zygote``)."""
    pool = {"api_url": api_url, "key": pool_key, "allow_http": allow_http, "command": list(command)}
    return _cloud_config(_start_config([
        {"path": guest_start.POOL_FILE, "permissions": "0600", "owner": "root:root", "content": json.dumps(pool)}]))


def _start_config(files: list[dict]) -> dict:
    """The cloud-config that runs the start program (``guest_start.py``) at every boot."""
    return {
        # No default user (Debian's images make "debian", uid 1000, with password-less sudo): the
        # VM's only person is the user, without sudo (image_accounts.py).
        "users": [],
        "write_files": [
            *files,
            {"path": START_SCRIPT, "permissions": "0700", "owner": "root:root", "content": GUEST_START},
            # Its output is the console: the spawner follows the start there.
            {"path": PER_BOOT_SCRIPT, "permissions": "0700", "owner": "root:root",
             "content": f"#!/bin/sh\nnohup {START_SCRIPT} &\n"},
        ],
    }


def _cloud_config(config: dict) -> str:
    # libyaml's emitter: PyYAML's pure-Python one takes milliseconds, on the hub's event loop.
    return "#cloud-config\n" + yaml.dump(config, Dumper=SafeDumper, default_flow_style=False, sort_keys=False,
                                         width=1000)
