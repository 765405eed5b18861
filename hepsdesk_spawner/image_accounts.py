"""The accounts an image holds of its own, which no user's identity may take.

A cloud image has accounts before any user comes: root and the system accounts, and often a
default user (Debian's cloud images make ``debian``, uid 1000, with password-less sudo). A
person whose uid or gid were one of those would be that account in the VM, and a VM that mounts
the storage with AUTH_SYS serves files by number: root-adjacent access to other people's data.
So each image declares its accounts in two Glance properties, and the spawner refuses an
identity that collides with them before it creates anything (``ImageAccounts.conflict``); the
VM refuses it again at boot (``cloudinit``), in case an image declares too little:

* ``hepsdesk_account_ids``: the uids and gids the image's accounts and groups use, as ranges
  (``0-999,1000,65534``);
* ``hepsdesk_account_names``: their names (``root,daemon,bin,...,debian``).

A Glance property holds 255 characters: a longer list goes on in ``hepsdesk_account_names_2``,
``_3``, ... (``declaration()`` writes them).

``OpenStackSpawner.min_posix_id`` (10000) keeps identities above every image's system range as
well; the facility's accounts start higher still (``HEPSAuthenticator.first_uid``, 20000).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from hepsdesk_identity import PosixIdentity

ACCOUNT_IDS = "hepsdesk_account_ids"
ACCOUNT_NAMES = "hepsdesk_account_names"
RANGE_RE = re.compile(r"(\d+)(?:-(\d+))?")


class ImageAccountsError(ValueError):
    """An image's declaration cannot be read (the image's maker must fix it)."""


def format_ids(ids: Iterable[int]) -> str:
    """``[0, 1, 2, 5, 1000]`` -> ``"0-2,5,1000"`` (a Glance property holds 255 characters)."""
    ranges: list[list[int]] = []
    for number in sorted(set(ids)):
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def declaration(ids: Iterable[int], names: Iterable[str]) -> dict[str, str]:
    """The Glance properties that declare an image's accounts (see the module's text)."""
    properties: dict[str, str] = {}
    for key, items in ((ACCOUNT_IDS, format_ids(ids).split(",")), (ACCOUNT_NAMES, sorted(set(names)))):
        chunks = [""]
        for item in items:
            if chunks[-1] and len(chunks[-1]) + 1 + len(item) > 255:
                chunks.append("")
            chunks[-1] += ("," if chunks[-1] else "") + item
        properties.update({key if n == 0 else f"{key}_{n + 1}": chunk for n, chunk in enumerate(chunks)})
    return properties


def _declared(properties: dict, key: str) -> str | None:
    parts = [str(properties[k]) for k in sorted((k for k in properties if k == key or re.fullmatch(
        re.escape(key) + r"_\d+", k)), key=lambda k: 0 if k == key else int(k.rsplit("_", 1)[1]))]
    return ",".join(parts) if parts else None


@dataclass(frozen=True)
class ImageAccounts:
    ids: tuple[tuple[int, int], ...] = ()
    names: frozenset[str] = frozenset()
    declared: bool = False

    @classmethod
    def of(cls, image) -> ImageAccounts:
        """What an image (an openstacksdk Image) declares; ``declared`` is False without it."""
        properties = dict(getattr(image, "properties", None) or {})
        ids_text, names_text = _declared(properties, ACCOUNT_IDS), _declared(properties, ACCOUNT_NAMES)
        if ids_text is None and names_text is None:
            return cls()
        ids = []
        for part in filter(None, (p.strip() for p in str(ids_text or "").split(","))):
            match = RANGE_RE.fullmatch(part)
            if match is None:
                raise ImageAccountsError(f"{ACCOUNT_IDS} holds {part[:40]!r}, not a number or a range like 0-999")
            low = int(match.group(1))
            ids.append((low, int(match.group(2) or low)))
        names = frozenset(n.strip() for n in str(names_text or "").split(",") if n.strip())
        return cls(tuple(ids), names, True)

    def holds_id(self, number: int) -> bool:
        return any(low <= number <= high for low, high in self.ids)

    def conflict(self, identity: PosixIdentity | None) -> str:
        """Why ``identity`` collides with the image's accounts ("" if it does not)."""
        if identity is None:
            return ""
        for what, number in (("uid", identity.uid), ("gid", identity.gid),
                             *(("group id", gid) for _, gid in identity.groups)):
            if self.holds_id(number):
                return f"your {what} {number} is used by an account of the VM image"
        for what, name in (("account name", identity.username), ("group name", identity.group),
                           *(("group name", group) for group, _ in identity.groups)):
            if name in self.names:
                return f"your {what} {name!r} is an account of the VM image"
        return ""
