"""The hub's pages and relay for shared desktops (registered in ``JupyterHub.extra_handlers``).

    /hub/hepsdesk/shares/<owner>/[<server>/]       the owner's page: invite a user or a group,
                                                   make a single-use link, revoke
    /hub/hepsdesk/desktops/<owner>/[<server>/]     a guest's view of the desktop (?key=: a link)
    /hub/hepsdesk/desktops/<owner>/[<server>/]ws   its signalling, relayed to the owner's desktop
    /hub/hepsdesk/static/...                       the desktop page's scripts

The guest signs in with the hub (its cookie, as on every hub page); the relay checks, at every
connect, that a share lets them in and that the hub's policy allows them (``SharingHub``), then
opens the owner's desktop at ``<server>/desktop/share/ws`` with a token of the owner's, scoped to
that one server, that lives two minutes and is deleted once the socket is open: the token lets
the relay (and only the relay: the guest never sees it) reach the owner's server, and nothing
a person in the VM could take from it is worth more than what they have. The relay passes only
what a guest's page may say (an offer, asking for control); the desktop (desktop_proxy.sharing)
enforces the rest.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

from jupyterhub import orm
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.utils import url_path_join
from tornado import httpclient, template, web, websocket

from desktop_proxy.messages import SHARE_SIGNALLING, Rejected
from desktop_proxy.server import STATIC, page_settings

from .book import KINDS, Share, ShareError
from .hub import SharingHub

TEMPLATES = Path(__file__).parent / "templates"
DESKTOP = r"/hepsdesk/desktops/([^/]+)/(?:([^/]+)/)?"
RELAY_TOKEN_SECONDS = 120


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class SharingHandler(BaseHandler):
    """What the pages share: the hub's sharing state, users, the owner's server."""

    @property
    def sharing(self) -> SharingHub:
        return SharingHub.of(self)

    def owner_and_spawner(self, owner_name: str, server: str | None, running: bool = True):
        owner = self.find_user(owner_name)
        if owner is None:
            raise Refused(404, f"There is no user {owner_name} on this hub.")
        if server and server not in owner.orm_spawners:
            raise Refused(404, f"{owner_name} has no server named {server!r}.")
        spawner = owner.spawners[server or ""] if (server or "") in owner.orm_spawners else None
        if running and (spawner is None or not spawner.ready):
            raise Refused(409, f"{owner_name}'s desktop is not running now. Try again when {owner_name} "
                               "has started it; the invitation stays good until it expires.")
        return owner, spawner

    def desktop_url(self, owner: str, server: str) -> str:
        return url_path_join(self.hub.base_url, "hepsdesk/desktops", quote(owner, safe=""),
                             quote(server, safe="") if server else "") .rstrip("/") + "/"

    def render_page(self, name: str, status: int = 200, **ns):
        env = self.settings.get("hepsdesk_share_jinja")
        if env is None:
            import jinja2
            hub_env = self.settings["jinja2_env"]
            env = self.settings["hepsdesk_share_jinja"] = hub_env.overlay(
                loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(TEMPLATES)), hub_env.loader]))
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        return env.get_template(name).render_async(**self.template_namespace, **ns)


class SharesPage(SharingHandler):
    """The owner's page: who the desktop is shared with; invite, link, revoke."""

    def _owner(self, owner_name: str, server: str | None):
        user = self.current_user
        if user.name != owner_name and not user.admin:
            raise web.HTTPError(403, "Only the owner shares their desktop.")
        try:
            return self.owner_and_spawner(owner_name, server, running=False)[0]
        except Refused as e:
            raise web.HTTPError(e.status, str(e)) from None

    @web.authenticated
    async def get(self, owner_name: str, server: str | None = None):
        owner = self._owner(owner_name, server)
        self.finish(await self._page(owner, server or ""))

    @web.authenticated
    async def post(self, owner_name: str, server: str | None = None):
        owner = self._owner(owner_name, server)
        server = server or ""
        action = self.get_body_argument("action", "")
        message, link, status = "", "", 200
        try:
            if action == "invite":
                message, link = self._invite(owner, server)
            elif action == "revoke":
                share = self.sharing.book.revoke(self.get_body_argument("id", ""))
                closed = self.sharing.disconnect(f"{owner.name} stopped sharing their desktop with you.",
                                                 share_ids={share.id})
                self.sharing.audit("revoke", owner.name, server, share=share.id, kind=share.kind,
                                   target=share.target, by=self.current_user.name, disconnected=closed)
                message = f"Revoked: {self._who(share)}" + (f" ({closed} disconnected)" if closed else "") + "."
            else:
                raise ShareError("unknown action")
        except ShareError as e:
            message, status = str(e), 400
        self.finish(await self._page(owner, server, message=message, link=link, status=status))

    def _invite(self, owner, server: str) -> tuple[str, str]:
        sharing = self.sharing
        kind = self.get_body_argument("kind", "user")
        name = self.get_body_argument("name", "").strip()
        if kind not in KINDS:
            raise ShareError("Choose a user, a group or a link.")
        try:
            hours = float(self.get_body_argument("hours", "") or sharing.settings.share_ttl / 3600)
        except ValueError:
            raise ShareError("The hours must be a number.") from None
        if not 0 < hours <= 7 * 24:
            raise ShareError("A share lasts from a few minutes to a week (at most 168 hours).")
        ttl = hours * 3600
        if kind == "user":
            viewer = orm.User.find(self.db, name)
            if viewer is None:
                raise ShareError(f"There is no user {name!r} on this hub (they must have signed in once).")
            refusal = sharing.refusal(self.db, owner.orm_user, viewer)
            if refusal:
                raise ShareError(refusal)
        elif kind == "group":
            if orm.Group.find(self.db, name) is None:
                raise ShareError(f"There is no group {name!r} on this hub.")
        else:
            ttl = min(ttl, sharing.settings.link_ttl)
        share, key = sharing.book.add(owner.name, server, kind, name, ttl)
        sharing.audit("share", owner.name, server, share=share.id, kind=kind, target=share.target,
                      by=self.current_user.name, expires=round(share.expires))
        if kind == "link":
            link = f"{self.request.protocol}://{self.request.host}{self.desktop_url(owner.name, server)}?key={key}"
            return "Here is the link: it works once, for the first person who opens it.", link
        return f"Shared with {self._who(share)}.", ""

    @staticmethod
    def _who(share: Share) -> str:
        if share.kind == "link":
            return f"the link used by {share.target}" if share.target else "an unused link"
        return f"{'group ' if share.kind == 'group' else ''}{share.target}"

    async def _page(self, owner, server: str, message: str = "", link: str = "", status: int = 200):
        now = time.time()
        connected = {}
        for relay in self.sharing.relays:
            if (relay.owner_name, relay.server_name) == (owner.name, server) and relay.share is not None:
                connected.setdefault(relay.share.id, []).append(relay.viewer_name)
        shares = [{**s.as_dict(), "who": self._who(s), "minutes_left": max(0, round((s.expires - now) / 60)),
                   "connected": connected.get(s.id, [])} for s in self.sharing.book.desktop(owner.name, server)]
        return await self.render_page(
            "hepsdesk-shares.html", status, owner=owner.name, server=server, shares=shares, message=message,
            error=status >= 400,
            link=link, desktop_url=url_path_join(self.base_url, "user", quote(owner.name, safe=""),
                                                 quote(server, safe=""), "desktop/"),
            within_groups=self.sharing.settings.within_groups, share_hours=self.sharing.settings.share_ttl / 3600,
            link_hours=self.sharing.settings.link_ttl / 3600)


