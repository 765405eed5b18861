"""Token mode: the facility's user portal sends a signed-in person straight to their desktop.

Only the portal can make such a link. The portal is a JupyterHub service whose role holds the
custom scope ``custom:hepsdesk:portal-login`` (narrowed to the people it may send, e.g.
``custom:hepsdesk:portal-login!group=heps-users``). For a person signed in to the portal, it asks::

    POST /hub/api/hepsdesk/portal-login/<name>        (with its service token)
    -> 201 {"url": "/hub/token-login?token=...", "expires_in": 60}

and sends the browser to that URL (with ``&next=/hub/user-redirect/desktop/`` if it wants
another page; the Desktop is the default, which starts the person's server if it is not
running). The link works once, for at most ``PortalLinks.lifetime`` seconds: it opens nothing
from a browser's history or a proxy's log. Its secret lives only in the hub's memory, hashed,
and never in the hub's log (JupyterHub hides ``token=`` in URLs); the redirect carries no
Referer.

Why not a JupyterHub API token with a known note, as before: any user may make tokens for
themselves with any note (their default ``tokens`` scope), and JupyterHub records no creator,
so a note proves nothing. A user who sent such a link to a colleague signed the colleague's
browser in as themselves (login CSRF). An API token now never signs anyone in, and the page
says why.

The person must have signed in through the SSO once: the hub needs their computing account
(``auth_state``) to start a VM, and refreshes it before each start; for a person the hub does
not know yet the portal gets 404 and sends them through the SSO instead.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import urllib.parse

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.scopes import has_scope
from jupyterhub.utils import url_path_join
from tornado import web

SCOPE = "custom:hepsdesk:portal-login"
# For c.JupyterHub.custom_scopes (jupyterhub_config.py): the portal's role holds the scope.
CUSTOM_SCOPES = {SCOPE: {"description": "Make one-time links that sign a person in to the hub (the user "
                                        "portal's token mode)."}}


class PortalLinks:
    """The one-time sign-in links the portal asked for, in this hub process's memory: each a
    random secret (kept hashed) for one person, good once and for ``lifetime`` seconds."""

    lifetime = 60
    most = 10_000  # links waiting at once (a portal gone wild fills no memory)

    def __init__(self):
        self._waiting: dict[str, tuple[str, float]] = {}  # sha256(secret) -> (user name, expires at)

    def make(self, user_name: str) -> str:
        now = time.monotonic()
        self._waiting = {key: link for key, link in self._waiting.items() if link[1] > now}
        if len(self._waiting) >= self.most:
            raise web.HTTPError(429, "Too many sign-in links are waiting to be used; try again in a minute.")
        secret = secrets.token_urlsafe(32)
        self._waiting[self._key(secret)] = (user_name, now + self.lifetime)
        return secret

    def take(self, secret: str) -> str | None:
        """The person the link is for, once; None if it was used, expired or never made."""
        user_name, expires_at = self._waiting.pop(self._key(secret), (None, 0.0))
        return user_name if user_name is not None and time.monotonic() < expires_at else None

    @staticmethod
    def _key(secret: str) -> str:
        return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


LINKS = PortalLinks()  # the hub is one process


class PortalLoginAPIHandler(APIHandler):
    """``POST /hub/api/hepsdesk/portal-login/<name>``: a one-time sign-in link for ``name``."""

    async def post(self, user_name):
        # Checked here, not with @needs_scope: that checks its scope when this module is
        # imported, before the hub has read its custom scopes.
        if self.current_user is None or not has_scope(f"{SCOPE}!user={user_name}", self.parsed_scopes, db=self.db):
            raise web.HTTPError(403, f"Only the user portal (scope {SCOPE}) makes sign-in links.")
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, "This person has not signed in to the hub yet: send them through the SSO "
                                "once (the hub needs their computing account).")
        secret = LINKS.make(user.name)
        self.log.info("token mode: %s made a sign-in link for %s", self.current_user.name, user.name)
        self.set_status(201)
        self.set_header("Cache-Control", "no-store")
        self.finish({"url": url_path_join(self.hub.base_url, "token-login") + "?"
                     + urllib.parse.urlencode({"token": secret}), "expires_in": LINKS.lifetime})


class TokenLoginHandler(BaseHandler):
    """``/hub/token-login?token=...&next=...``: exchange a portal's one-time link for a session."""

    def refuse(self, why: str) -> None:
        """The error page, without raising: tornado would log the request's URI, token and all,
        with a raised error (the access log hides it)."""
        error = web.HTTPError(403, "%s", f"This sign-in link cannot be used: {why}. Open the desktop from the "
                              "user portal again, or sign in on this page.", reason="Sign-in link not valid")
        self.log.warning("token mode: a sign-in link was refused: %s", why)
        self.send_error(403, exc_info=(web.HTTPError, error, None))

    async def get(self):
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")
        secret = self.get_argument("token", "")
        user_name = LINKS.take(secret) if secret else None
        if user_name is None:
            if secret and orm.APIToken.find(self.db, secret) is not None:
                return self.refuse("it holds an API token, and an API token never signs anyone in (only a link "
                                   "the user portal made does)")
            return self.refuse("it was used already, has expired, or was not made by the user portal")
        user = self.find_user(user_name)
        if user is None:
            return self.refuse("the person it was made for is no longer known to the hub")
        self.set_login_cookie(user)
        self.log.info("token mode: %s signed in with a portal link", user.name)
        # (Not get_next_url: it would carry this request's query, the token, on to the next page.)
        next_url = self._validate_next_url(self.get_argument("next", ""))
        self.redirect(next_url or url_path_join(self.hub.base_url, "user-redirect/desktop/"))
