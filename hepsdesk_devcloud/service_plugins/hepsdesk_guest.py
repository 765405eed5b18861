"""A hepsdesk process VM: the "hypervisor" process and the guest's init.

``python hepsdesk_guest.py VMDIR --ready-fd N`` is started by the dev cloud's virt driver
for each boot. It plays two parts:

* the monitor (as qemu would be): it enters fresh mount, PID, UTS and IPC namespaces, forks
  the guest's init, forwards SIGTERM to it and exits with it. Killing the monitor with
  SIGKILL kills the init (parent-death signal), and the kernel then kills every process in
  the guest's PID namespace: nothing of a VM survives its monitor.
* the init (PID 1 of the guest): it builds the guest's root filesystem (an overlay of the
  host's ``/`` under the VM's own disk), hides the dev cloud's state
  directory, chroots, sets the hostname, and runs the boot plan the driver derived from the
  user-data the way cloud-init would, printing cloud-init's console lines: bootcmd and the
  scripts in /var/lib/cloud/scripts/per-boot at every boot, write_files and the user's
  scripts (runcmd, shell user-data) only at the instance's first boot. Then it reaps orphans until it is told to stop.

NFS ``mounts`` stand for the facility's central storage: a share ``SERVER:/PATH`` whose
server is one of the dev cloud's storage servers is the host directory ``<storage
root>/PATH``, bind-mounted (read-only for ``ro``). Like a real NFS mount it fails, with
mount.nfs's message on the console, when the server is unknown or the export does not
exist; the boot goes on, as cloud-init's does. After boot, ``mount -t nfs4 SERVER:/PATH DIR``
in the guest works too (a pooled VM mounts its user's data when claimed): the guest's
``mount.nfs4`` helper asks the init, over a root-only socket, to bind the share; the init
holds the storage root open from before its chroot and walks to the share without following
symbolic links. Not emulated: root squashing (root in the guest may write anywhere on a
mounted share), and root in the guest is not contained (it could reach the storage root
through the init's open directory): the dev cloud's guests are not a security boundary.

Standard library only; it runs with the services' Python before the chroot.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import ctypes.util
import datetime
import errno
import grp
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import traceback

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MS_RDONLY, MS_REMOUNT = 1, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
NFS_TYPES = ("nfs", "nfs4")
PR_SET_PDEATHSIG = 1
CLOUD_INIT_VERSION = "24.1-hepsdesk"
MOUNT_SOCKET = "/run/hepsdesk/mount.sock"  # in the guest: root asks the init to mount a share
# The guest's mount.nfs helper: mount(8) runs it as "mount.nfs4 SPEC DIR [-o OPTIONS] ...".
MOUNT_HELPER = f"""#!/usr/bin/env python3
# hepsdesk dev cloud: NFS mounts after boot, done by the guest's init (hepsdesk_guest.py).
import json, socket, sys
args = sys.argv[1:]
options = args[args.index("-o") + 1] if "-o" in args[:-1] else "rw"
if len(args) < 2:
    sys.exit("usage: mount.nfs4 SERVER:/PATH DIR [-o OPTIONS]")
try:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect({MOUNT_SOCKET!r})
        s.sendall(json.dumps({{"source": args[0], "target": args[1], "options": options}}).encode() + b"\\n")
        answer = json.loads(s.makefile().readline())
except (OSError, ValueError) as e:
    sys.exit(f"mount.nfs: cannot reach the dev cloud's mounter: {{e}}")
if answer["message"]:
    print(answer["message"], file=sys.stderr)
