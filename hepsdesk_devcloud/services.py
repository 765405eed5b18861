"""The dev cloud's services: how each is started and how its health is checked.

Every service binds to 127.0.0.1 only (MariaDB to a unix socket only). The OpenStack APIs are
served from their WSGI modules by ``hepsdesk_serve_wsgi.py``; the Nova services start through
``hepsdesk_nova_service.py``, in one process each, nova-compute with the process-VM driver.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .settings import HOST, DevCloudSettings

PLUGINS_DIR = Path(__file__).parent / "service_plugins"



@dataclass
class Health:
    healthy: bool
    detail: str


@dataclass
class Service:
    name: str
    title: str
    argv: list[str]
    env: dict[str, str]
    port: int | None = None
    check: Callable[[], Health] | None = None
    startup_timeout: float = 120.0
    # Config files whose change means the running service must be restarted.
    config_files: list[Path] = field(default_factory=list)


def python_env(settings: DevCloudSettings, **extra: str) -> dict[str, str]:
    """The environment of a Python service: its venv, the plugins, nothing from the caller."""
    env = {
        "PATH": f"{settings.venv_dir / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": str(PLUGINS_DIR),
        "HOME": str(settings.path("home")),
        "LANG": "C.UTF-8",
        # Threaded services otherwise grow one malloc arena per thread, and keep freed
        # memory: together these keep the control plane ~10% smaller (measured).
        "MALLOC_ARENA_MAX": "1",
        "MALLOC_TRIM_THRESHOLD_": "131072",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def http_check(url: str, timeout: float = 3.0) -> Callable[[], Health]:
    def check() -> Health:
        started = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                status = response.status
        except urllib.error.HTTPError as e:
            status = e.code
        except (OSError, urllib.error.URLError) as e:
            return Health(False, f"GET {url}: {getattr(e, 'reason', e)}")
        took = (time.monotonic() - started) * 1000
        return Health(status < 500, f"GET {url} -> {status} in {took:.0f} ms")
    return check


def tcp_check(port: int) -> Callable[[], Health]:
    def check() -> Health:
        try:
            with socket.create_connection((HOST, port), timeout=2):
                return Health(True, f"listening on {HOST}:{port}")
        except OSError as e:
            return Health(False, f"{HOST}:{port}: {e.strerror or e}")
    return check


def amqp_check(port: int) -> Callable[[], Health]:
    """Open an AMQP 0-9-1 connection far enough to get the broker's Connection.Start."""
    def check() -> Health:
        try:
            with socket.create_connection((HOST, port), timeout=3) as s:
                s.sendall(b"AMQP\x00\x00\x09\x01")
                frame = s.recv(7)
        except OSError as e:
            return Health(False, f"{HOST}:{port}: {e.strerror or e}")
        if frame[:1] == b"\x01":
            return Health(True, f"AMQP broker answering on {HOST}:{port}")
        return Health(False, f"{HOST}:{port} answered {frame!r}, not AMQP")
    return check


