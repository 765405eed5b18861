"""HEPSAuthenticator: JupyterHub sign-in through the facility's OpenID Connect SSO.

A GenericOAuthenticator configured for an OIDC provider that sends ``groups`` and
``proposals`` claims: members of the configured groups may use hepsdesk, members of the admin
groups administer it, everyone else is refused with a page that says why and what to do.
Everything the provider said about the user is kept in ``auth_state`` for the spawner.
Only oauthenticator's documented hooks are overridden (``check_allowed``,
``update_auth_model``), never ``authenticate``.
"""

from __future__ import annotations

import json
import urllib.request

from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from traitlets import Dict, List, Unicode, default


class HEPSAuthenticator(GenericOAuthenticator):
    """Facility SSO (OIDC) for hepsdesk; see the traits for what to configure."""

    oidc_issuer = Unicode(
        "",
        config=True,
        help="""The issuer URL of the facility's OIDC provider, e.g. https://sso.ihep.ac.cn/realms/heps.

        When set, ``authorize_url``, ``token_url`` and ``userdata_url`` are read once, at hub
        start, from ``<issuer>/.well-known/openid-configuration`` unless they are configured
        explicitly.
        """,
    )
    access_help = Unicode(
        "Ask the principal investigator of your experiment, or the facility's user office, "
        "to add your account to an approved experiment group, then sign in again.",
        config=True,
        help="What a signed-in user who may not use hepsdesk should do; shown on the refusal page.",
    )
    proposals_claim = Unicode(
        "proposals",
        config=True,
        help="The userinfo claim listing the user's proposals (experiments); kept in auth_state.",
    )
    groups_claim = Unicode(
        "groups",
        config=True,
        help="The userinfo claim listing the user's groups (allowed_groups and admin_groups match these).",
    )
    posix_claims = Dict(
        {"uid": "uidNumber", "gid": "gidNumber", "home": "homeDirectory", "shell": "loginShell"},
        config=True,
        help="""Userinfo claims that carry the user's POSIX identity, for SSOs that release it
        (e.g. Keycloak mapping the LDAP attributes): ``uid``, ``gid``, ``home``, ``shell``.

        When the uid and gid claims are present, ``auth_state["hepsdesk"]["posix"]`` holds them
        with the hub username, and the spawner gives the VM that account and mounts the user's
        data by it. Without them the user has no POSIX identity from the SSO.
        """,
    )
    extra_scopes = List(
        Unicode(),
        ["groups", "proposals", "posix"],
        config=True,
        help="Scopes requested in addition to openid, profile and email (the provider's names for "
        "the scopes that release the groups and proposals claims).",
    )

    @default("login_service")
    def _login_service_default(self):
        return "facility SSO"

    @default("scope")
    def _scope_default(self):
        return ["openid", "profile", "email", *self.extra_scopes]

    @default("username_claim")
    def _username_claim_default(self):
        return "preferred_username"

    @default("manage_groups")
    def _manage_groups_default(self):
        return True

    @default("auth_state_groups_key")
    def _auth_state_groups_key_default(self):
        return f"{self.user_auth_state_key}.{self.groups_claim}"

    @default("enable_auth_state")
    def _enable_auth_state_default(self):
        return True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.oidc_issuer:
            self._discover_endpoints()

    def _discover_endpoints(self) -> None:
        """Fill unset endpoint URLs from the provider's discovery document (hub start only)."""
        url = self.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                discovery = json.load(response)
        except (OSError, ValueError) as e:
            raise ValueError(f"HEPSAuthenticator: cannot read the OIDC discovery document {url}: {e}") from e
        for trait, key in (("authorize_url", "authorization_endpoint"), ("token_url", "token_endpoint"),
                           ("userdata_url", "userinfo_endpoint")):
            if not getattr(self, trait) and discovery.get(key):
                setattr(self, trait, discovery[key])

    async def update_auth_model(self, auth_model):
        """Keep the facility's view of the user (groups, proposals) at a stable place in auth_state."""
        auth_model = await super().update_auth_model(auth_model)
        user = (auth_model.get("auth_state") or {}).get(self.user_auth_state_key) or {}
        auth_model["auth_state"]["hepsdesk"] = {
            "groups": list(user.get(self.groups_claim) or []),
            "proposals": list(user.get(self.proposals_claim) or []),
            "email": user.get("email"),
            "name": user.get("name"),
        }
        posix = {key: user.get(claim) for key, claim in self.posix_claims.items() if user.get(claim) not in (None, "")}
        if "uid" in posix and "gid" in posix:
            # Checked where it is used (hepsdesk_spawner.identity), like every other claim.
            auth_model["auth_state"]["hepsdesk"]["posix"] = {"username": auth_model["name"], **posix}
        return auth_model

    async def check_allowed(self, username, auth_model):
        if await super().check_allowed(username, auth_model):
            return True
        groups = sorted((auth_model or {}).get("groups") or [])
        needed = ", ".join(sorted(self.allowed_groups)) or "(none configured)"
        have = ", ".join(groups) if groups else "no groups"
        raise web.HTTPError(
            403,
            "%s",
            f"You are signed in as {username}, but your account is not in a group allowed to use hepsdesk "
            f"(allowed: {needed}; your account has {have}). {self.access_help}",
            reason="Not allowed to use hepsdesk",
        )
