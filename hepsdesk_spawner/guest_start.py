#!/usr/bin/env python3
"""hepsdesk's start program in a VM: gets the server's environment, makes the user's account,
mounts their data and runs JupyterLab as them.

This file runs in the guest (``/usr/local/sbin/hepsdesk-start``, started by cloud-init at
every boot): the standard library only, any python3. The hub's spawner writes it into the
VM's user-data (``cloudinit.py``) and imports its names, so both sides agree on them.

What it does comes as data, never as commands: the *plan* (a JSON file: the command, the
working directory, the POSIX identity, the data mounts), checked here; and the server's
environment (``{name: value}``, names a shell takes only), which only root can read. At every
boot it first asks the hub for the current environment (``resume.py``), presenting the
one-time boot key of its user-data, or the token it got at an earlier boot.

A *pooled* VM (``pool.py``) boots with neither a plan nor an environment: it waits, without
anyone's identity or data, until a spawn claims it. It asks the hub for its user at
``POST {api}/hepsdesk/pool-claim``, presenting its one-time pool key; the hub holds each
request up to a few seconds and answers ``{"env": ..., "plan": ...}`` once. From then on the
VM is that user's, as if it had booted with their plan (a reboot goes the usual way).

What it prints on the console (the markers below) is how the spawner follows the start,
and why it fails at once rather than at the deadline.
"""

import grp
import json
import os
import pwd
import re
import resource
import select
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ENV_FILE = "/etc/hepsdesk/singleuser.env"  # root only: the server's environment, shell-quoted exports
PLAN_FILE = "/etc/hepsdesk/plan.json"  # what to run as whom, with which data
POOL_FILE = "/etc/hepsdesk/pool.json"  # a pooled VM's hub URL and one-time key, until it is claimed
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
# Printed instead of starting JupyterLab when the VM got no environment from the hub.
NO_ENV_MARKER = "hepsdesk: no environment from the hub:"
# A pooled VM: waiting for its user, and what stopped it waiting when it gives up.
POOL_WAITING_MARKER = "hepsdesk: pooled VM waiting for a user"
POOL_FAILED_MARKER = "hepsdesk: pooled VM not claimed:"
BOOT_KEY = "HEPSDESK_BOOT_KEY"  # in the first boot's env file: what the VM presents for its environment
ALLOW_HTTP_HUB = "HEPSDESK_ALLOW_HTTP_HUB"  # in the env file: OpenStackSpawner.allow_http_hub
RESUME_ENV_PATH = "/hepsdesk/resume-env"  # below JUPYTERHUB_API_URL (resume.py)
RESUME_SCHEME = "hepsdesk-resume"
POOL_CLAIM_PATH = "/hepsdesk/pool-claim"
POOL_SCHEME = "hepsdesk-pool"
VARIABLE_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
POSIX_NAME = r"[a-z_][a-z0-9_.-]{0,31}"
POOL_WAIT_LIMIT = 30 * 24 * 3600  # a pooled VM gives up waiting after this (the hub replaces it much sooner)

EXIT_NO_ENV, EXIT_MOUNT, EXIT_ACCOUNT, EXIT_PLAN = 4, 3, 5, 6


class Refused(Exception):
    """The start cannot go on: ``marker`` and the text go to the console, with exit ``status``."""

    def __init__(self, marker: str, why: str, status: int):
        super().__init__(why)
        self.marker, self.status = marker, status


def console(*words) -> None:
    print(*words, flush=True)


