"""The cloud-init user-data that starts a user's JupyterLab in their VM.

Kept within the subset any cloud-init and the dev cloud's process VMs both honour:
``write_files``, ``mounts`` and a script in ``/var/lib/cloud/scripts/per-boot``, which
cloud-init runs at every boot: the first, and after a reboot or an unshelve (when it runs
neither ``write_files`` nor ``runcmd`` again).

User-data carries nothing reusable: a real cloud's metadata service serves it to every process
in the guest, for as long as the VM lives. It holds only where the hub is, whose server this
is, and a one-time boot key (``boot_environment``). At every boot the start script first asks
the hub for the server's environment (its API token among it), presenting that key (or, at a
later boot, the token it got: see ``resume.py``); the hub answers once per start, and the key
is dead after its first use and outside the start. The environment goes into a root-only file
that the start script sources: the token appears neither on the command line, nor in the
console log, nor in server metadata or user-data.

With the user's POSIX identity, the start script creates their account (same uid, gid and
groups as on the storage), checks that every required data mount is there, and runs
JupyterLab as that user in their home; without one, JupyterLab runs as root (dev images).
Every value is shell-quoted, on top of the identity's own checks (``identity.py``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

import yaml

from hepsdesk_identity import PosixIdentity

from .datamounts import DataMount
from .resume import AUTH_SCHEME, RESUME_ENV_PATH

SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

ENV_FILE = "/etc/hepsdesk/singleuser.env"
START_SCRIPT = "/usr/local/sbin/hepsdesk-start-singleuser"
PER_BOOT_SCRIPT = "/var/lib/cloud/scripts/per-boot/hepsdesk-singleuser"
FETCH_ENV_SCRIPT = "/usr/local/sbin/hepsdesk-fetch-env"
LOG_FILE = "/var/log/hepsdesk-singleuser.log"
# Printed on the console when the guest starts JupyterLab, and when JupyterLab exits (with
# the end of its log): the spawner reads both, for its progress and to fail a spawn at once.
STARTING_MARKER = "hepsdesk: starting JupyterLab"
EXITED_MARKER = "hepsdesk: JupyterLab exited"
LOG_LINE_PREFIX = "hepsdesk: | "
# Printed instead of starting JupyterLab when a required data mount is missing.
MISSING_MOUNT_MARKER = "hepsdesk: data not mounted:"
# Printed instead of starting JupyterLab when the user's uid, gid or a name is the image's own.
IDENTITY_CONFLICT_MARKER = "hepsdesk: account conflicts with the image:"
# Printed instead of starting JupyterLab when a later boot got no environment from the hub.
NO_ENV_MARKER = "hepsdesk: no environment from the hub:"
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
BOOT_KEY = "HEPSDESK_BOOT_KEY"  # in the first boot's env file: what the VM presents for its environment
# What the first boot's env file holds besides the key: where the hub is and whose server this is.
BOOT_NAMES = ("JUPYTERHUB_API_URL", "JUPYTERHUB_USER", "JUPYTERHUB_SERVER_NAME")
ALLOW_HTTP_HUB = "HEPSDESK_ALLOW_HTTP_HUB"  # in the env file: OpenStackSpawner.allow_http_hub
FILE_ROOTS = "HEPSDESK_DESKTOP_FILE_ROOTS"  # desktop_proxy/files.py


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


def render_singleuser_user_data(command: list[str], env: dict[str, str], workdir: str = "",
                                identity: PosixIdentity | None = None,
                                mounts: list[DataMount] = ()) -> str:
    """#cloud-config that mounts ``mounts`` and starts ``command`` with ``env`` at every boot,
    as ``identity`` (root without one), in ``workdir`` (empty: the home)."""
    workdir = workdir or (identity.home if identity is not None else "/root")
    log = shlex.quote(LOG_FILE)
    run = shlex.join(command)
    if identity is not None:
        # The groups by number, as the account was made.
        groups = ",".join(str(gid) for gid in dict.fromkeys([identity.gid, *(g for _, g in identity.groups)]))
        run = f"setpriv --reuid={identity.uid} --regid={identity.gid} --groups={groups} -- {run}"
    script = (
        "#!/bin/sh\n"
        "# Started at every boot by cloud-init (scripts/per-boot); JupyterHub's environment is in\n"
        "# the env file. Its output is the console: if JupyterLab exits, the end of its log goes there.\n"
        "# The hub has this server's environment (the first boot: for the one-time key; later boots,\n"
        "# an unshelve or a reboot: for the token the VM holds).\n"
        f"{FETCH_ENV_SCRIPT} || {{ echo \"{EXITED_MARKER} with status 4; the end of {LOG_FILE}:\"; exit 4; }}\n"
        f". {ENV_FILE}\n"
        + (_account_lines(identity) if identity is not None else "")
        + "".join(_mount_check_lines(m) for m in mounts if m.required)
        + _workdir_lines(workdir, identity)
        # JupyterLab, its kernels and the desktop's applications run 5 nicer than the desktop's
        # capture and encode, which may take back the 5 (RLIMIT_NICE 20: down to niceness 0): a
        # computation on every CPU leaves the desktop usable (desktop_proxy/session.py). Where
        # the limit cannot be raised (a container without CAP_SYS_RESOURCE), only the 5.
        + "prlimit --pid $$ --nice=20 2>/dev/null; renice -n 5 -p $$ > /dev/null 2>&1\n"
        + f"{run} >> {log} 2>&1\n"
        "status=$?\n"
        f"echo \"{EXITED_MARKER} with status $status; the end of {LOG_FILE}:\"\n"
        f"tail -n 8 {log} | sed 's/^/{LOG_LINE_PREFIX}/'\n"
        "exit $status\n"
    )
    config = {
        # No default user (Debian's images make "debian", uid 1000, with password-less sudo): the
        # VM's only person is the user, without sudo (image_accounts.py).
        "users": [],
        "write_files": [
            {"path": ENV_FILE, "permissions": "0600", "owner": "root:root", "content": render_env_file(env, identity)},
            {"path": START_SCRIPT, "permissions": "0700", "owner": "root:root", "content": script},
            {"path": FETCH_ENV_SCRIPT, "permissions": "0700", "owner": "root:root", "content": FETCH_ENV},
            {"path": PER_BOOT_SCRIPT, "permissions": "0700", "owner": "root:root",
             "content": f"#!/bin/sh\necho '{STARTING_MARKER}'\nnohup {START_SCRIPT} &\n"},
        ],
    }
    if mounts:
        config["mounts"] = [[m.source, m.target, m.fstype, m.options, "0", "0"] for m in mounts]
    # libyaml's emitter: PyYAML's pure-Python one takes milliseconds, on the hub's event loop.
    return "#cloud-config\n" + yaml.dump(config, Dumper=SafeDumper, default_flow_style=False, sort_keys=False,
                                         width=1000)


# Run by the start script at every boot after the first (standard library only: any python3).
# The hub's answer is data ({"env": {name: value}}), checked and shell-quoted here: root sources
# the file this writes, so nothing in the answer is ever run.
FETCH_ENV = f"""#!/usr/bin/env python3
# hepsdesk: ask the hub for this server's current environment (see hepsdesk_spawner/resume.py).
import json, os, re, shlex, sys, time, urllib.error, urllib.parse, urllib.request

