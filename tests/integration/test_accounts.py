"""Computing accounts at sign-in, against a real Samba AD DC (LDAPS, test CA) and a real slapd.

Each test signs people in the way JupyterHub does once the SSO answered (``sign_in``: the
account name from the claims, ``update_auth_model``, the groups, the block and allow checks),
with names of its own so that tests share the session's directories without meeting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import time

import ldap3
import pytest
from ldap3.utils.log import EXTENDED, set_library_log_detail_level
from tornado import web

from hepsdesk_auth import HEPSAuthenticator
from hepsdesk_auth import active_directory as ad
from hepsdesk_auth.active_directory import ADLayout
from hepsdesk_auth.ldapclient import delete_entry

B7_ROLE = {"name": "b7-instrument-scientist", "groups": ["heps-b7-staff"], "description": "B7 scientist",
           "scopes": ["read:users!group=heps-b7-users", "access:servers!group=heps-b7-users"]}


def new_name(prefix: str = "t") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


@pytest.fixture
def make_authenticator(active_directory, storage_ldap):
    made = []

    def make(**config) -> HEPSAuthenticator:
        settings = dict(
            client_id="hub", client_secret="x", authorize_url="http://127.0.0.1:9/auth",
            token_url="http://127.0.0.1:9/token", userdata_url="http://127.0.0.1:9/me",
            allowed_groups={"heps-users"}, admin_groups={"hepsdesk-admins"},
            ad_urls=[active_directory.url], ad_bind_dn=active_directory.admin_dn,
            ad_bind_password=active_directory.admin_password, ad_ca_file=str(active_directory.ca_file),
            ad_base_dn=active_directory.base_dn, ad_users_dn=active_directory.users_dn,
            ad_groups_dn=active_directory.groups_dn, id_counter_dn=active_directory.nis_domain_dn,
            storage_ldap_urls=[storage_ldap.url], storage_ldap_bind_dn=storage_ldap.admin_dn,
            storage_ldap_bind_password=storage_ldap.admin_password, storage_ldap_ca_file=str(storage_ldap.ca_file),
            storage_ldap_people_dn=storage_ldap.people_dn, storage_ldap_groups_dn=storage_ldap.groups_dn,
            group_roles=[B7_ROLE], directory_timeout=2.0)
        settings.update(config)
        auth = HEPSAuthenticator(**settings)
        made.append(auth)
        return auth

    yield make
    for auth in made:
        if auth.accounts is not None:
            auth.accounts.directories.close()


def claims(name: str, groups=("heps-users",), proposals=(), sub: str | None = None, **extra) -> dict:
    return {"sub": sub or f"sub-{name}", "preferred_username": name, "name": f"Test {name}",
            "email": f"{name}@example.org", "groups": list(groups), "proposals": list(proposals), **extra}


async def sign_in(auth: HEPSAuthenticator, userinfo: dict) -> dict:
    """What JupyterHub and oauthenticator do with the SSO's userinfo; HTTPError when refused."""
    name = auth.normalize_username(auth.user_info_to_username(userinfo))
    model = {"name": name, "admin": None,
             "auth_state": auth.build_auth_state_dict({"access_token": "secret-access-token"}, userinfo)}
    model = await auth.update_auth_model(model)
    groups = await auth.get_user_groups(model["auth_state"])  # as oauthenticator's manage_groups does
    model["groups"] = sorted(groups)
    model["admin"] = bool(groups & auth.admin_groups)
    if not auth.check_blocked_users(name, model):
        raise web.HTTPError(403, "blocked")
    await auth.check_allowed(name, model)
    return model


def ad_user(active_directory, name: str) -> dict | None:
    conn = active_directory.connect()
    try:
        conn.search(active_directory.base_dn, f"(sAMAccountName={name})", ldap3.SUBTREE,
                    attributes=["uidNumber", "gidNumber", "unixHomeDirectory", "loginShell", "userAccountControl",
                                "altSecurityIdentities", "memberOf"])
        return conn.entries[0].entry_attributes_as_dict if conn.entries else None
    finally:
        conn.unbind()


