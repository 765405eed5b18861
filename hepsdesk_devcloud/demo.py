"""``hepsdesk demo``: the dev cloud, the development directories (Samba AD DC, the storage's
slapd), the development SSO with demo users, and the hub.

Everything runs on loopback addresses. A demo user's first sign-in makes their computing
account in AD and the storage LDAP (``hepsdesk_auth``); the storage agent
(``storage_agent``) then makes their home and proposal directories, as a facility's storage
automation would. The hub stays in the foreground (its log on the terminal) until Ctrl-C; then
the hub, the SSO and the directories stop, while the dev cloud and the users' VMs keep running,
so the next ``hepsdesk demo`` finds every server and account where it was (the hub does not
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
from .directory import DevActiveDirectory, DevStorageLDAP
from .hub import DevHub
from .progress import StepProgress
from .settings import DevCloudSettings
from .storage_agent import sync_storage

REPO_CONFIG = Path(__file__).resolve().parents[1] / "jupyterhub_config.py"


@dataclass(frozen=True)
class DemoUser:
    name: str
    groups: tuple[str, ...]
    proposals: tuple[str, ...]
    shows: str


# Group names match jupyterhub_config.py's defaults (allowed: heps-/csns-/bsrf-users;
# admins: hepsdesk-admins).
DEMO_USERS = (
    DemoUser("alice", ("heps-users", "hepsdesk-admins"), ("P-2026-0042",),
             "a HEPS scientist and hepsdesk admin: her VM, JupyterLab, the Desktop, the control panel"),
    DemoUser("bob", ("csns-users",), ("P-2026-0107",), "a CSNS scientist: his own VM, no admin rights"),
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
    ad_address: str = "127.0.0.2"  # the AD DC's loopback address (its ports are fixed: 389, 636)
    storage_ldap_port: int = 3636
    hub_tag: str = "hepsdesk-demo"


class Demo:
    def __init__(self, options: DemoOptions, stream: TextIO | None = None):
        self.options = options
        self.stream = stream or sys.stdout
        self.cloud = DevCloud(DevCloudSettings.load(str(options.cloud_state_dir)))
        directories = Path(options.hub_state_dir).absolute() / "directories"
        self.active_directory = DevActiveDirectory(directories / "ad", address=options.ad_address)
        self.storage_ldap = DevStorageLDAP(directories / "storage-ldap", port=options.storage_ldap_port)
        self.hub = DevHub(options.hub_state_dir, options.config_file, self.cloud.settings.clouds_yaml,
                          port=options.port, hub_port=options.hub_port, oidc_port=options.oidc_port,
                          active_directory=self.active_directory, storage_ldap=self.storage_ldap,
                          extra_env={"HEPSDESK_HUB_TAG": options.hub_tag,
                                     "HEPSDESK_DATA_SERVER": self.cloud.settings.storage_server})
        self._synced = 0.0

    def ensure_users(self) -> dict[str, str]:
        """Create the demo users once on the SSO (random passwords, kept in its 0600 config);
        their computing accounts are made at their first sign-in."""
        known = self.hub.oidc.users()
        passwords = {}
        for user in DEMO_USERS:
            password = known.get(user.name, {}).get("password") or secrets.token_urlsafe(9)
            self.hub.oidc.set_user(user.name, password, groups=list(user.groups), proposals=list(user.proposals))
            passwords[user.name] = password
        return passwords

    def start(self) -> dict[str, str]:
        """Bring up everything; return the demo users' passwords."""
        self.cloud.up()
        progress = StepProgress("hepsdesk demo", total=3)
        with progress.step("Starting the directories (Samba AD DC, storage LDAP)"):
            self.start_directories()
        with progress.step("Demo users on the development SSO"):
            passwords = self.ensure_users()
        with progress.step("Starting the SSO and JupyterHub"):
            self.hub.start()
        return passwords

    def start_directories(self) -> None:
        """The Samba AD DC and the storage LDAP (stopped again if either fails to start)."""
        try:
            self.active_directory.start()
            self.storage_ldap.start()
        except BaseException:
            self.storage_ldap.stop()
            self.active_directory.stop()
            raise

    def run_storage_agent(self, every: float = 2.0) -> None:
        """Homes and proposal directories for new accounts (at most every ``every`` seconds)."""
        if time.monotonic() - self._synced < every:
            return
        self._synced = time.monotonic()
        try:
            for share in sync_storage(self.cloud, self.storage_ldap):
                self._say(f"hepsdesk demo: made devcloud-storage:/{share}")
        except Exception as e:  # noqa: BLE001 - the demo goes on; the next round tries again
            self._say(f"hepsdesk demo: the storage agent failed: {e}")

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
                    self.run_storage_agent()
                    time.sleep(0.2)
                else:
                    self.stream.write("hepsdesk demo: JupyterHub exited; see its log above\n")
                    return 1

    def stop(self) -> None:
        """Stop the hub, the SSO and the directories, whatever happened to the terminal."""
        self._say("hepsdesk demo: stopping the hub, the SSO and the directories ...")
        try:
            self.hub.stop()
        finally:
            try:
                self.storage_ldap.stop()
            finally:
                self.active_directory.stop()
        self._say("hepsdesk demo: stopped. The dev cloud keeps running; `hepsdesk demo` starts the hub again.")

    def _say(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # the terminal or pipe is gone: carry on stopping
            pass


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(options: DemoOptions) -> int:
    """The demo in the foreground; whatever ends it (Ctrl-C, SIGTERM, an error), the hub and
    the SSO it started are stopped."""
    demo = Demo(options)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C stops the demo even when it was started from a shell that ignores SIGINT for
    # background commands (then Python would inherit "ignore" and the demo never stop).
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
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
        signal.signal(signal.SIGINT, previous_int)
        demo.stop()
