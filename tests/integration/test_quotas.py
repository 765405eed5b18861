"""Group quotas through the real hub: concurrent starts of one group, the spawn page, metrics."""

from __future__ import annotations

import concurrent.futures
import json

import pytest
import requests

from ..conftest import HubAPI, running_hub
from .test_metrics import scrape, total
from .test_profiles import cards, signed_in, spawn_page, vms_of

pytestmark = pytest.mark.devcloud

PROFILES = [
    {"slug": "team-cpu", "display_name": "Team desktop", "image": "hepsdesk-desktop", "flavor": "c1.small",
     "default": True, "allowed_groups": ["quota-team"]},
    {"slug": "team-gpu", "display_name": "Team GPU desktop", "image": "hepsdesk-desktop", "flavor": "g1.a100.1",
     "gpu_model": "A100", "gpu_count": 1, "allowed_groups": ["quota-team", "quota-other"]},
]
QUOTAS = {"quota-team": {"gpus": {"A100": 1}, "vms": 3}, "quota-other": {"gpus": {"A100": 2}, "vcpus": 16}}


@pytest.fixture(scope="module")
def quota_hub(devcloud, tmp_path_factory):
    directory = tmp_path_factory.mktemp("quota-hub")
    (directory / "quotas.json").write_text(json.dumps(QUOTAS))
    with running_hub(devcloud, directory, (18300, 18381, 19300), profiles=PROFILES,
                     HEPSDESK_GROUP_QUOTAS_FILE=str(directory / "quotas.json")) as hub:
        yield hub


def member(api: HubAPI, user: str, *groups: str) -> str:
    assert api("POST", f"/users/{user}").status_code in (201, 409)
    for group in groups:
        api("POST", f"/groups/{group}")  # 201, or 409 if it exists
        assert api("POST", f"/groups/{group}/users", json={"users": [user]}).status_code == 200
    return user


def outcome(api: HubAPI, user: str, body: dict) -> dict:
    response = api("POST", f"/users/{user}/server", json=body)
    assert response.status_code in (201, 202), response.text
    return api.progress(user, timeout=240)[-1]


def stop(api: HubAPI, *users: str) -> None:
    for user in users:
        api("DELETE", f"/users/{user}/server")
    for user in users:
        api.wait_stopped(user)


def test_two_members_at_the_groups_gpu_quota_get_one_vm_and_one_clear_refusal(quota_hub, devcloud):
    api = quota_hub.api
    first, second = member(api, "quota-ann", "quota-team"), member(api, "quota-ben", "quota-team")
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            ends = list(pool.map(lambda user: outcome(api, user, {"profile": "team-gpu"}), (first, second)))
        assert sorted(bool(end.get("ready")) for end in ends) == [False, True], ends
        refused_user, refusal = next((user, end) for user, end in zip((first, second), ends, strict=True)
                                     if end.get("failed"))
        assert "Your group quota-team uses 1 of 1 A100" in refusal["message"], refusal
        # The refused start made nothing; the other VM carries its charge for a restarted hub.
        assert vms_of(devcloud, refused_user) == []
        winner = first if refused_user == second else second
        [vm] = vms_of(devcloud, winner)
        assert vm.metadata["hepsdesk-group"] == "quota-team"
        assert "gpu:A100=1" in vm.metadata["hepsdesk-charge"]
        assert api("GET", f"/users/{winner}").json()["servers"][""]["state"]["group"] == "quota-team"

        # A third member sees the group's use on the card, which cannot be chosen now.
        session = signed_in(quota_hub, "quota-cal", "heps-users", "quota-team")
        card = cards(spawn_page(quota_hub, session, "quota-cal"))["team-gpu"]
        assert "Your group quota-team uses 1 of 1 A100" in card and "disabled" in card, card
        cpu_card = cards(spawn_page(quota_hub, session, "quota-cal"))["team-cpu"]
        assert "Counts against your group quota-team (1 of 1 A100, 1 of 3 VMs)" in cpu_card, cpu_card

        # Prometheus sees the group's use against its quota.
        samples = scrape(quota_hub, api.session.headers)
        assert total(samples, "hepsdesk_group_quota_used", group="quota-team", resource="gpus", model="A100") == 1
        assert total(samples, "hepsdesk_group_quota_limit", group="quota-team", resource="gpus", model="A100") == 1
        assert total(samples, "hepsdesk_spawn_failures_total", reason="group_quota") >= 1
    finally:
        stop(api, first, second)


def test_a_member_of_two_groups_picks_the_one_with_room(quota_hub, devcloud):
    api = quota_hub.api
    holder, both = member(api, "quota-dan", "quota-team"), member(api, "quota-eve", "quota-team", "quota-other")
    try:
        assert outcome(api, holder, {"profile": "team-gpu"}).get("ready")
        # Their card offers both groups; the full one cannot be picked.
        session = signed_in(quota_hub, both, "heps-users", "quota-team", "quota-other")
        card = cards(spawn_page(quota_hub, session, both))["team-gpu"]
        assert 'name="group-team-gpu"' in card
        assert '<option value="quota-team" disabled>' in card and '<option value="quota-other">' in card, card
        # A group that is not theirs, or that does not allow the profile, is refused plainly.
        bad = outcome(api, both, {"profile": "team-gpu", "group": "csns-users"})
        assert "cannot count against the group 'csns-users': choose one of quota-other, quota-team" in bad["message"]
        api.wait_stopped(both, timeout=60)
        # Without a choice the first group with room is taken; the choice is kept with the server.
        assert outcome(api, both, {"profile": "team-gpu"}).get("ready")
        assert api("GET", f"/users/{both}").json()["servers"][""]["state"]["group"] == "quota-other"
        [vm] = vms_of(devcloud, both)
        assert vm.metadata["hepsdesk-group"] == "quota-other"
        # Through the form: the group select of the chosen card becomes user_options["group"].
        stop(api, both)
        form = session.get(f"{quota_hub.url}/hub/spawn/{both}", timeout=60)
        xsrf = session.cookies.get("_xsrf", path="/hub/") or session.cookies.get("_xsrf")
        posted = session.post(f"{quota_hub.url}/hub/spawn/{both}", params={"_xsrf": xsrf}, timeout=60,
                              allow_redirects=False, data={"profile": "team-gpu", "group-team-gpu": "quota-other"})
        assert form.status_code == 200 and posted.status_code in (200, 302), posted.text[:300]
        assert api.progress(both, timeout=240)[-1].get("ready")
        assert api("GET", f"/users/{both}").json()["servers"][""]["user_options"] == {
            "profile": "team-gpu", "group": "quota-other"}
    finally:
        stop(api, holder, both)
    assert requests.get(f"{quota_hub.url}/hub/metrics", timeout=30).status_code == 403
