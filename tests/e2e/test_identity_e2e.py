"""A new experiment-group member's first sign-in, in the browser, to a VM that is theirs: the
computing account made in AD and the storage's LDAP at that sign-in, refreshed before the
spawn, the VM's user with the AD uid/gid and the proposal groups, writing into their proposal's
directory on the storage and refused by the kernel in another proposal's (the storage's
permissions, by gid)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time

import pytest
import requests
from playwright.sync_api import expect

from hepsdesk_devcloud.storage_agent import sync_storage

from ..conftest import directory_hub, sign_in_without_browser
from ..kernel import run_in_kernel
from .hubflow import new_context, sign_in, wait_for_lab

pytestmark = pytest.mark.devcloud
PORTAL_TOKEN = secrets.token_hex(24)

# The whole proposals tree is mounted too (as some facilities do), so that the test can show
# that only the proposal group's members may write in a proposal's directory.
PROFILES = [{"slug": "desktop", "display_name": "Analysis desktop", "default": True, "image": "hepsdesk-desktop",
             "flavor": "c1.small", "data_mounts": [{"source": "devcloud-storage:/proposals", "target": "/proposals"}]}]

CHECK = """
import json, os
def write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return "written"
    except PermissionError:
        return "refused"
print(json.dumps({{"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
                  "user": __import__("pwd").getpwuid(os.getuid()).pw_name,
                  "mine": write("/data/{mine}/result.txt"),
                  "mine_on_tree": write("/proposals/{mine}/tree.txt"),
                  "other": write("/proposals/{other}/intruder.txt")}}))
