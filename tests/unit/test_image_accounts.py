"""An identity that would be one of the image's own accounts: refused by the spawner from the
image's declaration before anything is made, and by the VM at boot (hepsdesk_spawner/
image_accounts.py, guest_start.make_account)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from hepsdesk_identity import PosixIdentity
from hepsdesk_spawner import guest_start
from hepsdesk_spawner.account import GuestAccount, check_fits_image
from hepsdesk_spawner.cloudinit import EXITED_MARKER, IDENTITY_CONFLICT_MARKER, guest_plan
from hepsdesk_spawner.errors import CloudFailure, SpawnError
from hepsdesk_spawner.image_accounts import ImageAccounts, format_ids

ALICE = PosixIdentity(username="alice", uid=21001, gid=21001, group="alice", groups=(("p-2026-001", 30001),),
                      home="/home/alice", shell="/bin/bash")
DEBIAN_IMAGE = SimpleNamespace(id="i1", name="debian-12", properties={
    "hepsdesk_account_ids": format_ids([*range(0, 1000), 1000, 65534]),
    "hepsdesk_account_names": "root,daemon,bin,sys,debian,users,sudo"})


def identity(**changes) -> PosixIdentity:
    return PosixIdentity(**{**ALICE.__dict__, **changes})


def test_ids_are_declared_as_ranges():
    assert format_ids([5, 0, 1, 2, 1000, 65534, 999]) == "0-2,5,999-1000,65534"
    accounts = ImageAccounts.of(DEBIAN_IMAGE)
    assert accounts.declared and accounts.holds_id(1000) and accounts.holds_id(0) and not accounts.holds_id(21001)


@pytest.mark.parametrize("changes, why", [
    ({"uid": 1000}, "your uid 1000 is used by an account of the VM image"),
    ({"gid": 27}, "your gid 27 is used"),
    ({"groups": (("p-2026-001", 65534),)}, "your group id 65534 is used"),
    ({"username": "debian"}, "your account name 'debian' is an account of the VM image"),
    ({"group": "sudo"}, "your group name 'sudo'"),
    ({"groups": (("users", 30001),)}, "your group name 'users'"),
])
def test_an_identity_that_is_an_image_account_is_refused_before_anything_is_made(changes, why):
    with pytest.raises(SpawnError) as refused:
        check_fits_image(GuestAccount(identity(**changes), ()), DEBIAN_IMAGE)
    message = refused.value.jupyterhub_message
    assert why in message and "Nothing was created" in message, message


def test_a_fitting_identity_an_undeclared_image_and_a_wrong_declaration():
    check_fits_image(GuestAccount(ALICE, ()), DEBIAN_IMAGE)
    check_fits_image(GuestAccount(ALICE, ()), SimpleNamespace(id="i2", name="bare", properties={}))
    wrong = SimpleNamespace(id="i3", name="odd", properties={"hepsdesk_account_ids": "0-999,lots"})
    with pytest.raises(CloudFailure, match="declares its accounts wrongly"):
        check_fits_image(GuestAccount(ALICE, ()), wrong)


def run_account_lines(tmp_path: Path, passwd: dict[int, str], groups: dict[int, str]) -> subprocess.CompletedProcess:
    """The VM's start program making ALICE's account, with the image's accounts read from
    ``passwd`` and ``groups`` (uid/gid -> name) and groupadd/useradd/usermod replaced by
    stand-ins that record what they were asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("groupadd", "useradd", "usermod"):
        (bin_dir / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {tmp_path / 'made'}\n")
        (bin_dir / tool).chmod(0o755)
    plan = guest_plan(["jupyterhub-singleuser"], identity=ALICE)
    program = f"""
import sys, types
sys.path.insert(0, {str(Path(guest_start.__file__).parent)!r})
import guest_start as g
passwd, groups = {passwd!r}, {groups!r}
def entry(table, key, attr):
    for number, name in table.items():
        if key in (number, name):
            return types.SimpleNamespace(**{{attr + "_name": name, attr + "_uid": number, attr + "_gid": number}})
    raise KeyError(key)
g.pwd = types.SimpleNamespace(getpwuid=lambda k: entry(passwd, k, "pw"), getpwnam=lambda k: entry(passwd, k, "pw"))
g.grp = types.SimpleNamespace(getgrgid=lambda k: entry(groups, k, "gr"), getgrnam=lambda k: entry(groups, k, "gr"))
try:
    g.make_account(g.check_plan({plan!r})["identity"])
except g.Refused as e:
    print(e.marker, e)
    g.report_exit(e.status)
    sys.exit(e.status)
print("account-ready")
"""
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin"})


def test_the_vm_makes_the_account_when_nothing_collides(tmp_path):
    done = run_account_lines(tmp_path, {0: "root", 1000: "debian"}, {0: "root", 100: "users"})
    assert done.returncode == 0 and "account-ready" in done.stdout, done
    made = (tmp_path / "made").read_text()
    assert "groupadd -g 21001 alice" in made and "useradd -M -u 21001 -g 21001" in made


@pytest.mark.parametrize("passwd, groups, why", [
    ({0: "root", 21001: "debian"}, {}, "uid 21001 is the image's account debian"),
    ({0: "root"}, {30001: "sudo"}, "gid 30001 is the image's group sudo"),
    ({0: "root", 1000: "alice"}, {}, "the account name alice has another uid in the image"),
    ({0: "root"}, {27: "p-2026-001"}, "the group name p-2026-001 has another gid in the image"),
])
def test_the_vm_refuses_at_boot_an_account_the_image_holds(tmp_path, passwd, groups, why):
    done = run_account_lines(tmp_path, passwd, groups)
    assert done.returncode == 5 and "account-ready" not in done.stdout, done
    assert f"{IDENTITY_CONFLICT_MARKER} {why}" in done.stdout and f"{EXITED_MARKER} with status 5" in done.stdout
    assert "useradd" not in ((tmp_path / "made").read_text() if (tmp_path / "made").exists() else "")
