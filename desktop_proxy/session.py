"""The desktop session: what runs on the X display beside the user's applications.

Where XFCE is installed (xfwm4, xfce4-panel): its window manager, without a compositor (every
frame would be drawn, and encoded, twice), and a panel with the applications menu, the open
windows and a clock, on a D-Bus session bus of the desktop's own. hepsdesk's settings are
system defaults (``session/`` on ``XDG_CONFIG_DIRS``), so a user's own XFCE settings win. The
image's applications are in the menu (desktop entries made from ``$HEPSDESK_IMAGE_INFO``, on
``XDG_DATA_DIRS``); the file manager (Thunar) has "Send to my computer" (``hepsdesk-send``) and
the user's data directories as bookmarks. Elsewhere: openbox. Either way a terminal opens, and
a PulseAudio server of the desktop's own takes the programs' sound (``sound.py``).

The session's own files (the bus's socket, the desktop entries) live in a private directory
that goes away with the desktop.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from .apps import ImageApps
from .sound import SINK

log = logging.getLogger("desktop_proxy")

DEFAULTS = Path(__file__).parent / "session"  # XDG config: the panel's layout, xfwm4's settings
XFCE = ("xfwm4", "xfce4-panel", "dbus-daemon")
ROOTS_VARIABLE = "HEPSDESK_DESKTOP_FILE_ROOTS"  # the user's data directories, colon-separated (the spawner's)
TERMINAL = ["xterm", "-geometry", "120x36+40+40", "-fa", "DejaVu Sans Mono", "-fs", "12", "-title", "Terminal"]


def choose(kind: str = "auto") -> str:
    """The session to run: "xfce" when asked or, for "auto", when XFCE is installed; else "openbox"."""
    if kind == "auto":
        return "xfce" if all(shutil.which(program) for program in XFCE) else "openbox"
    return kind


@dataclass
class Session:
    """One desktop's session of ``kind`` ("xfce", "openbox" or "" for none)."""

    kind: str = "auto"
    terminal: list[str] = field(default_factory=lambda: list(TERMINAL))
    runtime: Path | None = None  # the session's private directory
    env: dict[str, str] = field(default_factory=dict)  # added to every process on the desktop

    def __post_init__(self):
        self.kind = choose(self.kind)

    @property
    def window_manager(self) -> list[str]:
        return {"xfce": ["xfwm4", "--compositor=off"], "openbox": ["openbox"]}.get(self.kind, [])

    @property
    def bus(self) -> list[str]:
        """The session bus's daemon (XFCE's settings and panel talk over it), or nothing."""
        if self.kind != "xfce":
            return []
        return ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address=unix:path={self.runtime}/bus"]

    @property
    def bus_socket(self) -> Path | None:
        return self.runtime / "bus" if self.kind == "xfce" else None

    @property
    def sound_server(self) -> list[str]:
        """A PulseAudio server of the desktop's own (``sound.py`` records it), or nothing."""
        if self.runtime is None or not shutil.which("pulseaudio"):
            return []
        return ["pulseaudio", "-n", "--daemonize=no", "--use-pid-file=no", "--exit-idle-time=-1",
                "--disallow-exit", "--log-target=stderr", "--log-level=error",
                f"--load=module-native-protocol-unix socket={self.runtime}/sound auth-anonymous=1",
                f"--load=module-null-sink sink_name={SINK} rate=48000 channels=2 "
                "sink_properties=device.description=Desktop"]

    @property
    def sound_server_env(self) -> dict[str, str]:
        # Its state (a cookie it does not need: the socket is private) stays out of the home.
        state = str(self.runtime / "sound-server")
        return {"HOME": state, "XDG_RUNTIME_DIR": state, "XDG_CONFIG_HOME": state}

    @property
    def after_window_manager(self) -> list[list[str]]:
        """Started once the window manager runs (a window mapped before may stay unmanaged);
        they, and what is started from them, run at ``USER_NICE``."""
        return ([["xfce4-panel", "--disable-wm-check"]] if self.kind == "xfce" else []) + \
            ([self.terminal] if self.terminal else [])

    def prepare(self) -> dict[str, str]:
        """Make the session's files; the environment its processes get."""
        if not self.kind:
            return {}
        self.runtime = Path(tempfile.mkdtemp(prefix="hepsdesk-session-"))  # mode 0700
        sound = {"PULSE_SERVER": f"unix:{self.runtime}/sound"} if self.sound_server else {}
        if self.kind != "xfce":
            self.env = sound
            return self.env
        apps = ImageApps.load(os.environ.get("HEPSDESK_IMAGE_INFO"))
        roots = data_directories()
        config = self.runtime / "config"
        data = self.runtime / "data"
        write_menu_entries(data / "applications", apps)
        write_send_action(config / "Thunar" / "uca.xml")
        write_bookmarks(Path.home() / ".config" / "gtk-3.0" / "bookmarks", roots)
        self.env = {
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path={self.runtime}/bus",
            "XDG_CONFIG_DIRS": ":".join([str(config), str(DEFAULTS),
                                         os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"]),
            "XDG_DATA_DIRS": ":".join([str(data), os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"]),
            "XDG_CURRENT_DESKTOP": "XFCE",
            "XDG_MENU_PREFIX": "xfce-",
            **sound,
        }
        return self.env

    def cleanup(self) -> None:
        if self.runtime is not None:
            shutil.rmtree(self.runtime, ignore_errors=True)
            self.runtime = None


def take_priority() -> int:
    """Give this process (the desktop server: capture and encode) back the niceness its parent
    started with, as far as its limit (RLIMIT_NICE, set at boot) allows; its niceness now."""
    now = os.getpriority(os.PRIO_PROCESS, 0)
    if now > 0:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
        except PermissionError:
            log.info("the desktop runs at niceness %d (its limit allows no better)", now)
    return os.getpriority(os.PRIO_PROCESS, 0)


def data_directories() -> list[str]:
    """The user's data directories besides the home (``HEPSDESK_DESKTOP_FILE_ROOTS``)."""
    return [p for p in os.environ.get(ROOTS_VARIABLE, "").split(":") if p]


def desktop_entry_exec(command: list[str]) -> str:
    """A command line for a desktop entry's Exec key (quoted as the specification asks)."""
    def quote(arg: str) -> str:
        if arg and not any(c in arg for c in ' \t\n"\'\\><~|&;$*?#()`=%'):
            return arg
        inner = arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
        return f'"{inner}"'.replace("%", "%%")
    return " ".join(quote(arg) for arg in command)


HIDDEN_ENTRIES = ("xfce4-mail-reader.desktop", "xfce4-web-browser.desktop")  # nothing to run them with


def write_menu_entries(directory: Path, apps: ImageApps | None) -> None:
    """A desktop entry for each of the image's applications (in the menu under Science)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in HIDDEN_ENTRIES:  # an entry earlier on XDG_DATA_DIRS hides the system's
        (directory / name).write_text("[Desktop Entry]\nType=Application\nName=hidden\nHidden=true\n")
    for app in apps.applications.values() if apps is not None else []:
        lines = ["[Desktop Entry]", "Type=Application", f"Name={app.title}",
                 f"Comment={app.title}{' ' + app.version if app.version else ''}",
                 f"Exec={desktop_entry_exec(list(app.command))}", "Terminal=false",
                 "Categories=Science;Education;", f"X-Hepsdesk-App={app.name}"]
        if app.icon:
            lines.append(f"Icon={app.icon}")
        (directory / f"hepsdesk-{app.name}.desktop").write_text("\n".join(lines) + "\n")


def write_send_action(path: Path) -> None:
    """Thunar's "Send to my computer": the selected files download in the browser."""
    path.parent.mkdir(parents=True, exist_ok=True)
    send = shutil.which("hepsdesk-send") or str(Path(sys.executable).with_name("hepsdesk-send"))
    path.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<actions>
<action>
  <icon>document-send</icon>
  <name>Send to my computer</name>
  <unique-id>hepsdesk-send-1</unique-id>
  <command>{escape(shlex.quote(send))} %F</command>
  <description>Download the selected files in the browser that shows this desktop</description>
  <patterns>*</patterns>
  <other-files/><text-files/><image-files/><audio-files/><video-files/>
</action>
</actions>
""")


def write_bookmarks(path: Path, roots: list[str]) -> None:
    """The data directories in the file manager's side pane, when the user has no bookmarks yet."""
    places = [root for root in roots if root and Path(root) != Path.home()]
    if not places or path.exists():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{Path(p).as_uri()} {Path(p).name}\n" for p in places))
    except OSError as e:
        log.warning("cannot write the file manager's bookmarks %s: %s", path, e)
