"""The dev cloud's images, built from the catalogue into a content-addressed store.

A process VM's root is this machine's ``/`` (``hepsdesk_devcloud``), so an image does not copy
its software into each VM: it points at environments in a shared store outside the clone,
each named by the hash of what it was built from, and built once::

    <store>/envs/<stack>-<fingerprint>/      a virtualenv; ``hepsdesk-lock.txt`` (pip freeze)
                                             is written last and marks it complete
    <store>/images/<image>-<fingerprint>/    image.json (applications, kernels, sample data),
                                             jupyter/kernels/*, icons/, python/ (the notebook
                                             client), sample-data/*

Environments are built from wheels only (``--only-binary=:all:``, checked with ``--dry-run``
first), except the packages a stack names in ``build_from_source``. The server stack gets
hepsdesk's VM side as an editable install of this source tree, so the desktop a VM runs is the
code being developed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .catalogue import SERVER_STACK, Catalogue, Image, Stack

SOURCE_ROOT = Path(__file__).resolve().parents[1]
LOCK_FILE = "hepsdesk-lock.txt"
IMAGE_INFO = "image.json"
# What of hepsdesk a kernel of a science stack imports: the notebook client (standard library).
NOTEBOOK_CLIENT = ("__init__.py", "notebook.py", "control_socket.py")


class BuildError(RuntimeError):
    """An environment or image could not be built; the message says which and why."""


def default_store() -> Path:
    return Path(os.environ.get("HEPSDESK_IMAGE_STORE") or Path.home() / ".cache" / "hepsdesk" / "images")


def _source_fingerprint() -> str:
    """What an editable install of hepsdesk copies rather than links, besides its code: its
    metadata and the data files it installs (the built lab extension, the server extension's
    switch). A change to them rebuilds the server environment."""
    digest = hashlib.sha256(str(SOURCE_ROOT).encode())
    for name in ("pyproject.toml", "desktop_proxy/labextension/package.json",
                 "jupyter-config/jupyter_server_config.d/desktop_proxy.json"):
        path = SOURCE_ROOT / name
        digest.update(name.encode() + (path.read_bytes() if path.is_file() else b"-"))
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class BuiltImage:
    """An image's directory in the store, and what its manifest needs."""
    name: str
    dir: Path
    env_dirs: dict[str, Path]

    @property
    def info_path(self) -> Path:
        return self.dir / IMAGE_INFO

    @property
    def server_bin(self) -> Path:
        return self.env_dirs[SERVER_STACK] / "bin"

    def environment(self) -> dict[str, str]:
        """Variables the image sets in its VMs."""
        return {"HEPSDESK_IMAGE_INFO": str(self.info_path), "JUPYTER_PATH": str(self.dir / "jupyter"),
                "HEPSDESK_SAMPLE_DATA": str(self.dir / "sample-data")}

    def software_paths(self) -> list[str]:
        """Directories VMs must be able to reach: the server's programs first (PATH)."""
        return [str(self.server_bin), *(str(d / "bin") for s, d in self.env_dirs.items() if s != SERVER_STACK),
                str(self.dir)]


