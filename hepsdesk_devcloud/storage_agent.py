"""The development storage's account automation: what a facility's storage team runs so that a
new computing account has a home directory and a new proposal has its data directory.

It reads the storage's LDAP (``directory.DevStorageLDAP``) and makes, on the dev cloud's
storage (``DevCloud.storage_directory``), what is missing:

- ``home/<account>`` for each ``posixAccount``, owned by its uid and gid, mode 0700;
- ``proposals/<proposal>`` for each proposal group (the group hepsdesk made, whose description
  names the proposal), owned by root and the group's gid, mode 2770: the proposal's members
  read and write it, nobody else does.

Nothing is ever changed or deleted. ``hepsdesk demo`` runs it every few seconds; tests call it
after a sign-in.
"""

from __future__ import annotations

import re

import ldap3

from hepsdesk_auth.provisioning import PROPOSAL_DESCRIPTION
from hepsdesk_identity import NAME_RE, PROPOSAL_RE

PROPOSAL_IN_DESCRIPTION = re.compile("^" + re.escape(PROPOSAL_DESCRIPTION).replace(r"\{proposal\}", "(.+)") + "$")


def sync_storage(cloud, storage_ldap) -> list[str]:
    """Make the homes and proposal directories the storage LDAP calls for; the shares made."""
    made = []
    conn = storage_ldap.connect()
    try:
        conn.search(storage_ldap.people_dn, "(objectClass=posixAccount)", ldap3.SUBTREE,
                    attributes=["uid", "uidNumber", "gidNumber"])
        for entry in conn.entries:
            name, uid, gid = entry.uid.value, entry.uidNumber.value, entry.gidNumber.value
            if isinstance(name, str) and NAME_RE.match(name) and uid and gid and uid >= 1000:
                made += _make(cloud, f"home/{name}", uid, gid, 0o700)
        conn.search(storage_ldap.groups_dn, "(objectClass=posixGroup)", ldap3.SUBTREE,
                    attributes=["gidNumber", "description"])
        for entry in conn.entries:
            match = PROPOSAL_IN_DESCRIPTION.match(str(entry.description.value or ""))
            gid = entry.gidNumber.value
            if match and PROPOSAL_RE.match(match.group(1)) and gid and gid >= 1000:
                made += _make(cloud, f"proposals/{match.group(1)}", 0, gid, 0o2770)
    finally:
        conn.unbind()
    return made


def _make(cloud, share: str, uid: int, gid: int, mode: int) -> list[str]:
    path = cloud.settings.storage_dir / share
    if path.exists():
        return []
    cloud.storage_directory(share, uid, gid, mode)
    return [share]
