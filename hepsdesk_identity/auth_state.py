"""``auth_state["hepsdesk"]``: what the authenticator knows of a person, for the spawner.

The entry is JSON (JupyterHub encrypts and stores it); its shape is ``HepsdeskState``::

    {"groups": ["heps-users"], "proposals": ["P-2026-0042"], "email": ..., "name": ...,
     "posix": {"username": "alice", "uid": 21001, "gid": 21001, "home": "/home/alice",
               "group": "hepsdesk-users", "shell": "/bin/bash",
               "groups": [{"name": "proposal-p-2026-0042", "gid": 30001}]},
     "directory": {"dn": "CN=alice,...", "created": false},
     "home": "/home/alice",
     "data_paths": {"home": "/home/alice", "proposals": {"P-2026-0042": "/data/P-2026-0042"}}}

Only ``groups`` and ``proposals`` are always there; ``posix`` once the person has a computing
account (from the directory, or from the SSO's claims). The VM gets an account with exactly
these numbers, so files on the central storage keep their owner whichever VM wrote them.

The reading side checks everything: the identity ends up in a root shell script in the VM,
so every value must match a strict pattern (and is quoted anyway); no identity can be root
or a system account, and a home is never a system directory.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import TypedDict

from .names import NAME_RE, PROPOSAL_RE

AUTH_STATE_KEY = "hepsdesk"
PATH_RE = re.compile(r"^(/[A-Za-z0-9_.@+-]+)+/?$")
MAX_ID = 2**31 - 2
# A home cannot be (or be under) one of the system's own directories: it is mounted over.
SYSTEM_DIRS = ("bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "proc", "root", "run", "sbin", "sys", "usr")


class PosixGroup(TypedDict):
    name: str
    gid: int


class PosixRecord(TypedDict, total=False):
    """The computing account; ``username``, ``uid`` and ``gid`` are required."""
    username: str
    uid: int
    gid: int
    home: str  # default /home/<username>
    group: str  # the primary group's name; default the username
    shell: str  # default /bin/bash
    groups: list[PosixGroup]  # supplementary groups (e.g. one per proposal)


class DirectoryEntry(TypedDict):
    dn: str  # the account's entry in Active Directory
    created: bool  # made at this sign-in


class DataPaths(TypedDict):
    home: str
    proposals: dict[str, str]  # proposal id -> its data directory


class HepsdeskState(TypedDict, total=False):
    groups: list[str]  # JupyterHub groups: the SSO's and the directory's
    proposals: list[str]  # proposal ids (PROPOSAL_RE)
    email: str | None
    name: str | None
    posix: PosixRecord
    directory: DirectoryEntry
    home: str
    data_paths: DataPaths


class IdentityError(ValueError):
    """The identity in auth_state cannot be used safely (the message says which value)."""


def hepsdesk_state(auth_state: dict | None) -> HepsdeskState:
    """The ``auth_state["hepsdesk"]`` entry ({} when there is none)."""
    state = (auth_state or {}).get(AUTH_STATE_KEY) or {}
    if not isinstance(state, dict):
        raise IdentityError(f"auth_state[{AUTH_STATE_KEY!r}] is not a mapping")
    return state


@dataclass(frozen=True)
class PosixIdentity:
    """A checked ``PosixRecord``."""
    username: str
    uid: int
    gid: int
    home: str
    group: str
    shell: str = "/bin/bash"
    groups: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_auth_state(cls, auth_state: dict | None, min_id: int = 1000) -> PosixIdentity | None:
        """The identity in ``auth_state`` (None when it has none); IdentityError when it is unsafe."""
        posix = hepsdesk_state(auth_state).get("posix")
        if not posix:
            return None
        if not isinstance(posix, dict):
            raise IdentityError("the POSIX identity is not a mapping")
        username = _name(posix.get("username"), "username")
        groups = []
        for entry in posix.get("groups") or []:
            if not isinstance(entry, dict):
                raise IdentityError("each supplementary group must be {name, gid}")
            groups.append((_name(entry.get("name"), "group name"), _id(entry.get("gid"), "group gid", min_id)))
        return cls(username=username, uid=_id(posix.get("uid"), "uid", min_id),
                   gid=_id(posix.get("gid"), "gid", min_id),
                   home=_home(posix.get("home") or f"/home/{username}"),
                   group=_name(posix.get("group") or username, "group"),
                   shell=_path(posix.get("shell") or "/bin/bash", "shell"), groups=tuple(groups))

    def record(self) -> PosixRecord:
        """As ``auth_state["hepsdesk"]["posix"]`` holds it."""
        return {"username": self.username, "uid": self.uid, "gid": self.gid, "home": self.home,
                "group": self.group, "shell": self.shell,
                "groups": [{"name": name, "gid": gid} for name, gid in self.groups]}


def proposals_of(auth_state: dict | None) -> list[str]:
    """The user's proposals (experiment ids) from ``auth_state``, each checked."""
    proposals = hepsdesk_state(auth_state).get("proposals") or []
    if not isinstance(proposals, list):
        raise IdentityError("the proposals are not a list")
    for proposal in proposals:
        if not isinstance(proposal, str) or not PROPOSAL_RE.match(proposal):
            raise IdentityError(f"the proposal id {_shown(proposal)} is not letters, digits, '.', '_' or '-'")
    return list(dict.fromkeys(proposals))


def _name(value, what: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise IdentityError(f"the {what} {_shown(value)} is not a valid account name "
                            "(lower-case letters, digits, '_', '.', '-'; at most 32)")
    return value


def _id(value, what: str, min_id: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not re.fullmatch(r"[0-9]{1,20}", str(value)):
        raise IdentityError(f"the {what} {_shown(value)} is not a number")
    number = int(value)
    if not min_id <= number <= MAX_ID:
        raise IdentityError(f"the {what} {number} is outside {min_id}..{MAX_ID} (no root or system accounts)")
    return number


def _path(value, what: str) -> str:
    if not isinstance(value, str) or not PATH_RE.match(value) or posixpath.normpath(value) != value.rstrip("/") \
            or ".." in value.split("/"):
        raise IdentityError(f"the {what} {_shown(value)} is not a plain absolute path")
    return value.rstrip("/")


def _home(value) -> str:
    home = _path(value, "home")
    parts = home.strip("/").split("/")
    if len(parts) < 2 or parts[0] in SYSTEM_DIRS:
        raise IdentityError(f"the home {_shown(value)} is not a user's directory (e.g. /home/<name>)")
    return home


def _shown(value) -> str:
    """A value for an error message: printable and short, whatever it was."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
