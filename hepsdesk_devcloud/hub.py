"""A JupyterHub process for the demo and the tests, run from the repository's config file.

The hub, the development OIDC provider and the dev cloud are wired together through the
environment variables that ``jupyterhub_config.py`` reads; the hub's own state (database,
cookie secret, keys) lives in one directory.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .nodetools import chp_command
from .oidc_provider import DevOIDCProvider
from .processes import ProcessTable, listening_pid, port_owner

CLIENT_ID = "hepsdesk-hub"


@dataclass
class DevHub:
    """JupyterHub + its OIDC provider for one state directory."""

    state_dir: Path
    config_file: Path
    clouds_yaml: Path
    port: int = 8000
    hub_port: int = 8081
    oidc_port: int = 9400
    proxy_api_port: int = 0  # default: hub_port - 80 (8001 beside 8081), as JupyterHub's defaults
    extra_env: dict[str, str] = field(default_factory=dict)
    # The computing-account directories the hub provisions in (``directory.DevActiveDirectory``,
    # ``directory.DevStorageLDAP``); None: the POSIX identity comes from the SSO's claims.
    active_directory: object | None = None
    storage_ldap: object | None = None

    def __post_init__(self):
        self.state_dir = Path(self.state_dir).absolute()
        self.config_file = Path(self.config_file).absolute()
        self.clouds_yaml = Path(self.clouds_yaml).absolute()
        if not self.config_file.exists():
            raise FileNotFoundError(f"JupyterHub configuration {self.config_file} does not exist")
        self.processes = ProcessTable(self.state_dir / "run", self.state_dir / "logs")
        self.oidc = DevOIDCProvider(self.state_dir / "oidc", self.oidc_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.processes.log_path("jupyterhub")

    def secrets(self) -> dict:
        """The hub's generated secrets (kept, mode 0600, in the state dir)."""
        path = self.state_dir / "secrets.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        if not {"crypt_key", "client_secret", "admin_token"} <= data.keys():
            data.setdefault("crypt_key", secrets.token_hex(32))
            data.setdefault("client_secret", secrets.token_urlsafe(24))
            data.setdefault("admin_token", secrets.token_hex(32))
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2)
        return data

    def env(self) -> dict[str, str]:
        s = self.secrets()
        env = {
            **os.environ,
            "HEPSDESK_HUB_STATE": str(self.state_dir),
            "HEPSDESK_PUBLIC_URL": self.url,
            "HEPSDESK_HUB_BIND_URL": f"http://127.0.0.1:{self.hub_port}",
            "HEPSDESK_PROXY_API_URL": f"http://127.0.0.1:{self.proxy_api_port or self.hub_port - 80}",
            "HEPSDESK_OIDC_ISSUER": self.oidc.issuer,
            "HEPSDESK_OIDC_CLIENT_ID": CLIENT_ID,
            "OAUTH_CLIENT_SECRET": s["client_secret"],
            "JUPYTERHUB_CRYPT_KEY": s["crypt_key"],
            "HEPSDESK_CLOUDS_YAML": str(self.clouds_yaml),
            "HEPSDESK_CHP_COMMAND": " ".join(chp_command()),
            "HEPSDESK_ADMIN_API_TOKEN": s["admin_token"],
        }
        env.update(self.directory_env())
        env.update(self.extra_env)
        return env

    def directory_env(self) -> dict[str, str]:
        """What jupyterhub_config.py reads to use the development directories."""
        env = {}
        ad = self.active_directory
        if ad is not None:
            env.update({"HEPSDESK_AD_URL": ad.url, "HEPSDESK_AD_CA_FILE": str(ad.ca_file),
                        "HEPSDESK_AD_BIND_DN": ad.admin_dn, "HEPSDESK_AD_BIND_PASSWORD": ad.admin_password,
                        "HEPSDESK_AD_BASE_DN": ad.base_dn, "HEPSDESK_AD_ID_COUNTER_DN": ad.nis_domain_dn})
        ldap = self.storage_ldap
        if ldap is not None:
            env.update({"HEPSDESK_STORAGE_LDAP_URL": ldap.url, "HEPSDESK_STORAGE_LDAP_CA_FILE": str(ldap.ca_file),
                        "HEPSDESK_STORAGE_LDAP_BIND_DN": ldap.admin_dn,
                        "HEPSDESK_STORAGE_LDAP_BIND_PASSWORD": ldap.admin_password,
                        "HEPSDESK_STORAGE_LDAP_BASE_DN": ldap.base_dn})
        return env

    def start(self, timeout: float = 90) -> None:
        """Start the OIDC provider and the hub (both in the background) and wait until ready;
        if the hub does not come up, stop both again."""
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        s = self.secrets()
        self.oidc.register_client(CLIENT_ID, s["client_secret"], [f"{self.url}/hub/oauth_callback"])
        self.oidc.start()
        if self.processes.running("jupyterhub"):
            return
        proxy_pid = self._running_proxy_pid()
        for port in (self.port, self.hub_port, self.proxy_api_port or self.hub_port - 80):
            owner = self._wait_for_port(port, proxy_pid)
            if owner:
                raise RuntimeError(f"port {port} for JupyterHub is already in use by {owner}")
        jupyterhub = shutil.which("jupyterhub", path=str(Path(sys.executable).parent)) or "jupyterhub"
        self.processes.start("jupyterhub", [jupyterhub, "-f", str(self.config_file)], self.env(),
                             cwd=self.state_dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.processes.running("jupyterhub"):
                tail = "\n".join(self.processes.log_tail("jupyterhub", 30))
                raise RuntimeError(f"JupyterHub exited during start-up:\n{tail}")
            if self.ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"JupyterHub did not answer on {self.url} within {timeout:.0f} s")

    @staticmethod
    def _wait_for_port(port: int, proxy_pid: int | None, grace: float = 10.0) -> str | None:
        """Who keeps ``port`` busy after ``grace`` seconds, or None once it is free (or held by
        the proxy the hub keeps). The grace covers a just-stopped hub whose sockets the kernel
        is still closing."""
        deadline = time.monotonic() + grace
        while True:
            owner = port_owner(port)
            if not owner or (proxy_pid and listening_pid(port) == proxy_pid):
                return None
            if time.monotonic() >= deadline:
                return owner
            time.sleep(0.2)

    def _running_proxy_pid(self) -> int | None:
        """The proxy a killed hub left running (JupyterHub finds it by its pid file and keeps it)."""
        try:
            return int((self.state_dir / "jupyterhub-proxy.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/hub/api/", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        self.processes.stop("jupyterhub", timeout=20)
        self._stop_orphan_proxy()
        self.oidc.stop()

    def _stop_orphan_proxy(self, timeout: float = 10.0) -> None:
        """The proxy of a hub that was killed (JupyterHub leaves it running, and the next hub
        adopts it) is still running once its adopter stopped: stop it too."""
        pid = self._running_proxy_pid()
        if pid is None:
            return
        try:
            if b"configurable-http-proxy" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return  # the pid was reused by something else
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            return
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