def mariadb_check(settings: DevCloudSettings) -> Callable[[], Health]:
    def check() -> Health:
        result = subprocess.run(["mariadb-admin", "--no-defaults", f"--socket={settings.mariadb_socket}",
                                 "--connect-timeout=2", "ping"], capture_output=True, text=True)
        if result.returncode == 0:
            return Health(True, f"answering on {settings.mariadb_socket}")
        lines = (result.stderr or result.stdout).strip().splitlines()
        return Health(False, lines[-1] if lines else "not answering")
    return check


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def build_services(settings: DevCloudSettings) -> list[Service]:
    """All services in start order."""
    s = settings
    etc = s.etc_dir
    serve = [s.venv_bin("python"), str(PLUGINS_DIR / "hepsdesk_serve_wsgi.py")]
    nova_conf = str(etc / "nova" / "nova.conf")
    nova_service = [s.venv_bin("python"), str(PLUGINS_DIR / "hepsdesk_nova_service.py")]
    rabbit_env = {
        "PATH": "/usr/lib/rabbitmq/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(s.path("rabbitmq")),
        "LANG": "C.UTF-8",
        "RABBITMQ_NODENAME": "hepsdesk@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": HOST,
        "RABBITMQ_NODE_PORT": str(s.port("rabbitmq")),
        "RABBITMQ_DIST_PORT": str(s.port("rabbitmq-dist")),
        "ERL_EPMD_ADDRESS": HOST,
        "ERL_EPMD_PORT": str(s.port("epmd")),
        "RABBITMQ_MNESIA_BASE": str(s.path("rabbitmq", "mnesia")),
        "RABBITMQ_LOG_BASE": str(s.logs_dir),
        "RABBITMQ_LOGS": "-",
        "RABBITMQ_CONFIG_FILE": str(etc / "rabbitmq" / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(etc / "rabbitmq" / "enabled_plugins"),
        "RABBITMQ_CONF_ENV_FILE": str(etc / "rabbitmq" / "rabbitmq-env.conf"),
        "RABBITMQ_PID_FILE": str(s.run_dir / "rabbitmq.pid"),
        # One scheduler per core is plenty for a handful of clients and saves memory.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+S 1:1 +A 4 +sbwt none +sbwtdcpu none +sbwtdio none",
    }

    def api(name: str, title: str, app: str, env: dict[str, str], check_path: str, conf: list[Path],
            after_import: str | None = None) -> Service:
        argv = [*serve, app, "--host", HOST, "--port", str(s.port(name))]
        if after_import:
            argv += ["--after-import", after_import]
        return Service(name, title, argv, python_env(s, **env), port=s.port(name),
                       check=http_check(s.url(name) + check_path), config_files=conf)

    def nova(binary: str, title: str, argv: list[str]) -> Service:
        return Service(binary, title, [*argv, "--config-file", nova_conf], python_env(s),
                       config_files=[etc / "nova" / "nova.conf"])

    return [
        Service("mariadb", "MariaDB", [
            "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={s.path('mariadb')}",
            f"--socket={s.mariadb_socket}", "--skip-networking", f"--pid-file={s.run_dir / 'mariadbd.pid'}",
            f"--user={os_user()}", "--innodb-buffer-pool-size=16M", "--innodb-log-file-size=16M",
            "--innodb-log-buffer-size=2M", "--performance-schema=OFF", "--skip-log-bin", "--skip-name-resolve",
            "--max-connections=400", "--thread-cache-size=16", "--table-open-cache=200", "--key-buffer-size=1M",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci"],
            {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
            check=mariadb_check(s), startup_timeout=60),
        Service("epmd", "Erlang port mapper", ["/usr/bin/epmd", "-address", HOST, "-port", str(s.port("epmd"))],
                {"PATH": "/usr/bin:/bin"}, port=s.port("epmd"), check=tcp_check(s.port("epmd")), startup_timeout=20),
        # RabbitMQ's boot is CPU-bound (its modules are JIT-compiled as they load) and every
        # Nova service waits for it: ahead of the Python services' imports, it is ready
        # seconds sooner. (Without root, nice says it cannot raise the priority and goes on.)
        Service("rabbitmq", "RabbitMQ", ["nice", "-n", "-10", "/usr/lib/rabbitmq/bin/rabbitmq-server"], rabbit_env,
                port=s.port("rabbitmq"), check=amqp_check(s.port("rabbitmq")), startup_timeout=90,
                config_files=[etc / "rabbitmq" / "rabbitmq.conf"]),
        api("keystone", "Keystone (identity)", "keystone.wsgi.api:application",
            {"OS_KEYSTONE_CONFIG_FILES": str(etc / "keystone" / "keystone.conf")}, "/v3",
            [etc / "keystone" / "keystone.conf"]),
        api("placement", "Placement", "placement.wsgi.api:application",
            {"OS_PLACEMENT_CONFIG_DIR": str(etc / "placement")}, "/", [etc / "placement" / "placement.conf"]),
        api("glance", "Glance (images)", "glance.wsgi.api:application",
            {"OS_GLANCE_CONFIG_DIR": str(etc / "glance")}, "/versions", [etc / "glance" / "glance-api.conf"]),
        api("neutron", "Neutron (networking)", "neutron.wsgi.api:application",
            {"OS_NEUTRON_CONFIG_DIR": str(etc / "neutron"), "OS_NEUTRON_CONFIG_FILES": "neutron.conf"}, "/",
            [etc / "neutron" / "neutron.conf"],
            # The first GET /v2.0/ports of a fresh process fails until SQLAlchemy has
            # configured its mappers (Port.port_forwardings is a backref).
            after_import="sqlalchemy.orm:configure_mappers"),
        api("nova-api", "Nova API", "nova.wsgi.osapi_compute:application",
            {"OS_NOVA_CONFIG_DIR": str(etc / "nova")}, "/", [etc / "nova" / "nova.conf"]),
        nova("nova-conductor", "Nova conductor", [*nova_service, "conductor"]),
        nova("nova-scheduler", "Nova scheduler", [*nova_service, "scheduler"]),
        nova("nova-compute", "Nova compute (process VMs)", [*nova_service, "compute"]),
    ]
