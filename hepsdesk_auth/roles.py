"""JupyterHub roles from a person's groups (the SSO's and their AD account's), given again at
every sign-in and refresh, so a group change is a role change at the next one.

Configured as ``HEPSAuthenticator.group_roles``: roles in JupyterHub's ``load_roles`` form with a
``groups`` key naming the directory groups whose members get them, e.g. an instrument
scientist of beamline B7 whom that beamline's users may invite to their desktops (the desktop
only, never their server: ``hepsdesk_share``)::

    {"name": "b7-instrument-scientist", "groups": ["heps-b7-staff"],
     "description": "Instrument scientist of beamline B7",
     "scopes": ["read:users:name!group=heps-b7-users", "custom:hepsdesk:shared-desktops!group=heps-b7-users"]}
"""

from __future__ import annotations

import re

from jupyterhub.roles import get_default_roles

ROLE_NAME = re.compile(r"^[a-z][a-z0-9\-_~.]{1,253}[a-z0-9]$")
KEYS = {"name", "description", "scopes", "groups"}


class RoleConfigError(ValueError):
    """``group_roles`` is wrong (an admin's mistake; the message says where)."""


def check_group_roles(entries: list) -> list[dict]:
    """``entries`` checked; each role as JupyterHub stores it, with its ``groups``."""
    checked, names = [], set()
    for i, entry in enumerate(entries):
        where = f"HEPSAuthenticator.group_roles[{i}]"
        if not isinstance(entry, dict):
            raise RoleConfigError(f"{where} must be a dict with name, scopes and groups")
        unknown = set(entry) - KEYS
        if unknown:
            raise RoleConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                                  f"(known: {', '.join(sorted(KEYS))})")
        name = entry.get("name")
        if not isinstance(name, str) or not ROLE_NAME.match(name) or name in ("user", "admin", "token", "server"):
            raise RoleConfigError(f"{where}: {name!r} is not a role name of its own (lower-case letters, digits, "
                                  "'-', '_', '~', '.'; not one of JupyterHub's default roles)")
        if name in names:
            raise RoleConfigError(f"{where}: the role {name} is defined twice")
        groups, scopes = entry.get("groups"), entry.get("scopes")
        if not isinstance(groups, list) or not groups or not all(isinstance(g, str) and g for g in groups):
            raise RoleConfigError(f"{where}: groups must be a non-empty list of group names")
        if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
            raise RoleConfigError(f"{where}: scopes must be a list of JupyterHub scopes")
        names.add(name)
        checked.append({"name": name, "description": str(entry.get("description", "")), "scopes": list(scopes),
                        "groups": list(groups)})
    return checked


def definitions(group_roles: list[dict]) -> list[dict]:
    """The roles for ``Authenticator.load_managed_roles`` (their definitions, nobody in them)."""
    return [{key: role[key] for key in ("name", "description", "scopes")} for role in group_roles]


def roles_for(group_roles: list[dict], groups: set[str], admin: bool) -> list[dict]:
    """The roles of someone in ``groups``: JupyterHub's default ``user`` role (and ``admin``),
    and every role one of whose groups they are in."""
    defaults = {role["name"]: role for role in get_default_roles()}
    roles = [dict(defaults["user"])]
    if admin:
        roles.append(dict(defaults["admin"]))
    roles += [{key: role[key] for key in ("name", "description", "scopes")}
              for role in group_roles if groups & set(role["groups"])]
    return roles
