"""Where a dev cloud keeps its state, which ports it uses, and its generated secrets.

Settings are fixed when a cloud is first created and saved in ``<state_dir>/settings.json``,
so every later ``up`` (and the tests that reuse the cloud) finds the same ports and URLs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import secrets
from importlib import resources
from pathlib import Path

from hepsdesk_images.store import default_store

DEFAULT_STATE_DIR = ".devcloud"
HOST = "127.0.0.1"
BASE_PORTS = {
    "keystone": 5000,
    "placement": 8778,
    "glance": 9292,
    "neutron": 9696,
    "nova-api": 8774,
    "rabbitmq": 5672,
    "epmd": 4369,
    "rabbitmq-dist": 25672,
}
SECRET_NAMES = ("database", "rabbitmq", "admin", "hub", "nova", "placement", "glance", "neutron", "hub_database")
DEFAULT_GPUS = {"A100": 4}
GPU_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


class SettingsError(ValueError):
    """Settings a dev cloud cannot be created with."""


def constraints_text() -> str:
    return resources.files("hepsdesk_devcloud").joinpath("constraints.txt").read_text()


def default_venv_dir() -> Path:
    """The services' virtualenv lives outside the state dir, keyed by the pinned versions,
    so ``down --purge`` keeps the slow install and a new pin set gets a new venv."""
    digest = hashlib.sha256(constraints_text().encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "hepsdesk" / f"openstack-{digest}"


def parse_gpus(spec: str) -> dict[str, int]:
    """``"A100:4,T4:2"`` -> ``{"A100": 4, "T4": 2}``; ``""`` or ``"none"`` -> no GPUs."""
    gpus: dict[str, int] = {}
    if spec.strip().lower() in ("", "none"):
        return gpus
    for item in spec.split(","):
        model, _, count = item.strip().partition(":")
        if not GPU_MODEL_RE.match(model):
            raise SettingsError(f"GPU model {model!r} must be letters, digits, '-' or '_' (e.g. A100)")
        try:
            gpus[model] = int(count or "1")
        except ValueError:
            raise SettingsError(f"GPU count {count!r} for {model} is not a number") from None
        if not 0 < gpus[model] <= 64:
            raise SettingsError(f"GPU count for {model} must be between 1 and 64")
    return gpus


@dataclasses.dataclass
class DevCloudSettings:
    state_dir: Path
    venv_dir: Path
    port_offset: int = 0
    gpus: dict[str, int] = dataclasses.field(default_factory=lambda: dict(DEFAULT_GPUS))
    compute_host: str = "devcloud"
    network_cidr: str = "127.200.0.0/16"
    public_cidr: str = "127.201.0.0/16"  # floating IPs (allocated by Neutron, not routed)
    region: str = "RegionOne"
    # The NFS server name under which VMs mount the dev cloud's storage directory.
    storage_server: str = "devcloud-storage"
    # The content-addressed store the images' environments are built into (hepsdesk_images):
    # process VMs run their software from there (their root is this machine's /). Not kept in
    # settings.json: $HEPSDESK_IMAGE_STORE (or ~/.cache/hepsdesk/images) at each run.
    image_store: str = dataclasses.field(default_factory=lambda: str(default_store()))

    @classmethod
    def load(cls, state_dir: str | os.PathLike, *, venv_dir: str | os.PathLike | None = None,
             port_offset: int | None = None, gpus: dict[str, int] | None = None) -> DevCloudSettings:
        """Read the saved settings of ``state_dir``, or make new ones; explicit arguments win."""
        state = Path(state_dir).absolute()
        saved = {}
        path = state / "settings.json"
        if path.exists():
            saved = json.loads(path.read_text())
        settings = cls(state_dir=state,
                       venv_dir=Path(venv_dir or saved.get("venv_dir") or default_venv_dir()).absolute(),
                       port_offset=saved.get("port_offset", 0),
                       gpus=saved.get("gpus", dict(DEFAULT_GPUS)))
        if port_offset is not None:
            settings.port_offset = port_offset
        if gpus is not None:
            settings.gpus = gpus
        if not 0 <= settings.port_offset <= 20000:
            raise SettingsError("--port-offset must be between 0 and 20000")
        return settings

    def save(self) -> None:
        data = {"venv_dir": str(self.venv_dir), "port_offset": self.port_offset, "gpus": self.gpus}
        (self.state_dir / "settings.json").write_text(json.dumps(data, indent=2) + "\n")

    def port(self, name: str) -> int:
        return BASE_PORTS[name] + self.port_offset

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.port(name)}"

    @property
    def auth_url(self) -> str:
        return self.url("keystone") + "/v3"

    # paths

    def path(self, *parts: str) -> Path:
        return self.state_dir.joinpath(*parts)

    @property
    def logs_dir(self) -> Path:
        return self.path("logs")

    @property
    def run_dir(self) -> Path:
        return self.path("run")

    @property
    def etc_dir(self) -> Path:
        return self.path("etc")

    @property
    def mariadb_socket(self) -> Path:
        return self.path("run", "mariadb.sock")

    @property
    def clouds_yaml(self) -> Path:
        return self.path("clouds.yaml")

    @property
    def storage_dir(self) -> Path:
        """The facility's central storage, for the VMs: the NFS share ``{storage_server}:/x``
        is the directory ``<storage_dir>/x`` (inside the state dir, which guests cannot see)."""
        return self.path("storage")

    @property
    def instances_dir(self) -> Path:
        return self.path("nova", "instances")

    def venv_bin(self, name: str) -> str:
        return str(self.venv_dir / "bin" / name)

    def database_url(self, database: str, secrets_: dict) -> str:
        return (f"mysql+pymysql://openstack:{secrets_['database']}@localhost/{database}"
                f"?unix_socket={self.mariadb_socket}&charset=utf8")


def load_secrets(settings: DevCloudSettings) -> dict[str, str]:
    """Passwords of this cloud, generated once and kept (mode 0600) in the state dir."""
    path = settings.path("secrets.json")
    data = json.loads(path.read_text()) if path.exists() else {}
    if any(name not in data for name in SECRET_NAMES):
        for name in SECRET_NAMES:
            data.setdefault(name, secrets.token_urlsafe(18))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
    return data