def storage_entries(storage_ldap, base: str, search: str, attributes=("uidNumber", "gidNumber", "memberUid")):
    conn = storage_ldap.connect()
    try:
        conn.search(base, search, ldap3.SUBTREE, attributes=list(attributes))
        return {e.entry_dn: e.entry_attributes_as_dict for e in conn.entries}
    finally:
        conn.unbind()


def message(error: web.HTTPError) -> str:
    return error.log_message % error.args if error.args else error.log_message


async def test_first_sign_in_makes_the_ad_account_and_its_storage_twin_and_the_second_changes_nothing(
        make_authenticator, active_directory, storage_ldap):
    auth = make_authenticator()
    name, proposal = new_name(), f"P-{secrets.token_hex(3)}"
    model = await sign_in(auth, claims(name, proposals=[proposal, "*)(cn=*"]))
    state = model["auth_state"]["hepsdesk"]
    posix = state["posix"]
    assert model["name"] == name and state["directory"]["created"] is True
    assert posix["uid"] >= 20000 and posix["gid"] >= 20000 and posix["home"] == f"/home/{name}"
    assert posix["group"] == "hepsdesk-users" and posix["shell"] == "/bin/bash"
    group = f"proposal-{proposal.lower()}"
    assert [g["name"] for g in posix["groups"]] == [group]
    assert state["data_paths"] == {"home": f"/home/{name}", "proposals": {proposal: f"/data/{proposal}"}}

    entry = ad_user(active_directory, name)
    assert entry["uidNumber"] == [posix["uid"]] and entry["gidNumber"] == [posix["gid"]]
    assert entry["unixHomeDirectory"] == [f"/home/{name}"] and entry["loginShell"] == ["/bin/bash"]
    assert entry["altSecurityIdentities"] == [f"OIDC:sub-{name}"]
    assert entry["userAccountControl"] == [512]  # enabled, with a password nobody knows
    assert any(dn.startswith(f"CN={group},") for dn in entry["memberOf"])

    twin = storage_entries(storage_ldap, storage_ldap.people_dn, f"(uid={name})")
    assert list(twin.values()) == [{"uidNumber": [posix["uid"]], "gidNumber": [posix["gid"]], "memberUid": []}]
    groups = storage_entries(storage_ldap, storage_ldap.groups_dn, f"(cn={group})")
    assert [g["memberUid"] for g in groups.values()] == [[name]]
    assert [g["gidNumber"] for g in groups.values()] == [[posix["groups"][0]["gid"]]]
    # The hostile proposal named no group anywhere.
    assert not storage_entries(storage_ldap, storage_ldap.groups_dn, "(cn=proposal-\\2a*)")

    again = await sign_in(auth, claims(name, proposals=[proposal]))
    assert again["auth_state"]["hepsdesk"]["posix"] == posix
    assert again["auth_state"]["hepsdesk"]["directory"]["created"] is False
    assert ad_user(active_directory, name) == entry


def hand_made_account(active_directory, name: str, groups: list[str], subject: str | None = None) -> None:
    """An account an admin made (no Unix attributes), in ``groups`` (made if missing)."""
    conn = active_directory.connect()
    try:
        dn = f"CN={name},{active_directory.users_dn}"
        attributes = {"sAMAccountName": name, "userAccountControl": 514}
        if subject:
            attributes["altSecurityIdentities"] = f"OIDC:{subject}"
        assert conn.add(dn, ["top", "person", "organizationalPerson", "user"], attributes), conn.result
        for group in groups:
            group_dn = f"CN={group},{active_directory.groups_dn}"
            conn.add(group_dn, ["top", "group"], {"sAMAccountName": group, "groupType": ad.GLOBAL_SECURITY_GROUP})
            assert conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [dn])]}), conn.result
    finally:
        conn.unbind()


