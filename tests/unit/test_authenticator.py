"""Who may sign in: the allow/deny table of HEPSAuthenticator (default deny)."""

import pytest
from tornado import web

from hepsdesk_auth import HEPSAuthenticator


def authenticator(**config) -> HEPSAuthenticator:
    return HEPSAuthenticator(allowed_groups={"heps-users", "csns-users"}, admin_groups={"hepsdesk-admins"},
                             client_id="hub", client_secret="x", authorize_url="http://idp/auth",
                             token_url="http://idp/token", userdata_url="http://idp/me", **config)


@pytest.mark.parametrize("groups, allowed", [
    (["heps-users"], True),
    (["csns-users", "other"], True),
    (["hepsdesk-admins"], True),       # admins are allowed whatever else they are in
    (["visitors"], False),
    ([], False),
])
async def test_allow_deny_by_group(groups, allowed):
    auth = authenticator()
    model = {"name": "alice", "admin": "hepsdesk-admins" in groups, "groups": groups,
             "auth_state": {"oauth_user": {"groups": groups}}}
    if allowed:
        assert await auth.check_allowed("alice", model) is True
    else:
        with pytest.raises(web.HTTPError) as refused:
            await auth.check_allowed("alice", model)
        assert refused.value.status_code == 403
        message = refused.value.log_message % refused.value.args
        assert "not in a group allowed to use hepsdesk" in message
        assert "csns-users, heps-users" in message and "principal investigator" in message


async def test_nobody_is_allowed_without_configuration():
    auth = HEPSAuthenticator(client_id="hub", client_secret="x", authorize_url="http://idp/auth",
                             token_url="http://idp/token", userdata_url="http://idp/me")
    with pytest.raises(web.HTTPError):
        await auth.check_allowed("alice", {"name": "alice", "admin": False, "groups": ["heps-users"],
                                           "auth_state": {}})


async def test_auth_state_keeps_groups_and_proposals_for_the_spawner():
    auth = authenticator()
    model = {"name": "alice", "admin": False,
             "auth_state": {"oauth_user": {"groups": ["heps-users"], "proposals": ["HEPS-2026-1"],
                                           "email": "a@x", "name": "Alice"}}}
    model = await auth.update_auth_model(model)
    assert model["auth_state"]["hepsdesk"] == {"groups": ["heps-users"], "proposals": ["HEPS-2026-1"],
                                               "email": "a@x", "name": "Alice"}
    assert auth.enable_auth_state and auth.manage_groups


async def test_posix_identity_claims_go_to_auth_state_only_when_complete():
    auth = authenticator()
    claims = {"groups": ["heps-users"], "uidNumber": 20001, "gidNumber": "20001", "homeDirectory": "/home/alice"}
    model = await auth.update_auth_model({"name": "alice", "admin": False, "auth_state": {"oauth_user": claims}})
    assert model["auth_state"]["hepsdesk"]["posix"] == {"username": "alice", "uid": 20001, "gid": "20001",
                                                        "home": "/home/alice"}
    del claims["gidNumber"]
    model = await auth.update_auth_model({"name": "alice", "admin": False, "auth_state": {"oauth_user": claims}})
    assert "posix" not in model["auth_state"]["hepsdesk"]


async def test_a_proposal_claim_that_is_no_proposal_id_is_left_out():
    auth = authenticator()
    claims = {"groups": ["heps-users"], "proposals": ["P-2026-1", "*)(cn=*", "../etc", 42, "P 2"]}
    model = await auth.update_auth_model({"name": "alice", "admin": False, "auth_state": {"oauth_user": claims}})
    assert model["auth_state"]["hepsdesk"]["proposals"] == ["P-2026-1"]
