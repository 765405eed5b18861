"""The computing account's name for a signed-in person: valid in Active Directory, in POSIX and
in JupyterHub, and the same at every sign-in.

AD limits a user's ``sAMAccountName`` to 20 characters and forbids ``"/\\[]:;|=,+*?<>@``; the VM
and the storage want a POSIX name (``[a-z_][a-z0-9_.-]*``). A name the SSO gives that already
is one (``alice``, ``zhang.san``) is used as it is. Any other (``Zhang San``, ``张三``,
``alice@ihep.ac.cn``, a 30-character name, ``root``) is reduced to the allowed characters and
marked with a short hash of the person's SSO subject: ``zhang-san-k3xq``. Two people whose
names reduce to the same text get different marks, and the same person always gets the same
name. Whether an existing account with that name belongs to this person is decided where the
account is looked up (``provisioning``).
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata

from hepsdesk_identity import NAME_RE

MAX_LENGTH = 20  # AD's limit for a user's sAMAccountName
MARK_LENGTH = 4
# Names that belong to the system or to the domain: never a person's computing account.
RESERVED = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
    "www-data", "backup", "list", "irc", "gnats", "nobody", "nogroup", "systemd-network", "sshd",
    "messagebus", "polkitd", "ubuntu", "debian", "admin", "administrator", "guest", "krbtgt",
    "jovyan", "hepsdesk", "wheel", "sudo", "adm", "staff", "users", "domain-users", "domain-admins",
})


class UsernameError(ValueError):
    """The SSO gave no usable name or subject."""


def account_name(name: str, subject: str, max_length: int = MAX_LENGTH) -> str:
    """The account name for the SSO's ``name`` (e.g. ``preferred_username``) of the person
    with the SSO ``subject`` (``sub``: stable, unique)."""
    check_subject(subject)
    text = name if isinstance(name, str) else ""
    if len(text) <= max_length and NAME_RE.match(text) and text not in RESERVED and not text.endswith("."):
        return text
    reduced = _reduce(text)
    mark = base64.b32encode(hashlib.sha256(subject.encode()).digest()).decode().lower()[:MARK_LENGTH]
    stem = reduced[:max_length - MARK_LENGTH - 1].rstrip(".-") or "u"
    return f"{stem}-{mark}"


def _reduce(text: str) -> str:
    """``text`` in the allowed characters: accents dropped, other letters and separators
    become ``-``, starting with a letter or ``_``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    reduced = re.sub(r"[^a-z0-9_.]+", "-", ascii_text)
    reduced = re.sub(r"[-.]{2,}", "-", reduced)
    return reduced.lstrip("0123456789.-").rstrip(".-")


def check_subject(subject: str) -> str:
    """The SSO's subject, if it can be recorded on an account (OIDC allows 255 ASCII characters)."""
    if not isinstance(subject, str) or not subject:
        raise UsernameError("the SSO did not say who the user is (no subject)")
    if len(subject) > 255 or not subject.isprintable() or not subject.isascii():
        raise UsernameError("the SSO's subject is not 1 to 255 printable ASCII characters")
    return subject


def display_text(value, limit: int = 256) -> str:
    """A claim shown to people (a display name): printable characters only, at most ``limit``."""
    text = "".join(c for c in value if c.isprintable()) if isinstance(value, str) else ""
    return text.strip()[:limit]
