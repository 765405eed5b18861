"""The Spawner contract as JupyterHub relies on it, with a real hub and the dev cloud's Nova
behind a fault proxy: a wrong configuration stops the hub at start, and failures that are
the cloud's (not the user's) count towards ``consecutive_failure_limit``."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from ..conftest import SESSION, HubAPI, start_hub
from ..faults import Fault, FaultProxy, clouds_yaml_through
from .test_spawner import create_user

pytestmark = pytest.mark.devcloud


def test_a_contradictory_configuration_stops_the_hub_at_start(devcloud, tmp_path):
    """A floating connection without a floating network: the hub does not start, and says which setting."""
    with pytest.raises(RuntimeError) as stopped:
        start_hub(devcloud, tmp_path / "hub", (18740, 18741, 19740), HEPSDESK_CONNECT_TO="floating")
    message = str(stopped.value)
    assert "JupyterHub exited during start-up" in message
    assert "OpenStackSpawner.connect_to: 'floating' needs OpenStackSpawner.floating_ip_network" in message
    assert "Traceback" not in message.split("OpenStackSpawner.connect_to")[-1]


@pytest.mark.parametrize("fault", [Fault("*", r".*", 500), Fault("*", r".*", 504, hang=10)],
                         ids=["answers-500", "hangs"])
def test_cloud_failures_count_towards_the_consecutive_failure_limit(devcloud, tmp_path, fault):
    """Nova fails every request (or never answers one): each start fails with a message for the
    user, and after three in a row the hub exits (so that systemd or Kubernetes restarts it),
    as JupyterHub does for spawner errors that are not the user's."""
    extra = tmp_path / "timeouts.py"
    extra.write_text("c.OpenStackSpawner.api_request_timeout = 1\n")
    with FaultProxy(devcloud.connect().endpoint_for("compute"), 18742) as nova:
        nova.inject(fault)
        hub = start_hub(devcloud, tmp_path / "hub", (18750, 18751, 19750),
                        clouds_yaml=clouds_yaml_through(devcloud, tmp_path, compute=nova.url),
                        HEPSDESK_CONSECUTIVE_FAILURE_LIMIT="3", HEPSDESK_EXTRA_CONFIG=str(extra))
        try:
            api = HubAPI(hub)
            users = [f"count-{i}-{SESSION}" for i in range(3)]
            for user in users:
                create_user(api, user)
                assert api("POST", f"/users/{user}/server").status_code in (201, 202)

            with concurrent.futures.ThreadPoolExecutor(3) as pool:
                last = list(pool.map(lambda user: api.progress(user, timeout=120)[-1], users))
            for event in last:
                assert event.get("failed") and "The cloud could not start your VM" in event["message"], event
                assert "Traceback" not in event["message"]
            deadline = time.monotonic() + 30
            while hub.processes.running("jupyterhub") and time.monotonic() < deadline:
                time.sleep(0.5)
            assert not hub.processes.running("jupyterhub"), "the hub did not exit after 3 failures in a row"
            assert "Aborting due to 3 consecutive spawn failures" in hub.log_path.read_text()
            assert fault.hits >= 3
        finally:
            hub.stop()