sys.exit(answer["status"])
"""

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(_libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                       ctypes.c_ulong(flags), data and data.encode()),
           f"mount {source or ''} on {target}")


# -- monitor ---------------------------------------------------------------------------------

def monitor(vmdir: str, ready_fd: int) -> int:
    with open(os.path.join(vmdir, "boot.json")) as f:
        boot = json.load(f)
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC
    uid, gid = os.geteuid(), os.getegid()
    if uid != 0:
        flags |= CLONE_NEWUSER
    _check(_libc.unshare(flags), "unshare")
    if uid != 0:
        _map_to_root(uid, gid)
    child = os.fork()
    if child == 0:
        try:
            GuestInit(boot, ready_fd).run()
        except BaseException:
            _report_failure(ready_fd)
        os._exit(1)
    os.close(ready_fd)

    def forward(signum, frame):
        try:
            os.kill(child, signal.SIGTERM)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    print(f"[{_uptime(boot):12.6f}] hepsdesk: guest powered off (init exit status {code})", flush=True)
    return 0 if code == 0 else 1


def _map_to_root(uid: int, gid: int) -> None:
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


def _report_failure(ready_fd: int) -> None:
    text = traceback.format_exc()
    print(text, file=sys.stderr, flush=True)
    last = text.strip().splitlines()[-1]
    try:
        os.write(ready_fd, f"error: {last}\n".encode())
    except OSError:
        pass


def _uptime(boot: dict) -> float:
    return max(0.0, time.time() - boot.get("started_at", time.time()))


# -- init -----------------------------------------------------------------------------------

class GuestInit:
    """PID 1 of a process VM."""

    def __init__(self, boot: dict, ready_fd: int):
        self.boot = boot
        self.ready_fd = ready_fd
        self.stopping = False
        self.env = dict(boot["env"])
        # What the mounts of the user-data gave, printed at cloud-init's init stage.
        self.mount_messages: list[str] = []
        self.storage_fd: int | None = None  # the storage root, opened before the chroot

    def run(self) -> None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._build_root()
        self._write_instance_data()
        os.write(self.ready_fd, b"ready\n")
        os.close(self.ready_fd)
        self._boot()
        self._reap_forever()

    # root filesystem

    def _build_root(self) -> None:
        b = self.boot
        root = b["root"]
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        storage = b.get("storage") or {}
        if storage.get("root") and os.path.isdir(storage["root"]):
            self.storage_fd = os.open(storage["root"], os.O_PATH | os.O_DIRECTORY)
        mount("overlay", root, "overlay", 0, f"lowerdir=/,upperdir={b['upper']},workdir={b['work']}")
        mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        mount("/sys", f"{root}/sys", None, MS_BIND | MS_REC)
        mount("/dev", f"{root}/dev", None, MS_BIND | MS_REC)
        mount("devpts", f"{root}/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
        mount(f"{root}/dev/pts/ptmx", f"{root}/dev/ptmx", None, MS_BIND)
        mount("tmpfs", f"{root}/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
        mount("tmpfs", f"{root}/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
        for hidden in b.get("hide", []):
            target = f"{root}{hidden}"
            if os.path.isdir(target):
                mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700,size=64k")
        for mount_spec in b.get("bind_mounts", []):
            target = f"{root}{mount_spec['target']}"
            os.makedirs(target, exist_ok=True)
            mount(mount_spec["source"], target, None, MS_BIND | MS_REC)
        for spec in b["plan"].get("mounts", []):
            self.mount_messages.append(self._mount_share(root, spec)[1])
        os.chroot(root)
        os.chdir("/")
        self._open_software_paths()
        os.makedirs("/run/lock", exist_ok=True)
        self._serve_mounts()
        # /tmp stays the host's, seen through the overlay (what the guest writes there goes to
        # its own disk): the guest's software may live under it (a checkout in /tmp).
        os.makedirs("/tmp", mode=0o1777, exist_ok=True)
        socket.sethostname(b["plan"].get("hostname") or b["hostname"])

    def _open_software_paths(self) -> None:
        """Let every account reach the image's software: process VMs run the host's programs,
        which may live under a private directory (e.g. a Python in /root/.pyenv, /root being
        0700). Each directory on the way gets o+x in this guest's disk only (no listing)."""
        for entry in self.boot.get("software_paths", []):
            for target in {os.path.realpath(entry), os.path.realpath(os.path.join(entry, "python3"))}:
                directory = os.path.dirname(target) if not os.path.isdir(target) else target
                while directory not in ("/", ""):
                    try:
                        mode = os.stat(directory).st_mode
                        if not mode & 0o001:
                            os.chmod(directory, (mode & 0o7777) | 0o001)
                    except OSError:
                        break
                    directory = os.path.dirname(directory)

    def _mount_share(self, root: str, spec: dict) -> tuple[bool, str]:
        """Mount one NFS share (``spec``: source, target, fstype, options) below ``root``; whether
        it worked, and its console line (mount.nfs's words when it did not)."""
        source, target, fstype = spec["source"], spec["target"], spec.get("fstype", "nfs4")
        if fstype not in NFS_TYPES:
            return False, (f"mount: {target}: unknown filesystem type '{fstype}' "
                           f"(the hepsdesk dev cloud mounts NFS shares only)")
        server, sep, path = source.partition(":")
        if not sep or not path.startswith("/"):
            return False, f"mount.nfs: remote share not in 'host:dir' format: {source}"
        if server not in (self.boot.get("storage") or {}).get("servers", []) or self.storage_fd is None:
            return False, f"mount.nfs: Failed to resolve server {server}: Name or service not known"
        try:
            share = self._open_share(path)
        except OSError:
            return False, f"mount.nfs: access denied by server while mounting {source}"
        mount_point = f"{root.rstrip('/')}{os.path.normpath(target)}"
        try:
            os.makedirs(mount_point, exist_ok=True)
            mount(f"/proc/self/fd/{share}", mount_point, None, MS_BIND)
            if "ro" in spec["options"].split(","):
                mount(None, mount_point, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        except OSError as e:
            return False, f"mount.nfs: mounting {source} on {target} failed: {e.strerror}"
        finally:
            os.close(share)
        return True, f"mounted {source} on {target} type {fstype} ({spec['options']})"

    def _open_share(self, path: str) -> int:
        """The directory ``path`` below the storage root, walked one name at a time without
        following a symbolic link or going up (a share cannot lead out of the storage)."""
        fd = os.dup(self.storage_fd)
        try:
            for name in (part for part in path.split("/") if part not in ("", ".")):
                if name == "..":
                    raise OSError(errno.EACCES, "no way up")
                following = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = following
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise OSError(errno.ENOTDIR, path)
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _serve_mounts(self) -> None:
        """Mount shares for the guest's root after boot (its ``mount.nfs4`` helper)."""
        for helper in ("/usr/sbin/mount.nfs4", "/usr/sbin/mount.nfs"):
            try:
                if os.path.islink(helper):
                    os.unlink(helper)
                with open(helper, "w") as f:
                    f.write(MOUNT_HELPER)
                os.chmod(helper, 0o755)
            except OSError as e:
                self._console(f"WARNING: cannot install {helper}: {e}")
        os.makedirs(os.path.dirname(MOUNT_SOCKET), mode=0o755, exist_ok=True)
        server = socket.socket(socket.AF_UNIX)
        if os.path.exists(MOUNT_SOCKET):
            os.unlink(MOUNT_SOCKET)
        server.bind(MOUNT_SOCKET)
        os.chmod(MOUNT_SOCKET, 0o600)
        server.listen(8)
        threading.Thread(target=self._answer_mounts, args=(server,), daemon=True, name="mounts").start()

    def _answer_mounts(self, server: socket.socket) -> None:
        while True:
            connection, _ = server.accept()
            with connection:
                try:
                    connection.settimeout(10)
                    request = json.loads(connection.makefile().readline())
                    spec = {"source": str(request["source"]), "target": str(request["target"]),
                            "options": str(request.get("options") or "rw"), "fstype": "nfs4"}
                    if not spec["target"].startswith("/") or ".." in spec["target"].split("/"):
                        done, message = False, f"mount.nfs: mount point {spec['target']} is not an absolute path"
                    else:
                        done, message = self._mount_share("/", spec)
                    answer = {"status": 0 if done else 32, "message": "" if done else message}
                    connection.sendall(json.dumps(answer).encode() + b"\n")
                except (OSError, ValueError, KeyError, TypeError) as e:
                    self._console(f"WARNING: a mount request failed: {e}")

    def _write_instance_data(self) -> None:
        os.makedirs("/run/cloud-init", exist_ok=True)
        with open("/run/cloud-init/instance-data.json", "w") as f:
            json.dump(self.boot["instance_data"], f, indent=2, sort_keys=True)
        if self.boot.get("gpus"):
            os.makedirs("/run/hepsdesk", exist_ok=True)
            with open("/run/hepsdesk/fake-gpus.json", "w") as f:
                json.dump(self.boot["gpus"], f, indent=2)

    # boot

    def _boot(self) -> None:
        b, plan = self.boot, self.boot["plan"]
        self._console(f"hepsdesk: process VM {b['uuid']} ({b['name']}) booting, "
                      f"address {b.get('address') or 'none'}", kernel=True)
        self._stage("init")
        for line in self.mount_messages:
            self._console(line)
        # As cloud-init: bootcmd and the per-boot scripts run at every boot; write_files and
        # the user's scripts (runcmd, shell user-data) once per instance, so not again after a
        # reboot, a stop and start, or an unshelve (the same instance id, the same disk).
        semaphore = f"/var/lib/cloud/instances/{b['uuid']}/sem/hepsdesk-per-instance"
        first_boot = not os.path.exists(semaphore)
        if plan["bootcmd"]:
            self._run_script("bootcmd", "#!/bin/sh\n" + "\n".join(plan["bootcmd"]) + "\n")
        if first_boot:
            self._write_files([f for f in plan["write_files"] if not f["defer"]])
        self._stage("modules:config")
        self._stage("modules:final")
        self._run_per_boot_scripts()
        if first_boot:
            for script in plan["scripts"]:
                if self.stopping:
                    return
                self._run_script(script["name"], base64.b64decode(script["content_b64"]).decode())
            self._write_files([f for f in plan["write_files"] if f["defer"]])
            if not self.stopping:
                os.makedirs(os.path.dirname(semaphore), exist_ok=True)
                with open(semaphore, "w") as f:
                    f.write(_now() + "\n")
        if not self.stopping:
            self._console(f"Cloud-init v. {CLOUD_INIT_VERSION} finished at {_now()}. "
                          f"Datasource DataSourceOpenStackLocal [net,ver=2].  Up {_uptime(b):.2f} seconds")
            if plan.get("final_message"):
                self._console(plan["final_message"])

    def _stage(self, name: str) -> None:
        self._console(f"Cloud-init v. {CLOUD_INIT_VERSION} running '{name}' at {_now()}. "
                      f"Up {_uptime(self.boot):.2f} seconds.")

    def _write_files(self, entries: list) -> None:
        for entry in entries:
            if self.stopping:
                return
            path = entry["path"]
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "ab" if entry["append"] else "wb") as f:
                    f.write(base64.b64decode(entry["content_b64"]))
                os.chmod(path, entry["permissions"] if entry["permissions"] is not None else 0o644)
                user, _, group = entry["owner"].partition(":")
                os.chown(path, pwd.getpwnam(user).pw_uid, grp.getgrnam(group or user).gr_gid)
            except (OSError, KeyError) as e:
                self._console(f"WARNING: write_files {path} failed: {e}")

    def _run_per_boot_scripts(self) -> None:
        """cloud-init's scripts_per_boot: the executables in /var/lib/cloud/scripts/per-boot, by name."""
        directory = "/var/lib/cloud/scripts/per-boot"
        names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
        for name in names:
            path = os.path.join(directory, name)
            if not self.stopping and os.path.isfile(path) and os.access(path, os.X_OK):
                self._run_file(name, path)

    def _run_script(self, name: str, content: str) -> None:
        scripts = "/var/lib/cloud/instance/scripts"
        os.makedirs(scripts, exist_ok=True)
        path = os.path.join(scripts, name)
        with open(path, "w") as f:
            f.write(content)
        os.chmod(path, 0o700)
        self._run_file(name, path)

    def _run_file(self, name: str, path: str) -> None:
        try:
            process = subprocess.Popen([path], env=self.env, cwd="/", stdin=subprocess.DEVNULL)
        except OSError as e:
            self._console(f"WARNING: failed to run {name}: {e}")
            return
        code = process.wait()
        if code != 0 and not self.stopping:
            self._console(f"WARNING: {name} exited with status {code}")

    def _console(self, line: str, kernel: bool = False) -> None:
        prefix = f"[{_uptime(self.boot):12.6f}] " if kernel else ""
        print(prefix + line, flush=True)

    # running and stopping

    def _on_sigterm(self, signum, frame) -> None:
        if self.stopping:
            return
        self.stopping = True
        self._console("hepsdesk: shutdown requested, stopping guest processes", kernel=True)
        signal.signal(signal.SIGALRM, self._on_grace_over)
        signal.alarm(max(1, int(self.boot.get("stop_grace", 10))))
        try:
            os.kill(-1, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def _on_grace_over(self, signum, frame) -> None:
        self._console("hepsdesk: grace period over, killing remaining processes", kernel=True)
        os._exit(0)

    def _reap_forever(self) -> None:
        """Reap orphans; once nothing is left and a stop was asked for, power off."""
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                if self.stopping:
                    os._exit(0)
                signal.pause()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vmdir")
    parser.add_argument("--ready-fd", type=int, required=True)
    args = parser.parse_args(argv)
    return monitor(args.vmdir, args.ready_fd)


if __name__ == "__main__":
    sys.exit(main())
