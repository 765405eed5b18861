"""Fixtures shared by the integration and end-to-end tests: the dev cloud and the hub of the session."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
import uuid
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from hepsdesk_devcloud import DevCloud, DevCloudSettings
from hepsdesk_devcloud.hub import DevHub

ROOT = Path(__file__).resolve().parents[1]
SESSION = uuid.uuid4().hex[:8]
ALICE_UID = 21001  # the session hub's alice, as the SSO says (see start_hub)


@pytest.fixture(scope="session")
def devcloud():
    state = os.environ.get("HEPSDESK_DEVCLOUD_STATE", str(ROOT / ".devcloud"))
    cloud = DevCloud(DevCloudSettings.load(state))
    reused = cloud.is_running()
    cloud.up()
    yield cloud
    if not reused and not os.environ.get("HEPSDESK_KEEP_DEVCLOUD"):
        cloud.down()


class HubAPI:
    """JupyterHub's REST API with the development admin token."""

    def __init__(self, hub: DevHub):
        self.hub = hub
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {hub.secrets()['admin_token']}"

    def __call__(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, f"{self.hub.url}/hub/api{path}", timeout=30, **kwargs)

    def progress(self, user: str, timeout: float = 300, server: str = "") -> list[dict]:
        """The spawn's progress events, until it is ready or failed."""
        events = []
        path = f"/users/{user}/servers/{server}/progress" if server else f"/users/{user}/server/progress"
        with self.session.get(f"{self.hub.url}/hub/api{path}", stream=True, timeout=timeout) as response:
            for line in response.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    event = json.loads(line[5:])
                    events.append(event)
                    if event.get("ready") or event.get("failed"):
                        break
        return events

    def wait_stopped(self, user: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self("GET", f"/users/{user}").json()
            if not model.get("servers") and not model.get("pending"):
                return
            time.sleep(1)
        raise AssertionError(f"{user}'s server is still there after {timeout:.0f} s")


def start_hub(devcloud, state_dir: Path, ports: tuple[int, int, int], clouds_yaml: str | None = None,
              **env: str) -> DevHub:
    hub = DevHub(state_dir, ROOT / "jupyterhub_config.py", clouds_yaml or devcloud.settings.clouds_yaml, port=ports[0],
                 hub_port=ports[1], oidc_port=ports[2],
                 extra_env={"HEPSDESK_HUB_TAG": f"hepsdesk-test-{SESSION}",
                            # The test hubs share a tag: one hub's reaper would see the others' servers as orphans.
                            "HEPSDESK_REAPER": "off", **env})
    hub.users = {}
    # alice and bob have computing accounts (the SSO releases their uid/gid): their VMs run
    # JupyterLab and the desktop as them, not as root.
    for name, groups, uid in (("alice", ["heps-users", "hepsdesk-admins"], ALICE_UID), ("bob", ["csns-users"], 21002),
                              ("carol", ["visitors"], 0)):
        password = secrets.token_urlsafe(12)
        posix = {"uidNumber": uid, "gidNumber": uid, "homeDirectory": f"/home/{name}"} if uid else None
        hub.oidc.set_user(name, password, groups=groups, proposals=[f"P-{name}"], posix=posix)
        hub.users[name] = password
    hub.start()
    return hub


@contextlib.contextmanager
def running_hub(devcloud, directory: Path, ports: tuple[int, int, int], profiles: list[dict] | None = None,
                clouds_yaml: str | None = None, **env: str):
    """A test hub (``start_hub``) in ``directory`` with ``hub.api``, stopped with its servers
    at the end; ``profiles``: its ``OpenStackSpawner.profiles`` instead of the repository's."""
    if profiles is not None:
        (directory / "profiles.json").write_text(json.dumps(profiles))
        env["HEPSDESK_PROFILES_FILE"] = str(directory / "profiles.json")
    hub = start_hub(devcloud, directory / "hub", ports, clouds_yaml=clouds_yaml, **env)
    hub.api = HubAPI(hub)
    try:
        yield hub
    finally:
        stop_hub(hub, devcloud)


@contextlib.contextmanager
def directory_hub(devcloud, active_directory, storage_ldap, directory: Path, ports: tuple[int, int, int], **env: str):
    """A test hub whose sign-ins use the session's AD DC and storage LDAP (its users come from
    its OIDC provider: ``hub.oidc.set_user``), with ``hub.api``; stopped with its servers."""
    hub = DevHub(directory / "hub", ROOT / "jupyterhub_config.py", devcloud.settings.clouds_yaml, port=ports[0],
                 hub_port=ports[1], oidc_port=ports[2], active_directory=active_directory, storage_ldap=storage_ldap,
                 extra_env={"HEPSDESK_HUB_TAG": f"hepsdesk-test-{SESSION}", "HEPSDESK_REAPER": "off", **env})
    hub.start()
    hub.api = HubAPI(hub)
    try:
        yield hub
    finally:
        stop_hub(hub, devcloud)


def stop_hub(hub: DevHub, devcloud) -> None:
    """Stop every server of the hub through its API, then the hub; delete any VM left over."""
    api = HubAPI(hub)
    try:
        for user in api("GET", "/users").json():
            if user.get("servers"):
                api("DELETE", f"/users/{user['name']}/server")
        for user in api("GET", "/users").json():
            api.wait_stopped(user["name"], timeout=180)
    finally:
        hub.stop()
        admin = devcloud.connect("devcloud-admin")
        for server in admin.compute.servers(all_projects=True):
            if (server.metadata or {}).get("hepsdesk-hub") == f"hepsdesk-test-{SESSION}":
                admin.compute.delete_server(server)
                admin.compute.wait_for_delete(server, wait=120)
        for ip in admin.network.ips():  # a test that failed half-way may leave one
            if f"(hepsdesk-test-{SESSION})" in (ip.description or ""):
                admin.network.delete_ip(ip, ignore_missing=True)
        for port in admin.network.ports():  # a test that failed half-way may leave one
            if f"(hepsdesk-test-{SESSION})" in (port.description or ""):
                admin.network.delete_port(port, ignore_missing=True)
        for group in admin.network.security_groups(name=f"hepsdesk-test-{SESSION}-vms"):
            admin.network.delete_security_group(group, ignore_missing=True)


@pytest.fixture(scope="session")
def hub(devcloud, tmp_path_factory):
    """The repository's JupyterHub (jupyterhub_config.py) with its OIDC provider, on test ports."""
    hub = start_hub(devcloud, tmp_path_factory.mktemp("hub"), (18000, 18081, 19400))
    yield hub
    stop_hub(hub, devcloud)


def sign_in_without_browser(hub: DevHub, username: str, password: str) -> requests.Session:
    """A session signed in to the hub through the SSO's login form (for pages read as HTML;
    what a person sees is tested in tests/e2e with a browser). Lands on the home page."""
    session = requests.Session()
    page = session.get(f"{hub.url}/hub/oauth_login?next=/hub/home", timeout=30)
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action, f"no SSO login form at {page.url}: {page.text[:300]}"
    home = session.post(urljoin(page.url, action.group(1)), data={"username": username, "password": password},
                        timeout=60)
    assert home.status_code == 200 and home.url.endswith("/hub/home"), (home.status_code, home.url)
    return session


@pytest.fixture(scope="session")
def hub_api(hub) -> HubAPI:
    return HubAPI(hub)


@pytest.fixture(scope="session")
def active_directory(tmp_path_factory, request):
    """The development Samba AD DC (DEV.HEPS) on 127.0.0.2, LDAPS only (``hepsdesk_devcloud.directory``)."""
    from hepsdesk_devcloud.directory import DevActiveDirectory

    directory = DevActiveDirectory(tmp_path_factory.mktemp("active-directory"), address="127.0.0.2")
    request.addfinalizer(directory.stop)  # by pid, also when start() fails half-way
    directory.start()
    return directory


@pytest.fixture(scope="session")
def storage_ldap(tmp_path_factory, request):
    """The development storage LDAP server (slapd, dc=storage,dc=heps) on ldaps://127.0.0.1:19991."""
    from hepsdesk_devcloud.directory import DevStorageLDAP

    server = DevStorageLDAP(tmp_path_factory.mktemp("storage-ldap"), port=19991)
    request.addfinalizer(server.stop)
    server.start()
    return server
