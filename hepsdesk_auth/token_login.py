"""Token mode: the facility's user portal sends a signed-in person straight to their desktop.

The portal is a JupyterHub service whose role has the ``tokens`` scope (for the users it may
send, e.g. ``tokens!group=heps-users``). For a person signed in to the portal, it asks the hub
for a short-lived token made for this::

    POST /hub/api/users/<name>/tokens
    {"note": "hepsdesk-portal-login", "expires_in": 60, "scopes": ["read:users:name!user"]}

and sends the browser to ``/hub/token-login?token=<token>&next=/hub/user-redirect/desktop/``.
This page accepts only such tokens (that note, at most ``TokenLoginHandler.max_age`` seconds
to live), deletes the token at once (a link works once: a link left in a browser's history or
a proxy's log opens nothing), signs the browser in as that person, and goes on to ``next``
(a path on this hub; by default the Desktop, which starts the person's server if it is not
running). The token never appears in the hub's log (JupyterHub hides ``token=`` in URLs), and
the redirect carries no Referer.

The person must have signed in through the SSO once: the hub needs their computing account
(``auth_state``) to start a VM, and refreshes it before each start; a person the hub does not
know yet is sent through the SSO (seamless while their portal session lasts).
"""

from __future__ import annotations

from jupyterhub import orm
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.utils import url_path_join
from tornado import web

NOTE = "hepsdesk-portal-login"


class TokenLoginHandler(BaseHandler):
    """``/hub/token-login?token=...&next=...``: exchange a portal's one-time token for a session."""

    max_age = 300  # seconds: a token that lives longer was not made for a link

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
        token = self.get_argument("token", "")
        orm_token = orm.APIToken.find(self.db, token) if token else None
        if orm_token is None:
            return self.refuse("it was used already, has expired, or is not a sign-in link")
        owner, note, expires_in = orm_token.user, orm_token.note or "", orm_token.expires_in
        if owner is None or not note.startswith(NOTE):
            return self.refuse("it was not made for signing in")
        # The token goes whatever happens next: a link works once.
        self.db.delete(orm_token)
        self.db.commit()
        if expires_in is None or expires_in > self.max_age:
            return self.refuse(f"it lives longer than {self.max_age} s (ask for expires_in of at most that)")
        if expires_in <= 0:
            return self.refuse("it has expired")
        user = self._user_from_orm(owner)
        self.set_login_cookie(user)
        self.log.info("token mode: %s signed in with a portal link (%s)", user.name, note)
        # (Not get_next_url: it would carry this request's query, the token, on to the next page.)
        next_url = self._validate_next_url(self.get_argument("next", ""))
        self.redirect(next_url or url_path_join(self.hub.base_url, "user-redirect/desktop/"))
