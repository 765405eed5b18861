"""Render the services' configuration files into ``<state_dir>/etc``.

Files are rendered on every ``up``; :func:`render_all` reports which ones changed, so a
running service whose configuration changed (say, the GPU inventory) is restarted.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from .settings import DevCloudSettings

SERVICE_USERS = ("nova", "placement", "glance", "neutron")


def _template(name: str) -> str:
    return resources.files("hepsdesk_devcloud").joinpath("templates", name).read_text()


def _auth_block(settings: DevCloudSettings, secrets: dict, user: str, authtoken: bool) -> str:
    lines = [
        "auth_type = password",
        f"auth_url = {settings.url('keystone')}/",
        "project_domain_name = Default",
        "user_domain_name = Default",
        "project_name = service",
        f"username = {user}",
        f"password = {secrets[user]}",
    ]
    if authtoken:
        lines.insert(0, f"www_authenticate_uri = {settings.url('keystone')}/")
        lines.append("service_token_roles_required = true")
    return "\n".join(lines)


def template_values(settings: DevCloudSettings, secrets: dict) -> dict[str, str]:
    values = {
        "state": str(settings.state_dir),
        "etc": str(settings.etc_dir),
        "region": settings.region,
        "compute_host": settings.compute_host,
        "stop_grace": "10",
        "storage_server": settings.storage_server,
        "storage_root": str(settings.storage_dir),
        "gpus": ",".join(f"{model}:{count}" for model, count in settings.gpus.items()),
        "transport_url": (f"rabbit://hepsdesk:{secrets['rabbitmq']}@127.0.0.1:"
                          f"{settings.port('rabbitmq')}/"),
    }
    for database in ("keystone", "placement", "glance", "neutron", "nova_api", "nova", "nova_cell0"):
        values[f"db_{database}"] = settings.database_url(database, secrets)
    for user in SERVICE_USERS:
        values[f"authtoken_{user}"] = _auth_block(settings, secrets, user, authtoken=True)
        values[f"service_auth_{user}"] = _auth_block(settings, secrets, user, authtoken=False)
    return values


def _write(path: Path, content: str, changed: list[Path]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != content:
        path.write_text(content)
        path.chmod(0o600)
        changed.append(path)


def render_all(settings: DevCloudSettings, secrets: dict) -> list[Path]:
    """Write every configuration file; return the ones whose content changed."""
    values = template_values(settings, secrets)
    etc = settings.etc_dir
    changed: list[Path] = []
    for service, name in (("keystone", "keystone.conf"), ("placement", "placement.conf"),
                          ("glance", "glance-api.conf"), ("neutron", "neutron.conf"), ("nova", "nova.conf")):
        _write(etc / service / name, _template(name).format_map(values), changed)
    # Paste pipelines come unchanged from the installed services.
    venv_etc = settings.venv_dir / "etc"
    for service, name in (("nova", "api-paste.ini"), ("neutron", "api-paste.ini"),
                          ("glance", "glance-api-paste.ini")):
        target = etc / service / name
        if not target.exists() or target.read_bytes() != (venv_etc / service / name).read_bytes():
            shutil.copyfile(venv_etc / service / name, target)
            changed.append(target)
    rabbit = etc / "rabbitmq"
    _write(rabbit / "rabbitmq.conf", "\n".join([
        f"listeners.tcp.default = 127.0.0.1:{settings.port('rabbitmq')}",
        "default_user = hepsdesk",
        f"default_pass = {secrets['rabbitmq']}",
        "default_vhost = /",
        "loopback_users = none",
        "log.console = true",
        "log.file = false",
        "vm_memory_high_watermark.absolute = 512MiB",
        "disk_free_limit.absolute = 50MB",
        "",
    ]), changed)
    _write(rabbit / "enabled_plugins", "[].\n", changed)
    for service in ("keystone", "placement", "glance", "neutron", "nova"):
        _write(etc / service / "policy.yaml", "# Empty: the services' built-in default rules apply.\n{}\n", changed)
        (etc / service / "policy.d").mkdir(exist_ok=True)
    _write(rabbit / "rabbitmq-env.conf", "# intentionally empty: the dev cloud sets the environment\n", changed)
    return changed
