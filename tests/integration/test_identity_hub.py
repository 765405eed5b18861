"""Sign-in end to end without a browser: the real JupyterHub with HEPSAuthenticator, the
development OIDC provider (a real OIDC provider process), the Samba AD DC and the storage's
slapd. What the person sees in a browser is in tests/e2e."""

from __future__ import annotations

import json
import re
import secrets
import time
from urllib.parse import parse_qs, urlsplit

import ldap3
import pytest
import requests

from hepsdesk_devcloud.hub import DevHub

from ..conftest import directory_hub, sign_in_without_browser

pytestmark = pytest.mark.devcloud

PORTAL_TOKEN = secrets.token_hex(24)
B7_ROLE = {"name": "b7-instrument-scientist", "groups": ["heps-b7-staff"], "description": "B7 scientist",
           "scopes": ["read:users!group=heps-b7-users", "access:servers!group=heps-b7-users"]}


@pytest.fixture(scope="module")
def identity_hub(devcloud, active_directory, storage_ldap, tmp_path_factory):
    directory = tmp_path_factory.mktemp("identity-hub")
    (directory / "roles.json").write_text(json.dumps([B7_ROLE]))
    with directory_hub(devcloud, active_directory, storage_ldap, directory, (18850, 18851, 19850),
                       HEPSDESK_PORTAL_API_TOKEN=PORTAL_TOKEN,
                       HEPSDESK_GROUP_ROLES_FILE=str(directory / "roles.json")) as hub:
        yield hub


def new_person(hub: DevHub, groups=("heps-users",), proposals=("P-idh",)) -> tuple[str, str]:
    name, password = f"i{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    hub.oidc.set_user(name, password, groups=list(groups), proposals=list(proposals))
    return name, password


def user_model(hub: DevHub, name: str) -> dict:
    response = hub.api("GET", f"/users/{name}", params={"include_stopped_servers": "0"})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_first_sign_in_makes_the_computing_account_and_the_hub_keeps_it(identity_hub, active_directory):
    name, password = new_person(identity_hub)
    sign_in_without_browser(identity_hub, name, password)
    state = user_model(identity_hub, name)["auth_state"]["hepsdesk"]
    conn = active_directory.connect()
    try:
        conn.search(active_directory.base_dn, f"(sAMAccountName={name})", ldap3.SUBTREE,
                    attributes=["uidNumber", "gidNumber", "distinguishedName"])
        [entry] = conn.entries
    finally:
        conn.unbind()
    assert state["posix"]["uid"] == entry.uidNumber.value and state["posix"]["gid"] == entry.gidNumber.value
    assert state["directory"] == {"dn": entry.entry_dn, "created": True}
    assert [g["name"] for g in state["posix"]["groups"]] == ["proposal-p-idh"]


def test_a_group_change_is_a_new_role_at_the_next_sign_in(identity_hub):
    name, password = new_person(identity_hub)
    sign_in_without_browser(identity_hub, name, password)
    model = user_model(identity_hub, name)
    assert model["roles"] == ["user"] and "heps-b7-staff" not in model["groups"]

    identity_hub.oidc.set_user(name, password, groups=["heps-users", "heps-b7-staff"], proposals=["P-idh"])
    sign_in_without_browser(identity_hub, name, password)
    model = user_model(identity_hub, name)
    assert sorted(model["roles"]) == ["b7-instrument-scientist", "user"] and "heps-b7-staff" in model["groups"]

    identity_hub.oidc.set_user(name, password, groups=["heps-users"], proposals=["P-idh"])
    sign_in_without_browser(identity_hub, name, password)
    assert user_model(identity_hub, name)["roles"] == ["user"]


def test_with_the_directory_down_sign_in_says_so_and_nothing_is_made(identity_hub, active_directory):
    name, password = new_person(identity_hub)
    active_directory.stop()
    try:
        session = requests.Session()
        page = session.get(f"{identity_hub.url}/hub/oauth_login?next=/hub/home", timeout=30)
        action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
        result = session.post(requests.compat.urljoin(page.url, action), data={"username": name, "password": password},
                              timeout=60)
    finally:
        active_directory.start()
    assert result.status_code == 503, (result.status_code, result.text[:500])
    assert "Your computing account cannot be checked now" in result.text and "Nothing was changed" in result.text
    assert "Traceback" not in result.text
    assert identity_hub.api("GET", f"/users/{name}").status_code == 404
    conn = active_directory.connect()
    try:
        conn.search(active_directory.base_dn, f"(sAMAccountName={name})", ldap3.SUBTREE)
        assert not conn.entries
    finally:
        conn.unbind()


