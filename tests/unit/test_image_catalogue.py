"""The image catalogue: what it accepts, what it refuses, and what is made from it."""

from __future__ import annotations

import copy

import pytest
import yaml

from hepsdesk_images.catalogue import CATALOGUE, CatalogueError, load, parse
from hepsdesk_images.store import Store


@pytest.fixture
def data():
    return yaml.safe_load(CATALOGUE.read_text())


def test_the_repository_catalogue_is_valid_and_names_the_seeds_software():
    catalogue = load()
    assert {"hepsdesk-desktop", "hepsdesk-neutron", "hepsdesk-diffraction", "hepsdesk-xrf",
            "hepsdesk-imaging"} <= set(catalogue.images)
    everything = {p.name.lower() for s in catalogue.stacks.values() for p in s.software}
    assert {"sasview", "sasmodels", "scippneutron", "plopp", "dioptas", "pyfai", "fabio", "silx", "pymca5",
            "napari", "numpy", "scipy", "matplotlib", "h5py"} <= everything
    assert {"mantid-workbench", "tomopy", "fiji"} <= set(catalogue.production)
    neutron = catalogue.image("hepsdesk-neutron")
    assert [a.name for a in catalogue.image_applications(neutron)] == ["sasview"]
    assert catalogue.production_only(neutron) == ["Mantid Workbench 6.13"]


def test_glance_properties_name_only_what_the_image_carries():
    catalogue = load()
    props = catalogue.glance_properties(catalogue.image("hepsdesk-imaging"))
    assert "napari 0.9.2" in props["hepsdesk_software"] and "ImageJ 1.53t" in props["hepsdesk_software"]
    assert "TomoPy" not in props["hepsdesk_software"] and "Fiji" not in props["hepsdesk_software"]
    assert props["hepsdesk_production_only"] == "TomoPy 1.15.2, Fiji 2.16.0"
    desktop = catalogue.glance_properties(catalogue.image("hepsdesk-desktop"))
    assert desktop["hepsdesk_production_only"] == "" and desktop["hepsdesk_applications"] == ""


def test_the_qt_runtime_comes_from_debian(data):
    catalogue = load()
    packages = catalogue.debian_packages(catalogue.image("hepsdesk-diffraction"))
    assert {"libxcb-cursor0", "libxkbcommon-x11-0", "libegl1", "libgl1-mesa-dri"} <= set(packages)
    assert "imagej" in catalogue.debian_packages(catalogue.image("hepsdesk-imaging"))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["stacks"]["sas"]["software"].append("sasview>=6"), "is not pinned as name==version"),
    (lambda d: d["stacks"]["sas"].update(extra=1), "unknown field(s) extra"),
    (lambda d: d["applications"]["sasview"].update(stack="nope"), "unknown stack 'nope'"),
    (lambda d: d["applications"]["sasview"].update(debian="sasview"), "exactly one of stack"),
    (lambda d: d["applications"]["sasview"].update(icon="icons/missing.svg"), "does not exist"),
    (lambda d: d["applications"]["sasview"].update(opens=["dat; rm -rf /"]), "is not valid"),
    (lambda d: d["images"]["hepsdesk-xrf"]["applications"].append("sasview"),
     "needs stack 'sas', which the image does not have"),
    (lambda d: d["images"]["hepsdesk-xrf"]["sample_data"][0].update(path="../../etc"), "must stay inside"),
    (lambda d: d["images"]["hepsdesk-xrf"].update(production=["mantid"]), "unknown production software"),
    (lambda d: d["production"]["tomopy"].pop("conda"), "say where production gets it"),
    (lambda d: d["stacks"].pop("server"), "a 'server' stack"),
], ids=["unpinned", "unknown-field", "unknown-stack", "stack-and-debian", "no-icon", "bad-extension",
        "app-without-its-stack", "sample-escapes", "unknown-production", "production-without-source", "no-server"])
def test_a_bad_catalogue_is_refused_with_where_and_why(data, edit, message):
    data = copy.deepcopy(data)
    edit(data)
    with pytest.raises(CatalogueError) as refused:
        parse(data)
    assert message in str(refused.value)


def test_environments_are_addressed_by_what_they_are_built_from(data, tmp_path):
    catalogue = load()
    store = Store(catalogue, tmp_path)
    sas = catalogue.stacks["sas"]
    changed = copy.deepcopy(data)
    changed["stacks"]["sas"]["software"][0] = "sasview==6.1.2"
    other = parse(changed)
    assert store.env_dir(sas) != Store(other, tmp_path).env_dir(other.stacks["sas"])
    assert store.env_dir(catalogue.stacks["xrf"]) == Store(other, tmp_path).env_dir(other.stacks["xrf"])
    # An image's directory follows its environments.
    assert store.image_dir(catalogue.image("hepsdesk-neutron")) != \
        Store(other, tmp_path).image_dir(other.image("hepsdesk-neutron"))


def test_image_info_points_into_the_store(tmp_path):
    catalogue = load()
    store = Store(catalogue, tmp_path)
    image = catalogue.image("hepsdesk-diffraction")
    info = store.image_info(image)
    apps = {a["name"]: a for a in info["applications"]}
    assert set(apps) == {"dioptas", "pyfai-calib2", "silx-view"}
    dioptas_env = store.env_dir(catalogue.stacks["dioptas"])
    assert apps["dioptas"]["command"] == [str(dioptas_env / "bin" / "python"),
                                          str(store.image_dir(image) / "openers" / "open_dioptas.py")]
    assert apps["silx-view"]["command"] == [str(store.env_dir(catalogue.stacks["diffraction"]) / "bin" / "silx"),
                                            "view"]
    assert info["kernels"] == ["hepsdesk-diffraction"], "Dioptas has no kernel of its own"
    assert not store.image_ready(image)


def test_prune_keeps_what_this_catalogue_or_a_recent_build_uses(tmp_path):
    import os
    import time

    from hepsdesk_images.store import IMAGE_INFO, LOCK_FILE, prune

    catalogue = load()
    store = Store(catalogue, tmp_path)
    image = catalogue.image("hepsdesk-xrf")
    used = [store.env_dir(s) for s in catalogue.image_stacks(image)] + [store.image_dir(image)]
    old, recent = tmp_path / "envs" / "sas-0000000000000000", tmp_path / "envs" / "sas-1111111111111111"
    old_image = tmp_path / "images" / "hepsdesk-xrf-0000000000000000"
    for path in (*used, old, recent, old_image):
        path.mkdir(parents=True)
        (path / (IMAGE_INFO if path.parent.name == "images" else LOCK_FILE)).write_text("")
    month_ago = time.time() - 30 * 86400
    for path in (*used, old, old_image):
        marker = path / (IMAGE_INFO if path.parent.name == "images" else LOCK_FILE)
        os.utime(marker, (month_ago, month_ago))
    removed = prune(store, [image], unused_days=14)
    assert sorted(removed) == sorted([old, old_image])
    assert all(p.exists() for p in (*used, recent)), "in use by this catalogue, or by another clone lately"
