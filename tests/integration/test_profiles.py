"""Profiles, named servers, capacity and quota through a real hub (the repository's config)
against the dev cloud: what the spawn page offers, what the REST API accepts, and how a full
cloud is explained. This module's hub restarts itself after 2 consecutive spawn errors
(consecutive_failure_limit), so the last test can show that none of these refusals counted.
"""

from __future__ import annotations

import re
import secrets
import time

import pytest
import requests

from hepsdesk_devcloud.bootstrap import HUB_NETWORK_QUOTAS, HUB_PROJECT, HUB_QUOTAS

from ..conftest import SESSION, HubAPI, running_hub, sign_in_without_browser
from .test_spawner import create_user

pytestmark = pytest.mark.devcloud

CAPACITY_TTL = 10  # OpenStackSpawner.capacity_ttl's default: one Placement reading serves 10 s


@pytest.fixture(scope="module")
def limited_hub(devcloud, tmp_path_factory):
    with running_hub(devcloud, tmp_path_factory.mktemp("limited-hub"), (18400, 18481, 19800),
                     HEPSDESK_CONSECUTIVE_FAILURE_LIMIT="2", HEPSDESK_SERVERS_PER_USER="2") as hub:
        hub.first_pid = hub.processes.running("jupyterhub").pid
        yield hub


def member(api: HubAPI, user: str, *groups: str) -> str:
    create_user(api, user)
    for group in groups:
        api("POST", f"/groups/{group}")  # 201, or 409 if it exists
        assert api("POST", f"/groups/{group}/users", json={"users": [user]}).status_code == 200
    return user


def signed_in(hub, user: str, *groups: str) -> requests.Session:
    """``user`` signs in through the SSO, whose groups claim gives their JupyterHub groups."""
    password = secrets.token_urlsafe(12)
    hub.oidc.set_user(user, password, groups=list(groups))
    return sign_in_without_browser(hub, user, password)


def spawn_page(hub, session: requests.Session, user: str) -> str:
    response = session.get(f"{hub.url}/hub/spawn/{user}", timeout=60)
    assert response.status_code == 200, response.text[:500]
    return response.text


def cards(page: str) -> dict[str, str]:
    """profile slug -> the card's HTML."""
    return dict(re.findall(r'<label class="hepsdesk-profile[^"]*" data-profile="([^"]+)">(.*?)</label>', page, re.S))


def vms_of(devcloud, user: str) -> list:
    admin = devcloud.connect("devcloud-admin")
    return [s for s in admin.compute.servers(all_projects=True)
            if (s.metadata or {}).get("hepsdesk-user") == user]


def ports_of(conn, user: str) -> list:
    return [p for p in conn.network.ports() if p.name.startswith(f"jupyter-{user}")]


def fail_spawn(api: HubAPI, user: str, server: str, body) -> str:
    response = api("POST", f"/users/{user}/servers/{server}" if server else f"/users/{user}/server", json=body)
    assert response.status_code in (201, 202), response.text
    events = api.progress(user, server=server, timeout=200)
    assert events[-1].get("failed"), events
    message = events[-1]["message"]
    assert message.startswith("Spawn failed: "), message  # the hub's prefix; the rest is the spawner's
    return message.removeprefix("Spawn failed: ")


def test_the_spawn_page_offers_the_profiles_of_the_users_groups(limited_hub):
    heps, csns = f"heps-{SESSION}", f"csns-{SESSION}"
    offered = cards(spawn_page(limited_hub, signed_in(limited_hub, heps, "heps-users"), heps))
    assert sorted(offered) == ["desktop", "diffraction", "imaging", "imaging-gpu", "xrf"]
    gpu = offered["imaging-gpu"]
    assert "HEPS X-ray imaging with a GPU" in gpu and "napari 0.9.2" in gpu, "the image's software, from Glance"
    assert "Production images only: TomoPy" in gpu, "what the dev cloud's image cannot carry is said so"
    assert "TomoPy" not in gpu.split("Production images only")[0], "the software line names only what is there"
    assert "8 vCPU, 64 GB RAM" in gpu and "1x A100 GPU (4 of 4 A100 free)" in gpu, gpu
    assert 'value="desktop" checked' in offered["desktop"], "the default profile is preselected"

    csns_page = spawn_page(limited_hub, signed_in(limited_hub, csns, "csns-users"), csns)
    assert sorted(cards(csns_page)) == ["desktop", "neutron"]


