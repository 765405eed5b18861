"""The development directory servers (hepsdesk_devcloud.directory): a real Samba AD DC and a real
slapd, reached over LDAPS with the development CA, as the identity work will use them."""

from __future__ import annotations

import stat
import uuid

import pytest
from ldap3 import BASE, MODIFY_REPLACE, Connection, Server
from ldap3.core.exceptions import LDAPBindError, LDAPSocketOpenError

from hepsdesk_devcloud.directory import (
    DevActiveDirectory,
    DevCertificateAuthority,
    DevStorageLDAP,
    ssha,
    strong_password,
)
from hepsdesk_devcloud.processes import port_owner

# ldap3 checks the server's name with ssl.match_hostname, deprecated since Python 3.7.
pytestmark = pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning")

SERVERS = ["active_directory", "storage_ldap"]


@pytest.fixture(params=SERVERS)
def server(request):
    return request.getfixturevalue(request.param)


def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"  # fits sAMAccountName's 20 characters


def containers(server) -> list[str]:
    if isinstance(server, DevActiveDirectory):
        return [server.base_dn, server.users_dn, server.groups_dn]
    return [server.base_dn, server.people_dn, server.groups_dn]


def exists(conn: Connection, dn: str) -> bool:
    return conn.search(dn, "(objectClass=*)", BASE, attributes=["1.1"])


def test_ldaps_bind_with_ca_validation(server):
    assert server.url.startswith("ldaps://") and server.is_running() and server.healthy()
    conn = server.connect()
    try:
        assert conn.bound and exists(conn, server.base_dn)
        assert ("IP Address", server.address) in conn.socket.getpeercert()["subjectAltName"]
    finally:
        conn.unbind()
    assert stat.S_IMODE(server.secrets_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((server.tls_dir / "server.key").stat().st_mode) == 0o600


def test_a_client_trusting_another_ca_is_refused(server, tmp_path):
    other = DevCertificateAuthority(tmp_path / "other-ca")
    other.install(server.address, tmp_path / "other-tls")
    with pytest.raises(LDAPSocketOpenError):
        server.connect(ca_file=tmp_path / "other-tls" / "ca.pem")


def test_ad_refuses_a_simple_bind_without_tls(active_directory):
    ad = active_directory
    with pytest.raises(LDAPBindError, match="strongerAuthRequired"):
        Connection(Server(ad.address, port=389, connect_timeout=5), ad.admin_dn, ad.admin_password, auto_bind=True)


def test_the_containers_exist(server):
    conn = server.connect()
    try:
        assert [dn for dn in containers(server) if not exists(conn, dn)] == []
    finally:
        conn.unbind()


def test_an_ad_user_with_rfc2307_attributes(active_directory):
    ad = active_directory
    name = unique_name()
    dn = f"CN={name},{ad.users_dn}"
    password = strong_password()
    conn = ad.connect()
    try:
        assert conn.add(dn, ["top", "person", "organizationalPerson", "user"], {
            "sAMAccountName": name, "userPrincipalName": f"{name}@dev.heps", "uidNumber": 40001,
            "gidNumber": 40001, "unixHomeDirectory": f"/home/{name}", "loginShell": "/bin/bash",
            "userAccountControl": 514}), conn.result  # created disabled, enabled once it has a password
        assert conn.modify(dn, {"unicodePwd": [(MODIFY_REPLACE, [f'"{password}"'.encode("utf-16-le")])]}), conn.result
        assert conn.modify(dn, {"userAccountControl": [(MODIFY_REPLACE, [512])]}), conn.result
        conn.search(ad.users_dn, f"(&(objectClass=user)(sAMAccountName={name}))",
                    attributes=["uidNumber", "gidNumber", "unixHomeDirectory", "loginShell"])
        [entry] = conn.entries
        assert (entry.uidNumber.value, entry.gidNumber.value) == (40001, 40001)
        assert (entry.unixHomeDirectory.value, entry.loginShell.value) == (f"/home/{name}", "/bin/bash")
        ad.connect(f"{name}@dev.heps", password).unbind()
    finally:
        conn.delete(dn)
        assert not exists(conn, dn)
        conn.unbind()


def test_a_posix_account_in_storage_ldap(storage_ldap):
    ldap = storage_ldap
    name = unique_name()
    user_dn, group_dn = f"uid={name},{ldap.people_dn}", f"cn={name},{ldap.groups_dn}"
    password = strong_password()
    conn = ldap.connect()
    try:
        assert conn.add(group_dn, ["top", "posixGroup"], {"cn": name, "gidNumber": 40001, "memberUid": name}), \
            conn.result
        assert conn.add(user_dn, ["top", "inetOrgPerson", "posixAccount", "shadowAccount"], {
            "uid": name, "cn": name, "sn": name, "uidNumber": 40001, "gidNumber": 40001,
            "homeDirectory": f"/home/{name}", "loginShell": "/bin/bash", "userPassword": ssha(password)}), conn.result
        conn.search(ldap.base_dn, f"(&(objectClass=posixAccount)(uid={name}))",
                    attributes=["uidNumber", "gidNumber", "homeDirectory"])
        [entry] = conn.entries
        assert (entry.uidNumber.value, entry.gidNumber.value, entry.homeDirectory.value) == (40001, 40001,
                                                                                                f"/home/{name}")
        conn.search(ldap.groups_dn, f"(&(objectClass=posixGroup)(memberUid={name}))", attributes=["gidNumber"])
        assert [e.gidNumber.value for e in conn.entries] == [40001]
        ldap.connect(user_dn, password).unbind()
    finally:
        conn.delete(user_dn)
        conn.delete(group_dn)
        assert not exists(conn, user_dn) and not exists(conn, group_dn)
        conn.unbind()


def test_a_second_server_on_a_taken_address_is_refused(server, tmp_path):
    if isinstance(server, DevActiveDirectory):
        second = DevActiveDirectory(tmp_path / "second", address=server.address)
    else:
        second = DevStorageLDAP(tmp_path / "second", port=server.port, address=server.address)
    with pytest.raises(RuntimeError, match="already in use"):
        second.start()
    assert not second.is_running() and server.healthy()


# Instances of their own (address 127.0.0.3, port 19992): the session's servers are not disturbed.
RESTARTABLE = {
    "active_directory": lambda state_dir: DevActiveDirectory(state_dir, address="127.0.0.3"),
    "storage_ldap": lambda state_dir: DevStorageLDAP(state_dir, port=19992),
}


@pytest.mark.parametrize("kind", SERVERS)
def test_data_survives_a_restart(kind, tmp_path):
    server = RESTARTABLE[kind](tmp_path / kind)
    kept = f"OU=kept,{server.base_dn}"
    try:
        server.start()
        conn = server.connect()
        assert conn.add(kept, ["top", "organizationalUnit"], {}), conn.result
        conn.unbind()
        server.start()  # already running: nothing happens
        server.stop()
        assert not server.is_running() and port_owner(server.port, server.address) is None
        server.start()
        conn = server.connect()
        try:
            assert all(exists(conn, dn) for dn in [kept, *containers(server)])
        finally:
            conn.unbind()
    finally:
        server.stop()