def note(what: str) -> None:
    """A stage of the start, with the time, in the server's log (where its own lines follow):
    where a start's seconds went."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
    try:
        with open(LOG_FILE, "a") as log:
            log.write(f"[hepsdesk-start {stamp}] {what}\n")
    except OSError:
        pass


# -- asking the hub -------------------------------------------------------------------------

def hub_request(api_url: str, path: str, scheme: str, secret: str, body: dict, allow_http: bool,
                timeout: float = 10):
    """POST ``body`` to the hub's API; (status, decoded JSON or None). OSError when unreachable."""
    url = api_url.rstrip("/")
    if urllib.parse.urlsplit(url).scheme != "https" and not allow_http:
        raise Refused(NO_ENV_MARKER, f"refused the hub's URL {url!r}: not https (a development hub sets "
                      "OpenStackSpawner.allow_http_hub)", EXIT_NO_ENV)
    request = urllib.request.Request(url + path, method="POST", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"{scheme} {secret}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, (json.loads(raw) if raw else None)
    except ValueError:
        return status, None


def checked_env(given) -> dict:
    """The hub's environment, checked: names a shell takes, text values."""
    if not isinstance(given, dict) or not all(
            isinstance(key, str) and re.fullmatch(VARIABLE_NAME, key) and isinstance(value, str) and "\0" not in value
            for key, value in given.items()):
        raise Refused(NO_ENV_MARKER, "the hub's answer is not an environment (names and text values)", EXIT_NO_ENV)
    return given


def read_env_file() -> dict:
    env = {}
    try:
        with open(ENV_FILE) as f:
            for line in f:
                words = shlex.split(line)
                if len(words) == 2 and words[0] == "export" and "=" in words[1]:
                    key, value = words[1].split("=", 1)
                    env[key] = value
    except FileNotFoundError:
        pass
    return env


def write_private(path: str, text: str) -> None:
    """Write ``path`` (root only, 0600) in one step: a reader never sees half of it."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    new = path + ".new"
    with os.fdopen(os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    os.replace(new, path)


def write_env_file(env: dict) -> None:
    write_private(ENV_FILE, "".join(f"export {key}={shlex.quote(value)}\n" for key, value in sorted(env.items())))


def fetch_env() -> None:
    """Replace the env file with the server's current environment from the hub (at every boot
    with a plan): for the boot key of the first boot, or the token a later boot holds."""
    env = read_env_file()
    secret = env.get(BOOT_KEY) or env.get("JUPYTERHUB_API_TOKEN", "")
    body = {"user": env.get("JUPYTERHUB_USER", ""), "server": env.get("JUPYTERHUB_SERVER_NAME", "")}
    last = "no attempt"
    for _ in range(30):  # bounded: about a minute of refused connections (the start has a deadline)
        try:
            status, answer = hub_request(env.get("JUPYTERHUB_API_URL", ""), RESUME_ENV_PATH, RESUME_SCHEME, secret,
                                         body, env.get(ALLOW_HTTP_HUB) == "1")
        except OSError as e:
            last = str(e)
            time.sleep(2)
            continue
        if status == 409:  # no start under way (a reboot of a running server): the env is current
            return
        if status != 200:
            message = answer.get("message") if isinstance(answer, dict) else None
            raise Refused(NO_ENV_MARKER, f"HTTP {status}" + (f": {message}" if message else ""), EXIT_NO_ENV)
        write_env_file(checked_env(answer.get("env") if isinstance(answer, dict) else None))
        return
    raise Refused(NO_ENV_MARKER, f"the hub did not answer ({last})", EXIT_NO_ENV)


def wait_for_claim():
    """A pooled VM: ask the hub for a user until one claims it; then write its plan and env.
    Meanwhile a Python of the command's environment waits with its modules loaded (returned,
    or None: ``Zygote``), so JupyterLab starts in a second rather than several."""
    with open(POOL_FILE) as f:
        pool = json.load(f)
    zygote = Zygote.start(pool.get("command") or [])
    console(POOL_WAITING_MARKER)
    deadline, last, failures = time.monotonic() + POOL_WAIT_LIMIT, "no attempt", 0
    while time.monotonic() < deadline:
        try:
            status, answer = hub_request(pool["api_url"], POOL_CLAIM_PATH, POOL_SCHEME, pool["key"], {},
                                         bool(pool.get("allow_http")), timeout=60)
        except OSError as e:
            last, failures = str(e), failures + 1
            time.sleep(min(30, 2 * failures))
            continue
        failures = 0
        if status == 204:  # nobody yet: ask again (the hub held the request)
            continue
        if status != 200 or not isinstance(answer, dict):
            message = answer.get("message") if isinstance(answer, dict) else None
            raise Refused(POOL_FAILED_MARKER, f"HTTP {status}" + (f": {message}" if message else ""), EXIT_NO_ENV)
        note("claimed by a start")
        plan = check_plan(answer.get("plan"))
        env = checked_env(answer.get("env"))
        write_private(PLAN_FILE, json.dumps(plan))
        write_env_file(env)
        os.unlink(POOL_FILE)  # its key is dead: a later boot goes the usual way
        return zygote
    raise Refused(POOL_FAILED_MARKER, f"gave up waiting ({last})", EXIT_NO_ENV)


# Imported ahead by a zygote when its environment has them: the Jupyter server, JupyterLab, the
# server extensions, and what JupyterHub's single-user server imports from other packages; none
# reads a server's environment at import. Not JupyterHub's own modules: they read the server's
# (JUPYTERHUB_SERVICE_PREFIX...) into class defaults at import (and register metrics once), so
# they are imported once the zygote has its user's environment.
PRELOAD = ("jupyter_server.serverapp", "jupyterlab.labapp", "jupyter_server_proxy", "jupyter_server_terminals",
           "jupyter_lsp", "notebook_shim", "sqlalchemy.orm", "sqlalchemy.pool", "alembic.command",
           "alembic.config", "alembic.script", "cryptography.fernet")
LATE = ("jupyterhub",)


class Zygote:
    """A pooled VM's JupyterLab, started ahead as far as it can be without its user: the
    command's console script's own Python (``hepsdesk-start --zygote``) imports ``PRELOAD``
    and waits. Given the plan and the environment on its stdin, it becomes the user (groups,
    gid, uid: as ``run`` would), takes their environment, and calls the script's entry point."""

    def __init__(self, process: subprocess.Popen, command: list):
        self.process, self.command = process, command

    @classmethod
    def start(cls, command: list):
        script = shutil.which(command[0]) if command else None
        try:
            with open(script) as f:
                text = f.read(4096)
        except (TypeError, OSError, UnicodeDecodeError):
            return None
        interpreter = text.splitlines()[0][2:].strip() if text.startswith("#!") else ""
        entry = re.search(r"^from ([\w.]+) import (\w+)$", text, re.MULTILINE)
        if not interpreter or " " in interpreter or not entry:  # not a console script: run it as it is
            return None
        log = open(LOG_FILE, "ab")
        loaded, told = os.pipe()
        try:
            process = subprocess.Popen([interpreter, os.path.abspath(__file__), "--zygote", entry[1], entry[2],
                                        str(told)], stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                       cwd="/", pass_fds=(told,))
        except OSError:
            os.close(loaded)
            return None
        finally:
            log.close()
            os.close(told)
        # Asked for a user only once loaded (bounded: a zygote that hangs is simply not waited for).
        if select.select([loaded], [], [], 120)[0]:
            os.read(loaded, 1)
        os.close(loaded)
        return cls(process, list(command))

    def run(self, plan: dict, env: dict):
        """Hand it the user; its exit status (None: it could not take the plan, run it anew)."""
        if plan["command"][:1] != self.command[:1] or self.process.poll() is not None:
            self.stop()
            return None
        try:
            self.process.stdin.write(json.dumps({"plan": plan, "env": env}).encode() + b"\n")
            self.process.stdin.close()
        except OSError:
            self.stop()
            return None
        return self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def zygote_main(module: str, function: str, loaded_fd: str) -> int:
    """In the zygote (the command's Python): load, say so on ``loaded_fd``, wait for the user,
    become them, run."""
    import ctypes
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # (not in this environment) loaded when needed, as usual
            pass
    for name in [n for n in sys.modules if n.split(".")[0] in LATE]:  # (imported on the way: again, later)
        del sys.modules[name]
    os.write(int(loaded_fd), b"1")
    os.close(int(loaded_fd))
    line = sys.stdin.readline()
    if not line:
        return 0
    given = json.loads(line)
    plan, identity = given["plan"], given["plan"]["identity"]
    if identity is not None:
        os.setgroups(list(dict.fromkeys([identity["gid"], *(gid for _, gid in identity["groups"])])))
        os.setgid(identity["gid"])
        os.setuid(identity["uid"])
        # As after an exec: the user's own tools may read this process's /proc files.
        ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
    os.chdir(plan["workdir"])
    os.environ.clear()
    os.environ.update(given["env"])
    sys.stdin = open(os.devnull)
    sys.argv = list(plan["command"])
    return getattr(importlib.import_module(module), function)()


