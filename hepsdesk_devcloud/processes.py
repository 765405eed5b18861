"""The processes a dev cloud started: pid records, one log per service, stop by pid.

Every service runs in its own session (process group), with stdout and stderr appended to
``logs/<name>.log``; ``run/<name>.json`` records its pid, start time and command, so ``down``
signals exactly the process groups it started, and a recycled pid is never mistaken for one.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .service_plugins.hepsdesk_procinfo import is_same_process, start_ticks

# Written to a service's log each time it is started; failures only look at what follows.
START_MARKER = "=== hepsdesk devcloud: starting"


@dataclass
class ProcessRecord:
    name: str
    pid: int
    ticks: int | None
    argv: list[str]
    started_at: float
    # Digest of the command and environment it was started with: a change means restart.
    launch: str = ""

    @property
    def alive(self) -> bool:
        return is_same_process(self.pid, self.ticks)


class ProcessTable:
    def __init__(self, run_dir: Path, logs_dir: Path):
        self.run_dir = run_dir
        self.logs_dir = logs_dir
        self._children: dict[str, subprocess.Popen] = {}

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def _record_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> ProcessRecord:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(name), "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n{START_MARKER} {name} at {stamp} ===\n".encode())
            log.flush()
            process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self._children[name] = process
        record = ProcessRecord(name, process.pid, start_ticks(process.pid), argv, time.time(), launch_digest(argv, env))
        tmp = self._record_path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(record.__dict__))
        tmp.replace(self._record_path(name))
        return record

    def get(self, name: str) -> ProcessRecord | None:
        path = self._record_path(name)
        try:
            return ProcessRecord(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def running(self, name: str) -> ProcessRecord | None:
        record = self.get(name)
        if record is None:
            return None
        child = self._children.get(name)
        if child is not None and child.poll() is not None:
            return None
        return record if record.alive else None

    def exit_code(self, name: str) -> int | None:
        child = self._children.get(name)
        return child.poll() if child is not None else None

    def stop(self, name: str, timeout: float = 10.0) -> bool:
        """SIGTERM the service's process group, SIGKILL it after ``timeout``; True if it ran."""
        record = self.get(name)
        if record is None:
            return False
        was_running = record.alive
        if was_running:
            _signal_group(record.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while record.alive and time.monotonic() < deadline:
                self._reap(name)
                time.sleep(0.1)
            if record.alive:
                _signal_group(record.pid, signal.SIGKILL)
                while record.alive and time.monotonic() < deadline + 5:
                    self._reap(name)
                    time.sleep(0.05)
        # Helpers the service left in its group (e.g. forked workers) go with it.
        _signal_group(record.pid, signal.SIGKILL)
        self._reap(name)
        self._record_path(name).unlink(missing_ok=True)
        return was_running

    def _reap(self, name: str) -> None:
        child = self._children.get(name)
        if child is not None:
            child.poll()

    def log_tail(self, name: str, lines: int = 20) -> list[str]:
        return tail_lines(self.log_path(name), lines)


def launch_digest(argv: list[str], env: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps([argv, sorted(env.items())]).encode()).hexdigest()[:16]


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def tail_lines(path: Path, lines: int, max_bytes: int = 256 * 1024) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read().decode(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return []


def port_owner(port: int, host: str = "127.0.0.1") -> str | None:
    """Describe who listens on ``host:port`` (``"mariadbd (pid 12)"``), or None if it is free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            return None
        except OSError:
            pass
    pid = listening_pid(port)
    if pid is None:
        return "another process"
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        name = "a process"
    return f"{name} (pid {pid})"


def listening_pid(port: int) -> int | None:
    """The pid of the process listening on TCP ``port``, if it can be found."""
    inode = _listening_inode(port)
    return _pid_of_socket(inode) if inode else None


def _listening_inode(port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return fields[9]
    return None


def _pid_of_socket(inode: str) -> int | None:
    target = f"socket:[{inode}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return int(pid)
        except OSError:
            continue
    return None
