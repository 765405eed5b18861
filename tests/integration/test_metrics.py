"""hepsdesk's figures on the real hub's /hub/metrics, read as Prometheus reads them."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import HubAPI
from .test_spawner import create_user

pytestmark = pytest.mark.devcloud


def scrape(hub, headers: dict) -> dict[tuple[str, tuple], float]:
    """Every sample of /hub/metrics as {(name, sorted labels): value}, parsed by prometheus_client."""
    response = requests.get(f"{hub.url}/hub/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text[:300]
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(value for (sample, have), value in samples.items()
               if sample == name and set(labels.items()) <= set(have))


def test_metrics_count_the_spawns_and_failures_without_naming_anyone(hub, hub_api: HubAPI):
    user = "metrics-user"
    create_user(hub_api, user)
    before = scrape(hub, hub_api.session.headers)

    # A start that succeeds, and one refused at once (an option the spawner does not know).
    assert hub_api("POST", f"/users/{user}/server").status_code in (201, 202)
    assert hub_api.progress(user)[-1].get("ready")
    profile = hub_api("GET", f"/users/{user}").json()["servers"][""]["state"]["profile"]
    assert hub_api("DELETE", f"/users/{user}/server").status_code in (202, 204)
    hub_api.wait_stopped(user)
    assert hub_api("POST", f"/users/{user}/server", json={"colour": "red"}).status_code in (201, 202, 400)
    assert "Unknown option" in hub_api.progress(user)[-1].get("message", "")
    hub_api.wait_stopped(user, timeout=60)
    after = scrape(hub, hub_api.session.headers)
    hub_api("DELETE", f"/users/{user}")  # its saved options are the bad ones

    spawned = "hepsdesk_spawn_duration_seconds_count"
    for stage in ("prepare", "boot", "guest", "total"):
        assert total(after, spawned, profile=profile, stage=stage) - \
            total(before, spawned, profile=profile, stage=stage) == 1, stage
    took = total(after, "hepsdesk_spawn_duration_seconds_sum", profile=profile, stage="total") - \
        total(before, "hepsdesk_spawn_duration_seconds_sum", profile=profile, stage="total")
    parts = sum(total(after, "hepsdesk_spawn_duration_seconds_sum", profile=profile, stage=stage) -
                total(before, "hepsdesk_spawn_duration_seconds_sum", profile=profile, stage=stage)
                for stage in ("prepare", "boot", "guest"))
    assert 0 < parts <= took + 0.01 and took < 300
    assert total(after, "hepsdesk_spawn_failures_total", reason="bad_options") - \
        total(before, "hepsdesk_spawn_failures_total", reason="bad_options") == 1
    # The cloud was asked (the watcher's lists among it), and the watcher's view is fresh.
    assert total(after, "hepsdesk_cloud_requests_total", outcome="ok") > \
        total(before, "hepsdesk_cloud_requests_total", outcome="ok")
    assert total(after, "hepsdesk_watcher_list_seconds_count") > 0
    lag = [value for (name, _), value in after.items() if name == "hepsdesk_watcher_lag_seconds"]
    assert lag and all(0 <= value < 60 for value in lag), lag
    # JupyterHub's own figures are still there: one registry.
    assert total(after, "jupyterhub_server_spawn_duration_seconds_count") >= 1
    # No label names a user.
    assert not [key for key in after if key[0].startswith("hepsdesk_") and any(user in v for _, v in key[1])]


def test_metrics_need_the_read_metrics_scope(hub, hub_api: HubAPI):
    assert requests.get(f"{hub.url}/hub/metrics", timeout=30).status_code == 403
    create_user(hub_api, "metrics-reader")
    token = hub_api("POST", "/users/metrics-reader/tokens", json={"scopes": ["read:users:name!user"],
                                                                  "note": "no metrics"}).json()["token"]
    assert requests.get(f"{hub.url}/hub/metrics", headers={"Authorization": f"token {token}"},
                        timeout=30).status_code == 403