# -- the plan -------------------------------------------------------------------------------

def check_plan(plan) -> dict:
    """The plan, checked as strictly as the hub made it (``identity.py``, ``datamounts.py``)."""
    def fail(why: str):
        raise Refused(NO_ENV_MARKER, f"the start plan is wrong: {why}", EXIT_PLAN)

    def path(value, what: str) -> str:
        if not isinstance(value, str) or not value.startswith("/") or "\0" in value or ".." in value.split("/"):
            fail(f"{what} is not an absolute path")
        return value

    def name(value, what: str) -> str:
        if not isinstance(value, str) or not re.fullmatch(POSIX_NAME, value):
            fail(f"{what} is not a POSIX name")
        return value

    def number(value, what: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**31:
            fail(f"{what} is not a POSIX id")
        return value

    if not isinstance(plan, dict):
        fail("not a mapping")
    command = plan.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(w, str) and "\0" not in w for w in command):
        fail("no command")
    identity = plan.get("identity")
    if identity is not None:
        if not isinstance(identity, dict):
            fail("the identity is not a mapping")
        groups = identity.get("groups") or []
        if not isinstance(groups, list):
            fail("the groups are not a list")
        identity = {"username": name(identity.get("username"), "the user name"),
                    "uid": number(identity.get("uid"), "the uid"), "gid": number(identity.get("gid"), "the gid"),
                    "group": name(identity.get("group"), "the group"), "home": path(identity.get("home"), "the home"),
                    "shell": path(identity.get("shell"), "the shell"),
                    "groups": [[name(g[0], "a group"), number(g[1], "a gid")] for g in groups
                               if isinstance(g, list) and len(g) == 2] if groups else []}
    mounts = []
    for mount in plan.get("mounts") or []:
        if not isinstance(mount, dict) or not all(isinstance(mount.get(k), str) and mount.get(k)
                                                  for k in ("source", "fstype", "options")):
            fail("a data mount is not {source, target, fstype, options}")
        if mount["source"].startswith("-") or mount["options"].startswith("-") or mount["fstype"].startswith("-"):
            fail("a data mount's source, type or options starts with '-'")
        mounts.append({"source": mount["source"], "target": path(mount.get("target"), "a mount point"),
                       "fstype": mount["fstype"], "options": mount["options"], "required": bool(mount.get("required"))})
    workdir = plan.get("workdir") or (identity["home"] if identity else "/root")
    return {"command": command, "identity": identity, "mounts": mounts, "workdir": path(workdir, "the workdir")}


