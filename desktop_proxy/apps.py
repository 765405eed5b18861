"""The image's GUI applications, and starting them on the desktop.

The image describes its applications in the JSON file named by ``$HEPSDESK_IMAGE_INFO``
(written when the image is built)::

    {"image": "hepsdesk-neutron", "title": "CSNS neutron scattering",
     "applications": [{"name": "sasview", "title": "SasView", "version": "6.1.3",
                       "command": ["/opt/.../bin/sasview"], "window": "SasView",
                       "opens": [".dat", ".xml"], "icon": "/opt/.../sasview.svg"}],
     "sample_data": [{"name": "sasview-examples", "description": "...", "path": "/opt/..."}]}

A missing or broken file means no applications (and a warning in the log), never a desktop
that does not start; a broken entry is left out. Each application starts in its own process
group, in the user's home, with its output in ``~/.local/state/hepsdesk/apps/``; stopping a
launch stops the whole group, so nothing of a failed start is left running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import secrets
import signal
import stat
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("desktop_proxy")

# The user's programs (the terminal and what it starts, the panel's menu, the image's
# applications) run this much nicer than the desktop's capture and encode, so that a program
# that takes every CPU leaves the desktop usable (the start script lets the desktop server take
# back the niceness the Jupyter server starts with: ``session.take_priority``).
USER_NICE = 5


def user_program(argv: list[str], nice: int = USER_NICE) -> list[str]:
    """``argv`` run at the user's programs' niceness. Started in a session of its own (as the
    desktop starts them), it is also the niceness of the session's autogroup, which the kernel
    weighs as one against the desktop's when it groups by session (``sched_autogroup``): else a
    program's niceness would count only against the programs of its own session."""
    script = f'echo {nice} > /proc/self/autogroup 2>/dev/null; exec nice -n {nice} "$@"'
    return ["sh", "-c", script, "user-program", *argv]

MAX_INFO_BYTES = 1 << 20
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TAIL_LINES = 15
KEEP_EXITED = 50  # launches that ended and are still listed


class LaunchError(Exception):
    """A launch the user asked for cannot be done; ``details`` go with the message to the client."""

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.details = details


class UnknownApp(LaunchError):
    pass


class UnknownLaunch(LaunchError):
    pass


class FileProblem(LaunchError):
    pass


class CannotStart(LaunchError):
    pass


class AppExited(LaunchError):
    pass


class WindowTimeout(LaunchError):
    pass


@dataclasses.dataclass(frozen=True)
class App:
    name: str
    title: str
    version: str
    command: tuple[str, ...]
    window: str  # a part of its main window's title
    opens: tuple[str, ...]  # file name extensions it opens
    icon: str  # an absolute path, or ""

    def as_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "version": self.version, "opens": list(self.opens),
                "command": list(self.command), "window": self.window,
                "icon_url": f"api/apps/{self.name}/icon" if self.icon else None}


def _text(entry: dict, key: str, default: str | None = None, limit: int = 1000) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str) or len(value) > limit or "\0" in value:
        raise ValueError(f"{key!r} must be a string")
    return value


def _app(entry) -> App:
    if not isinstance(entry, dict):
        raise ValueError("not an object")
    name = _text(entry, "name")
    if not NAME.fullmatch(name):
        raise ValueError(f"bad name {name!r} (letters, digits, '.', '_', '-')")
    command = entry.get("command")
    if (not isinstance(command, list) or not command or len(command) > 100
            or not all(isinstance(a, str) and a and "\0" not in a for a in command)):
        raise ValueError("'command' must be a list of strings")
    opens = entry.get("opens", [])
    if not isinstance(opens, list) or not all(isinstance(o, str) and len(o) < 100 for o in opens):
        raise ValueError("'opens' must be a list of strings")
    icon = _text(entry, "icon", "") if entry.get("icon") is not None else ""
    if icon and not os.path.isabs(icon):
        raise ValueError("'icon' must be an absolute path")
    return App(name=name, title=_text(entry, "title", name), version=_text(entry, "version", ""),
               command=tuple(command), window=_text(entry, "window", ""), opens=tuple(opens), icon=icon)


def _sample(entry) -> dict:
    if not isinstance(entry, dict):
        raise ValueError("not an object")
    return {"name": _text(entry, "name"), "description": _text(entry, "description", ""),
            "path": _text(entry, "path")}


