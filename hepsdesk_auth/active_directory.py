"""The facility's Active Directory as hepsdesk uses it: computing accounts with RFC2307 (POSIX)
attributes, and the groups that give them their data.

Every function takes an open ldap3 connection (``ldapclient``) and runs in a directory thread.
Every value that goes into a search filter is escaped (``escape_filter_chars``) and every
value that goes into a DN is escaped as an RDN (``escape_rdn``), whatever was checked before.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

# userAccountControl: a normal account, enabled or disabled.
NORMAL_ACCOUNT = 0x200
DISABLED = 0x2
GLOBAL_SECURITY_GROUP = -2147483646
IN_CHAIN = "1.2.840.113556.1.4.1941"  # LDAP_MATCHING_RULE_IN_CHAIN: nested group membership
USER_ATTRIBUTES = ("sAMAccountName", "uidNumber", "gidNumber", "unixHomeDirectory", "loginShell",
                   "userAccountControl", "displayName", "mail")
# What AD answers when a member is added twice, or removed when it was not one.
ALREADY = (ldap_errors.LDAPEntryAlreadyExistsResult, ldap_errors.LDAPAttributeOrValueExistsResult)
NOT_THERE = (ldap_errors.LDAPNoSuchAttributeResult, ldap_errors.LDAPUnwillingToPerformResult)


@dataclass(frozen=True)
class ADGroup:
    dn: str
    name: str
    gid: int | None


@dataclass(frozen=True)
class ADUser:
    dn: str
    name: str
    uid: int | None
    gid: int | None
    home: str | None
    shell: str | None
    subject: str | None  # the SSO identity the account was made for (None: made by hand)
    enabled: bool
    groups: tuple[ADGroup, ...] = ()  # every group it is in, nested ones too


@dataclass(frozen=True)
class ADLayout:
    """Where hepsdesk finds and puts things in the domain."""
    base_dn: str  # searched for users and groups: DC=heps,DC=ihep,DC=ac,DC=cn
    users_dn: str  # new accounts: OU=Users,OU=HEPS,...
    groups_dn: str  # new groups: OU=Groups,OU=HEPS,...
    subject_attribute: str = "altSecurityIdentities"  # links an account to its SSO identity
    upn_suffix: str = ""  # userPrincipalName = name@upn_suffix (e.g. the realm); "" = none


def subject_value(subject: str) -> str:
    """How an SSO identity is written in the subject attribute."""
    return f"OIDC:{subject}"


def find_user(conn: ldap3.Connection, layout: ADLayout, name: str) -> ADUser | None:
    """The account called ``name`` (sAMAccountName), with its groups; None when there is none."""
    conn.search(layout.base_dn,
                f"(&(objectCategory=person)(objectClass=user)(sAMAccountName={escape_filter_chars(name)}))",
                ldap3.SUBTREE, attributes=[*USER_ATTRIBUTES, layout.subject_attribute], size_limit=2)
    if not conn.entries:
        return None
    entry = conn.entries[0]
    values = entry.entry_attributes_as_dict
    subject = next((str(v)[5:] for v in _all(values, layout.subject_attribute) if str(v).startswith("OIDC:")), None)
    control = int(_first(values, "userAccountControl") or NORMAL_ACCOUNT)
    conn.search(layout.base_dn, f"(&(objectClass=group)(member:{IN_CHAIN}:={escape_filter_chars(entry.entry_dn)}))",
                ldap3.SUBTREE, attributes=["sAMAccountName", "gidNumber"])
    groups = tuple(sorted((_group(g) for g in conn.entries), key=lambda g: g.name))
    return ADUser(dn=entry.entry_dn, name=str(_first(values, "sAMAccountName")), uid=_int(_first(values, "uidNumber")),
                  gid=_int(_first(values, "gidNumber")), home=_first(values, "unixHomeDirectory"),
                  shell=_first(values, "loginShell"), subject=subject, enabled=not control & DISABLED, groups=groups)


def find_group(conn: ldap3.Connection, layout: ADLayout, name: str) -> ADGroup | None:
    conn.search(layout.base_dn, f"(&(objectClass=group)(sAMAccountName={escape_filter_chars(name)}))",
                ldap3.SUBTREE, attributes=["sAMAccountName", "gidNumber"], size_limit=2)
    return _group(conn.entries[0]) if conn.entries else None


def create_group(conn: ldap3.Connection, layout: ADLayout, name: str, gid: int, description: str) -> ADGroup | None:
    """A new security group with ``gid``; None when a group of that name appeared meanwhile."""
    dn = f"CN={escape_rdn(name)},{layout.groups_dn}"
    try:
        conn.add(dn, ["top", "group"], {"sAMAccountName": name, "gidNumber": gid, "description": description,
                                        "groupType": GLOBAL_SECURITY_GROUP})
    except ldap_errors.LDAPEntryAlreadyExistsResult:
        return None
    return ADGroup(dn, name, gid)


def create_user(conn: ldap3.Connection, layout: ADLayout, *, name: str, subject: str, uid: int, gid: int,
                home: str, shell: str, display_name: str, mail: str | None) -> str | None:
    """A new account, disabled (``enable`` gives it its password); its DN, or None when an
    account of that name appeared meanwhile."""
    dn = f"CN={escape_rdn(name)},{layout.users_dn}"
    attributes = {"sAMAccountName": name, "uidNumber": uid, "gidNumber": gid, "unixHomeDirectory": home,
                  "loginShell": shell, "displayName": display_name or name,
                  layout.subject_attribute: subject_value(subject),
                  "description": "hepsdesk computing account, created at the first sign-in",
                  "userAccountControl": NORMAL_ACCOUNT | DISABLED}
    if mail:
        attributes["mail"] = mail
    if layout.upn_suffix:
        attributes["userPrincipalName"] = f"{name}@{layout.upn_suffix}"
    try:
        conn.add(dn, ["top", "person", "organizationalPerson", "user"], attributes)
    except ldap_errors.LDAPEntryAlreadyExistsResult:
        return None
    return dn


def enable(conn: ldap3.Connection, dn: str) -> None:
    """Give the account a random password that nobody is told (AD enables no account without
    one; the person signs in through the SSO, never with it), then enable it."""
    conn.modify(dn, {"unicodePwd": [(ldap3.MODIFY_REPLACE, [f'"{unusable_password()}"'.encode("utf-16-le")])]})
    conn.modify(dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [NORMAL_ACCOUNT])]})


def set_posix(conn: ldap3.Connection, user: ADUser, *, uid: int, gid: int, home: str, shell: str) -> None:
    """Give an account made by hand the POSIX attributes it lacks (none that it has changes)."""
    wanted = {"uidNumber": (user.uid, uid), "gidNumber": (user.gid, gid), "unixHomeDirectory": (user.home, home),
              "loginShell": (user.shell, shell)}
    changes = {attr: [(ldap3.MODIFY_REPLACE, [new])] for attr, (old, new) in wanted.items() if old in (None, "")}
    if changes:
        conn.modify(user.dn, changes)


def add_member(conn: ldap3.Connection, group_dn: str, user_dn: str) -> bool:
    """Whether ``user_dn`` was added (False: it was a member already)."""
    try:
        conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [user_dn])]})
    except ALREADY:
        return False
    return True


def remove_member(conn: ldap3.Connection, group_dn: str, user_dn: str) -> bool:
    try:
        conn.modify(group_dn, {"member": [(ldap3.MODIFY_DELETE, [user_dn])]})
    except NOT_THERE:
        return False
    return True


def number_in_use(conn: ldap3.Connection, layout: ADLayout, attribute: str, number: int) -> bool:
    """Whether any user or group already has ``attribute`` (uidNumber, gidNumber) = ``number``."""
    conn.search(layout.base_dn, f"({attribute}={int(number)})", ldap3.SUBTREE, attributes=["cn"], size_limit=1)
    return bool(conn.entries)


def unusable_password() -> str:
    """A password AD's complexity rules accept and nobody will ever know."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(40)) + "aZ7!"


def _group(entry) -> ADGroup:
    values = entry.entry_attributes_as_dict
    return ADGroup(entry.entry_dn, str(_first(values, "sAMAccountName")), _int(_first(values, "gidNumber")))


def _all(values: dict, attribute: str) -> list:
    """The values of ``attribute`` (names are not case-sensitive in LDAP)."""
    wanted = attribute.lower()
    return next((found or [] for name, found in values.items() if name.lower() == wanted), [])


def _first(values: dict, attribute: str):
    found = _all(values, attribute)
    return found[0] if found else None


def _int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