@pytest.mark.parametrize("body, expected", [
    ({"profile": "neutron"}, "The environment neutron does not exist or is not available to you. "
                             "You may start: desktop, imaging, imaging-gpu, diffraction, xrf."),
    ({"profile": "no-such-thing"}, "The environment no-such-thing does not exist or is not available to you."),
    ({"profile": "*)(uid=*"}, "The environment (an invalid name) does not exist"),
    ({"profile": ["desktop"]}, "The environment must be given by its name (a string)."),
    ({"profile": "desktop", "flavor": "g1.a100.2"}, "Unknown option(s) 'flavor': the options are 'profile'"),
], ids=["forbidden", "unknown", "hostile", "not-a-string", "tampered"])
def test_the_rest_api_refuses_what_the_user_may_not_start(limited_hub, devcloud, conn, body, expected):
    user = member(limited_hub.api, f"rest-{SESSION}", "heps-users")
    message = fail_spawn(limited_hub.api, user, "refused", body)
    assert expected in message, message
    assert vms_of(devcloud, user) == [] and ports_of(conn, user) == [], "nothing was created"


def test_named_servers_run_side_by_side_within_the_per_user_limit(limited_hub, devcloud):
    api = limited_hub.api
    user = member(api, f"named-{SESSION}", "heps-users")
    assert api("POST", f"/users/{user}/server", json={"profile": "desktop"}).status_code in (201, 202)
    assert api("POST", f"/users/{user}/servers/imaging", json={"profile": "imaging"}).status_code in (201, 202)
    assert api.progress(user)[-1].get("ready")
    assert api.progress(user, server="imaging")[-1].get("ready")

    servers = api("GET", f"/users/{user}").json()["servers"]
    assert servers[""]["ready"] and servers["imaging"]["ready"]
    vms = {(s.metadata["hepsdesk-server"], s.metadata["hepsdesk-profile"], s.flavor["original_name"])
           for s in vms_of(devcloud, user)}
    assert vms == {("", "desktop", "c1.small"), ("imaging", "imaging", "c1.medium")}
    for name in ("", "imaging"):
        answer = requests.get(f"{limited_hub.url}{servers[name]['url']}api", headers=api.session.headers, timeout=30)
        assert answer.status_code == 200

    # The limit (2 named servers here) counts every named server the user has.
    assert api("POST", f"/users/{user}/servers/second", json={"profile": "no-such"}).status_code in (201, 202)
    api.progress(user, server="second")
    over = api("POST", f"/users/{user}/servers/third", json={"profile": "desktop"})
    assert over.status_code == 400 and "maximum" in over.json()["message"], over.text

    for name in ("", "imaging"):
        assert api("DELETE", f"/users/{user}/servers/{name}").status_code in (202, 204)
    api.wait_stopped(user)
    assert vms_of(devcloud, user) == []


def test_busy_gpus_show_on_the_cards_and_a_gpu_start_says_none_is_free(limited_hub, servers, devcloud, conn):
    """All 4 fake A100s taken by other servers: the card shows 0 free and cannot be chosen, and
    a start through the API fails with the scheduler's NoValidHost explained."""
    user = f"gpu-{SESSION}"
    session = signed_in(limited_hub, user, "heps-users")
    for _ in range(2):
        servers.create(flavor="g1.a100.2")
    time.sleep(CAPACITY_TTL)
    card = cards(spawn_page(limited_hub, session, user))["imaging-gpu"]
    assert "(0 of 4 A100 free)" in card and "disabled" in card and "in use right now" in card, card

    message = fail_spawn(limited_hub.api, user, "gpu", {"profile": "imaging-gpu"})
    assert message.startswith("No machine has 1 free A100 GPU right now (0 of 4 A100 free)."), message
    assert "Traceback" not in message
    assert vms_of(devcloud, user) == [] and ports_of(conn, user) == []


@pytest.mark.parametrize("service, quota, resource", [
    ("compute", {"cores": 1}, "cores"),
    ("network", {"port": 0}, "port"),
], ids=["cores", "ports"])
def test_a_used_up_quota_is_explained_and_leaves_nothing(limited_hub, devcloud, conn, service, quota, resource):
    admin = devcloud.connect("devcloud-admin")
    project = admin.identity.find_project(HUB_PROJECT, domain_id="default")
    user = member(limited_hub.api, f"quota-{resource}-{SESSION}")
    if service == "network":
        quota = {"port": len(list(admin.network.ports(project_id=project.id)))}
    setter = admin.set_compute_quotas if service == "compute" else admin.set_network_quotas
    try:
        setter(project.id, **quota)
        message = fail_spawn(limited_hub.api, user, "", {})
    finally:
        setter(project.id, **(HUB_QUOTAS if service == "compute" else HUB_NETWORK_QUOTAS))
    assert message.startswith(f"The hub's share of the cloud is used up ({resource})"), message
    assert vms_of(devcloud, user) == [] and ports_of(conn, user) == []


def test_refusals_and_a_full_cloud_never_count_as_hub_failures(limited_hub):
    """More than consecutive_failure_limit (2) spawns failed above; the hub is still the same process."""
    running = limited_hub.processes.running("jupyterhub")
    assert running is not None and running.pid == limited_hub.first_pid, "the hub did not exit"
    assert limited_hub.api("GET", "/").status_code == 200