@dataclasses.dataclass
class ImageApps:
    """What ``$HEPSDESK_IMAGE_INFO`` says about the image."""
    image: str = ""
    title: str = ""
    applications: dict[str, App] = dataclasses.field(default_factory=dict)
    sample_data: list[dict] = dataclasses.field(default_factory=list)

    @classmethod
    def load(cls, path: str | None) -> ImageApps:
        """The image's applications; none (and a warning) when ``path`` is unset, missing or broken."""
        if not path:
            return cls()
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_INFO_BYTES + 1)
            if len(data) > MAX_INFO_BYTES:
                raise ValueError(f"larger than {MAX_INFO_BYTES} bytes")
            return cls.parse(json.loads(data))
        except FileNotFoundError:
            log.info("no image description at %s: the desktop has no applications to open", path)
        except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
            log.warning("the image description %s is unusable (%s): the desktop has no applications to open", path, e)
        return cls()

    @classmethod
    def parse(cls, data) -> ImageApps:
        """Raises ``ValueError`` for a file that is not an image description; leaves out (with a
        warning) the entries that are broken."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        applications, sample_data = data.get("applications", []), data.get("sample_data", [])
        if not isinstance(applications, list) or not isinstance(sample_data, list):
            raise ValueError("'applications' and 'sample_data' must be lists")
        info = cls(image=_text(data, "image", ""), title=_text(data, "title", ""))
        for n, entry in enumerate(applications):
            try:
                app = _app(entry)
            except ValueError as e:
                log.warning("image description: application #%d left out: %s", n + 1, e)
                continue
            if app.name in info.applications:
                log.warning("image description: a second application named %r left out", app.name)
                continue
            info.applications[app.name] = app
        for n, entry in enumerate(sample_data):
            try:
                info.sample_data.append(_sample(entry))
            except ValueError as e:
                log.warning("image description: sample data #%d left out: %s", n + 1, e)
        return info

    def get(self, name: str) -> App:
        try:
            return self.applications[name]
        except KeyError:
            known = sorted(self.applications)
            raise UnknownApp(f"there is no application {name!r} on this desktop; "
                             + (f"there are: {', '.join(known)}" if known else "this image has none"),
                             known=known) from None

    def as_dict(self) -> dict:
        return {"image": self.image, "title": self.title,
                "applications": [app.as_dict() for app in self.applications.values()],
                "sample_data": self.sample_data}


# Processes, from /proc.

def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()  # after the command name, which may hold anything
    return fields[0].decode(), int(fields[1]), int(fields[2])


def is_descendant(pid: int, ancestors: set[int]) -> int | None:
    """The one of ``ancestors`` that is ``pid`` or one of its ancestors, if any."""
    for _ in range(64):
        if pid in ancestors:
            return pid
        info = _stat(pid)
        if info is None or info[1] <= 1:
            return None
        pid = info[1]
    return None


def _live() -> list[tuple[int, int]]:
    """(pid, process group) of every live (not zombie) process."""
    processes = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info is not None and info[0] not in "ZX":
                processes.append((int(entry), info[2]))
    return processes


def group_members(pgid: int) -> list[int]:
    """The live processes of a process group."""
    return [pid for pid, group in _live() if group == pgid]


def live_groups() -> set[int]:
    """The process groups that have a live process."""
    return {group for _, group in _live()}


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


@dataclasses.dataclass
class Launch:
    """One start of an application: its process (the leader of its own group) and its output."""
    id: str
    app: App
    files: list[str]
    process: subprocess.Popen
    output: Path
    started: float = dataclasses.field(default_factory=time.time)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    @property
    def running(self) -> bool:
        return self.returncode is None

    def tail(self, lines: int = TAIL_LINES) -> str:
        """The last lines of its output."""
        try:
            with open(self.output, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 64 * 1024))
                data = f.read()
        except OSError:
            return ""
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])

    def as_dict(self) -> dict:
        code = self.returncode
        return {"id": self.id, "app": self.app.name, "title": self.app.title, "pid": self.pid,
                "files": self.files, "started": self.started, "state": "running" if code is None else "exited",
                "returncode": code, "output": self.tail(), "log": str(self.output)}


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class Launcher:
    """Starts the image's applications on the desktop (``display``) and keeps track of them."""

    def __init__(self, apps: ImageApps, display: str, home: str | None = None, env: dict[str, str] | None = None):
        self.apps = apps
        self.display = display
        self.env = env or {}  # the desktop session's (its D-Bus, its XDG directories)
        self.home = Path(home or os.environ.get("HOME") or Path.home())
        self.launches: dict[str, Launch] = {}

    def resolve(self, name: str) -> Path:
        """A file the user asks an application to open: absolute, or relative to the home."""
        if not isinstance(name, str) or not name or "\0" in name:
            raise FileProblem(f"{name!r} is not a file name")
        path = self.home / os.path.expanduser(name)
        try:
            path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise FileProblem(f"there is no file {path}", file=str(path)) from None
        except OSError as e:
            raise FileProblem(f"you may not read {path} ({e.strerror})", file=str(path)) from None
        if not os.access(path, os.R_OK):
            raise FileProblem(f"you may not read {path} (permission denied)", file=str(path))
        return path

    def start(self, name: str, files: list[str] = ()) -> Launch:
        """Start an application, with ``files`` as its arguments; it runs until it exits or ``stop``."""
        app = self.apps.get(name)
        paths = [str(self.resolve(f)) for f in files]
        launch_id = secrets.token_hex(4)
        directory = self.home / ".local" / "state" / "hepsdesk" / "apps"
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.chmod(0o700)
            output = directory / f"{app.name}-{time.strftime('%Y%m%d-%H%M%S')}-{launch_id}.log"
            with open(output, "xb", buffering=0) as out:
                out.write(f"$ {' '.join([*app.command, *paths])}\n".encode(errors="replace"))
                process = subprocess.Popen(user_program([*app.command, *paths]), cwd=self.home,
                                           stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                           start_new_session=True,
                                           env={**os.environ, **self.env, "DISPLAY": self.display})
        except OSError as e:
            raise CannotStart(f"cannot start {app.title}: {e.strerror or e}"
                              + (f" ({e.filename})" if e.filename else "")) from None
        launch = Launch(launch_id, app, paths, process, output)
        self._forget_old()
        self.launches[launch_id] = launch
        log.info("started %s (launch %s, pid %d), output in %s", app.name, launch_id, process.pid, output)
        return launch

    def get(self, launch_id: str) -> Launch:
        try:
            return self.launches[launch_id]
        except KeyError:
            raise UnknownLaunch(f"there is no launch {launch_id!r} on this desktop") from None

    async def wait_window(self, launch: Launch, find: Callable[[], Awaitable[dict | None]], timeout: float,
                          abort: bool = False) -> dict:
        """Wait until ``find()`` finds the launch's window, and return it. Raises ``AppExited``
        when the application ends first (and stops what is left of it), ``WindowTimeout`` after
        ``timeout`` seconds (stopping the application if ``abort``)."""
        deadline = time.monotonic() + timeout
        while True:
            window = await find()
            if window is not None:
                return window
            code = launch.returncode
            if code is not None and not group_members(launch.pid):
                await self.stop(launch)
                raise AppExited(
                    f"{launch.app.title} {describe_exit(code)} before it opened a window. Its last output:\n"
                    f"{launch.tail() or '(none)'}\n(all of it: {launch.output})",
                    returncode=code, output=launch.tail(), launch=launch.id)
            if time.monotonic() >= deadline:
                if abort:
                    await self.stop(launch)
                raise WindowTimeout(
                    f"{launch.app.title} opened no window within {timeout:g} s"
                    + (": it was stopped" if abort else ": it is still starting, or opens none"),
                    launch=launch.id, output=launch.tail(), stopped=abort)
            await asyncio.sleep(0.2)

    async def stop(self, launch: Launch, grace: float = 3.0) -> None:
        """Stop the launch's whole process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
        await self._stop_groups([launch.pid], grace)
        try:
            launch.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            log.warning("launch %s (pid %d) did not end", launch.id, launch.pid)

    async def shutdown(self) -> None:
        """Stop every launched application (the desktop is going away)."""
        groups = [launch.pid for launch in self.launches.values() if launch.running or group_members(launch.pid)]
        if groups:
            log.info("stopping %d launched application(s)", len(groups))
            await self._stop_groups(groups, grace=3.0)
        for launch in self.launches.values():
            launch.process.poll()

    @staticmethod
    async def _stop_groups(groups: list[int], grace: float) -> None:
        for pgid in groups:
            _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            groups = [g for g in groups if group_members(g)]
            if not groups:
                return
        for pgid in groups:
            log.warning("process group %d did not end on SIGTERM: killing it", pgid)
            _signal_group(pgid, signal.SIGKILL)
        for _ in range(40):
            if not any(group_members(g) for g in groups):
                return
            await asyncio.sleep(0.05)

    def _forget_old(self) -> None:
        ended = [launch for launch in self.launches.values() if not launch.running]
        for launch in ended[:-KEEP_EXITED]:
            del self.launches[launch.id]


# An application's icon, for the launcher's tiles (``lab_api``) and the control API.
MAX_ICON = 1 << 20
ICON_TYPES = {".svg": "image/svg+xml", ".png": "image/png"}


class NoIcon(LookupError):
    pass


def read_icon(app) -> tuple[str, bytes]:
    """The content type and bytes of ``app``'s icon; :class:`NoIcon` says why there is none."""
    kind = ICON_TYPES.get(Path(app.icon).suffix.lower()) if app.icon else None
    if kind is None:
        raise NoIcon(f"{app.title} has no icon (SVG or PNG)")
    try:
        with open(app.icon, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise OSError("not a file")
            data = f.read(MAX_ICON + 1)
    except OSError as e:
        raise NoIcon(f"the icon of {app.title} cannot be read: {e}") from None
    if len(data) > MAX_ICON:
        raise NoIcon(f"the icon of {app.title} is larger than {MAX_ICON // 1024} KiB")
    return kind, data


def send_icon(handler, kind: str, data: bytes) -> None:
    """Answer a tornado request with an icon, which may not run scripts."""
    handler.set_header("Content-Type", kind)
    handler.set_header("Cache-Control", "max-age=300")
    # An SVG can hold scripts: never run them on the Jupyter server's origin.
    handler.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; sandbox")
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.finish(data)
