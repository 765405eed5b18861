"""A profile's idle_timeout: the hub stops a server nobody used for that long, and its VM goes."""

from __future__ import annotations

import time

import pytest

from ..conftest import SESSION, running_hub
from .test_profiles import vms_of
from .test_spawner import create_user

pytestmark = pytest.mark.devcloud

IDLE_TIMEOUT = 20


@pytest.fixture(scope="module")
def idle_hub(devcloud, tmp_path_factory):
    profiles = [{"slug": "short", "display_name": "Short-lived desktop", "image": "hepsdesk-desktop",
                 "flavor": "c1.small", "idle_timeout": IDLE_TIMEOUT}]
    with running_hub(devcloud, tmp_path_factory.mktemp("idle-hub"), (18800, 18881, 19980), profiles) as hub:
        yield hub


def test_an_idle_server_is_stopped_after_its_profiles_idle_timeout(idle_hub, devcloud):
    user = f"idle-{SESSION}"
    create_user(idle_hub.api, user)
    assert idle_hub.api("POST", f"/users/{user}/server").status_code in (201, 202)
    assert idle_hub.api.progress(user)[-1].get("ready")
    ready = time.monotonic()
    [vm] = vms_of(devcloud, user)
    assert vm.metadata["hepsdesk-profile"] == "short"

    idle_hub.api.wait_stopped(user, timeout=120)
    stopped = time.monotonic() - ready
    # idle_timeout, then within a poll interval (10 s) and a watcher list (5 s)
    assert IDLE_TIMEOUT - 2 <= stopped <= IDLE_TIMEOUT + 30, stopped
    assert "has been idle for" in idle_hub.log_path.read_text()
    deadline = time.monotonic() + 60
    while vms_of(devcloud, user) and time.monotonic() < deadline:
        time.sleep(1)
    assert vms_of(devcloud, user) == []