ENV_FILE = {ENV_FILE!r}
env = {{}}
with open(ENV_FILE) as f:
    for line in f:
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            env[key] = value


def fail(why):
    print({NO_ENV_MARKER!r}, why, flush=True)
    sys.exit(4)


url = env.get("JUPYTERHUB_API_URL", "").rstrip("/")
if urllib.parse.urlsplit(url).scheme != "https" and env.get({ALLOW_HTTP_HUB!r}) != "1":
    fail(f"refused the hub's URL {{url!r}}: not https (a development hub sets OpenStackSpawner.allow_http_hub)")
request = urllib.request.Request(
    url + {RESUME_ENV_PATH!r}, method="POST",
    data=json.dumps({{"user": env.get("JUPYTERHUB_USER", ""),
                     "server": env.get("JUPYTERHUB_SERVER_NAME", "")}}).encode(),
    headers={{"Authorization": {AUTH_SCHEME!r} + " " + (env.get({BOOT_KEY!r}) or env.get("JUPYTERHUB_API_TOKEN", "")),
             "Content-Type": "application/json"}})
body, last = None, "no attempt"
for attempt in range(30):  # bounded: about a minute of refused connections (the start has a deadline)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        break
    except urllib.error.HTTPError as e:
        if e.code == 409:  # no start under way (a reboot of a running server): the env is current
            sys.exit(0)
        try:
            fail(f"HTTP {{e.code}}: {{json.loads(e.read())['message']}}")
        except (ValueError, KeyError, TypeError):
            fail(f"HTTP {{e.code}}")
    except OSError as e:
        last = str(e)
        time.sleep(2)