def portal_link(hub: DevHub, name: str, token: str = PORTAL_TOKEN) -> requests.Response:
    """What the facility's portal does: ask for a one-time sign-in link for ``name``."""
    return requests.post(f"{hub.url}/hub/api/hepsdesk/portal-login/{name}", timeout=30,
                         headers={"Authorization": f"token {token}"})


def link_secret(response: requests.Response) -> str:
    assert response.status_code == 201, response.text
    url = response.json()["url"]
    assert url.startswith("/hub/token-login?token=") and response.json()["expires_in"] <= 60, response.json()
    return parse_qs(urlsplit(url).query)["token"][0]


def test_token_mode_a_portal_link_signs_in_once(identity_hub):
    name, password = new_person(identity_hub)
    sign_in_without_browser(identity_hub, name, password)  # known to the hub (it has their account)
    token = link_secret(portal_link(identity_hub, name))

    browser = requests.Session()
    landed = browser.get(f"{identity_hub.url}/hub/token-login", params={"token": token, "next": "/hub/home"},
                         timeout=30)
    assert landed.status_code == 200 and landed.url == f"{identity_hub.url}/hub/home", landed.url
    assert name in landed.text and token not in landed.url
    # The default next is the person's desktop.
    other = requests.Session().get(f"{identity_hub.url}/hub/token-login",
                                   params={"token": link_secret(portal_link(identity_hub, name))},
                                   allow_redirects=False, timeout=30)
    assert other.status_code == 302 and other.headers["Location"] == "/hub/user-redirect/desktop/"
    assert other.headers["Referrer-Policy"] == "no-referrer"

    again = requests.get(f"{identity_hub.url}/hub/token-login", params={"token": token}, timeout=30)
    assert again.status_code == 403 and "This sign-in link cannot be used" in again.text
    assert "Traceback" not in again.text
    # A person the hub does not know yet: the portal sends them through the SSO instead.
    unknown = portal_link(identity_hub, f"nobody-{secrets.token_hex(3)}")
    assert unknown.status_code == 404 and "through the SSO" in unknown.json()["message"]
    time.sleep(0.5)  # the hub's log is written
    assert token not in identity_hub.log_path.read_text()


def test_token_mode_a_link_a_user_made_never_signs_anyone_in(identity_hub):
    """Login CSRF: a user makes a token for themselves with the portal's old note and sends the
    link to a colleague; the colleague's fresh browser must not end up signed in as them."""
    sender, password = new_person(identity_hub)
    sign_in_without_browser(identity_hub, sender, password)
    own = identity_hub.api("POST", f"/users/{sender}/tokens", json={"note": "a notebook's", "expires_in": 600})
    own_token = own.json()["token"]
    made = requests.post(f"{identity_hub.url}/hub/api/users/{sender}/tokens", timeout=30,
                         headers={"Authorization": f"token {own_token}"},
                         json={"note": "hepsdesk-portal-login", "expires_in": 60, "scopes": ["read:users:name!user"]})
    assert made.status_code == 201, made.text  # JupyterHub lets a user make tokens for themselves
    colleague = requests.Session()
    refused = colleague.get(f"{identity_hub.url}/hub/token-login", timeout=30,
                            params={"token": made.json()["token"], "next": "/hub/home"})
    assert refused.status_code == 403 and "an API token never signs anyone in" in refused.text, refused.text[:500]
    assert colleague.get(f"{identity_hub.url}/hub/api/user", timeout=30).status_code == 403, "not signed in"
    home = colleague.get(f"{identity_hub.url}/hub/home", allow_redirects=False, timeout=30)
    assert home.status_code == 302 and "/hub/login" in home.headers["Location"], "sent to sign in"
    # Nor can the user (or anyone without the portal's scope) ask for a portal link.
    assert portal_link(identity_hub, sender, token=own_token).status_code == 403
    assert portal_link(identity_hub, sender, token="").status_code == 403


def test_no_password_or_token_in_the_hub_log(identity_hub, active_directory, storage_ldap):
    name, password = new_person(identity_hub)
    sign_in_without_browser(identity_hub, name, password)
    log = identity_hub.log_path.read_text()
    assert f"User logged in: {name}" in log
    for secret in (active_directory.admin_password, storage_ldap.admin_password, password, PORTAL_TOKEN,
                   identity_hub.secrets()["client_secret"], identity_hub.secrets()["admin_token"]):
        assert secret not in log