# sso groups, the AD account before, provision_accounts, blocked -> allowed, an account after, what the page says
MATRIX = [
    (["heps-users"], None, True, False, True, True, ""),
    (["hepsdesk-admins"], None, True, False, True, True, ""),
    (["visitors"], None, True, False, False, False, "not in a group allowed"),
    ([], None, True, False, False, False, "not in a group allowed"),
    (["heps-users"], None, True, True, False, False, "blocked"),
    (["heps-users"], None, False, False, False, False, "no computing account yet"),
    (["visitors"], "in heps-users", True, False, True, True, ""),  # AD's groups count
    (["heps-users"], "another person's", True, False, False, True, "belongs to another person"),
]


@pytest.mark.parametrize("groups, before, provision, blocked, allowed, account_after, says", MATRIX)
async def test_who_may_sign_in_and_who_gets_an_account(make_authenticator, active_directory, groups, before,
                                                       provision, blocked, allowed, account_after, says):
    name = new_name()
    if before == "in heps-users":
        hand_made_account(active_directory, name, ["heps-users"])
    elif before == "another person's":
        hand_made_account(active_directory, name, [], subject="somebody-else")
    auth = make_authenticator(provision_accounts=provision, blocked_users={name} if blocked else set())
    if allowed:
        model = await sign_in(auth, claims(name, groups=groups))
        assert model["auth_state"]["hepsdesk"]["posix"]["uid"] >= 20000
    else:
        with pytest.raises(web.HTTPError) as refused:
            await sign_in(auth, claims(name, groups=groups))
        assert refused.value.status_code == 403 and says in message(refused.value)
    entry = ad_user(active_directory, name)
    assert (entry is not None) == account_after
    if entry is not None and not allowed:
        assert entry["uidNumber"] == []  # nothing was added to an account the person may not use


async def test_twenty_concurrent_first_sign_ins_get_twenty_distinct_uid_numbers(
        make_authenticator, active_directory, storage_ldap):
    auth = make_authenticator()
    proposal = f"P-{secrets.token_hex(3)}"  # a new proposal for all: its group is made once
    names = [new_name("c") for _ in range(20)]
    models = await asyncio.gather(*(sign_in(auth, claims(n, proposals=[proposal])) for n in names))
    uids = [m["auth_state"]["hepsdesk"]["posix"]["uid"] for m in models]
    assert len(set(uids)) == 20, uids
    conn = active_directory.connect()
    try:
        for uid in uids:  # nobody else in the domain has it either
            conn.search(active_directory.base_dn, f"(uidNumber={uid})", ldap3.SUBTREE, attributes=["cn"])
            assert len(conn.entries) == 1
        conn.search(active_directory.base_dn, f"(sAMAccountName=proposal-{proposal.lower()})", ldap3.SUBTREE,
                    attributes=["member"])
        assert len(conn.entries) == 1 and len(conn.entries[0].member.values) == 20
    finally:
        conn.unbind()
    people = storage_entries(storage_ldap, storage_ldap.people_dn, "(uid=c*)")
    assert sorted(e["uidNumber"][0] for dn, e in people.items() if dn.split(",")[0][4:] in names) == sorted(uids)


async def test_a_group_change_is_a_role_change_and_a_data_change_at_the_next_sign_in(
        make_authenticator, active_directory, storage_ldap):
    auth = make_authenticator()
    name, old, new = new_name(), f"P-{secrets.token_hex(3)}", f"P-{secrets.token_hex(3)}"
    first = await sign_in(auth, claims(name, proposals=[old]))
    assert [r["name"] for r in first["roles"]] == ["user"]
    assert auth.manage_roles and await auth.load_managed_roles() == [
        {k: B7_ROLE[k] for k in ("name", "description", "scopes")}]

    second = await sign_in(auth, claims(name, groups=["heps-users", "heps-b7-staff"], proposals=[new]))
    assert [r["name"] for r in second["roles"]] == ["user", "b7-instrument-scientist"]
    assert [g["name"] for g in second["auth_state"]["hepsdesk"]["posix"]["groups"]] == [f"proposal-{new.lower()}"]
    memberships = ad_user(active_directory, name)["memberOf"]
    assert any(f"proposal-{new.lower()}" in dn for dn in memberships)
    assert not any(f"proposal-{old.lower()}" in dn for dn in memberships)
    groups = storage_entries(storage_ldap, storage_ldap.groups_dn, f"(memberUid={name})", ["cn"])
    assert [g["cn"] for g in groups.values()] == [[f"proposal-{new.lower()}"]]

    third = await sign_in(auth, claims(name, groups=["heps-users", "hepsdesk-admins"], proposals=[new]))
    assert [r["name"] for r in third["roles"]] == ["user", "admin"]


