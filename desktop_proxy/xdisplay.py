"""The desktop itself: an X display with a window manager and a terminal.

The X server is Xtigervnc with its VNC port closed (``-rfbport -1``) when it is installed,
else Xvfb. Both are virtual framebuffers with the extensions the streaming side uses
(MIT-SHM for capture, XTEST for input, DAMAGE); only Xtigervnc can change its size through
RandR to any width and height (Debian's Xvfb keeps the size it started with), which the
desktop needs to follow the browser window.

The server picks a free display number itself (``-displayfd``) and listens only on its
socket in ``/tmp/.X11-unix``: no TCP port, and no abstract socket, whose namespace is shared
by every process of the network namespace (so, on the dev cloud, by every VM: a client of
one VM's ``:0`` could otherwise reach another VM's display). The session processes are
children of the desktop server and die with it; their exits are logged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import signal
import subprocess
import time

from Xlib import X
from Xlib import display as xlib_display

from .apps import user_program
from .session import TERMINAL, Session

log = logging.getLogger("desktop_proxy")


# The signals the desktop server handles (in its main thread). Delivered to a thread that is
# inside a libX11 call instead, one interrupts the call, and libX11 takes that for a lost
# connection ("XIO: fatal IO error 4 (Interrupted system call)"): threads that talk to X
# block them, so the kernel gives them to the main thread.
HANDLED_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


def without_signals(target):
    """``target`` for a thread that talks to X: run with ``HANDLED_SIGNALS`` blocked."""
    @functools.wraps(target)
    def run(*args, **kwargs):
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        return target(*args, **kwargs)
    return run


MIN_SIZE = (640, 480)
MAX_SIZE = (3840, 2160)


class DisplayError(RuntimeError):
    pass


def fit_size(width: float, height: float) -> tuple[int, int]:
    """A size the desktop can take: within 640x480..3840x2160 (keeping the aspect ratio when
    it is too large) and even (the video is 4:2:0)."""
    width, height = max(1.0, float(width)), max(1.0, float(height))
    shrink = min(1.0, MAX_SIZE[0] / width, MAX_SIZE[1] / height)
    width, height = width * shrink, height * shrink
    return (max(MIN_SIZE[0], int(width)) & ~1, max(MIN_SIZE[1], int(height)) & ~1)


class XDisplay:
    def __init__(self, width: int = 1920, height: int = 1080, session: str = "auto",
                 terminal: list[str] | None = None):
        """``session``: "xfce", "openbox", "auto" (XFCE when installed) or "" (nothing but the
        X server); ``terminal``: the terminal it opens ([] for none)."""
        self.width = width
        self.height = height
        self.session = Session(session, terminal=list(TERMINAL) if terminal is None else terminal)
        self.name = ""
        self.server = ""  # "Xtigervnc" or "Xvfb"
        self.dpi = 96
        self._processes: list[subprocess.Popen] = []
        self._modes: list[str] = []  # RandR modes this desktop added (the current one last)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **self.session.env, "DISPLAY": self.name}

    @property
    def resizable(self) -> bool:
        return self.server in ("Xtigervnc", "existing")

    def attach(self, name: str) -> None:
        """Use a running X display (``:N``) instead of starting one: nothing is started, and
        ``stop`` leaves it running. For an existing session, and for the benchmark."""
        try:
            display = xlib_display.Display(name)
        except Exception as e:
            raise DisplayError(f"cannot open display {name}: {e}") from None
        try:
            geometry = display.screen().root.get_geometry()
        finally:
            display.close()
        self.name, self.server = name, "existing"
        self.width, self.height = geometry.width, geometry.height
        log.info("X display %s (existing, %dx%d)", name, self.width, self.height)

    def _server_command(self, fd: int) -> list[str]:
        common = ["-displayfd", str(fd), "-nolisten", "tcp", "-nolisten", "local"]
        xtigervnc = shutil.which("Xtigervnc")
        if xtigervnc:
            self.server = "Xtigervnc"
            return [xtigervnc, *common, "-geometry", f"{self.width}x{self.height}", "-depth", "24",
                    "-rfbport", "-1", "-SecurityTypes", "None", "-AcceptSetDesktopSize=0", "-Log", "*:stderr:0"]
        xvfb = shutil.which("Xvfb")
        if xvfb:
            self.server = "Xvfb"
            return [xvfb, *common, "-screen", "0", f"{self.width}x{self.height}x24", "-noreset",
                    "+extension", "RANDR", "+extension", "DAMAGE"]
        raise DisplayError("neither Xtigervnc nor Xvfb is installed in this environment "
                           "(Debian packages: tigervnc-standalone-server, xvfb)")

    async def start(self, timeout: float = 15) -> None:
        self.width, self.height = fit_size(self.width, self.height)
        read_fd, write_fd = os.pipe()
        try:
            command = self._server_command(write_fd)
        except DisplayError:
            os.close(read_fd)
            os.close(write_fd)
            raise
        process = subprocess.Popen(command, pass_fds=(write_fd,), stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        os.close(write_fd)
        self._processes.append(process)
        try:
            number = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                None, _read_line, read_fd), timeout)
        except (TimeoutError, ValueError) as e:
            self.stop()
            raise DisplayError(f"{self.server} did not start (exit status {process.poll()}): {e}") from e
        finally:
            os.close(read_fd)
        self.name = f":{number}"
        log.info("X display %s (%s, %dx%d) started", self.name, self.server, self.width, self.height)
        session = self.session
        session.prepare()
        if session.sound_server:
            self._spawn_optional(session.sound_server, env=session.sound_server_env)
        if session.bus and self._spawn_optional(session.bus):
            bus = session.bus_socket
            if not await asyncio.get_running_loop().run_in_executor(None, _wait_for_path, bus, timeout):
                log.warning("the session bus did not start within %.0f s", timeout)
        window_manager = session.window_manager
        if window_manager and self._spawn_optional(window_manager):
            # Start the session's windows only once the window manager runs: a window mapped
            # while it is starting up can stay unmanaged and never appear.
            ready = await asyncio.get_running_loop().run_in_executor(
                None, _wait_for_window_manager, self.name, timeout)
            if not ready:
                log.warning("%s did not announce itself within %.0f s", window_manager[0], timeout)
        self._spawn_optional(["xsetroot", "-solid", "#2b4257"], wait=True)
        for argv in session.after_window_manager:
            self._spawn_optional(argv, user=True)
        log.info("desktop session: %s", session.kind or "none")

    def resize(self, width: float, height: float, scale: float = 1.0) -> tuple[int, int]:
        """Change the desktop's size (RandR) to fit ``width`` x ``height`` device pixels, and
        its font resolution to ``scale`` (the browser's devicePixelRatio, so text keeps its
        size on a HiDPI screen). Blocking (it runs ``xrandr``): call it from a thread.
        Returns the size the desktop has now."""
        width, height = fit_size(width, height)
        dpi = int(96 * min(4.0, max(0.5, float(scale))))
        if dpi != self.dpi and shutil.which("xrdb"):
            # Read by applications as they start (Xft, Qt, GTK through xsettings daemons).
            subprocess.run(["xrdb", "-merge"], input=f"Xft.dpi: {dpi}\n", text=True, env=self.env,
                           timeout=10, check=False)
            self.dpi = dpi
        if (width, height) == (self.width, self.height):
            return width, height
        if not self.resizable:
            raise DisplayError(f"this desktop ({self.server}) cannot change its size")
        mode = f"hepsdesk-{width}x{height}"
        xrandr = ["xrandr", "--display", self.name]
        output = _randr_output(self.name)
        if mode not in self._modes:
            # A mode of exactly this size (the timings do not matter to a virtual screen).
            _run([*xrandr, "--newmode", mode, "60", str(width), str(width), str(width), str(width),
                  str(height), str(height), str(height), str(height)])
            _run([*xrandr, "--addmode", output, mode])
        _run([*xrandr, "--output", output, "--mode", mode])
        for old in [m for m in self._modes if m != mode]:  # no pile of unused modes
            subprocess.run([*xrandr, "--delmode", output, old], capture_output=True, timeout=10)
            subprocess.run([*xrandr, "--rmmode", old], capture_output=True, timeout=10)
        self._modes = [mode]
        self.width, self.height = width, height
        log.info("X display %s resized to %dx%d (%d dpi)", self.name, width, height, self.dpi)
        return width, height

    def set_layout(self, layout: str) -> None:
        """Set the keyboard layout (an XKB name). Blocking: call it from a thread."""
        if not shutil.which("setxkbmap"):
            raise DisplayError("setxkbmap is not installed (Debian: x11-xkb-utils)")
        done = subprocess.run(["setxkbmap", "-display", self.name, "-layout", layout], capture_output=True,
                              text=True, timeout=10)
        if done.returncode:
            raise DisplayError(f"setxkbmap {layout} failed: {done.stderr.strip() or done.returncode}")

    def _spawn_optional(self, argv: list[str], wait: bool = False, env: dict[str, str] | None = None,
                        user: bool = False) -> bool:
        """Start a program of the session (``user``: one of the user's, at their niceness)."""
        if shutil.which(argv[0]) is None:
            log.warning("%s is not installed; the desktop starts without it", argv[0])
            return False
        name = argv[0]
        if user:
            argv = user_program(argv)
        environment = {**self.env, **(env or {})}
        home = environment.get("HOME") or os.path.expanduser("~")
        process = subprocess.Popen(argv, env=environment, stdin=subprocess.DEVNULL, start_new_session=True,
                                   cwd=home if os.path.isdir(home) else None)  # a terminal opens in the home
        if wait:
            process.wait(timeout=10)
        else:
            self._processes.append(process)
            asyncio.get_running_loop().run_in_executor(None, self._log_exit, name, process)
        return True

    @staticmethod
    def _log_exit(name: str, process: subprocess.Popen) -> None:
        code = process.wait()
        log.warning("%s (pid %d) exited with status %s", name, process.pid, code)

    def stop(self) -> None:
        for process in reversed(self._processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for process in self._processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self._processes.clear()
        self.session.cleanup()


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if done.returncode:
        raise DisplayError(f"{' '.join(argv[3:5])} failed: {done.stderr.strip() or done.returncode}")


def _randr_output(display_name: str) -> str:
    """The name of the display's (single) RandR output, e.g. ``VNC-0``."""
    display = xlib_display.Display(display_name)
    try:
        resources = display.screen().root.xrandr_get_screen_resources()
        for output in resources.outputs:
            info = display.xrandr_get_output_info(output, resources.config_timestamp)
            if info.crtc:
                return info.name
        raise DisplayError(f"display {display_name} has no active output")
    finally:
        display.close()


def _read_line(fd: int) -> int:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 64)
        if not chunk:
            raise ValueError("Xvfb closed the display pipe")
        data += chunk
    return int(data.strip())


def _wait_for_path(path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _wait_for_window_manager(display_name: str, timeout: float) -> bool:
    """Wait until a window manager has set the EWMH ``_NET_SUPPORTING_WM_CHECK`` on the root."""
    display = xlib_display.Display(display_name)
    try:
        root = display.screen().root
        check = display.intern_atom("_NET_SUPPORTING_WM_CHECK")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if root.get_full_property(check, X.AnyPropertyType) is not None:
                return True
            time.sleep(0.05)
        return False
    finally:
        display.close()