def make_account(identity: dict) -> None:
    """The user's account: groups by gid, then the user by uid, refusing a uid, gid or name the
    image already uses for another account (the user would be that account)."""
    def refuse(why: str):
        raise Refused(IDENTITY_CONFLICT_MARKER, why, EXIT_ACCOUNT)

    for group_name, gid in dict.fromkeys([(identity["group"], identity["gid"]),
                                          *(tuple(g) for g in identity["groups"])]):
        held = _group_name(gid)
        if held is None:
            if _group_name(group_name) is not None:
                refuse(f"the group name {group_name} has another gid in the image")
            subprocess.run(["groupadd", "-g", str(gid), group_name], check=True)
        elif held != group_name:
            refuse(f"gid {gid} is the image's group {held}")
    user = identity["username"]
    try:
        held = pwd.getpwuid(identity["uid"]).pw_name
    except KeyError:
        held = None
    if held is not None and held != user:
        refuse(f"uid {identity['uid']} is the image's account {held}")
    try:
        existing = pwd.getpwnam(user).pw_uid
    except KeyError:
        existing = None
    if existing is not None and existing != identity["uid"]:
        refuse(f"the account name {user} has another uid in the image")
    options = ["-g", str(identity["gid"]), "-d", identity["home"], "-s", identity["shell"]]
    if identity["groups"]:
        options += ["-G", ",".join(str(gid) for _, gid in identity["groups"])]
    if existing is not None:
        subprocess.run(["usermod", *options, "--", user], check=True)
    else:
        subprocess.run(["useradd", "-M", "-u", str(identity["uid"]), *options, "--", user], check=True)


def _group_name(key):
    try:
        return grp.getgrgid(key).gr_name if isinstance(key, int) else grp.getgrnam(key).gr_name
    except KeyError:
        return None