async def test_an_unreachable_ad_is_a_clear_sign_in_error_and_nothing_is_made(
        make_authenticator, active_directory, storage_ldap):
    name = new_name()
    for config in ({"ad_urls": ["ldaps://127.0.0.9:636"]},  # nothing there
                   {"ad_bind_password": "wrong-password"},
                   {"ad_ca_file": "/etc/ssl/certs/ca-certificates.crt"}):  # not the CA of its certificate
        auth = make_authenticator(directory_timeout=1.0, **config)
        with pytest.raises(web.HTTPError) as refused:
            await sign_in(auth, claims(name))
        assert refused.value.status_code == 503, message(refused.value)
        assert "cannot be checked now" in message(refused.value) and "Nothing was changed" in message(refused.value)
    assert ad_user(active_directory, name) is None
    assert not storage_entries(storage_ldap, storage_ldap.people_dn, f"(uid={name})")
    # With a second domain controller configured, the one that answers is used.
    auth = make_authenticator(ad_urls=["ldaps://127.0.0.9:636", active_directory.url], directory_timeout=1.0)
    assert (await sign_in(auth, claims(name)))["auth_state"]["hepsdesk"]["directory"]["created"] is True


async def test_a_domain_controller_that_hangs_is_given_up_after_the_timeout(make_authenticator, active_directory):
    """The real DC, frozen (SIGSTOP): it accepts the connection and never answers."""
    name = new_name()
    auth = make_authenticator(directory_timeout=1.0)
    record = active_directory.processes.running("samba")
    os.kill(record.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(web.HTTPError) as refused:
            await sign_in(auth, claims(name))
        took = time.monotonic() - started
    finally:
        os.kill(record.pid, signal.SIGCONT)
    assert refused.value.status_code == 503 and "cannot be checked now" in message(refused.value)
    assert took < 10, took  # the timeout, not forever
    assert ad_user(active_directory, name) is None


async def test_a_failure_half_way_rolls_the_new_account_back(make_authenticator, active_directory, storage_ldap):
    name, proposal = new_name(), f"P-{secrets.token_hex(3)}"
    # The storage already has this name with other numbers: the AD account is made, then the
    # storage twin cannot be, and the AD account and its memberships go again.
    conn = storage_ldap.connect()
    conn.add(f"uid={name},{storage_ldap.people_dn}", ["inetOrgPerson", "posixAccount"],
             {"uid": name, "cn": name, "sn": name, "uidNumber": 99999, "gidNumber": 99999, "homeDirectory": "/x"})
    conn.unbind()
    auth = make_authenticator()
    with pytest.raises(web.HTTPError) as refused:
        await sign_in(auth, claims(name, proposals=[proposal]))
    assert refused.value.status_code == 403 and "differs between the directories" in message(refused.value)
    assert ad_user(active_directory, name) is None
    assert not storage_entries(storage_ldap, storage_ldap.groups_dn, f"(memberUid={name})")

    # The storage LDAP is not there at all: nothing is made.
    other = new_name()
    auth = make_authenticator(storage_ldap_urls=["ldaps://127.0.0.1:19993"], directory_timeout=1.0)
    with pytest.raises(web.HTTPError) as refused:
        await sign_in(auth, claims(other))
    assert refused.value.status_code == 503 and "the storage LDAP" in message(refused.value)
    assert ad_user(active_directory, other) is None


HOSTILE = ["*)(uid=*", "cn=x,ou=y", "x\x00y", "a" * 300, "Zhang San 张三", "$(reboot)", "- {a: b}\n!!python/object",
           "\\5c2a", "#x", " leading", "x;rm -rf /"]


@pytest.mark.parametrize("value", HOSTILE)
async def test_hostile_names_and_claims_are_made_harmless_before_any_filter_or_dn(
        make_authenticator, active_directory, storage_ldap, value):
    auth = make_authenticator()
    sub = "sub-" + secrets.token_hex(6)
    model = await sign_in(auth, {**claims("x", proposals=[value, "P-ok"], sub=sub), "preferred_username": value,
                                 "name": value, "email": value})
    name = model["name"]
    assert name != value and len(name) <= 20 and name.replace("-", "").replace("_", "").replace(".", "").isalnum()
    posix = model["auth_state"]["hepsdesk"]["posix"]
    assert [g["name"] for g in posix["groups"]] == ["proposal-p-ok"]  # the hostile proposal named no group
    entry = ad_user(active_directory, name)
    assert entry["altSecurityIdentities"] == [f"OIDC:{sub}"]


async def test_search_values_and_dns_are_escaped(active_directory):
    conn = active_directory.connect()
    conn.raise_exceptions = True  # as the hub's connections
    layout = ADLayout(active_directory.base_dn, active_directory.users_dn, active_directory.groups_dn)
    try:
        assert ad.find_user(conn, layout, "*") is None  # not "any user"
        assert ad.find_group(conn, layout, "*)(cn=*") is None
        # A name that is special in a DN stays a name (AD itself refuses ',' '=' '+' in names).
        group = ad.create_group(conn, layout, "#x", 99990, "escaping test")
        try:
            assert group.dn == f"CN=\\#x,{active_directory.groups_dn}"
            assert ad.find_group(conn, layout, "#x").dn == group.dn
        finally:
            delete_entry(conn, group.dn)
        with pytest.raises(ldap3.core.exceptions.LDAPConstraintViolationResult):
            ad.create_group(conn, layout, "x,OU=Users", 99991, "escaping test")
        conn.search(active_directory.users_dn, "(cn=x)", ldap3.SUBTREE)
        assert not conn.entries  # nothing was made in OU=Users
    finally:
        conn.unbind()


async def test_no_password_or_token_in_any_log_line(make_authenticator, active_directory, storage_ldap, caplog):
    set_library_log_detail_level(EXTENDED)
    try:
        with caplog.at_level(logging.DEBUG):
            await sign_in(make_authenticator(), claims(new_name(), proposals=["P-log"]))
            with pytest.raises(web.HTTPError):
                await sign_in(make_authenticator(ad_bind_password="wrong-secret-password"), claims(new_name()))
    finally:
        set_library_log_detail_level(0)
    text = caplog.text
    assert "created the AD account" in text  # the log was captured
    for secret in (active_directory.admin_password, storage_ldap.admin_password, "wrong-secret-password",
                   "secret-access-token"):
        assert secret not in text
    assert "unicodePwd" not in text.replace("<stripped", "")


async def test_connections_are_kept_for_the_next_sign_ins_and_replaced_after_a_restart(
        make_authenticator, active_directory):
    auth = make_authenticator(directory_threads=1)

    async def connection() -> ldap3.Connection:
        return await auth.accounts.directories.run(auth.accounts.ad_server.connection)

    first = await connection()
    await sign_in(auth, claims(new_name()))
    await sign_in(auth, claims(new_name()))
    assert await connection() is first  # one bind for all of them
    active_directory.stop()
    active_directory.start()
    # The kept connection broke with the restart: the sign-in opens a new one and goes on.
    model = await sign_in(auth, claims(new_name()))
    assert model["auth_state"]["hepsdesk"]["directory"]["created"] is True
    assert await connection() is not first
