"""The dev cloud's images, as Glance has them: made from the catalogue, carrying what they say."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from hepsdesk_images.catalogue import load
from hepsdesk_images.store import LOCK_FILE, Store


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(env_dir: Path) -> dict[str, str]:
    """{normalised package name: version} of an environment, as its lock file (pip freeze) says."""
    return {_normal(line.split("==")[0]): line.split("==", 1)[1].strip()
            for line in (env_dir / LOCK_FILE).read_text().splitlines() if "==" in line}


def installed(devcloud) -> dict[str, dict[str, str]]:
    """image -> {normalised package name: version} over the environments it runs."""
    catalogue = load()
    store = Store(catalogue, devcloud.image_store.root)
    return {name: {k: v for stack in catalogue.image_stacks(image) for k, v in locked(store.env_dir(stack)).items()}
            for name, image in catalogue.images.items()}


def debian_version(package: str) -> str:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return done.stdout.strip()


def test_every_card_names_only_software_its_image_really_has(devcloud):
    """The spawn page's cards show ``hepsdesk_software``: each item must be installed, at that
    version, in the environments the image's VMs run (or be its Debian GUI program)."""
    catalogue = load()
    admin = devcloud.connect("devcloud-admin")
    have = installed(devcloud)
    seen = set()
    for name, image in catalogue.images.items():
        [glance] = [i for i in admin.image.images(name=name) if i.status == "active"]
        props = glance.properties or {}
        assert props["hepsdesk_production_only"] == ", ".join(catalogue.production_only(image))
        debian = {a.title: a.debian for a in catalogue.image_applications(image) if a.debian}
        for item in props["hepsdesk_software"].split(", "):
            title, version = item.rsplit(" ", 1)
            if title in debian:
                assert debian_version(debian[title]).startswith(version), (name, item)
            else:
                has = have[name].get(_normal(title))
                assert has == version, f"{name} says {item}; it has {has}"
            seen.add(title)
        for production in catalogue.production_only(image):
            assert production.split(" ")[0] not in props["hepsdesk_software"]
    assert {"sasview", "dioptas", "PyMca5", "napari", "pyFAI", "ImageJ"} <= seen


def test_the_images_environments_are_their_own(devcloud):
    """A VM runs its image's environments from the store, not the hub's virtualenv."""
    catalogue = load()
    for name, image in catalogue.images.items():
        built = devcloud.images[name]
        assert built.info_path.is_file()
        assert str(built.server_bin).startswith(str(devcloud.image_store.root))
        for stack in catalogue.image_stacks(image):
            lock = locked(built.env_dirs[stack.name])
            for pin in (*stack.software, *stack.support):
                assert lock.get(_normal(pin.name)) == pin.version, f"{stack.name}: {pin} is not what was installed"


def test_the_image_build_benchmark_short(devcloud):
    """The benchmark's short form: one image built cold into an empty store, then again from it."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "image_build.py"), "--images", "hepsdesk-desktop"],
                          capture_output=True, text=True, timeout=900, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    cold, cached = result["image_build_cold_s"]["hepsdesk-desktop"], result["image_build_cached_s"]["hepsdesk-desktop"]
    assert cold > 0 and 0 <= cached < cold, result
    assert result["image_env_bytes"]["hepsdesk-desktop"] > 100 * 2**20, "JupyterLab, numpy, scipy... are in it"
