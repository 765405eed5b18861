"""``hepsdesk demo``: the dev cloud, the development SSO with demo users, and the hub.

Everything runs on 127.0.0.1. The hub stays in the foreground (its log on the terminal)
until Ctrl-C; then the hub and the SSO stop, while the dev cloud and the users' VMs keep
running, so the next ``hepsdesk demo`` finds every server where it was (the hub does not
delete servers when it stops: ``cleanup_servers = False``).
"""

from __future__ import annotations

import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .devcloud import DevCloud
from .hub import DevHub
from .progress import StepProgress
from .settings import DevCloudSettings

REPO_CONFIG = Path(__file__).resolve().parents[1] / "jupyterhub_config.py"


@dataclass(frozen=True)
class DemoUser:
    name: str
    groups: tuple[str, ...]
    proposals: tuple[str, ...]
    shows: str
    uid: int = 0  # the POSIX identity the SSO releases (0: none); gid = uid (a user-private group)


# Group names match jupyterhub_config.py's defaults (allowed: heps-/csns-/bsrf-users;
# admins: hepsdesk-admins).
DEMO_USERS = (
    DemoUser("alice", ("heps-users", "hepsdesk-admins"), ("P-2026-0042",),
             "a HEPS scientist and hepsdesk admin: her VM, JupyterLab, the Desktop, the control panel", 20001),
    DemoUser("bob", ("csns-users",), ("P-2026-0107",), "a CSNS scientist: his own VM, no admin rights", 20002),
    DemoUser("carol", ("visitors",), (), "signed in but in no allowed group: the page that says why"),
)


@dataclass
class DemoOptions:
    cloud_state_dir: Path
    hub_state_dir: Path
    config_file: Path = REPO_CONFIG
    port: int = 8000
    hub_port: int = 8081
    oidc_port: int = 9400
    hub_tag: str = "hepsdesk-demo"


class Demo:
    def __init__(self, options: DemoOptions, stream: TextIO | None = None):
        self.options = options
        self.stream = stream or sys.stdout
        self.cloud = DevCloud(DevCloudSettings.load(str(options.cloud_state_dir)))
        self.hub = DevHub(options.hub_state_dir, options.config_file, self.cloud.settings.clouds_yaml,
                          port=options.port, hub_port=options.hub_port, oidc_port=options.oidc_port,
                          extra_env={"HEPSDESK_HUB_TAG": options.hub_tag,
                                     "HEPSDESK_DATA_SERVER": self.cloud.settings.storage_server})

    def ensure_users(self) -> dict[str, str]:
        """Create the demo users once (random passwords, kept in the SSO's 0600 config), with
        their homes and proposal directories on the dev cloud's storage."""
        known = self.hub.oidc.users()
        passwords = {}
        for user in DEMO_USERS:
            password = known.get(user.name, {}).get("password") or secrets.token_urlsafe(9)
            posix = None
            if user.uid:
                posix = {"uidNumber": user.uid, "gidNumber": user.uid, "homeDirectory": f"/home/{user.name}"}
                self.cloud.storage_directory(f"home/{user.name}", user.uid, user.uid)
                for proposal in user.proposals:
                    self.cloud.storage_directory(f"proposals/{proposal}", user.uid, user.uid, 0o770)
            self.hub.oidc.set_user(user.name, password, groups=list(user.groups), proposals=list(user.proposals),
                                   posix=posix)
            passwords[user.name] = password
        return passwords

    def start(self) -> dict[str, str]:
        """Bring up everything; return the demo users' passwords."""
        self.cloud.up()
        progress = StepProgress("hepsdesk demo", total=2)
        with progress.step("Demo users on the development SSO"):
            passwords = self.ensure_users()
        with progress.step("Starting the SSO and JupyterHub"):
            self.hub.start()
        return passwords

    def banner(self, passwords: dict[str, str]) -> str:
        width = max(len(u.name) for u in DEMO_USERS)
        lines = ["", f"hepsdesk is ready: open {self.hub.url}/ in a browser", "",
                 "Sign in on the SSO page as one of the demo users:"]
        for user in DEMO_USERS:
            lines.append(f"    {user.name:<{width}}  password {passwords[user.name]}  -- {user.shows}")
        lines += ["",
                  f"The hub's log follows ({self.hub.log_path}). Ctrl-C stops the hub and the SSO;",
                  "the dev cloud and the users' VMs keep running (`hepsdesk devcloud down` stops them).", ""]
        return "\n".join(lines)

    def follow(self) -> int:
        """Print the hub's log until the hub exits (1), or until Ctrl-C or SIGTERM (0)."""
        with open(self.hub.log_path, errors="replace") as log:
            log.seek(0, 2)
            while True:
                line = log.readline()
                if line:
                    self.stream.write(line)
                    self.stream.flush()
                elif self.hub.processes.running("jupyterhub"):
                    time.sleep(0.2)
                else:
                    self.stream.write("hepsdesk demo: JupyterHub exited; see its log above\n")
                    return 1

    def stop(self) -> None:
        self.stream.write("hepsdesk demo: stopping the hub and the SSO ...\n")
        self.stream.flush()
        self.hub.stop()
        self.stream.write("hepsdesk demo: stopped. The dev cloud keeps running; "
                          "`hepsdesk demo` starts the hub again.\n")
        self.stream.flush()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(options: DemoOptions) -> int:
    """The demo in the foreground; whatever ends it (Ctrl-C, SIGTERM, an error), the hub and
    the SSO it started are stopped."""
    demo = Demo(options)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    ready = False
    try:
        passwords = demo.start()
        ready = True
        demo.stream.write(demo.banner(passwords) + "\n")
        demo.stream.flush()
        return demo.follow()
    except KeyboardInterrupt:
        return 0 if ready else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        demo.stop()