def decide(handler: SharingHandler, owner, server: str) -> tuple[Share | None, str]:
    """The share that lets the current user see this desktop and their role ("viewer", or
    "support" without one); Refused says why not."""
    viewer = handler.current_user
    sharing = handler.sharing
    if viewer.name == owner.name:
        raise Refused(409, "This is your own desktop: open it from JupyterLab.")
    share = sharing.book.grant(owner.name, server, viewer.name, {g.name for g in viewer.groups})
    if share is not None:
        refusal = sharing.refusal(handler.db, owner.orm_user, viewer.orm_user, handler.parsed_scopes)
        if refusal:
            raise Refused(403, refusal)
        return share, "viewer"
    if sharing.may_support(handler.db, owner.orm_user, handler.parsed_scopes):
        return None, "support"
    raise Refused(403, f"{owner.name} has not shared their desktop with you. Ask them to invite you.")


class DesktopPage(SharingHandler):
    """A guest's view of a shared desktop; ``?key=`` uses a share link first."""

    @web.authenticated
    async def get(self, owner_name: str, server: str | None = None):
        server = server or ""
        try:
            owner, _ = self.owner_and_spawner(owner_name, server, running=False)
            key = self.get_query_argument("key", "")
            if key:
                try:
                    share = self.sharing.book.use_link(owner.name, server, key, self.current_user.name)
                except ShareError as e:
                    raise Refused(403, str(e)) from None
                self.sharing.audit("link-used", owner.name, server, share=share.id, viewer=self.current_user.name)
                return self.redirect(self.desktop_url(owner.name, server))  # the key leaves the address bar
            decide(self, owner, server)
            self.owner_and_spawner(owner_name, server)  # running now?
        except Refused as e:
            return self.finish(await self.render_page("hepsdesk-share-refused.html", e.status, message=str(e),
                                                      owner=owner_name))
        settings = page_settings("viewer", owner.name, url_path_join(self.hub.base_url, "hepsdesk/static/"))
        self.set_header("Cache-Control", "no-store")
        self.finish(template.Loader(str(STATIC)).load("index.html").generate(**settings))


