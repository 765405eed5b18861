"""Who a desktop is shared with: the owner's shares, kept by the hub.

A share lets one person (``user``), the members of a JupyterHub group (``group``), or whoever
first opens a link (``link``: single use, bound to the person who used it) see one server's
desktop until it expires or the owner revokes it. Only a hash of a link's key is kept. The book
lives in the hub's memory: a hub restart ends every share (the owner shares again), which is
the safe direction to lose them in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

KINDS = ("user", "group", "link")
MAX_SHARES = 50  # per desktop


class ShareError(Exception):
    """A share cannot be made or used; the message says why, for the person who tried."""


@dataclass(eq=False)
class Share:
    owner: str
    server: str
    kind: str
    target: str  # the user or group; for a link, who used it ("" until then)
    expires: float  # time.time()
    id: str = field(default_factory=lambda: secrets.token_hex(6))
    created: float = field(default_factory=time.time)
    key_hash: str = ""  # a link's

    def expired(self, now: float | None = None) -> bool:
        return (now or time.time()) >= self.expires

    def as_dict(self) -> dict:
        return {"id": self.id, "owner": self.owner, "server": self.server, "kind": self.kind,
                "target": self.target, "created": self.created, "expires": self.expires}


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ShareBook:
    def __init__(self):
        self.shares: dict[str, Share] = {}

    def add(self, owner: str, server: str, kind: str, target: str, ttl: float) -> tuple[Share, str]:
        """A new share, and a link's key (shown once; "" for the other kinds)."""
        if kind not in KINDS:
            raise ShareError(f"a share is with a user, a group or by link, not {kind!r}")
        self.purge()
        if len(self.desktop(owner, server)) >= MAX_SHARES:
            raise ShareError(f"this desktop already has {MAX_SHARES} shares; revoke some first")
        key = ""
        share = Share(owner, server, kind, "" if kind == "link" else target, time.time() + ttl)
        if kind == "link":
            key = secrets.token_urlsafe(24)
            share.key_hash = _hash(key)
        else:
            for old in self.desktop(owner, server):  # inviting again renews
                if old.kind == kind and old.target == target:
                    old.expires = max(old.expires, share.expires)
                    return old, ""
        self.shares[share.id] = share
        return share, key

    def use_link(self, owner: str, server: str, key: str, user: str) -> Share:
        """Bind a link to the person who opened it; ShareError when it is expired, used by
        someone else, or for another desktop."""
        digest = _hash(key)
        share = next((s for s in self.shares.values() if s.kind == "link" and hmac.compare_digest(s.key_hash, digest)),
                     None)
        if share is None:
            raise ShareError("This share link is not valid: it was revoked, or it was never made.")
        if (share.owner, share.server) != (owner, server):
            raise ShareError(f"This share link is for {share.owner}'s desktop"
                             f"{f' on server {share.server!r}' if share.server else ''}, not this one.")
        if share.expired():
            raise ShareError("This share link has expired; ask for a new one.")
        if share.target and share.target != user:
            raise ShareError("This share link was already used: each link works for one person. Ask for a new one.")
        share.target = user
        return share

    def revoke(self, share_id: str) -> Share:
        share = self.shares.pop(share_id, None)
        if share is None:
            raise ShareError("there is no such share (it was revoked or has expired)")
        return share

    def desktop(self, owner: str, server: str) -> list[Share]:
        return [s for s in self.shares.values() if (s.owner, s.server) == (owner, server) and not s.expired()]

    def grant(self, owner: str, server: str, user: str, groups: set[str]) -> Share | None:
        """The share that lets ``user`` (a member of ``groups``) see this desktop, if any."""
        for share in self.desktop(owner, server):
            if (share.kind in ("user", "link") and share.target == user) or \
                    (share.kind == "group" and share.target in groups):
                return share
        return None

    def purge(self) -> list[Share]:
        """Forget expired shares; those forgotten."""
        now = time.time()
        gone = [s for s in self.shares.values() if s.expired(now)]
        for share in gone:
            del self.shares[share.id]
        return gone
