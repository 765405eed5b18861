"""Who the user is inside their VM: the computing account from ``auth_state``.

The authenticator (``hepsdesk_auth``) puts the user's POSIX identity at
``auth_state["hepsdesk"]["posix"]``: ``username``, ``uid``, ``gid``, ``home``, and optionally
``group`` (the primary group's name), ``shell`` and ``groups`` (supplementary groups as
``{"name", "gid"}``). The VM gets an account with exactly these numbers, so files on the
central storage keep their owner whichever VM wrote them. Everything here ends up in a root
shell script in the VM, so every value is checked against a strict pattern (and quoted
anyway): a hostile claim cannot become a command, and no identity can be root or a system
account.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

NAME_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
PATH_RE = re.compile(r"^(/[A-Za-z0-9_.@+-]+)+/?$")
PROPOSAL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_ID = 2**31 - 2
# A home cannot be (or be under) one of the system's own directories: it is mounted over.
SYSTEM_DIRS = ("bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "proc", "root", "run", "sbin", "sys", "usr")


class IdentityError(ValueError):
    """The identity in auth_state cannot be used safely (the message says which value)."""


@dataclass(frozen=True)
class PosixIdentity:
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
        posix = ((auth_state or {}).get("hepsdesk") or {}).get("posix")
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


def proposals_of(auth_state: dict | None) -> list[str]:
    """The user's proposals (experiment ids) from ``auth_state``, each checked."""
    proposals = ((auth_state or {}).get("hepsdesk") or {}).get("proposals") or []
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