class Store:
    def __init__(self, catalogue: Catalogue, root: Path | None = None, python: str | None = None):
        self.catalogue = catalogue
        self.root = Path(root or default_store())
        self.python = python or sys.executable
        self.log_path = self.root / "build.log"

    # -- addresses ---------------------------------------------------------------------

    def stack_fingerprint(self, stack: Stack) -> str:
        fingerprint = stack.fingerprint(self.catalogue.python)
        if stack.hepsdesk:
            fingerprint = hashlib.sha256((fingerprint + _source_fingerprint()).encode()).hexdigest()[:16]
        return fingerprint

    def env_dir(self, stack: Stack) -> Path:
        return self.root / "envs" / f"{stack.name}-{self.stack_fingerprint(stack)}"

    def env_ready(self, stack: Stack) -> bool:
        return (self.env_dir(stack) / LOCK_FILE).is_file()

    def image_info(self, image: Image) -> dict:
        """``image.json`` of ``image`` as built here (absolute paths into the store)."""
        return image_info(self.catalogue, image, {s.name: self.env_dir(s) for s in self.catalogue.image_stacks(image)},
                          self.image_dir(image))

    def image_dir(self, image: Image) -> Path:
        cat = self.catalogue
        spec = {"image": image.name, "envs": [self.stack_fingerprint(s) for s in cat.image_stacks(image)],
                "applications": [cat.applications[a].__dict__ for a in image.applications],
                "sample_data": [s.__dict__ for s in image.sample_data], "source": str(SOURCE_ROOT),
                "files": [hashlib.sha256(path.read_bytes()).hexdigest() for a in image.applications
                          for path in (cat.applications[a].icon_path, cat.applications[a].opener_path) if path]}
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return self.root / "images" / f"{image.name}-{digest}"

    def built(self, image: Image) -> BuiltImage:
        return BuiltImage(image.name, self.image_dir(image),
                          {s.name: self.env_dir(s) for s in self.catalogue.image_stacks(image)})

    def image_ready(self, image: Image) -> bool:
        return (self.image_dir(image) / IMAGE_INFO).is_file() and all(
            self.env_ready(s) for s in self.catalogue.image_stacks(image))

    # -- building ----------------------------------------------------------------------

    def missing(self, images: list[Image]) -> list[Stack]:
        """The environments ``images`` need that are not built yet."""
        stacks = {s.name: s for image in images for s in self.catalogue.image_stacks(image)}
        return [s for s in stacks.values() if not self.env_ready(s)]

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """One builder at a time per environment (two test runs may share the store)."""
        (self.root / "locks").mkdir(parents=True, exist_ok=True)
        with open(self.root / "locks" / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def build_env(self, stack: Stack) -> bool:
        """Build ``stack``'s environment unless it is built; True if it was built now."""
        target = self.env_dir(stack)
        with self._locked(target.name):
            if self.env_ready(stack):
                os.utime(target / LOCK_FILE)  # used: kept by ``prune``
                return False
            # The lock file is written last: a build that was interrupted starts again from scratch.
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            pip = [str(target / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
            formats = ["--only-binary=:all:"] + ([f"--no-binary={','.join(stack.build_from_source)}"]
                                                 if stack.build_from_source else [])
            self._run([self.python, "-m", "venv", str(target)], f"creating the {stack.name} environment")
            self._run([*pip, "install", "-q", "--upgrade", "pip"], f"upgrading pip in the {stack.name} environment")
            self._run([*pip, "install", "-q", "--dry-run", *formats, *stack.requirements],
                      f"the {stack.name} stack's pins do not resolve from wheels on Python {self.catalogue.python}")
            self._run([*pip, "install", "-q", *formats, *stack.requirements],
                      f"installing the {stack.name} stack")
            if stack.hepsdesk:
                self._run([*pip, "install", "-q", "--no-deps", "-e", str(SOURCE_ROOT)],
                          "installing hepsdesk's VM side into the server environment")
            freeze = subprocess.run([*pip, "freeze", "--all"], capture_output=True, text=True)
            if freeze.returncode != 0:
                raise BuildError(f"pip freeze failed in {target}: {freeze.stderr.strip()[-300:]}")
            (target / LOCK_FILE).write_text(freeze.stdout)
            return True

    def _run(self, argv: list[str], what: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n$ {' '.join(argv)}\n".encode())
            log.flush()
            done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            tail = [line for line in self.log_path.read_text(errors="replace").splitlines()
                    if line.strip() and not line.startswith("WARNING: Location")][-12:]
            raise BuildError(f"{what} (exit status {done.returncode}); the end of {self.log_path}:\n"
                             + "\n".join("    " + line for line in tail))

    def build_image_dir(self, image: Image) -> BuiltImage:
        """Write ``image``'s directory (its environments must be built)."""
        built = self.built(image)
        target = built.dir
        with self._locked(target.name):
            if (target / IMAGE_INFO).is_file():
                os.utime(target / IMAGE_INFO)  # used: kept by ``prune``
                return built
            shutil.rmtree(target, ignore_errors=True)
            partial = target.with_name(target.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            self._write_image_dir(image, partial)
            partial.rename(target)
        return built

    def _write_image_dir(self, image: Image, target: Path) -> None:
        cat = self.catalogue
        info = self.image_info(image)
        (target / "icons").mkdir(parents=True)
        (target / "openers").mkdir()
        for app in cat.image_applications(image):
            if app.icon:
                shutil.copyfile(app.icon_path, target / "icons" / app.icon_path.name)
            if app.opener:
                shutil.copyfile(app.opener_path, target / "openers" / app.opener_path.name)
        # The notebook client, importable by every kernel of the image (standard library only).
        client = target / "python" / "desktop_proxy"
        client.mkdir(parents=True)
        for name in NOTEBOOK_CLIENT:
            (client / name).symlink_to(SOURCE_ROOT / "desktop_proxy" / name)
        for name in info["kernels"]:
            stack = cat.stacks[name.removeprefix("hepsdesk-")]
            kernel = target / "jupyter" / "kernels" / name
            kernel.mkdir(parents=True)
            (kernel / "kernel.json").write_text(json.dumps({
                "argv": [str(self.env_dir(stack) / "bin" / "python"), "-m", "ipykernel_launcher",
                         "-f", "{connection_file}"],
                "display_name": stack.kernel, "language": "python",
                "env": {"PYTHONPATH": str(self.image_dir(image) / "python")},  # where ``target`` is renamed to
                "metadata": {"hepsdesk_stack": stack.name, "debugger": True}}, indent=2))
        (target / "sample-data").mkdir()
        for sample in image.sample_data:
            source = _site_packages(self.env_dir(cat.stacks[sample.stack])) / sample.path
            if not source.exists():
                raise BuildError(f"image {image.name}: sample data {sample.name!r} is not in the "
                                 f"{sample.stack} stack ({source} does not exist)")
            (target / "sample-data" / sample.name).symlink_to(source)
        for app in info["applications"]:
            if not os.access(app["command"][0], os.X_OK):
                raise BuildError(f"image {image.name}: {app['title']} is not installed "
                                 f"({app['command'][0]} is not an executable)")
        (target / IMAGE_INFO).write_text(json.dumps(info, indent=2) + "\n")


def image_info(catalogue: Catalogue, image: Image, env_dirs: dict[str, Path], image_dir: Path,
               which=shutil.which) -> dict:
    """What a VM of ``image`` reads from ``$HEPSDESK_IMAGE_INFO`` (the desktop's applications,
    the image's kernels and sample data), for environments at ``env_dirs`` and the image's
    directory at ``image_dir``: the same for a dev cloud image and a production one."""
    applications = []
    for app in catalogue.image_applications(image):
        command = list(app.command)
        if app.opener:
            command = [str(env_dirs[app.stack] / "bin" / "python"), str(image_dir / "openers" / Path(app.opener).name)]
        elif app.stack:
            command[0] = str(env_dirs[app.stack] / "bin" / command[0])
        else:
            command[0] = which(command[0]) or command[0]
        applications.append({"name": app.name, "title": app.title, "version": app.version,
                             "command": command, "window": app.window, "opens": list(app.opens),
                             "icon": str(image_dir / "icons" / Path(app.icon).name) if app.icon else ""})
    return {"image": image.name, "title": image.title, "applications": applications,
            "kernels": [f"hepsdesk-{s}" for s in image.stacks if catalogue.stacks[s].kernel],
            "sample_data": [{"name": s.name, "description": s.description,
                             "path": str(image_dir / "sample-data" / s.name)} for s in image.sample_data]}


def prune(store: Store, images: list[Image], unused_days: float) -> list[Path]:
    """Delete the store's environments and image directories that ``images`` do not use and
    that no build has used for ``unused_days`` (other clones on this machine may use them);
    return what was deleted."""
    keep = {store.image_dir(image) for image in images}
    keep |= {store.env_dir(stack) for image in images for stack in store.catalogue.image_stacks(image)}
    limit = time.time() - unused_days * 86400
    removed = []
    for kind, marker in (("envs", LOCK_FILE), ("images", IMAGE_INFO)):
        for entry in sorted((store.root / kind).glob("*")):
            if entry in keep or not entry.is_dir():
                continue
            used = (entry / marker).stat().st_mtime if (entry / marker).exists() else 0.0
            if used < limit:
                with store._locked(entry.name.removesuffix(".partial")):
                    shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def _site_packages(env: Path) -> Path:
    found = sorted(env.glob("lib/python3*/site-packages"))
    if not found:
        raise BuildError(f"{env} has no site-packages")
    return found[0]
