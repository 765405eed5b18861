"""The hub's side of sharing: its settings (``DesktopSharing``), the policy of who may be invited,
the share book, the open relays, and the audit log.

One ``SharingHub`` per hub process, made at the first request (``SharingHub.of``).
"""

from __future__ import annotations

import json
import logging
import time

from jupyterhub import orm
from jupyterhub.scopes import get_scopes_for, has_scope
from tornado.ioloop import PeriodicCallback
from traitlets import Bool, Integer, Unicode
from traitlets.config import LoggingConfigurable

from .book import ShareBook

# For c.JupyterHub.custom_scopes (jupyterhub_config.py); give them with roles, filtered to the
# users whose desktops they cover (e.g. "custom:hepsdesk:shared-desktops!group=heps-b7-users").
SHARED_DESKTOPS = "custom:hepsdesk:shared-desktops"
DESKTOP_SUPPORT = "custom:hepsdesk:desktop-support"
CUSTOM_SCOPES = {
    SHARED_DESKTOPS: {"description": "May be invited to these users' desktops (see only the desktop, never "
                                     "their server), even without a group in common: e.g. a beamline's "
                                     "instrument scientists."},
    DESKTOP_SUPPORT: {"description": "May ask to join these users' desktops without an invitation; the owner lets "
                                     "them in or refuses."},
}

class DesktopSharing(LoggingConfigurable):
    """Who may see whose desktop (sharing grants the desktop only, never the server)."""

    within_groups = Bool(
        True,
        config=True,
        help="Owners may share only with people in one of their JupyterHub groups (e.g. their proposal's) "
        "and with holders of the custom:hepsdesk:shared-desktops scope on them (instrument scientists). "
        "False: with any user of the hub.",
    )
    link_ttl = Integer(
        3600,
        config=True,
        help="Seconds a share link stays good if nobody uses it; once used, it lasts as long as an invitation.",
    )
    share_ttl = Integer(
        8 * 3600,
        config=True,
        help="Seconds an invitation lasts, unless the owner revokes it first (at most a week).",
    )
    audit_file = Unicode(
        "",
        config=True,
        help="A file the hub appends every share, join, hand-over of control, leave and revoke to, one JSON "
        "object a line; they always go to the hub's log too ('sharing audit: ...').",
    )


class SharingHub:
    SWEEP_SECONDS = 5  # how often expired shares are found and their viewers disconnected

    def __init__(self, settings: dict, log: logging.Logger):
        self.settings = DesktopSharing(config=settings.get("config"), log=log)
        self.log = log
        self.book = ShareBook()
        self.relays: set = set()  # handlers.RelayHandler, each one viewer's connection
        self._sweeper = PeriodicCallback(self.sweep, self.SWEEP_SECONDS * 1000)
        self._sweeper.start()

    @classmethod
    def of(cls, handler) -> SharingHub:
        hub = handler.settings.get("hepsdesk_sharing")
        if hub is None:
            hub = handler.settings["hepsdesk_sharing"] = cls(handler.settings, handler.log)
        return hub

    # -- policy ------------------------------------------------------------------------------

    def refusal(self, db, owner: orm.User, viewer: orm.User, viewer_scopes=None) -> str:
        """Why ``viewer`` may not see ``owner``'s desktop by the hub's policy ("" if they may)."""
        if viewer.name == owner.name:
            return "This is your own desktop."
        if not self.settings.within_groups:
            return ""
        if {g.name for g in owner.groups} & {g.name for g in viewer.groups}:
            return ""
        scopes = viewer_scopes if viewer_scopes is not None else get_scopes_for(viewer)
        if has_scope(f"{SHARED_DESKTOPS}!user={owner.name}", scopes, db=db):
            return ""
        return (f"{viewer.name} is in none of {owner.name}'s groups (such as their proposal's), so "
                f"{owner.name}'s desktop cannot be shared with them here.")

    def may_support(self, db, owner: orm.User, viewer_scopes) -> bool:
        """Whether the viewer may ask to join without an invitation (the owner accepts)."""
        return has_scope(f"{DESKTOP_SUPPORT}!user={owner.name}", viewer_scopes, db=db) or \
            has_scope(f"admin:servers!user={owner.name}", viewer_scopes, db=db)

    # -- relays and audit --------------------------------------------------------------------

    def disconnect(self, reason: str, *, share_ids: set[str] | None = None, owner: str | None = None,
                   server: str | None = None) -> int:
        """Close the relays of these shares (or all of one desktop): their viewers' pictures stop."""
        closed = 0
        for relay in list(self.relays):
            if share_ids is not None and (relay.share is None or relay.share.id not in share_ids):
                continue
            if owner is not None and (relay.owner_name, relay.server_name) != (owner, server):
                continue
            relay.end(reason)
            closed += 1
        return closed

    def sweep(self) -> None:
        expired = self.book.purge()
        if expired:
            for share in expired:
                self.audit("expired", share.owner, share.server, share=share.id, kind=share.kind, target=share.target)
            self.disconnect("The share of this desktop has expired.", share_ids={s.id for s in expired})

    def audit(self, event: str, owner: str, server: str, **fields) -> None:
        record = {"time": round(time.time(), 3), "event": event, "owner": owner, "server": server, **fields}
        line = json.dumps(record, sort_keys=True)
        self.log.info("sharing audit: %s", line)
        if self.settings.audit_file:
            try:
                with open(self.settings.audit_file, "a", encoding="utf-8") as f:
                    f.write(line + "\n")
            except OSError as e:
                self.log.error("cannot write the sharing audit log %s: %s", self.settings.audit_file, e)
