"""The user's identity and data mounts as they go into a root shell script in the VM:
hostile values are refused, everything is quoted, and the script is valid shell."""

import base64
import json

import pytest

from hepsdesk_devcloud.service_plugins.hepsdesk_cloudconfig import build_boot_plan
from hepsdesk_identity import IdentityError, PosixIdentity, proposals_of
from hepsdesk_spawner.cloudinit import render_singleuser_user_data
from hepsdesk_spawner.datamounts import DataMountError, expand_all, parse_data_mounts
from hepsdesk_spawner.guest_start import PLAN_FILE

POSIX = {"username": "alice", "uid": 23001, "gid": 23001, "home": "/home/alice",
         "groups": [{"name": "p-2026-001", "gid": 30001}]}


def state(**posix) -> dict:
    return {"hepsdesk": {"posix": {**POSIX, **posix}, "proposals": ["P-2026-001"]}}


def test_identity_from_auth_state():
    identity = PosixIdentity.from_auth_state(state())
    assert (identity.username, identity.uid, identity.gid, identity.home, identity.group) == \
        ("alice", 23001, 23001, "/home/alice", "alice")
    assert identity.groups == (("p-2026-001", 30001),)
    assert PosixIdentity.from_auth_state({"hepsdesk": {"groups": []}}) is None
    assert PosixIdentity.from_auth_state(None) is None


HOSTILE = ["*)(uid=*", "cn=x,ou=y", "a\x00b", "x" * 300, "ä̀lice", "$(reboot)", "a;rm -rf /", "a b",
           "alice\nuseradd -o -u 0 evil", "'; echo pwned '", "{{ v1.hostname }}", "- item", "Alice"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_names_are_refused(value):
    with pytest.raises(IdentityError, match="not a valid account name"):
        PosixIdentity.from_auth_state(state(username=value))
    with pytest.raises(IdentityError, match="not a valid account name"):
        PosixIdentity.from_auth_state(state(groups=[{"name": value, "gid": 30001}]))


@pytest.mark.parametrize("posix, message", [
    ({"uid": 0}, "uid 0 is outside"), ({"gid": 999}, "gid 999 is outside"), ({"uid": "23001; id"}, "not a number"),
    ({"uid": True}, "not a number"), ({"uid": "²³"}, "not a number"), ({"uid": "٢٣٠٠١"}, "not a number"),
    ({"uid": 2**40}, "outside"), ({"home": "/home/../etc"}, "not a plain"),
    ({"home": "home/alice"}, "not a plain"), ({"home": "/etc"}, "not a user's directory"),
    ({"home": "/usr/local"}, "not a user's directory"), ({"home": "/home"}, "not a user's directory"),
    ({"home": "/home/al ice"}, "not a plain"),
    ({"shell": "/bin/sh -c id"}, "not a plain"), ({"groups": ["p-1"]}, "{name, gid}"),
])
def test_unsafe_numbers_and_paths_are_refused(posix, message):
    with pytest.raises(IdentityError, match=message):
        PosixIdentity.from_auth_state(state(**posix))


@pytest.mark.parametrize("proposal", ["../P-1", "P 1", "*)(x=*", "", "P-1;id", 7])
def test_hostile_proposals_are_refused(proposal):
    with pytest.raises(IdentityError, match="proposal id"):
        proposals_of({"hepsdesk": {"proposals": ["P-1", proposal]}})


TEMPLATES = parse_data_mounts([
    {"source": "storage:/home/{username}", "target": "{home}"},
    {"source": "storage:/proposals/{proposal}", "target": "/data/{proposal}"},
    {"source": "storage:/raw/{proposal}", "target": "/data/raw/{proposal}", "options": "ro", "required": False},
], "test")


def test_mounts_expand_per_proposal():
    identity = PosixIdentity.from_auth_state(state())
    mounts = expand_all(TEMPLATES, identity, ["P-1", "P-2"])
    assert [(m.source, m.target, m.options, m.required) for m in mounts] == [
        ("storage:/home/alice", "/home/alice", "rw,hard,_netdev", True),
        ("storage:/proposals/P-1", "/data/P-1", "rw,hard,_netdev", True),
        ("storage:/proposals/P-2", "/data/P-2", "rw,hard,_netdev", True),
        ("storage:/raw/P-1", "/data/raw/P-1", "ro", False),
        ("storage:/raw/P-2", "/data/raw/P-2", "ro", False)]
    assert [m.target for m in expand_all(TEMPLATES, identity, [])] == ["/home/alice"]
    with pytest.raises(DataMountError, match="needs the user's POSIX identity"):
        expand_all(TEMPLATES, None, ["P-1"])


@pytest.mark.parametrize("template, message", [
    ({"source": "s:/{username.__class__}", "target": "/x"}, "unknown placeholder"),
    ({"source": "s:/{0}", "target": "/x"}, "unknown placeholder"),
    ({"source": "s:/x", "target": "/x", "options": "rw, hard"}, "spaces"),
    ({"source": "s:/{", "target": "/x"}, "Single '{'"),
])
def test_wrong_templates_are_refused(template, message):
    with pytest.raises(DataMountError, match=message):
        parse_data_mounts([template], "test")


def test_user_data_creates_the_account_mounts_the_data_and_drops_root():
    identity = PosixIdentity.from_auth_state(state())
    mounts = expand_all(TEMPLATES, identity, ["P-2026-001"])
    user_data = render_singleuser_user_data(["jupyterhub-singleuser"], {"JUPYTERHUB_USER": "alice"},
                                            identity=identity, mounts=mounts)
    plan = build_boot_plan(user_data)  # the dev cloud (and cloud-init) accept it
    assert plan["mounts"][0] == {"source": "storage:/home/alice", "target": "/home/alice", "fstype": "nfs4",
                                 "options": "rw,hard,_netdev"}
    start = json.loads(base64.b64decode(next(f for f in plan["write_files"] if f["path"] == PLAN_FILE)
                                        ["content_b64"]).decode())
    # The VM makes the account with these numbers (never another account's: no -o; a uid or
    # gid the image holds is refused, test_image_accounts) and runs JupyterLab as it.
    assert start["identity"] == {"username": "alice", "uid": 23001, "gid": 23001, "group": "alice",
                                 "home": "/home/alice", "shell": "/bin/bash", "groups": [["p-2026-001", 30001]]}
    assert [(m["target"], m["required"]) for m in start["mounts"]] == \
        [("/home/alice", True), ("/data/P-2026-001", True), ("/data/raw/P-2026-001", False)]
    assert start["command"] == ["jupyterhub-singleuser"] and start["workdir"] == "/home/alice"
