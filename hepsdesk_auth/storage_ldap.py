"""The central storage's LDAP (RFC2307 ``posixAccount`` and ``posixGroup``): the storage maps
an AD account to the POSIX account of the same name here, and decides by its groups which
experiment's data it may read and write.

Every function takes an open ldap3 connection (``ldapclient``) and runs in a directory thread;
filter values are escaped with ``escape_filter_chars``, DN values with ``escape_rdn``.
"""

from __future__ import annotations

from dataclasses import dataclass

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn


@dataclass(frozen=True)
class StorageLayout:
    people_dn: str  # ou=people,dc=...
    groups_dn: str  # ou=groups,dc=...


@dataclass(frozen=True)
class PosixAccount:
    dn: str
    name: str
    uid: int
    gid: int
    groups: tuple[str, ...]  # the posixGroups that list it (memberUid)


def find_account(conn: ldap3.Connection, layout: StorageLayout, name: str) -> PosixAccount | None:
    conn.search(layout.people_dn, f"(&(objectClass=posixAccount)(uid={escape_filter_chars(name)}))",
                ldap3.SUBTREE, attributes=["uidNumber", "gidNumber"], size_limit=2)
    if not conn.entries:
        return None
    entry = conn.entries[0]
    conn.search(layout.groups_dn, f"(&(objectClass=posixGroup)(memberUid={escape_filter_chars(name)}))",
                ldap3.SUBTREE, attributes=["cn"])
    groups = tuple(sorted(str(g.entry_attributes_as_dict["cn"][0]) for g in conn.entries))
    values = entry.entry_attributes_as_dict
    return PosixAccount(entry.entry_dn, name, int(values["uidNumber"][0]), int(values["gidNumber"][0]), groups)


def create_account(conn: ldap3.Connection, layout: StorageLayout, *, name: str, uid: int, gid: int, home: str,
                   shell: str, display_name: str, ad_dn: str) -> str | None:
    """A new POSIX account; its DN, or None when one of that name appeared meanwhile."""
    dn = f"uid={escape_rdn(name)},{layout.people_dn}"
    try:
        conn.add(dn, ["inetOrgPerson", "posixAccount"],
                 {"uid": name, "cn": display_name or name, "sn": name, "uidNumber": uid, "gidNumber": gid,
                  "homeDirectory": home, "loginShell": shell, "description": f"Active Directory account {ad_dn}"})
    except ldap_errors.LDAPEntryAlreadyExistsResult:
        return None
    return dn


def find_group_gid(conn: ldap3.Connection, layout: StorageLayout, name: str) -> int | None:
    conn.search(layout.groups_dn, f"(&(objectClass=posixGroup)(cn={escape_filter_chars(name)}))", ldap3.SUBTREE,
                attributes=["gidNumber"], size_limit=2)
    return int(conn.entries[0].entry_attributes_as_dict["gidNumber"][0]) if conn.entries else None


def create_group(conn: ldap3.Connection, layout: StorageLayout, name: str, gid: int, description: str) -> bool:
    """Whether the group was created (False: it existed already)."""
    try:
        conn.add(f"cn={escape_rdn(name)},{layout.groups_dn}", ["posixGroup"],
                 {"cn": name, "gidNumber": gid, "description": description})
    except ldap_errors.LDAPEntryAlreadyExistsResult:
        return False
    return True


def add_member(conn: ldap3.Connection, layout: StorageLayout, group: str, name: str) -> bool:
    """Whether ``name`` was added to ``group`` (False: it was a member already)."""
    try:
        conn.modify(f"cn={escape_rdn(group)},{layout.groups_dn}", {"memberUid": [(ldap3.MODIFY_ADD, [name])]})
    except ldap_errors.LDAPAttributeOrValueExistsResult:
        return False
    return True


def remove_member(conn: ldap3.Connection, layout: StorageLayout, group: str, name: str) -> bool:
    try:
        conn.modify(f"cn={escape_rdn(group)},{layout.groups_dn}", {"memberUid": [(ldap3.MODIFY_DELETE, [name])]})
    except (ldap_errors.LDAPNoSuchAttributeResult, ldap_errors.LDAPNoSuchObjectResult):
        return False
    return True


def number_in_use(conn: ldap3.Connection, layout: StorageLayout, attribute: str, number: int) -> bool:
    """Whether an account or group here already has ``attribute`` = ``number`` (a gid that is
    some account's primary gid counts, even without a group: it would give that account the
    new group's files)."""
    bases = (layout.people_dn,) if attribute == "uidNumber" else (layout.people_dn, layout.groups_dn)
    for base in bases:
        conn.search(base, f"({attribute}={int(number)})", ldap3.SUBTREE, attributes=["cn"], size_limit=1)
        if conn.entries:
            return True
    return False
