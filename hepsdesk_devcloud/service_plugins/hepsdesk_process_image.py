"""The image format of hepsdesk process VMs, as stored in Glance.

A process VM's root filesystem is the host's ``/`` seen through an overlay whose upper
directory is the VM's own disk. An image is a tar archive holding a manifest and, optionally,
a disk tree that is copied into the disk of every VM booted from it::

    hepsdesk-image.json   {"format": "hepsdesk-process-image", "version": 1,
                           "name": ..., "env": {...}, "path": [...], "disk": "disk" | null}
    disk/...              files as they appear in the VM (overlay whiteouts included)

Base images (seeded by ``hepsdesk devcloud up``) have no disk tree: they name the software
the VM's PATH and environment expose. A snapshot (shelve, ``server image create``) carries
the VM's disk, so the disk survives shelve/unshelve. (Image trees are copied rather than
stacked as overlay layers because overlayfs refuses a lower layer that lies inside another,
and every layer here lies inside the host's ``/``.)

Runs both inside the services' virtualenv (nova-compute) and in hepsdesk's environment
(image seeding); standard library only, no sibling imports. Layers are packed and unpacked
with GNU tar because overlayfs whiteouts are device nodes and opaque directories are
extended attributes, which Python's tarfile cannot carry.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile

MANIFEST = "hepsdesk-image.json"
FORMAT = "hepsdesk-process-image"
VERSION = 1
DISK_FORMAT = "raw"
CONTAINER_FORMAT = "bare"
DISK = "disk"
# Opaque directories are the only overlay metadata a disk tree needs; origin and impure
# attributes describe one particular mount and must not travel.
TAR_XATTRS = ["--xattrs", "--xattrs-include=trusted.overlay.opaque", "--numeric-owner"]


class InvalidProcessImage(ValueError):
    """The image's data is not a hepsdesk process image."""


def make_manifest(name: str, env: dict | None = None, path: list | None = None,
                  disk: str | None = None, **extra) -> dict:
    """Build a manifest; ``extra`` carries descriptive fields (beamline, software...)."""
    manifest = {"format": FORMAT, "version": VERSION, "name": name, "env": dict(env or {}),
                "path": list(path or []), "disk": disk}
    manifest.update(extra)
    return manifest


def write_base_image(blob_path: str, manifest: dict) -> None:
    """Write an image archive that has only a manifest (no disk tree)."""
    data = json.dumps(manifest, indent=2, sort_keys=True).encode()
    with tarfile.open(blob_path, "w") as archive:
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(data)
        info.mode = 0o644
        archive.addfile(info, io.BytesIO(data))


def read_manifest(blob_path: str) -> dict:
    """Return the validated manifest of the image archive at ``blob_path``."""
    try:
        with tarfile.open(blob_path, "r:*") as archive:
            member = archive.getmember(MANIFEST)
            data = archive.extractfile(member).read()
    except (tarfile.TarError, KeyError, OSError) as e:
        raise InvalidProcessImage(f"not a hepsdesk process image (a tar archive with {MANIFEST}): {e}") from e
    return validate_manifest(data)


def validate_manifest(data: bytes) -> dict:
    try:
        manifest = json.loads(data)
    except ValueError as e:
        raise InvalidProcessImage(f"{MANIFEST} is not JSON: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidProcessImage(f"{MANIFEST} does not declare format {FORMAT!r}")
    if manifest.get("version") != VERSION:
        raise InvalidProcessImage(f"unsupported {FORMAT} version {manifest.get('version')!r}")
    for key, kind in (("env", dict), ("path", list)):
        if not isinstance(manifest.get(key, kind()), kind):
            raise InvalidProcessImage(f"{MANIFEST}: {key} must be a {kind.__name__}")
    if manifest.get("disk") not in (None, DISK):
        raise InvalidProcessImage(f"{MANIFEST}: disk must be {DISK!r} or null, not {manifest.get('disk')!r}")
    return manifest


def unpack(blob_path: str, dest_dir: str) -> dict:
    """Unpack the image into ``dest_dir`` (created fresh) and return its manifest."""
    manifest = read_manifest(blob_path)
    tmp = tempfile.mkdtemp(prefix=".unpack-", dir=os.path.dirname(os.path.abspath(dest_dir)))
    try:
        _tar(["-xf", blob_path, "-C", tmp, "--same-owner" if os.geteuid() == 0 else "--no-same-owner"])
        if manifest.get("disk"):
            os.makedirs(os.path.join(tmp, DISK), exist_ok=True)
        os.rename(tmp, dest_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def disk_dir(unpacked_dir: str, manifest: dict) -> str | None:
    """The image's disk tree, or None for an image that only describes an environment."""
    return os.path.join(unpacked_dir, DISK) if manifest.get("disk") else None


def copy_disk(source_dir: str, target_dir: str) -> None:
    """Copy a disk tree (whiteouts, opaque directories, owners) into a VM's disk."""
    os.makedirs(target_dir, exist_ok=True)
    result = subprocess.run(["cp", "-a", "--preserve=all", f"{source_dir}/.", target_dir],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise InvalidProcessImage(f"copying the image's disk failed: {result.stderr.strip()[-500:]}")


def pack_snapshot(blob_path: str, base_manifest: dict, disk: str, name: str) -> dict:
    """Write a snapshot image: the base image's environment and the VM's disk tree."""
    manifest = dict(base_manifest, name=name, disk=DISK)
    with tempfile.TemporaryDirectory(prefix=".snapshot-", dir=os.path.dirname(blob_path)) as tmp:
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
        parent, leaf = os.path.split(os.path.abspath(disk))
        # A live snapshot may see files change while they are read (tar exits 1): the
        # snapshot is then crash-consistent, as a live snapshot of a real disk would be.
        _tar(["--warning=no-file-changed", "--warning=no-file-removed", "-cf", blob_path, "-C", tmp, MANIFEST,
              "-C", parent, f"--transform=s,^{leaf},{DISK},S", leaf], ok_codes=(0, 1))
    return manifest


def _tar(args: list[str], ok_codes: tuple[int, ...] = (0,)) -> None:
    result = subprocess.run(["tar", *TAR_XATTRS, *args], capture_output=True, text=True)
    if result.returncode not in ok_codes:
        raise InvalidProcessImage(f"tar {' '.join(args[:2])} failed: {result.stderr.strip()[-500:]}")
