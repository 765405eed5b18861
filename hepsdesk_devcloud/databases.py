"""MariaDB for every service, and the schema set-up each service does once.

All services use MariaDB over a unix socket: Nova's and Placement's writers collide on
sqlite ("database is locked") as soon as servers are created concurrently (measured), and one
database server for all is the simplest. Schema syncs run in parallel; they are redone only
when the pinned service versions change.
"""

from __future__ import annotations

import concurrent.futures
import grp
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import quote

from .processes import tail_lines
from .services import os_user, python_env
from .settings import DevCloudSettings, constraints_text

DATABASES = ("keystone", "placement", "glance", "neutron", "nova_api", "nova", "nova_cell0")


class DatabaseError(RuntimeError):
    pass


def mariadb_initialized(settings: DevCloudSettings) -> bool:
    return settings.path("mariadb", "mysql").is_dir()


def initialize_mariadb(settings: DevCloudSettings) -> None:
    datadir = settings.path("mariadb")
    datadir.mkdir(parents=True, exist_ok=True)
    run_logged(settings, "mariadb-init", [
        "mariadb-install-db", "--no-defaults", f"--datadir={datadir}", f"--user={os_user()}",
        "--auth-root-authentication-method=socket", f"--auth-root-socket-user={os_user()}",
        "--skip-test-db"])


def mariadb_sql(settings: DevCloudSettings, sql: str) -> str:
    result = subprocess.run(
        ["mariadb", "--no-defaults", f"--socket={settings.mariadb_socket}", f"--user={os_user()}",
         "--batch", "--skip-column-names", "-e", sql], capture_output=True, text=True)
    if result.returncode != 0:
        raise DatabaseError(f"MariaDB refused the set-up SQL: {result.stderr.strip()}")
    return result.stdout


