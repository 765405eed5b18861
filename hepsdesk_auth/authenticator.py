"""HEPSAuthenticator: JupyterHub sign-in through the facility's OpenID Connect SSO, bridged to
the Active Directory computing accounts and the storage's LDAP.

A GenericOAuthenticator for an OIDC provider that sends ``groups`` and ``proposals`` claims.
At each sign-in (and each refresh, e.g. before a spawn):

- the hub username is the person's computing account name (``usernames``: AD's rules, the
  same at every sign-in, different for different people);
- with a directory configured (``ad_urls``), the AD account is looked up and, for a member of
  an allowed group who has none, made together with its storage twin (``provisioning``); the
  person's groups are then the SSO's and their AD account's;
- members of the allowed groups may use hepsdesk, of the admin groups administer it, of a
  ``group_roles`` role's groups get that role; everyone else is refused with a page that says
  why and what to do;
- ``auth_state["hepsdesk"]`` holds what the spawner needs: POSIX identity (uid, gid, groups,
  home), proposals, data paths, the AD account's DN.

Only oauthenticator's documented hooks are overridden (``user_info_to_username``,
``update_auth_model``, ``get_user_groups``, ``check_allowed``), never ``authenticate``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import urllib.request
import weakref

from oauthenticator.generic import GenericOAuthenticator
from prometheus_client import Counter
from tornado import web
from traitlets import Bool, Dict, Float, Integer, List, Unicode, default, observe

from hepsdesk_identity import AUTH_STATE_KEY, PROPOSAL_RE, HepsdeskState, hepsdesk_state

from . import roles as role_mapping
from .active_directory import ADLayout
from .ids import IdPool
from .ldapclient import Directories, DirectoryUnavailable, LDAPServer, LDAPSettings
from .provisioning import AccountError, AccountPolicy, Accounts, Person, describe_error
from .storage_ldap import StorageLayout
from .token_login import PortalLoginAPIHandler, TokenLoginHandler
from .usernames import UsernameError, account_name, display_text

# On the hub's /hub/metrics (prometheus_client's default registry): no per-user labels.
SIGN_INS = Counter("hepsdesk_sign_ins", "Sign-ins through the SSO (first: a computing account was made at it)",
                   ["first"])

EMAIL = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}$")


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

    # -- the directories: Active Directory (computing accounts) and the storage's LDAP ----------
    ad_urls = List(
        Unicode(),
        [],
        config=True,
        help="""The domain controllers, as ``ldaps://host[:port]`` URLs, tried in order.

        Empty (the default): no directory; the POSIX identity comes from the SSO's claims
        (``posix_claims``) if it sends them. Set: every sign-in looks the account up in AD,
        and members of the allowed groups who have none get one (``provision_accounts``).
        """,
    )
    ad_bind_dn = Unicode("", config=True, help="The hub's AD account (DN or user@realm); it may create "
                         "users and groups in ``ad_users_dn`` and ``ad_groups_dn`` and change ``id_counter_dn``.")
    ad_bind_password = Unicode(
        "", config=True,
        help="The password of ``ad_bind_dn``. Default: the environment variable HEPSDESK_AD_BIND_PASSWORD "
        "(keep it out of the config file). Never logged.")
    ad_ca_file = Unicode("", config=True, help="The CA certificate (PEM) that signed the domain controllers' "
                         "LDAPS certificates; empty: the system's CAs. The certificate is always checked.")
    ad_base_dn = Unicode("", config=True, help="Where accounts and groups are looked up, e.g. "
                         "DC=heps,DC=ihep,DC=ac,DC=cn.")
    ad_users_dn = Unicode("", config=True, help="Where new accounts are made, e.g. OU=Users,OU=HEPS,<base>.")
    ad_groups_dn = Unicode("", config=True, help="Where new groups (primary, proposals) are made, e.g. "
                           "OU=Groups,OU=HEPS,<base>; old proposal memberships are removed only from groups here.")
    ad_subject_attribute = Unicode(
        "altSecurityIdentities", config=True,
        help="The account attribute that records which SSO identity (``OIDC:<sub>``) an account was made for. "
        "An account recording another identity is never given to this person.")
    ad_upn_suffix = Unicode("", config=True, help="New accounts' userPrincipalName is name@<this> (e.g. the "
                            "realm, HEPS.IHEP.AC.CN); empty: none.")
    directory_timeout = Float(5.0, config=True, help="Seconds to wait for a directory to connect or answer.")
    directory_threads = Integer(8, config=True, help="Threads that talk to the directories (each keeps its "
                                "connections open for the next sign-ins); sign-ins beyond this many wait.")
    id_counter_dn = Unicode(
        "", config=True,
        help="""The entry holding the next uidNumber and gidNumber (``msSFU30MaxUidNumber``,
        ``msSFU30MaxGidNumber``): the domain's NIS object,
        ``CN=<nis domain>,CN=ypservers,CN=ypServ30,CN=RpcServices,CN=System,<base>``.""",
    )
    first_uid = Integer(20000, config=True, help="The lowest uidNumber given to a new account.")
    first_gid = Integer(20000, config=True, help="The lowest gidNumber given to a new group.")
    provision_accounts = Bool(
        True, config=True,
        help="Make an AD account (and its storage twin) at the first sign-in of a member of an allowed group "
        "who has none. False: only existing accounts may sign in; others are told to ask for one.")
    primary_group = Unicode("hepsdesk-users", config=True, help="The primary group (gidNumber) of new accounts; "
                            "made in AD and the storage LDAP if missing.")
    proposal_group = Unicode(
        "proposal-{proposal}", config=True,
        help="The group that gives a proposal's data, per proposal in the SSO's proposals claim (lower-cased); "
        "members are added and removed at each sign-in to match the claim.")
    home_template = Unicode("/home/{username}", config=True, help="New accounts' unixHomeDirectory.")
    login_shell = Unicode("/bin/bash", config=True, help="New accounts' loginShell.")
    proposal_path = Unicode("/data/{proposal}", config=True, help="Where a proposal's data is in the VM "
                            "(``auth_state['hepsdesk']['data_paths']``; match OpenStackSpawner.data_mounts).")
    storage_ldap_urls = List(Unicode(), [], config=True, help="The storage's LDAP servers (``ldaps://``); empty: "
                             "no storage twin accounts are kept.")
    storage_ldap_bind_dn = Unicode("", config=True, help="The hub's account in the storage LDAP.")
    storage_ldap_bind_password = Unicode("", config=True, help="Its password. Default: the environment variable "
                                         "HEPSDESK_STORAGE_LDAP_BIND_PASSWORD. Never logged.")
    storage_ldap_ca_file = Unicode("", config=True, help="The CA of the storage LDAP's certificate; empty: the "
                                   "system's CAs.")
    storage_ldap_people_dn = Unicode("", config=True, help="Where posixAccounts are, e.g. ou=people,dc=storage.")
    storage_ldap_groups_dn = Unicode("", config=True, help="Where posixGroups are, e.g. ou=groups,dc=storage.")
    group_roles = List(
        Dict(),
        [],
        config=True,
        help="""JupyterHub roles given to members of directory groups, in ``load_roles`` form plus
        ``groups``, e.g. an instrument scientist of a beamline::

            {"name": "b7-instrument-scientist", "groups": ["heps-b7-staff"],
             "scopes": ["read:users:name!group=heps-b7-users",
                        "custom:hepsdesk:shared-desktops!group=heps-b7-users"]}

        Given (and taken away) at every sign-in and refresh. Setting it makes the authenticator
        manage roles (``manage_roles``): ``JupyterHub.load_roles`` may then still define roles
        for services, but not give roles to users or groups.""",
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

    @default("refresh_pre_spawn")
    def _refresh_pre_spawn_default(self):
        return True  # a group or proposal change reaches the next VM

    @default("manage_roles")
    def _manage_roles_default(self):
        return bool(self.group_roles)

    @default("reset_managed_roles_on_startup")
    def _reset_managed_roles_on_startup_default(self):
        # Roles from groups are given again at every sign-in and refresh. Without the reset,
        # JupyterHub 6.1 cannot start again once someone holds a managed role (a KeyError in
        # init_role_assignment), so a hub restart would need its database cleaned by hand.
        return bool(self.group_roles)

    @default("ad_bind_password")
    def _ad_bind_password_default(self):
        return os.environ.get("HEPSDESK_AD_BIND_PASSWORD", "")

    @default("storage_ldap_bind_password")
    def _storage_ldap_bind_password_default(self):
        return os.environ.get("HEPSDESK_STORAGE_LDAP_BIND_PASSWORD", "")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.oidc_issuer:
            self._discover_endpoints()
        self._group_roles = role_mapping.check_group_roles(self.group_roles)
        self.accounts = self._make_accounts() if self.ad_urls else None
        self._signing_in: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @observe("group_roles")
    def _group_roles_changed(self, change):
        self._group_roles = role_mapping.check_group_roles(change["new"])

    def _make_accounts(self) -> Accounts:
        """The directories, from the traits (hub start only); a missing setting is named."""
        needed = {"ad_bind_dn": self.ad_bind_dn, "ad_bind_password (or HEPSDESK_AD_BIND_PASSWORD)":
                  self.ad_bind_password, "ad_base_dn": self.ad_base_dn, "ad_users_dn": self.ad_users_dn,
                  "ad_groups_dn": self.ad_groups_dn, "id_counter_dn": self.id_counter_dn}
        if self.storage_ldap_urls:
            needed.update({"storage_ldap_bind_dn": self.storage_ldap_bind_dn,
                           "storage_ldap_bind_password (or HEPSDESK_STORAGE_LDAP_BIND_PASSWORD)":
                           self.storage_ldap_bind_password, "storage_ldap_people_dn": self.storage_ldap_people_dn,
                           "storage_ldap_groups_dn": self.storage_ldap_groups_dn})
        missing = [name for name, value in needed.items() if not value]
        if missing:
            raise ValueError(f"HEPSAuthenticator: ad_urls is set, so these must be too: {', '.join(missing)}")
        ad_server = LDAPServer(LDAPSettings("Active Directory", tuple(self.ad_urls), self.ad_bind_dn,
                                           self.ad_bind_password, self.ad_ca_file, self.directory_timeout))
        servers, storage_server, storage_layout = [ad_server], None, None
        if self.storage_ldap_urls:
            storage_server = LDAPServer(LDAPSettings(
                "the storage LDAP", tuple(self.storage_ldap_urls), self.storage_ldap_bind_dn,
                self.storage_ldap_bind_password, self.storage_ldap_ca_file, self.directory_timeout))
            storage_layout = StorageLayout(self.storage_ldap_people_dn, self.storage_ldap_groups_dn)
            servers.append(storage_server)
        return Accounts(
            Directories(servers, self.directory_threads), ad_server,
            ADLayout(self.ad_base_dn, self.ad_users_dn, self.ad_groups_dn, self.ad_subject_attribute,
                     self.ad_upn_suffix),
            IdPool(self.id_counter_dn, "msSFU30MaxUidNumber", self.first_uid),
            IdPool(self.id_counter_dn, "msSFU30MaxGidNumber", self.first_gid),
            AccountPolicy(self.primary_group, self.proposal_group, self.home_template, self.login_shell),
            storage_server, storage_layout)

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

    def user_info_to_username(self, user_info):
        """The computing account name (``usernames.account_name``) for the SSO's name claim:
        at most 20 characters with a directory (AD's limit), else 32 (POSIX's)."""
        try:
            claim = (user_info.get(self.username_claim) if isinstance(self.username_claim, str)
                     else super().user_info_to_username(user_info))
            return account_name(claim, str(user_info.get("sub") or ""), max_length=20 if self.ad_urls else 32)
        except UsernameError as e:
            raise web.HTTPError(403, "%s", f"The sign-in service did not say who you are ({e}). Please sign in "
                                "again; if this persists, contact the facility's computing support.",
                                reason="Sign-in incomplete") from None

    async def update_auth_model(self, auth_model):
        """The facility's view of the person, in ``auth_state["hepsdesk"]``: groups, proposals and,
        from the directory (made there if they are approved and have none) or the SSO's claims,
        the POSIX identity; their roles."""
        auth_model = await super().update_auth_model(auth_model)
        claims = (auth_model.get("auth_state") or {}).get(self.user_auth_state_key) or {}
        username = auth_model["name"]
        groups = [g for g in claims.get(self.groups_claim) or [] if isinstance(g, str)]
        proposals = []
        for proposal in claims.get(self.proposals_claim) or []:
            if isinstance(proposal, str) and PROPOSAL_RE.match(proposal):
                proposals.append(proposal)
            else:  # it could name no group or directory; the rest of the sign-in goes on
                self.log.warning("%s: the SSO's proposal %.70r is not a proposal id; left out", username, proposal)
        state: HepsdeskState = {"groups": sorted(set(groups)), "proposals": proposals, "email": claims.get("email"),
                                "name": claims.get("name")}
        auth_model["auth_state"][AUTH_STATE_KEY] = state
        if self.accounts is not None:
            email = claims.get("email")
            person = Person(username=username, subject=str(claims.get("sub") or ""),
                            display_name=display_text(claims.get("name")),
                            email=email if isinstance(email, str) and EMAIL.match(email) else None,
                            groups=tuple(groups), proposals=tuple(proposals))
            account = await self._sign_in(person)
            if account is not None:
                state["posix"] = account.posix
                state["directory"] = {"dn": account.dn, "created": account.created}
                state["groups"] = sorted(set(groups) | set(account.directory_groups))
                state["home"] = account.home
                state["data_paths"] = {"home": account.home, "proposals": {
                    p: self.proposal_path.format(proposal=p) for p in proposals}}
        else:
            posix = {key: claims.get(claim) for key, claim in self.posix_claims.items()
                     if claims.get(claim) not in (None, "")}
            if "uid" in posix and "gid" in posix:
                # Checked where it is used (hepsdesk_identity.PosixIdentity), like every other claim.
                state["posix"] = {"username": username, **posix}
        if self.manage_roles:
            member_of = set(state["groups"])
            admin = username in self.admin_users or bool(member_of & self.admin_groups)
            auth_model["roles"] = role_mapping.roles_for(self._group_roles, member_of, admin)
        return auth_model

    async def authenticate(self, handler, data=None, **kwargs):
        """oauthenticator's sign-in, counted (``hepsdesk_sign_ins``; refreshes are not sign-ins)."""
        auth_model = await super().authenticate(handler, data, **kwargs)
        if auth_model:
            state = (auth_model.get("auth_state") or {}).get(AUTH_STATE_KEY) or {}
            SIGN_INS.labels("true" if (state.get("directory") or {}).get("created") else "false").inc()
        return auth_model

    def _approved(self, username: str, groups: set[str]) -> bool:
        """May ``username``, in ``groups``, have a computing account made (or kept up to date)?
        The same rule as ``check_allowed``: blocked users never, then allowed users and groups."""
        if username in self.blocked_users:
            return False
        return bool(self.allow_all or username in self.allowed_users or username in self.admin_users
                    or groups & (self.allowed_groups | self.admin_groups))

    async def _sign_in(self, person: Person):
        """The person's account from the directory (one sign-in at a time per person)."""
        lock = self._signing_in.get(person.username)
        if lock is None:
            lock = self._signing_in[person.username] = asyncio.Lock()
        async with lock:
            try:
                if not self.provision_accounts:
                    return await self.accounts.sign_in(person, lambda groups: False)
                return await self.accounts.sign_in(person, lambda groups: self._approved(person.username, groups))
            except DirectoryUnavailable as e:
                self.log.error("sign-in of %s: %s", person.username, e)
                raise web.HTTPError(
                    503, "%s", f"Your computing account cannot be checked now: {e.directory} does not answer. "
                    "Nothing was changed. Please try again in a few minutes; if this persists, contact the "
                    "facility's computing support.", reason="Directory unavailable") from None
            except AccountError as e:
                self.log.error("sign-in of %s: %s", person.username, e)
                raise web.HTTPError(403, "%s", e.message, reason="Computing account problem") from None
            except Exception as e:  # an LDAP refusal, the id pool: an admin must look
                self.log.error("sign-in of %s: the directory refused: %s", person.username, describe_error(e),
                               exc_info=True)
                raise web.HTTPError(
                    503, "%s", "Your computing account could not be set up: the directory refused a change. "
                    "Nothing was left half-made. Please contact the facility's computing support.",
                    reason="Directory error") from None

    def get_handlers(self, app):
        """oauthenticator's pages and token mode's ``/hub/token-login`` with the portal's
        ``/hub/api/hepsdesk/portal-login/<name>`` (``token_login``)."""
        return [*super().get_handlers(app), (r"/token-login", TokenLoginHandler),
                (r"/api/hepsdesk/portal-login/([^/]+)", PortalLoginAPIHandler)]

    async def get_user_groups(self, auth_state):
        """The person's groups: the SSO's and, with a directory, their AD account's."""
        return set(hepsdesk_state(auth_state).get("groups") or [])

    async def load_managed_roles(self):
        return role_mapping.definitions(self._group_roles)

    async def check_allowed(self, username, auth_model):
        if self.accounts is not None and "posix" not in hepsdesk_state((auth_model or {}).get("auth_state")) \
                and self._approved(username, set((auth_model or {}).get("groups") or [])):
            # Approved, but no account (provision_accounts is off).
            raise web.HTTPError(403, "%s", f"You are signed in as {username}, but you have no computing "
                                "account yet. Ask the facility's user office for one, then sign in again.",
                                reason="No computing account")
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
