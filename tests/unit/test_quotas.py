"""Group quotas: the settings checked, charges kept in metadata, the book's accounting."""

from __future__ import annotations

import re

import pytest
from traitlets import TraitError

from hepsdesk_spawner.errors import SpawnError
from hepsdesk_spawner.quotas import Charge, QuotaBook, QuotaConfigError, candidate_groups, parse_quotas
from hepsdesk_spawner.settings import SpawnerSettings
from hepsdesk_spawner.watcher import ServerView


class ListedServers:
    """What the watcher last listed (the book reads only ``servers``)."""

    def __init__(self, *views: ServerView):
        self.servers = {view.id: view for view in views}


def listed(server_id: str, user: str, charge: Charge, status: str = "ACTIVE") -> ServerView:
    return ServerView(server_id, f"jupyter-{user}", status, None, "",
                      {"hepsdesk-user": user, "hepsdesk-server": "", **charge.metadata()})


@pytest.mark.parametrize("quotas, message", [
    ({"team": {"gpu": 1}}, "unknown key(s) 'gpu'"),
    ({"team": {"vms": -1}}, "['vms'] must be a whole number of 0 or more"),
    ({"team": {"vcpus": "8"}}, "['vcpus'] must be a whole number"),
    ({"team": {"gpus": 4}}, "['gpus'] must map GPU models to counts"),
    ({"team": {"gpus": {"A100 SXM": 1}}}, "is not a GPU model name"),
    ({"team": 3}, "must be a dict of vms, vcpus and gpus"),
])
def test_a_wrong_quota_setting_is_refused_naming_the_group_and_key(quotas, message):
    with pytest.raises(QuotaConfigError, match=re.escape(message)):
        parse_quotas(quotas)
    with pytest.raises(TraitError, match="OpenStackSpawner.group_quotas"):
        SpawnerSettings(group_quotas=quotas)


def test_a_charge_survives_the_vms_metadata():
    charge = Charge("heps-imaging", 8, (("A100", 2),))
    assert Charge.from_metadata(charge.metadata()) == charge
    assert Charge.from_metadata({"hepsdesk-group": "g", "hepsdesk-charge": "vcpus=4;gpu:A100=x;junk"}) == \
        Charge("g", 4, ())
    assert Charge.from_metadata({}) is None


def test_the_groups_a_server_counts_against():
    quotas = parse_quotas({"team": {}, "other": {}})
    assert candidate_groups(["team", "users"], ["team", "other"], quotas) == ["team"]
    assert candidate_groups(["team", "other"], [], quotas) == ["other", "team"]  # open profile: quota groups
    assert candidate_groups(["users"], [], quotas) == []
    assert candidate_groups(["team"], ["staff"], quotas, admin=True) == ["team"]


def test_the_book_counts_each_server_once_and_refuses_what_does_not_fit():
    quotas = parse_quotas({"team": {"gpus": {"A100": 2}, "vms": 3}})
    gpu = Charge("team", 8, (("A100", 1),))
    watcher = ListedServers(listed("vm-1", "ann", gpu), listed("vm-2", "ben", gpu, status="SHELVED_OFFLOADED"))
    book = QuotaBook(watcher)
    assert book.usage()["team"].gpus == {"A100": 1}  # the shelved VM holds nothing
    book.admit("cal/", gpu, quotas["team"])  # check and booking in one step
    with pytest.raises(SpawnError, match="Your group team uses 2 of 2 A100") as refused:
        book.admit("dan/", gpu, quotas["team"])
    assert refused.value.reason == "group_quota" and refused.value.status_code == 403
    # ann's server started again: her old VM and booking are not counted twice.
    book.admit("ann/", gpu, quotas["team"])
    assert book.usage()["team"].vms == 2
    # ann stopped: her VM no longer counts though the watcher still lists it.
    book.release("ann/", "vm-1")
    assert book.usage()["team"].gpus == {"A100": 1}
    book.admit("dan/", gpu, quotas["team"])
    watcher.servers.pop("vm-1")
    assert book.usage()["team"].vms == 2 and book.gone == set()