"""


TURN_SECRET = secrets.token_hex(16)  # the facility's TURN relay's shared secret: the hub's only
TURN_URL = "turn:127.0.0.1:19479?transport=udp"


@pytest.fixture(scope="module")
def identity_hub(devcloud, active_directory, storage_ldap, tmp_path_factory):
    directory = tmp_path_factory.mktemp("identity-e2e")
    (directory / "profiles.json").write_text(json.dumps(PROFILES))
    (directory / "turn-secret").write_text(TURN_SECRET)
    (directory / "turn-secret").chmod(0o600)
    with directory_hub(devcloud, active_directory, storage_ldap, directory, (18860, 18861, 19860),
                       HEPSDESK_DATA_SERVER=devcloud.settings.storage_server,
                       HEPSDESK_PROFILES_FILE=str(directory / "profiles.json"),
                       HEPSDESK_PORTAL_API_TOKEN=PORTAL_TOKEN, HEPSDESK_DESKTOP_ICE_SERVERS=TURN_URL,
                       HEPSDESK_DESKTOP_TURN_SECRET_FILE=str(directory / "turn-secret")) as hub:
        yield hub


def assert_no_turn_secret_in_the_vm(devcloud, user: str) -> None:
    """Nowhere in the VM (its whole disk, what its user can read and more) nor in the user-data
    the compute API serves for it."""
    admin = devcloud.connect("devcloud-admin")
    [server] = [s for s in admin.compute.servers(all_projects=True, details=True)
                if (s.metadata or {}).get("hepsdesk-user") == user]
    user_data = base64.b64decode(admin.compute.get_server(server.id).user_data or "").decode(errors="replace")
    assert "JUPYTERHUB_API_URL" in user_data, "the compute API served the VM's user-data"
    assert TURN_SECRET not in user_data and "TURN_SECRET" not in user_data, "neither the secret nor where it is"
    for path in devcloud.guest_dir(server.id).rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert TURN_SECRET.encode() not in path.read_bytes(), f"the TURN secret is in {path}"


def assert_turn_credentials_of(server: dict, user: str) -> None:
    """Credentials for ``user``, good for 10 minutes, that the relay (coturn's use-auth-secret)
    accepts: the password is the HMAC of the user name under the hub's secret."""
    assert server["urls"] == [TURN_URL]
    expiry, name = server["username"].split(":")
    assert name == user and 0 < int(expiry) - time.time() <= 600 + 60, server["username"]
    expected = base64.b64encode(hmac.new(TURN_SECRET.encode(), server["username"].encode(), hashlib.sha1).digest())
    assert server["credential"] == expected.decode()


def test_a_new_group_member_signs_in_and_gets_a_vm_with_their_ad_account_and_data(
        identity_hub, browser, devcloud, storage_ldap):
    mine, other = f"P-{secrets.token_hex(3)}", f"P-{secrets.token_hex(3)}"
    # Someone else's proposal, with its directory on the storage.
    someone, password = f"o{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    identity_hub.oidc.set_user(someone, password, groups=["heps-users"], proposals=[other])
    sign_in_without_browser(identity_hub, someone, password)

    name, password = f"n{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    identity_hub.oidc.set_user(name, password, groups=["heps-users"], proposals=[mine])
    context = new_context(browser)
    page = context.new_page()
    try:
        sign_in(page, identity_hub.url, name, password, next_path="/hub/home")
        page.wait_for_url(re.compile(r".*/hub/home"), timeout=60_000)
        posix = identity_hub.api("GET", f"/users/{name}").json()["auth_state"]["hepsdesk"]["posix"]
        # The storage's automation makes the new account's home and the proposals' directories.
        made = sync_storage(devcloud, storage_ldap)
        assert f"home/{name}" in made and f"proposals/{mine}" in made
        home = devcloud.settings.storage_dir / "home" / name
        assert (home.stat().st_uid, home.stat().st_gid) == (posix["uid"], posix["gid"])

        # A group change between the sign-in and the spawn reaches the spawn (the hub
        # refreshes the person's account before it starts a server).
        identity_hub.oidc.set_user(name, password, groups=["heps-users", "heps-b7-staff"], proposals=[mine])
        page.goto(f"{identity_hub.url}/hub/spawn")
        wait_for_lab(page, name)
        model = identity_hub.api("GET", f"/users/{name}").json()
        assert "heps-b7-staff" in model["groups"] and "heps-b7-staff" in model["auth_state"]["hepsdesk"]["groups"]
        token = identity_hub.api("POST", f"/users/{name}/tokens", json={"note": "test", "expires_in": 600})
        seen = json.loads(run_in_kernel(f"{identity_hub.url}/user/{name}/", token.json()["token"],
                                        CHECK.format(mine=mine, other=other)).strip().splitlines()[-1])
        # Token mode: the user portal's link opens the desktop in a browser that never signed in.
        portal = requests.post(f"{identity_hub.url}/hub/api/hepsdesk/portal-login/{name}", timeout=30,
                               headers={"Authorization": f"token {PORTAL_TOKEN}"})
        link = identity_hub.url + portal.json()["url"]
        fresh = new_context(browser)
        desktop = fresh.new_page()
        desktop.goto(link)
        desktop.wait_for_url(re.compile(rf".*/user/{name}/desktop/.*"), timeout=60_000)
        expect(desktop).to_have_title("Desktop")
        # The desktop in the VM got this session's TURN credentials from the hub, for this user;
        # the relay's secret is nowhere in the VM.
        desktop.wait_for_function("window.hepsdesk.pc !== null", timeout=60_000)
        [turn] = desktop.evaluate("window.hepsdesk.pc.getConfiguration()")["iceServers"]
        assert_turn_credentials_of(turn, name)
        fresh.close()
        assert_no_turn_secret_in_the_vm(devcloud, name)
        minted = requests.post(f"{identity_hub.url}/hub/api/hepsdesk/ice-servers", timeout=30,
                               headers={"Authorization": f"token {token.json()['token']}"})
        assert_turn_credentials_of(minted.json()["iceServers"][0], name)
        assert requests.post(f"{identity_hub.url}/hub/api/hepsdesk/ice-servers", timeout=30).status_code == 403
        # A link the user made themselves (an API token with the portal's old note), sent to a
        # colleague: the colleague's fresh browser is told why, and is not signed in as the sender.
        own = requests.post(f"{identity_hub.url}/hub/api/users/{name}/tokens", timeout=30,
                            headers={"Authorization": f"token {token.json()['token']}"},
                            json={"note": "hepsdesk-portal-login", "expires_in": 60})
        colleague = new_context(browser)
        page_of_colleague = colleague.new_page()
        page_of_colleague.goto(f"{identity_hub.url}/hub/token-login?token={own.json()['token']}")
        expect(page_of_colleague.get_by_text("an API token never signs anyone in")).to_be_visible()
        page_of_colleague.goto(f"{identity_hub.url}/hub/home")
        expect(page_of_colleague).not_to_have_url(re.compile(r".*/hub/home$"))
        colleague.close()
    finally:
        context.close()
    proposal_gid = next(g["gid"] for g in posix["groups"] if g["name"] == f"proposal-{mine.lower()}")
    assert (seen["uid"], seen["gid"], seen["user"]) == (posix["uid"], posix["gid"], name)
    assert proposal_gid in seen["groups"]
    assert seen["mine"] == seen["mine_on_tree"] == "written"
    assert seen["other"] == "refused"
    result = devcloud.settings.storage_dir / "proposals" / mine / "result.txt"
    assert (result.stat().st_uid, result.read_text()) == (posix["uid"], "x")
