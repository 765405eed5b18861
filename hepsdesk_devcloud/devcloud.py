"""The dev cloud's life cycle: ``up``, ``down``, ``status`` and ``logs``.

``up`` is a reconciler: it installs what is missing, renders the configuration, starts the
services that are not running (restarting those whose configuration changed), waits until
every one is healthy and seeds what a new cloud lacks. On a running, healthy, unchanged cloud
it does nothing. If anything fails it stops the services this run started and raises
:class:`DevCloudError` with a one-line cause and the tail of the failing service's log.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from hepsdesk_images.build import build_images
from hepsdesk_images.catalogue import load as load_catalogue
from hepsdesk_images.store import Store

from . import bootstrap, configs, databases, installer
from .processes import START_MARKER, ProcessTable, launch_digest, port_owner, tail_lines
from .progress import StepProgress
from .service_plugins.hepsdesk_procinfo import is_same_process
from .services import Health, Service, build_services
from .settings import DevCloudSettings, load_secrets

OSLO_ERROR_RE = re.compile(r"^\S+ \S+ \d+ (?:ERROR|CRITICAL) \S+ (?:\[[^\]]*\] )?(?P<message>\S.*)$")
EXCEPTION_RE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception|Exit)\b.*")
ERROR_WORD_RE = re.compile(r"(?i)\b(error|fatal|failed|refused|denied)\b")
VM_STOP_GRACE = 10.0


class DevCloudError(RuntimeError):
    """A failure with a one-line cause for people and, optionally, the log lines behind it."""

    def __init__(self, cause: str, details: list[str] | None = None, log: Path | None = None):
        super().__init__(cause)
        self.cause = cause
        self.details = details or []
        self.log = log

    def __str__(self) -> str:
        text = self.cause
        if self.details:
            where = f" ({self.log})" if self.log else ""
            text += f"\n--- last lines of the log{where} ---\n" + "\n".join(self.details)
        return text


@dataclass
class UpReport:
    already_running: bool = False
    installed: bool = False
    install_s: float = 0.0
    total_s: float = 0.0
    started: list[str] = field(default_factory=list)


class DevCloud:
    """One dev cloud, identified by its state directory."""

    def __init__(self, settings: DevCloudSettings, stream: TextIO | None = None,
                 user_clouds_yaml: Path | None = bootstrap.USER_CLOUDS_YAML):
        """``user_clouds_yaml``: the clouds.yaml to register ``devcloud``/``devcloud-admin`` in
        (so ``openstack --os-cloud devcloud`` works anywhere); None for throw-away clouds."""
        self.settings = settings
        self.stream = stream or sys.stderr
        self.user_clouds_yaml = user_clouds_yaml
        self.processes = ProcessTable(settings.run_dir, settings.logs_dir)
        self.catalogue = load_catalogue()
        self.image_store = Store(self.catalogue, Path(settings.image_store))
        self.images = {name: self.image_store.built(image) for name, image in self.catalogue.images.items()}
        self.services: dict[str, Service] = {s.name: s for s in build_services(settings)}
        for binary in ("nova-conductor", "nova-scheduler", "nova-compute"):
            self.services[binary].check = self._nova_service_check(binary)
        self._admin = None
        self._admin_lock = threading.Lock()
        self._services_lock = threading.Lock()
        self._services_cache: list = []
        self._services_fetched = 0.0
        self._up_started = time.monotonic()

    # -- public API ----------------------------------------------------------------------

    def up(self) -> UpReport:
        self._up_started = time.monotonic()
        report = UpReport()
        progress = StepProgress("hepsdesk devcloud up", total=8, stream=self.stream)
        started: list[str] = []
        try:
            self._up(progress, report, started)
        except BaseException as e:
            if started:
                progress.note(f"stopping what this run started: {', '.join(started)}")
                self._stop_all(started)
            if isinstance(e, DevCloudError):
                raise
            if isinstance(e, (installer.InstallError, databases.DatabaseError)):
                raise DevCloudError(str(e)) from e
            if isinstance(e, KeyboardInterrupt):
                raise
            raise DevCloudError(f"dev cloud set-up failed: {type(e).__name__}: {e}") from e
        report.started = started
        report.total_s = progress.elapsed
        return report

    def down(self, purge: bool = False) -> list[str]:
        """Stop every process this cloud started; with ``purge`` also delete its state."""
        stopped = []
        order = list(self.services)
        # nova-compute goes first so that it does not see its guests die and mark the
        # servers SHUTOFF: after the next `up` they come back, as after a host reboot.
        if self.processes.stop("nova-compute"):
            stopped.append("nova-compute")
        stopped += [f"guest {uuid}" for uuid in self._stop_guests()]
        stopped += self._stop_all([name for name in order if name != "nova-compute"])
        if purge:
            if not self.settings.path("settings.json").exists():
                raise DevCloudError(f"{self.settings.state_dir} does not look like a dev cloud's state directory "
                                    "(no settings.json): not deleting it")
            if self.user_clouds_yaml is not None:
                bootstrap.remove_from_user_clouds_yaml(self.user_clouds_yaml, auth_url=self.settings.auth_url)
            shutil.rmtree(self.settings.state_dir, ignore_errors=True)
        self._admin = None
        return stopped

    def status(self) -> list[dict]:
        """One entry per service: pid, whether it runs, whether it is healthy, and why."""
        def entry(service: Service) -> dict:
            record = self.processes.running(service.name)
            health = Health(False, "not running")
            if record is not None:
                health = self._check(service)
            return {"service": service.name, "title": service.title, "pid": record.pid if record else None,
                    "running": record is not None, "healthy": record is not None and health.healthy,
                    "detail": health.detail, "port": service.port,
                    "log": str(self.processes.log_path(service.name))}
        with concurrent.futures.ThreadPoolExecutor(len(self.services)) as pool:
            return list(pool.map(entry, self.services.values()))

    def log_lines(self, service: str, lines: int = 50) -> list[str]:
        if service not in self.services and not self.processes.log_path(service).exists():
            known = ", ".join(self.services)
            raise DevCloudError(f"no service called {service!r}; the services are: {known}")
        return tail_lines(self.processes.log_path(service), lines)

    def connect(self, cloud: str = bootstrap.CLOUD):
        return bootstrap.connect(self.settings, cloud)

    def hub_database(self, name: str = "jupyterhub", fresh: bool = False) -> str:
        """A database for a JupyterHub on this cloud's MariaDB; its ``db_url``."""
        return databases.create_hub_database(self.settings, load_secrets(self.settings), name, fresh)

    def guest_dir(self, server_id: str) -> Path:
        """The directory that is a server's disk (exists while the server exists)."""
        return self.settings.instances_dir / server_id

    def storage_directory(self, share: str, uid: int, gid: int, mode: int = 0o700) -> Path:
        """The directory behind the NFS share ``devcloud-storage:/<share>``, made (if missing)
        with this owner and mode, as the facility's storage admins make homes and proposals."""
        path = self.settings.storage_dir.joinpath(*Path(share.strip("/")).parts)
        if ".." in path.relative_to(self.settings.storage_dir).parts:
            raise ValueError(f"the share {share!r} is outside the storage")
        if not path.is_dir():
            path.mkdir(parents=True)
            os.chown(path, uid, gid)
            path.chmod(mode)
        return path

    def is_running(self) -> bool:
        return all(self.processes.running(name) for name in self.services)

    # -- up ------------------------------------------------------------------------------

    def _up(self, progress: StepProgress, report: UpReport, started: list[str]) -> None:
        s = self.settings
        with progress.step("Checking prerequisites"):
            self._check_state_dir()
            self._ensure_debian_packages(progress)
        venv = installer.ServicesVenv(s)
        with progress.step("Installing the OpenStack services" if not venv.ready()
                           else "Checking the OpenStack services' virtualenv"):
            t0 = time.monotonic()
            report.installed = venv.ensure(s.logs_dir / "install.log")
            if report.installed:
                report.install_s = time.monotonic() - t0
        if not all(self.image_store.image_ready(image) for image in self.catalogue.images.values()):
            progress.note(f"building the images' environments once, into {self.image_store.root}")
            build_images(self.catalogue, store=self.image_store, stream=self.stream)
        with progress.step("Writing configuration"):
            secrets = load_secrets(s)
            s.save()
            changed = configs.render_all(s, secrets)
            bootstrap.write_clouds_yaml(s, secrets, self.user_clouds_yaml)
            stale = {name for name, service in self.services.items()
                     if (record := self.processes.running(name))
                     and (set(service.config_files) & set(changed)
                          or record.launch != launch_digest(service.argv, service.env))}
        if not stale and self.is_running() and self._all_healthy() and self._seeded():
            report.already_running = True
            progress.note("the dev cloud is already up and healthy: nothing to do")
            return
        if stale:
            progress.note(f"configuration or command changed, restarting: {', '.join(sorted(stale))}")
            self._stop_all(sorted(stale))

        with progress.step("Starting MariaDB and RabbitMQ"):
            if not databases.mariadb_initialized(s):
                databases.initialize_mariadb(s)
            self._start(["mariadb", "epmd", "rabbitmq"], started)
            self._wait_healthy(["mariadb"])
            databases.create_databases(s, secrets)
        with progress.step("Creating database schemas" if not databases.schemas_current(s)
                           else "Checking database schemas"):
            if not databases.schemas_current(s):
                databases.sync_schemas(s, secrets)
        with progress.step("Starting Keystone, Placement, Glance, Neutron and Nova"):
            # Keystone first: nova-compute exits if it cannot reach Keystone at start-up, and
            # on a new cloud the Nova services need their users (checked at start) to exist.
            self._start(["keystone"], started)
            self._wait_healthy(["keystone"])
            if not self._stamp_current("identity", self._identity_fingerprint()):
                bootstrap.ensure_identity(self._admin_connection(), s, secrets)
                self._write_stamp("identity", self._identity_fingerprint())
                self._admin = None  # its token's catalog predates the new endpoints
            self._start(["placement", "glance", "neutron", "nova-api", "nova-conductor", "nova-scheduler",
                         "nova-compute"], started)
        with progress.step("Waiting until every service is healthy"):
            self._wait_healthy(list(self.services))
            self._map_compute_host()
            if "neutron" in started:
                self._warm_neutron()
        with progress.step("Seeding network, flavors, images and quotas"):
            if not self._seeded():
                conn = self._admin_connection()
                bootstrap.ensure_network(conn, s)
                bootstrap.ensure_public_network(conn, s)
                bootstrap.ensure_flavors(conn, s)
                bootstrap.ensure_images(conn, self.catalogue, self.images)
                bootstrap.ensure_quotas(conn)
                self._write_stamp("seed", self._seed_fingerprint())
        progress.note(f"dev cloud up: openstack --os-cloud devcloud server list   (clouds.yaml: {s.clouds_yaml})")

    def _warm_neutron(self) -> None:
        """One list of networks as a project member, before anyone else asks. A fresh Neutron
        process answers the first concurrent lists without the external network (3 of 4
        concurrent first lists missed it, over three restarts; once one list is done, none
        does): a hub starting right after the cloud would tell its first users that the
        floating IP network does not exist."""
        try:
            list(self.connect().network.networks())
        except Exception as e:  # noqa: BLE001 - the cloud is up; the warm-up only helps
            self._timeline(f"warming neutron failed: {e}")

    def _timeline(self, event: str) -> None:
        """Record when things happened during `up` (logs/up-timeline.log), to see what a start waits for."""
        with open(self.settings.logs_dir / "up-timeline.log", "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} +{time.monotonic() - self._up_started:6.1f}s {event}\n")

    def _check_state_dir(self) -> None:
        state = self.settings.state_dir
        try:
            state.mkdir(parents=True, exist_ok=True)
            probe = state / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise DevCloudError(f"the state directory {state} is not writable ({e.strerror or e}); "
                                "choose another with --state-dir") from e
        for sub in ("logs", "run", "home", "rabbitmq", "storage"):
            (state / sub).mkdir(exist_ok=True)

    def _ensure_debian_packages(self, progress: StepProgress) -> None:
        missing = installer.missing_debian_packages()
        if not missing:
            return
        if os.geteuid() != 0:
            raise DevCloudError(f"Debian packages missing: {' '.join(missing)}. Install them as root with:\n"
                                f"    {installer.apt_command(missing)}")
        progress.note(f"installing Debian packages: {' '.join(missing)}")
        installer.install_debian_packages(missing, self.settings.logs_dir / "install.log")

    def _start(self, names: list[str], started: list[str]) -> None:
        for name in names:
            if self.processes.running(name):
                continue
            service = self.services[name]
            for port in filter(None, [service.port] + ([self.settings.port("rabbitmq-dist")]
                                                        if name == "rabbitmq" else [])):
                owner = port_owner(port)
                if owner:
                    raise DevCloudError(
                        f"port {port} for {service.title} on 127.0.0.1 is already in use by {owner}; "
                        f"stop it, or start a cloud on other ports with --port-offset")
            self.processes.start(name, service.argv, service.env, cwd=self.settings.state_dir)
            self._timeline(f"{name} started")
            started.append(name)

    def _stop_all(self, names: list[str]) -> list[str]:
        """Stop services in reverse start order: the OpenStack services together, then
        RabbitMQ and epmd, then MariaDB (which the others write to until they are gone)."""
        tiers = [[n for n in names if n not in ("mariadb", "epmd", "rabbitmq")], ["rabbitmq", "epmd"], ["mariadb"]]
        stopped = []
        for tier in tiers:
            tier = [n for n in tier if n in names]
            if not tier:
                continue
            with concurrent.futures.ThreadPoolExecutor(len(tier)) as pool:
                for name, ran in zip(tier, pool.map(self.processes.stop, tier), strict=True):
                    if ran:
                        stopped.append(name)
        return stopped

    def _check(self, service: Service) -> Health:
        try:
            return service.check() if service.check else Health(True, "running")
        except Exception as e:  # a health check must never take `status` down
            return Health(False, f"health check failed: {type(e).__name__}: {e}")

    def _all_healthy(self) -> bool:
        with concurrent.futures.ThreadPoolExecutor(len(self.services)) as pool:
            return all(h.healthy for h in pool.map(self._check, self.services.values()))

    def _wait_healthy(self, names: list[str]) -> None:
        def wait(name: str) -> None:
            service = self.services[name]
            deadline = time.monotonic() + service.startup_timeout
            health = Health(False, "not checked yet")
            while time.monotonic() < deadline:
                if not self.processes.running(name):
                    code = self.processes.exit_code(name)
                    raise self._failure(service, f"exited during start-up (status {code})")
                health = self._check(service)
                if health.healthy:
                    self._timeline(f"{name} healthy")
                    return
                time.sleep(0.5)
            raise self._failure(service, f"not healthy after {service.startup_timeout:.0f} s: {health.detail}")

        with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
            for future in [pool.submit(wait, name) for name in names]:
                future.result()

    def _failure(self, service: Service, what: str) -> DevCloudError:
        lines = self.processes.log_tail(service.name, 400)
        starts = [i for i, line in enumerate(lines) if line.startswith(START_MARKER)]
        this_run = lines[starts[-1] + 1:] if starts else lines
        cause = f"{service.title} {what}"
        reason = first_cause(this_run)
        if reason:
            cause += f": {reason}"
        return DevCloudError(cause, this_run[-25:], self.processes.log_path(service.name))

    def _map_compute_host(self) -> None:
        """Map the compute host into its cell once (nova-manage cell_v2 discover_hosts)."""
        host = self.settings.compute_host
        mapped = databases.mariadb_sql(self.settings, f"SELECT host FROM nova_api.host_mappings WHERE host='{host}'")
        if host not in mapped.split():
            nova_conf = str(self.settings.etc_dir / "nova" / "nova.conf")
            databases.run_logged(self.settings, "nova-db", [
                self.settings.venv_bin("nova-manage"), "--config-file", nova_conf, "cell_v2", "discover_hosts"])

    # -- stamps: what a previous run already did -----------------------------------------

    def _stamp_current(self, name: str, fingerprint: str) -> bool:
        path = self.settings.path(f"{name}.stamp")
        return path.exists() and path.read_text() == fingerprint

    def _write_stamp(self, name: str, fingerprint: str) -> None:
        self.settings.path(f"{name}.stamp").write_text(fingerprint)

    def _identity_fingerprint(self) -> str:
        return json.dumps({"version": 2, "auth_url": self.settings.auth_url})

    def _seed_fingerprint(self) -> str:
        # The images declare this machine's accounts (their root is its /): a change re-seeds.
        return json.dumps({"version": 5, "gpus": self.settings.gpus, "cidr": self.settings.network_cidr,
                           "images": {name: str(built.dir) for name, built in self.images.items()},
                           "accounts": bootstrap.image_accounts()})

    def _seeded(self) -> bool:
        return (self._stamp_current("identity", self._identity_fingerprint())
                and self._stamp_current("seed", self._seed_fingerprint()))

    # -- nova services and guests --------------------------------------------------------

    def _admin_connection(self):
        with self._admin_lock:
            if self._admin is None:
                self._admin = bootstrap.connect(self.settings, bootstrap.ADMIN_CLOUD)
            return self._admin

    def _nova_services(self) -> list:
        """Nova's service list, fetched at most once a second for all three checks."""
        with self._services_lock:
            if time.monotonic() - self._services_fetched > 1.0:
                self._services_cache = list(self._admin_connection().compute.services())
                self._services_fetched = time.monotonic()
            return self._services_cache

    def _nova_service_check(self, binary: str):
        def check() -> Health:
            record = self.processes.running(binary)
            if record is None:
                return Health(False, "not running")
            if not (self.services["keystone"].check().healthy and self.services["nova-api"].check().healthy):
                return Health(False, "waiting for Keystone and nova-api")
            try:
                services = self._nova_services()
            except Exception as e:
                return Health(False, f"cannot ask nova-api: {type(e).__name__}")
            for service in services:
                if service.binary != binary or service.host != self.settings.compute_host:
                    continue
                updated = _utc_epoch(service.updated_at)
                if service.state == "up" and updated is not None and updated >= record.started_at - 1:
                    return Health(True, f"up, last report {time.time() - updated:.0f} s ago")
                return Health(False, f"state {service.state}, last report "
                                     f"{'never' if updated is None else f'{time.time() - updated:.0f} s ago'}")
            return Health(False, "has not registered with nova-api yet")
        return check

    def _guest_records(self) -> list[dict]:
        records = []
        for vm_json in self.settings.instances_dir.glob("*/vm.json"):
            try:
                records.append(json.loads(vm_json.read_text()))
            except (OSError, ValueError):
                continue
        return records

    def _stop_guests(self) -> list[str]:
        """SIGTERM every running guest, SIGKILL it after the grace period; return their ids."""
        running = [r for r in self._guest_records()
                   if is_same_process(r.get("monitor_pid"), r.get("monitor_start"))]
        for record in running:
            _kill(record["monitor_pid"], signal.SIGTERM)
        deadline = time.monotonic() + VM_STOP_GRACE
        while time.monotonic() < deadline and any(
                is_same_process(r["monitor_pid"], r["monitor_start"]) for r in running):
            time.sleep(0.1)
        for record in running:
            if is_same_process(record["monitor_pid"], record["monitor_start"]):
                _kill(record["monitor_pid"], signal.SIGKILL)
        return [r["uuid"] for r in running]


def first_cause(lines: list[str]) -> str | None:
    """What went wrong, from a service's log: the first oslo.log ERROR/CRITICAL message,
    else the exception that ended a Python traceback, else the last line mentioning an error."""
    for line in lines:
        match = OSLO_ERROR_RE.match(line)
        if match and not match.group("message").startswith("Traceback"):
            return match.group("message")[:300]
    for line in reversed(lines):
        if EXCEPTION_RE.match(line.strip()):
            return line.strip()[:300]
    for line in reversed(lines):
        if ERROR_WORD_RE.search(line):
            return line.strip()[:300]
    return None


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _utc_epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    value = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.timestamp()
