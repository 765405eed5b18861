"""A profile's idle_timeout: the hub stops a server nobody used for that long, and its VM goes;
a server someone uses stays, and its VM learns when it would be stopped."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from datetime import UTC, datetime

import pytest
import requests

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


def keep_using(hub, user: str, token: str, stop: threading.Event) -> None:
    """What the VM does while someone works: report the server's activity every few seconds."""
    while not stop.wait(4):
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        requests.post(f"{hub.url}/hub/api/users/{user}/activity", timeout=30,
                      headers={"Authorization": f"token {token}"},
                      json={"last_activity": now, "servers": {"": {"last_activity": now}}}).raise_for_status()


def test_the_idle_server_is_stopped_after_its_profiles_idle_timeout_and_the_used_one_stays(idle_hub, devcloud):
    api = idle_hub.api
    idle, busy = f"idle-{SESSION}", f"busy-{SESSION}"
    for user in (idle, busy):
        create_user(api, user)
        assert api("POST", f"/users/{user}/server").status_code in (201, 202)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert all(events[-1].get("ready") for events in pool.map(api.progress, (idle, busy)))
    ready = time.monotonic()
    [vm] = vms_of(devcloud, idle)
    assert vm.metadata["hepsdesk-profile"] == "short"
    # The busy user's VM reports activity with a token like its server's own.
    token = api("POST", f"/users/{busy}/tokens", json={"scopes": [f"users:activity!user={busy}"]}).json()["token"]
    stop = threading.Event()
    worker = threading.Thread(target=keep_using, args=(idle_hub, busy, token, stop), daemon=True)
    worker.start()
    try:
        # The VM learns when the hub would stop it if nobody used it, and how long before to warn.
        asked = requests.get(f"{idle_hub.url}/hub/api/hepsdesk/idle-deadline", params={"server": ""}, timeout=30,
                             headers={"Authorization": f"token {token}"})
        assert asked.status_code == 200, asked.text
        answer = asked.json()
        assert answer["idle_timeout"] == IDLE_TIMEOUT and answer["warn_before"] == IDLE_TIMEOUT // 4
        assert time.time() < answer["idle_deadline"] <= time.time() + IDLE_TIMEOUT + 1
        # Nobody else may ask about that server.
        assert requests.get(f"{idle_hub.url}/hub/api/hepsdesk/idle-deadline", params={"server": ""},
                            timeout=30).status_code == 403

        api.wait_stopped(idle, timeout=120)
        stopped = time.monotonic() - ready
        # idle_timeout, then within a poll interval (10 s) and a watcher list (5 s)
        assert IDLE_TIMEOUT - 2 <= stopped <= IDLE_TIMEOUT + 30, stopped
        assert "has been idle for" in idle_hub.log_path.read_text()
        time.sleep(max(0.0, 2 * IDLE_TIMEOUT - (time.monotonic() - ready)))
        assert api("GET", f"/users/{busy}").json()["servers"], "a server in use is not stopped"
        assert time.monotonic() - ready >= 2 * IDLE_TIMEOUT
    finally:
        stop.set()
        worker.join(timeout=30)
        api("DELETE", f"/users/{busy}/server")
        api.wait_stopped(busy)
    deadline = time.monotonic() + 60
    while vms_of(devcloud, idle) and time.monotonic() < deadline:
        time.sleep(1)
    assert vms_of(devcloud, idle) == []