def mount_data(mounts: list) -> None:
    """Mount what is not mounted yet (a pooled VM mounts everything now; cloud-init mounted a
    new VM's at boot), then refuse to go on without a required mount: what JupyterLab wrote
    would be lost with the VM."""
    for mount in mounts:
        if os.path.ismount(mount["target"]):
            continue
        os.makedirs(mount["target"], exist_ok=True)
        done = subprocess.run(["mount", "-t", mount["fstype"], "-o", mount["options"], mount["source"],
                               mount["target"]], capture_output=True, text=True)
        for line in (done.stdout + done.stderr).splitlines():
            console(line)  # mount.nfs's own words, for the spawner's message
    for mount in mounts:
        if mount["required"] and not os.path.ismount(mount["target"]):
            raise Refused(MISSING_MOUNT_MARKER, f"{mount['source']} on {mount['target']}", EXIT_MOUNT)


def run(plan: dict, zygote=None) -> int:
    """JupyterLab as the user in their working directory, with the env file's environment (from
    the ``zygote`` a pooled VM has waiting, if it can take it); its output goes to the log,
    whose end goes to the console if it exits."""
    identity, workdir = plan["identity"], plan["workdir"]
    if not os.path.isdir(workdir):  # a home that is not on the storage is made on the VM's disk, the user's
        os.makedirs(workdir)
        if identity is not None:
            os.chown(workdir, identity["uid"], identity["gid"])
    env = {**os.environ, **read_env_file()}
    env.pop(BOOT_KEY, None)
    as_user = {}
    if identity is not None:
        # The groups by number, as the account was made.
        as_user = {"user": identity["uid"], "group": identity["gid"],
                   "extra_groups": list(dict.fromkeys([identity["gid"], *(gid for _, gid in identity["groups"])]))}
    note("starting the server" + (" (from the waiting zygote)" if zygote is not None else ""))
    status = zygote.run(plan, env) if zygote is not None else None
    if status is not None:
        report_exit(status)
        return status
    with open(LOG_FILE, "ab") as log:
        try:
            status = subprocess.run(plan["command"], env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, **as_user).returncode
        except OSError as e:  # as a shell says it
            why = "not found" if isinstance(e, FileNotFoundError) else e.strerror
            log.write(f"{plan['command'][0]}: {why}\n".encode())
            status = 127
    report_exit(status)
    return status


def report_exit(status: int) -> None:
    console(f"{EXITED_MARKER} with status {status}; the end of {LOG_FILE}:")
    try:
        with open(LOG_FILE, "rb") as f:
            tail = f.read()[-16384:].decode(errors="replace").splitlines()[-8:]
    except OSError:
        tail = []
    for line in tail:
        console(LOG_LINE_PREFIX + line)


def be_nicer() -> None:
    """JupyterLab, its kernels and the desktop's applications run 5 nicer than the desktop's
    capture and encode, which may take back the 5 (RLIMIT_NICE 20: down to niceness 0): a
    computation on every CPU leaves the desktop usable (desktop_proxy/session.py). Where the
    limit cannot be raised (a container without CAP_SYS_RESOURCE), only the 5."""
    try:
        resource.setrlimit(resource.RLIMIT_NICE, (20, 20))
    except (ValueError, OSError):
        pass
    os.nice(5)


def main() -> int:
    if sys.argv[1:2] == ["--zygote"]:
        return zygote_main(*sys.argv[2:5])
    zygote = None
    try:
        if os.path.exists(POOL_FILE) and not os.path.exists(PLAN_FILE):
            be_nicer()
            zygote = wait_for_claim()
        else:
            fetch_env()
            be_nicer()
        with open(PLAN_FILE) as f:
            plan = check_plan(json.load(f))
        console(STARTING_MARKER)
        if plan["identity"] is not None:
            make_account(plan["identity"])
            note("account ready")
        mount_data(plan["mounts"])
        note("data mounted")
    except Refused as e:
        if zygote is not None:
            zygote.stop()
        console(e.marker, str(e))
        report_exit(e.status)
        return e.status
    except (OSError, ValueError, subprocess.CalledProcessError) as e:
        try:
            with open(LOG_FILE, "a") as log:  # its end is in the spawner's message
                log.write(f"hepsdesk: the start failed: {e}\n")
        except OSError:
            pass
        if zygote is not None:
            zygote.stop()
        report_exit(EXIT_PLAN)
        return EXIT_PLAN
    return run(plan, zygote)


if __name__ == "__main__":
    sys.exit(main())
