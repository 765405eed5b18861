"""``hepsdesk images build``: the dev cloud's images, with progress.

Checks the Debian packages the images' GUIs need (installs them as root), builds each
environment that is not in the store yet, then each image's directory. What is built is
reused by every later run (and every clone) on this machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from hepsdesk_devcloud.progress import StepProgress

from .catalogue import Catalogue, Image
from .store import BuildError, BuiltImage, Store


@dataclass
class BuildReport:
    images: dict[str, BuiltImage] = field(default_factory=dict)
    built_envs: dict[str, float] = field(default_factory=dict)   # stack -> seconds
    total_s: float = 0.0


def missing_debian(packages: list[str]) -> list[str]:
    if not shutil.which("dpkg-query"):
        return []
    missing = []
    for package in packages:
        done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
        if "install ok installed" not in done.stdout:
            missing.append(package)
    return missing


def ensure_debian(packages: list[str], log_path: Path) -> None:
    missing = missing_debian(packages)
    if not missing:
        return
    if os.geteuid() != 0:
        raise BuildError("the images' GUIs need Debian packages that are not installed; as root run: "
                         f"apt-get install -y --no-install-recommends {' '.join(missing)}")
    from hepsdesk_devcloud.installer import InstallError, install_debian_packages

    try:
        install_debian_packages(missing, log_path)
    except InstallError as e:
        raise BuildError(str(e)) from e


def build_images(catalogue: Catalogue, names: list[str] | None = None, store: Store | None = None,
                 stream: TextIO | None = None) -> BuildReport:
    """Build (or find in the store) the images ``names`` (default: all of the catalogue)."""
    started = time.monotonic()
    store = store or Store(catalogue)
    images: list[Image] = [catalogue.image(n) for n in (names or catalogue.images)]
    report = BuildReport()
    missing = store.missing(images)
    progress = StepProgress("hepsdesk images build", len(missing) + 2, stream=stream)
    store.root.mkdir(parents=True, exist_ok=True)
    with progress.step("Checking the Debian packages the applications need"):
        packages: dict[str, None] = {}
        for image in images:
            packages.update(dict.fromkeys(catalogue.debian_packages(image)))
        ensure_debian(list(packages), store.log_path)
    for stack in {s.name: s for image in images for s in catalogue.image_stacks(image)}.values():
        if stack not in missing:
            store.build_env(stack)  # already built: this marks it used (``prune`` keeps it)
            continue
        with progress.step(f"Building the {stack.name} environment ({len(stack.requirements)} pinned packages, "
                           "wheels only)"):
            began = time.monotonic()
            if store.build_env(stack):
                report.built_envs[stack.name] = time.monotonic() - began
    with progress.step(f"Writing {len(images)} image directories"):
        for image in images:
            report.images[image.name] = store.build_image_dir(image)
    report.total_s = time.monotonic() - started
    return report