def create_databases(settings: DevCloudSettings, secrets: dict) -> None:
    password = secrets["database"].replace("'", "''")
    statements = [f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4" for db in DATABASES]
    statements += [f"CREATE USER IF NOT EXISTS 'openstack'@'localhost' IDENTIFIED BY '{password}'",
                   f"ALTER USER 'openstack'@'localhost' IDENTIFIED BY '{password}'"]
    statements += [f"GRANT ALL PRIVILEGES ON {db}.* TO 'openstack'@'localhost'" for db in DATABASES]
    mariadb_sql(settings, "; ".join(statements) + "; FLUSH PRIVILEGES;")


HUB_DATABASE = re.compile(r"^jupyterhub[a-z0-9_]{0,40}$")


def create_hub_database(settings: DevCloudSettings, secrets: dict, name: str, fresh: bool = False) -> str:
    """A database ``name`` for a JupyterHub on this cloud's MariaDB (its user ``jupyterhub``,
    whose password is this cloud's ``hub_database`` secret); ``fresh``: emptied first. Returns
    the hub's ``db_url`` (over the server's unix socket)."""
    if not HUB_DATABASE.match(name):
        raise DatabaseError(f"{name!r} is not a hub database name (jupyterhub followed by a-z, 0-9, _)")
    password = secrets["hub_database"].replace("'", "''")
    statements = [f"DROP DATABASE IF EXISTS {name}"] if fresh else []
    statements += [f"CREATE DATABASE IF NOT EXISTS {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
                   f"CREATE USER IF NOT EXISTS 'jupyterhub'@'localhost' IDENTIFIED BY '{password}'",
                   f"ALTER USER 'jupyterhub'@'localhost' IDENTIFIED BY '{password}'",
                   f"GRANT ALL PRIVILEGES ON {name}.* TO 'jupyterhub'@'localhost'"]
    mariadb_sql(settings, "; ".join(statements) + "; FLUSH PRIVILEGES;")
    return (f"mysql+pymysql://jupyterhub:{quote(secrets['hub_database'], safe='')}@localhost/{name}"
            f"?unix_socket={settings.mariadb_socket}&charset=utf8mb4")


def _stamp(settings: DevCloudSettings) -> Path:
    return settings.path("schemas.stamp")


def schemas_current(settings: DevCloudSettings) -> bool:
    try:
        return _stamp(settings).read_text() == constraints_text()
    except FileNotFoundError:
        return False


def sync_schemas(settings: DevCloudSettings, secrets: dict) -> None:
    """Create or upgrade every service's schema, in parallel; bootstrap Keystone."""
    etc = settings.etc_dir
    bin_ = settings.venv_bin
    keystone = ["--config-file", str(etc / "keystone" / "keystone.conf")]
    nova = ["--config-file", str(etc / "nova" / "nova.conf")]
    user, group = os_user(), grp.getgrgid(os.getgid()).gr_name
    for sub in ("fernet-keys", "credential-keys"):
        settings.path("keystone", sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    for sub in ("glance/images", "glance/staging", "glance/tasks", "glance/locks", "neutron/locks",
                "nova/locks", "nova/instances"):
        settings.path(*sub.split("/")).mkdir(parents=True, exist_ok=True)
    keystone_url = settings.url("keystone") + "/v3/"
    jobs = {
        "keystone": [
            [bin_("keystone-manage"), *keystone, "db_sync"],
            [bin_("keystone-manage"), *keystone, "fernet_setup", "--keystone-user", user, "--keystone-group", group],
            [bin_("keystone-manage"), *keystone, "credential_setup", "--keystone-user", user,
             "--keystone-group", group],
            [bin_("keystone-manage"), *keystone, *keystone_bootstrap_args(secrets["admin"], keystone_url,
                                                                         settings.region)],
        ],
        "nova": [
            [bin_("nova-manage"), *nova, "api_db", "sync"],
            [bin_("nova-manage"), *nova, "cell_v2", "map_cell0", "--database_connection",
             settings.database_url("nova_cell0", secrets)],
            [bin_("nova-manage"), *nova, "cell_v2", "create_cell", "--name", "cell1"],
            [bin_("nova-manage"), *nova, "db", "sync"],
        ],
        "placement": [[bin_("placement-manage"), "--config-file", str(etc / "placement" / "placement.conf"),
                       "db", "sync"]],
        "glance": [[bin_("glance-manage"), "--config-file", str(etc / "glance" / "glance-api.conf"), "db_sync"]],
        "neutron": [[bin_("neutron-db-manage"), "--config-file", str(etc / "neutron" / "neutron.conf"),
                     "upgrade", "heads"]],
    }
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        futures = {pool.submit(_run_sequence, settings, name, steps): name for name, steps in jobs.items()}
        errors = [f.exception() for f in concurrent.futures.as_completed(futures) if f.exception()]
    if errors:
        raise errors[0]
    _stamp(settings).write_text(constraints_text())


def keystone_bootstrap_args(password: str, keystone_url: str, region: str) -> list[str]:
    """``keystone-manage bootstrap``'s arguments. The password is one ``--opt=value`` item: a
    generated password may start with "-" (token_urlsafe), which argparse would take for an
    option if it stood on its own (it failed a CI run that way)."""
    return ["bootstrap", f"--bootstrap-password={password}",
            "--bootstrap-admin-url", keystone_url, "--bootstrap-public-url", keystone_url,
            "--bootstrap-internal-url", keystone_url, "--bootstrap-region-id", region]


def _run_sequence(settings: DevCloudSettings, name: str, steps: list[list[str]]) -> None:
    for argv in steps:
        # create_cell exits 2 when the cell already exists: that is what we want.
        ok = (0, 2) if argv[-3:-1] == ["create_cell", "--name"] else (0,)
        run_logged(settings, f"{name}-db", argv, ok_codes=ok)


def run_logged(settings: DevCloudSettings, log_name: str, argv: list[str], ok_codes: tuple[int, ...] = (0,)) -> None:
    """Run a set-up command with its output appended to ``logs/<log_name>.log``; on failure
    raise with the command (passwords hidden) and the tail of that log."""
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.logs_dir / f"{log_name}.log"
    with open(log_path, "ab") as log:
        log.write(f"\n$ {' '.join(_redact(argv))}\n".encode())
        log.flush()
        code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=python_env(settings),
                              stdin=subprocess.DEVNULL).returncode
    if code not in ok_codes:
        tail = "\n".join(tail_lines(log_path, 15))
        raise DatabaseError(f"{Path(argv[0]).name} {' '.join(_redact(argv[1:])[-3:])} failed (exit {code}); "
                            f"{log_path}:\n{tail}")


def _redact(argv: list[str]) -> list[str]:
    """Hide passwords and database URLs from logs and messages."""
    out = []
    for arg in argv:
        if out and out[-1] in _SECRET_OPTIONS:
            out.append("***")
        elif "=" in arg and arg.partition("=")[0] in _SECRET_OPTIONS:
            out.append(arg.partition("=")[0] + "=***")
        else:
            out.append(arg)
    return out


_SECRET_OPTIONS = ("--bootstrap-password", "--database_connection")
