"""The process-image format: manifests, unpacking, snapshots that carry overlay whiteouts."""

import json
import os
import tarfile

import pytest

from hepsdesk_devcloud.service_plugins import hepsdesk_process_image as image


def test_base_image_round_trip(tmp_path):
    blob = tmp_path / "base.tar"
    manifest = image.make_manifest("desk", env={"A": "1"}, path=["/opt/x/bin"], beamline="B1")
    image.write_base_image(str(blob), manifest)
    assert image.read_manifest(str(blob)) == manifest
    assert image.unpack(str(blob), str(tmp_path / "unpacked")) == manifest
    assert image.disk_dir(str(tmp_path / "unpacked"), manifest) is None


@pytest.mark.parametrize("content, message", [
    (b"not a tar at all", "not a hepsdesk process image"),
    (json.dumps({"format": "qcow2"}).encode(), "does not declare format"),
    (json.dumps({"format": image.FORMAT, "version": 99}).encode(), "unsupported"),
    (json.dumps({"format": image.FORMAT, "version": 1, "disk": "../../etc"}).encode(), "disk must be"),
])
def test_invalid_images_are_refused(tmp_path, content, message):
    blob = tmp_path / "bad.tar"
    if content.startswith(b"{"):
        member = tmp_path / image.MANIFEST
        member.write_bytes(content)
        with tarfile.open(blob, "w") as archive:
            archive.add(member, arcname=image.MANIFEST)
    else:
        blob.write_bytes(content)
    with pytest.raises(image.InvalidProcessImage, match=message):
        image.read_manifest(str(blob))


@pytest.mark.skipif(os.geteuid() != 0, reason="overlay whiteouts are device nodes: creating one needs root")
def test_snapshot_carries_the_disk_with_whiteouts_and_chains(tmp_path):
    base = image.make_manifest("desk", env={"A": "1"})
    disk = tmp_path / "vm1" / "upper"
    (disk / "root").mkdir(parents=True)
    (disk / "root" / "notes.txt").write_text("kept across shelve")
    (disk / "etc").mkdir()
    os.mknod(disk / "etc" / "motd", 0o600 | 0o020000, os.makedev(0, 0))  # overlayfs whiteout
    snap = tmp_path / "snap1.tar"
    snap_manifest = image.pack_snapshot(str(snap), base, str(disk), name="snap1")
    assert snap_manifest["disk"] == "disk" and snap_manifest["env"] == {"A": "1"}
    unpacked = tmp_path / "snap1"
    image.unpack(str(snap), str(unpacked))
    # A VM booted from the snapshot starts with the same disk...
    disk2 = tmp_path / "vm2" / "upper"
    image.copy_disk(image.disk_dir(str(unpacked), snap_manifest), str(disk2))
    assert (disk2 / "root" / "notes.txt").read_text() == "kept across shelve"
    assert os.major(os.lstat(disk2 / "etc" / "motd").st_rdev) == 0
    # ...and its own snapshot keeps what the first VM wrote, plus its own changes.
    (disk2 / "new.txt").write_text("second")
    snap2 = tmp_path / "snap2.tar"
    image.pack_snapshot(str(snap2), snap_manifest, str(disk2), name="snap2")
    unpacked2 = tmp_path / "snap2"
    manifest2 = image.unpack(str(snap2), str(unpacked2))
    tree = image.disk_dir(str(unpacked2), manifest2)
    assert os.path.exists(os.path.join(tree, "root", "notes.txt")) and os.path.exists(os.path.join(tree, "new.txt"))