if body is None:
    fail(f"the hub did not answer ({{last}})")
try:
    given = json.loads(body)["env"]
    if not isinstance(given, dict) or not all(
            re.fullmatch({VARIABLE_NAME.pattern!r}, key) and isinstance(value, str) and "\\0" not in value
            for key, value in given.items()):
        raise ValueError
except (ValueError, KeyError, TypeError):
    fail("the hub's answer is not an environment (names and text values)")
new = ENV_FILE + ".new"
with os.fdopen(os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
    f.write("".join(f"export {{key}}={{shlex.quote(value)}}\\n" for key, value in sorted(given.items())))
os.replace(new, ENV_FILE)
"""


def _account_lines(identity: PosixIdentity) -> str:
    """Shell lines that give the VM the user's account: groups by gid, then the user by uid,
    refusing (the second line behind ``image_accounts``) a uid, gid or name the image already
    uses for another account: the user would be that account."""
    q = shlex.quote
    refuse = (f"refuse_account() {{ echo \"{IDENTITY_CONFLICT_MARKER} $1\"; "
              f"echo \"{EXITED_MARKER} with status 5; the end of {LOG_FILE}:\"; exit 5; }}")
    lines = [refuse]
    for name, gid in dict.fromkeys([(identity.group, identity.gid), *identity.groups]):
        taken = q(f"the group name {name} has another gid in the image")
        lines.append(f"held=$(getent group {gid} | cut -d: -f1); if [ -z \"$held\" ]; then "
                     f"getent group {q(name)} >/dev/null && refuse_account {taken}; "
                     f"groupadd -g {gid} {q(name)}; elif [ \"$held\" != {q(name)} ]; then "
                     f"refuse_account \"gid {gid} is the image's group $held\"; fi")
    supplementary = ",".join(str(gid) for _, gid in identity.groups)
    options = (f"-g {identity.gid} -d {q(identity.home)} -s {q(identity.shell)}"
               + (f" -G {supplementary}" if supplementary else ""))
    user = q(identity.username)
    lines += [
        f"held=$(getent passwd {identity.uid} | cut -d: -f1); [ -z \"$held\" ] || [ \"$held\" = {user} ] || "
        f"refuse_account \"uid {identity.uid} is the image's account $held\"",
        f"uid=$(id -u {user} 2>/dev/null); [ -z \"$uid\" ] || [ \"$uid\" = {identity.uid} ] || "
        f"refuse_account {q(f'the account name {identity.username} has another uid in the image')}",
        f"if [ -n \"$uid\" ]; then usermod {options} {user}; else useradd -M -u {identity.uid} {options} {user}; fi",
    ]
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


