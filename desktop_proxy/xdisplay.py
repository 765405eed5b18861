"""The desktop itself: an X display (Xvfb) with a window manager and a terminal.

Xvfb picks a free display number itself (``-displayfd``) and listens only on its socket in
``/tmp/.X11-unix``: no TCP port, and no abstract socket, whose namespace is shared by every
process of the network namespace (so, on the dev cloud, by every VM: a client of one VM's
``:0`` could otherwise reach another VM's display). It has the extensions the streaming side
uses (MIT-SHM for capture, XTEST for input, DAMAGE and RANDR for later). The session
processes are children of the desktop server and die with it; their exits are logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import time

from Xlib import X
from Xlib import display as xlib_display

log = logging.getLogger("desktop_proxy")


class DisplayError(RuntimeError):
    pass


class XDisplay:
    def __init__(self, width: int = 1920, height: int = 1080, window_manager: str = "openbox",
                 terminal: list[str] | None = None):
        self.width = width
        self.height = height
        self.window_manager = window_manager
        self.terminal = terminal if terminal is not None else [
            "xterm", "-geometry", "120x36+40+40", "-fa", "DejaVu Sans Mono", "-fs", "12",
            "-title", "Terminal"]
        self.name = ""
        self._processes: list[subprocess.Popen] = []

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DISPLAY": self.name}

    async def start(self, timeout: float = 15) -> None:
        xvfb = shutil.which("Xvfb")
        if xvfb is None:
            raise DisplayError("Xvfb is not installed in this environment (Debian package: xvfb)")
        read_fd, write_fd = os.pipe()
        process = subprocess.Popen(
            [xvfb, "-displayfd", str(write_fd), "-screen", "0", f"{self.width}x{self.height}x24",
             "-nolisten", "tcp", "-nolisten", "local", "-noreset", "+extension", "RANDR", "+extension", "DAMAGE"],
            pass_fds=(write_fd,), stdin=subprocess.DEVNULL, start_new_session=True)
        os.close(write_fd)
        self._processes.append(process)
        try:
            number = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                None, _read_line, read_fd), timeout)
        except (TimeoutError, ValueError) as e:
            self.stop()
            raise DisplayError(f"Xvfb did not start (exit status {process.poll()}): {e}") from e
        finally:
            os.close(read_fd)
        self.name = f":{number}"
        log.info("X display %s (%dx%d) started", self.name, self.width, self.height)
        self._spawn_optional(["xsetroot", "-solid", "#2b4257"], wait=True)
        if self.window_manager and self._spawn_optional([self.window_manager]):
            # Start the session's windows only once the window manager runs: a window mapped
            # while it is starting up can stay unmanaged and never appear.
            ready = await asyncio.get_running_loop().run_in_executor(
                None, _wait_for_window_manager, self.name, timeout)
            if not ready:
                log.warning("%s did not announce itself within %.0f s", self.window_manager, timeout)
        if self.terminal:
            self._spawn_optional(self.terminal)

    def _spawn_optional(self, argv: list[str], wait: bool = False) -> bool:
        if shutil.which(argv[0]) is None:
            log.warning("%s is not installed; the desktop starts without it", argv[0])
            return False
        process = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, start_new_session=True)
        if wait:
            process.wait(timeout=10)
        else:
            self._processes.append(process)
            asyncio.get_running_loop().run_in_executor(None, self._log_exit, argv[0], process)
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


def _read_line(fd: int) -> int:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 64)
        if not chunk:
            raise ValueError("Xvfb closed the display pipe")
        data += chunk
    return int(data.strip())


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
