"""The development OIDC provider: a real OpenID Connect provider process on 127.0.0.1.

It stands in for the facility's single sign-on in the demo and the tests: a login page with
username and password, and ``groups`` and ``proposals`` claims per user. Its configuration
(clients, users) is a JSON file in its state directory that the provider re-reads at every
login, so users can be added while it runs.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .nodetools import ensure_node_tools
from .processes import ProcessTable, port_owner

DEFAULT_PORT = 9400


@dataclass
class OIDCEndpoints:
    issuer: str
    authorize_url: str
    token_url: str
    userdata_url: str


class DevOIDCProvider:
    def __init__(self, state_dir: Path, port: int = DEFAULT_PORT):
        self.state_dir = Path(state_dir).absolute()
        self.port = port
        self.issuer = f"http://127.0.0.1:{port}"
        self.config_path = self.state_dir / "config.json"
        self.processes = ProcessTable(self.state_dir / "run", self.state_dir / "logs")

    @property
    def endpoints(self) -> OIDCEndpoints:
        return OIDCEndpoints(self.issuer, f"{self.issuer}/auth", f"{self.issuer}/token", f"{self.issuer}/me")

    # configuration

    def _read(self) -> dict:
        if self.config_path.exists():
            return json.loads(self.config_path.read_text())
        return {"issuer": self.issuer, "port": self.port, "cookie_keys": [secrets.token_urlsafe(32)],
                "clients": [], "users": {}}

    def _write(self, config: dict) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, indent=2)
        tmp.replace(self.config_path)

    def register_client(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> None:
        """Register (or update) an OAuth client; takes effect at the provider's next start."""
        config = self._read()
        config["clients"] = [c for c in config["clients"] if c["client_id"] != client_id]
        config["clients"].append({"client_id": client_id, "client_secret": client_secret,
                                  "redirect_uris": redirect_uris})
        self._write(config)

    def set_user(self, username: str, password: str, *, groups: list[str] = (), proposals: list[str] = (),
                 name: str | None = None, email: str | None = None, posix: dict | None = None) -> None:
        """Add or change a user; the running provider sees it at the next login. ``posix``:
        claims of the ``posix`` scope (uidNumber, gidNumber, homeDirectory, loginShell)."""
        config = self._read()
        config["users"][username] = {"password": password, "groups": list(groups), "proposals": list(proposals),
                                     "name": name or username.capitalize(), "email": email or f"{username}@example.org",
                                     **({"posix": dict(posix)} if posix else {})}
        self._write(config)

    def users(self) -> dict:
        return self._read()["users"]

    # process

    def is_running(self) -> bool:
        return self.processes.running("oidc") is not None

    def start(self, timeout: float = 30) -> None:
        if self.is_running():
            return
        owner = port_owner(self.port)
        if owner:
            raise RuntimeError(f"port {self.port} for the development OIDC provider is already in use by {owner}")
        if not self.config_path.exists():
            self._write(self._read())
        tools = ensure_node_tools(self.state_dir / "logs" / "npm.log")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HEPSDESK_OIDC_CONFIG": str(self.config_path),
               "NODE_ENV": "production", "HOME": str(self.state_dir)}
        self.processes.start("oidc", ["node", str(tools / "server.mjs")], env, cwd=tools)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                tail = "\n".join(self.processes.log_tail("oidc", 15))
                raise RuntimeError(f"the development OIDC provider exited during start-up:\n{tail}")
            if self.healthy():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the development OIDC provider did not answer within {timeout:.0f} s")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.issuer}/.well-known/openid-configuration", timeout=2) as r:
                return json.load(r).get("issuer") == self.issuer
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        self.processes.stop("oidc")
