"""Install what the dev cloud runs: Debian packages and the OpenStack services' virtualenv.

The services get their own virtualenv, built from ``constraints.txt`` (every version pinned),
so they never share libraries with JupyterHub and a rebuild gives the same cloud.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .settings import DevCloudSettings, constraints_text

# Debian package -> a file it installs that the dev cloud runs.
DEBIAN_PACKAGES = {
    "mariadb-server": "/usr/sbin/mariadbd",
    "mariadb-client": "/usr/bin/mariadb-admin",
    "rabbitmq-server": "/usr/lib/rabbitmq/bin/rabbitmq-server",
    "erlang-base": "/usr/bin/epmd",
    "tar": "/bin/tar",
    "util-linux": "/usr/bin/unshare",
}
SERVICE_REQUIREMENTS = [
    "nova", "keystone", "openstack-placement", "glance", "neutron",
    "python-openstackclient", "osc-placement", "PyMySQL", "cheroot",
]
STAMP = ".hepsdesk-constraints"


class InstallError(RuntimeError):
    """Something the dev cloud needs could not be installed."""


def missing_debian_packages() -> list[str]:
    return [package for package, path in DEBIAN_PACKAGES.items() if not os.path.exists(path)]


def apt_command(packages: list[str]) -> str:
    return "apt-get install -y --no-install-recommends " + " ".join(packages)


def install_debian_packages(packages: list[str], log_path: Path) -> None:
    """apt-get install ``packages`` without letting their maintainer scripts start services.

    On a systemd machine, installing mariadb-server or rabbitmq-server would start system
    instances on the ports the dev cloud wants; a temporary policy-rc.d forbids that.
    """
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with open(log_path, "ab") as log:
        try:
            if own_policy:
                policy.write_text("#!/bin/sh\n# written by hepsdesk devcloud during apt-get install\nexit 101\n")
                policy.chmod(0o755)
            install = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q",
                       "--no-install-recommends", *packages]
            if subprocess.run(install, stdout=log, stderr=subprocess.STDOUT, env=env).returncode != 0:
                subprocess.run(["apt-get", "update", "-q"], stdout=log, stderr=subprocess.STDOUT, env=env)
                if subprocess.run(install, stdout=log, stderr=subprocess.STDOUT, env=env).returncode != 0:
                    raise InstallError(f"apt-get could not install {' '.join(packages)}; see {log_path}")
        finally:
            if own_policy:
                policy.unlink(missing_ok=True)


class ServicesVenv:
    """The virtualenv holding nova, keystone, placement, glance, neutron and their clients."""

    def __init__(self, settings: DevCloudSettings):
        self.dir = settings.venv_dir
        self.stamp = self.dir / STAMP

    @property
    def python(self) -> str:
        return str(self.dir / "bin" / "python")

    def ready(self) -> bool:
        try:
            return self.stamp.read_text() == constraints_text() and os.path.exists(self.python)
        except FileNotFoundError:
            return False

    def ensure(self, log_path: Path) -> bool:
        """Build the virtualenv if it is missing or was built from other pins; True if built."""
        if self.ready():
            return False
        # The stamp is written last: a build that was interrupted is started again from scratch.
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        constraints = self.dir.parent / f"{self.dir.name}.constraints.txt"
        constraints.write_text(constraints_text())
        with open(log_path, "ab") as log:
            steps = [
                [sys.executable, "-m", "venv", str(self.dir)],
                [str(self.dir / "bin" / "pip"), "install", "--disable-pip-version-check", "-q",
                 "-c", str(constraints), *SERVICE_REQUIREMENTS],
            ]
            for argv in steps:
                if subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                    raise InstallError(f"building the OpenStack virtualenv in {self.dir} failed "
                                       f"({' '.join(argv[:3])}); see {log_path}")
        self.stamp.write_text(constraints_text())
        return True