class RelayHandler(websocket.WebSocketHandler, SharingHandler):
    """One guest's signalling, between their page and the owner's desktop (see the module's doc)."""

    upstream: websocket.WebSocketClientConnection | None = None
    share: Share | None = None
    owner_name = server_name = viewer_name = ""
    participant = None  # the guest's id on the desktop
    has_control = False

    async def get(self, owner_name: str, server: str | None = None):
        if self.current_user is None:
            raise web.HTTPError(403, "Sign in to the hub first.")
        self.owner_name, self.server_name, self.viewer_name = owner_name, server or "", self.current_user.name
        await super().get(owner_name, server)

    async def open(self, owner_name: str, server: str | None = None):
        sharing = self.sharing
        try:
            owner, spawner = self.owner_and_spawner(owner_name, self.server_name)
            self.share, role = decide(self, owner, self.server_name)
        except Refused as e:
            return self.end(str(e))
        sharing.relays.add(self)
        url = url_path_join(spawner.server.url, "desktop/share/ws").replace("http", "ws", 1)
        scope = f"access:servers!server={owner.name}/{self.server_name}"
        token = owner.new_api_token(scopes=[scope], note="hepsdesk desktop-sharing relay",
                                    expires_in=RELAY_TOKEN_SECONDS)
        try:
            self.upstream = await websocket.websocket_connect(
                httpclient.HTTPRequest(url, headers={"Authorization": f"token {token}"}, connect_timeout=10,
                                       request_timeout=10),
                on_message_callback=self._from_desktop, max_message_size=SHARE_SIGNALLING.max_bytes * 2)
        except Exception as e:
            self.log.warning("sharing: cannot reach %s's desktop for %s: %s", owner.name, self.viewer_name, e)
            return self.end(f"{owner.name}'s desktop does not answer (is it still starting?). Try again in a moment.",
                            code=1011)
        finally:
            orm_token = orm.APIToken.find(self.db, token)
            if orm_token is not None:  # it has served: the socket is open (or will never be)
                self.db.delete(orm_token)
                self.db.commit()
        if self.ws_connection is None:  # the guest left meanwhile
            self.upstream.close()
            return
        await self.upstream.write_message(json.dumps({"type": "viewer", "name": self.viewer_name, "role": role,
                                                      "share": self.share.id if self.share else ""}))
        sharing.audit("join", owner.name, self.server_name, viewer=self.viewer_name, role=role,
                      share=self.share.id if self.share else None)

    def _from_desktop(self, message) -> None:
        if message is None:  # the desktop closed
            upstream = self.upstream
            code, reason = (upstream.close_code, upstream.close_reason) if upstream else (None, None)
            if code == 4403:
                self.end(reason or "The desktop ended this connection.")
            else:
                self.end("", code=1011)  # the page reconnects (e.g. the desktop restarted)
            return
        try:
            data = json.loads(message)
        except ValueError:
            return
        if isinstance(data, dict) and data.get("type") == "participants":
            self._watch_control(data)
        try:
            self.write_message(message)
        except websocket.WebSocketClosedError:
            pass

    def _watch_control(self, data: dict) -> None:
        """Record in the audit log when this guest gets or loses control."""
        self.participant = data.get("you")
        now = self.participant is not None and data.get("control") == self.participant
        if now != self.has_control:
            self.has_control = now
            self.sharing.audit("control-given" if now else "control-taken", self.owner_name, self.server_name,
                               viewer=self.viewer_name)

    async def on_message(self, message):
        if self.upstream is None:
            return
        try:
            SHARE_SIGNALLING.parse(message)  # a guest's page says nothing else
        except Rejected as e:
            try:
                self.write_message(json.dumps({"type": "error", "message": f"message refused: {e.reason}"}))
            except websocket.WebSocketClosedError:
                pass
            return
        try:
            await self.upstream.write_message(message)
        except websocket.WebSocketClosedError:
            pass

    def end(self, reason: str, code: int = 4403) -> None:
        """Close the guest's page (4403 with ``reason``: for good, it shows why) and the desktop's side."""
        self.sharing.relays.discard(self)
        if self.upstream is not None:
            self.upstream.close()
        if self.ws_connection is not None:
            if reason:
                try:
                    self.write_message(json.dumps({"type": "ended", "message": reason}))
                except websocket.WebSocketClosedError:
                    pass
            self.close(code, reason.encode()[:120].decode(errors="ignore") if reason else None)

    def on_close(self):
        if self in self.sharing.relays:
            self.sharing.relays.discard(self)
            self.sharing.audit("leave", self.owner_name, self.server_name, viewer=self.viewer_name)
        if self.upstream is not None:
            self.upstream.close()


handlers = [
    (r"/hepsdesk/shares/([^/]+)/(?:([^/]+)/)?", SharesPage),
    (DESKTOP + "ws", RelayHandler),
    (DESKTOP, DesktopPage),
    (r"/hepsdesk/static/(.*)", web.StaticFileHandler, {"path": str(STATIC)}),
]
