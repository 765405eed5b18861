"""Computing accounts at sign-in: found in Active Directory, made for approved experiment-group
members who have none, and mirrored in the storage's LDAP so the storage gives the right files.

For a person the SSO vouched for (``Person``), ``Accounts.sign_in`` in one directory thread:

1. finds the AD account of that name; one made for another SSO identity is a conflict;
2. if the person is not approved (``approved`` says no for all their groups), changes nothing;
3. else makes what is missing, in this order: the groups (the primary group, one per
   proposal) with gidNumbers from the pool, in AD and in the storage LDAP; the AD account
   (RFC2307 attributes, uidNumber from the pool, enabled with a password nobody knows); its
   memberships; the storage's ``posixAccount`` with the same numbers and its ``memberUid``s;
4. last, takes the account out of proposal groups the person no longer has.

Run twice, it changes nothing the second time. When a step fails, what this sign-in made is
undone in reverse order (the account, its memberships, its storage account) and the error
goes on: no half-made account is left. New groups stay: other accounts may be in them by then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ldap3.core import exceptions as ldap_errors

from hepsdesk_identity import NAME_RE, PROPOSAL_RE, PosixRecord

from . import active_directory as ad
from . import storage_ldap as storage
from .ids import IdPool, IdPoolError
from .ldapclient import Directories, LDAPServer, delete_entry

log = logging.getLogger(__name__)
PRIMARY_DESCRIPTION = "hepsdesk computing accounts"
PROPOSAL_DESCRIPTION = "Data of proposal {proposal}"


class AccountError(Exception):
    """The account cannot be used or made; ``message`` is for the person, the text for admins."""

    def __init__(self, detail: str, message: str):
        super().__init__(detail)
        self.message = message


@dataclass(frozen=True)
class Person:
    """Who the SSO says signed in."""
    username: str  # the account name (``usernames.account_name``)
    subject: str  # the SSO's stable identifier
    display_name: str = ""
    email: str | None = None
    groups: tuple[str, ...] = ()  # the SSO's groups claim
    proposals: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccountPolicy:
    """What new accounts and groups look like."""
    primary_group: str = "hepsdesk-users"  # every account's primary group
    proposal_group: str = "proposal-{proposal}"  # the group giving a proposal's data
    home: str = "/home/{username}"
    shell: str = "/bin/bash"


@dataclass(frozen=True)
class Account:
    username: str
    dn: str
    uid: int
    gid: int
    home: str
    shell: str
    primary_group: str
    groups: tuple[tuple[str, int], ...]  # POSIX groups besides the primary one: (name, gid)
    directory_groups: tuple[str, ...]  # every AD group it is in (nested ones too)
    created: bool = False

    @property
    def posix(self) -> PosixRecord:
        """The POSIX identity as ``auth_state["hepsdesk"]["posix"]`` holds it (for the spawner)."""
        return {"username": self.username, "uid": self.uid, "gid": self.gid, "home": self.home,
                "shell": self.shell, "group": self.primary_group,
                "groups": [{"name": name, "gid": gid} for name, gid in self.groups]}


@dataclass
class _Undo:
    steps: list[tuple[str, Callable[[], object]]] = field(default_factory=list)

    def add(self, what: str, step: Callable[[], object]) -> None:
        self.steps.append((what, step))

    def run(self) -> None:
        for what, step in reversed(self.steps):
            try:
                step()
                log.info("rolled back: %s", what)
            except Exception as e:  # noqa: BLE001 - undo as much as possible, say what is left
                log.error("could not roll back %s: %s (an admin must remove it)", what, e)


class Accounts:
    """Accounts in AD (and the storage LDAP, when configured) for signed-in people."""

    def __init__(self, directories: Directories, ad_server: LDAPServer, layout: ad.ADLayout,
                 uids: IdPool, gids: IdPool, policy: AccountPolicy,
                 storage_server: LDAPServer | None = None, storage_layout: storage.StorageLayout | None = None):
        self.directories = directories
        self.ad_server = ad_server
        self.layout = layout
        self.uids = uids
        self.gids = gids
        self.policy = policy
        self.storage_server = storage_server
        self.storage_layout = storage_layout

    def proposal_group(self, proposal: str) -> str | None:
        """The group of ``proposal``; None for an id that cannot name a group."""
        if not PROPOSAL_RE.match(proposal):
            return None
        name = self.policy.proposal_group.format(proposal=proposal).lower()
        return name if NAME_RE.match(name) else None

    async def sign_in(self, person: Person, approved: Callable[[set[str]], bool]) -> Account | None:
        """The person's account, made or brought up to date if they are ``approved`` (called with
        all their groups: the SSO's and their AD account's); None if they have none and may
        not get one."""
        return await self.directories.run(lambda: self._sign_in(person, approved))

    # -- in a directory thread -----------------------------------------------------------------

    def _sign_in(self, person: Person, approved: Callable[[set[str]], bool]) -> Account | None:
        conn = self.ad_server.connection()
        user = ad.find_user(conn, self.layout, person.username)
        if user is not None and user.subject not in (None, person.subject):
            raise AccountError(
                f"the AD account {user.dn} belongs to SSO identity {user.subject!r}, not {person.subject!r}",
                f"The computing account {person.username} belongs to another person. Please contact the "
                "facility's user office: they can link your sign-in to your own account.")
        groups = set(person.groups) | {g.name for g in (user.groups if user else ())}
        if not approved(groups):
            return self._account(user) if user is not None and user.uid is not None else None
        wanted = self._wanted_groups(person)
        undo = _Undo()
        try:
            created = user is None
            user = self._ensure_user(conn, person, user, undo)
            user = self._ensure_memberships(conn, wanted, user, undo)
            self._ensure_storage(conn, person, wanted, user, undo)
            user = self._leave_old_proposals(conn, wanted, user)
        except Exception:
            undo.run()
            raise
        return self._account(user, created)

    def _account(self, user: ad.ADUser, created: bool = False) -> Account:
        primary = next((g for g in user.groups if g.gid == user.gid), None)
        primary_name = primary.name.lower() if primary else self.policy.primary_group
        groups = tuple(sorted({(g.name.lower(), g.gid) for g in user.groups
                               if g.gid is not None and g.gid != user.gid and NAME_RE.match(g.name.lower())}))
        return Account(username=user.name, dn=user.dn, uid=user.uid, gid=user.gid,
                       home=user.home or self.policy.home.format(username=user.name),
                       shell=user.shell or self.policy.shell, primary_group=primary_name, groups=groups,
                       directory_groups=tuple(g.name for g in user.groups), created=created)

    def _ensure_group(self, conn, name: str, description: str) -> ad.ADGroup:
        """The AD group ``name`` with a gidNumber, and its storage twin with the same one."""
        group = ad.find_group(conn, self.layout, name)
        if group is None:
            gid = self.gids.take(conn, lambda n: self._number_in_use("gidNumber", n))
            group = ad.create_group(conn, self.layout, name, gid, description)
            if group is None:  # made by another sign-in meanwhile
                group = ad.find_group(conn, self.layout, name)
            else:
                log.info("created the AD group %s (gidNumber %d)", name, gid)
        if group.gid is None:
            raise AccountError(f"the AD group {group.dn} has no gidNumber",
                               "Your groups are not set up for the storage yet. Please contact the facility's "
                               "computing support.")
        if self.storage_server is not None:
            sconn = self.storage_server.connection()
            gid = storage.find_group_gid(sconn, self.storage_layout, name)
            if gid is None:
                storage.create_group(sconn, self.storage_layout, name, group.gid, description)
                gid = storage.find_group_gid(sconn, self.storage_layout, name)
            if gid != group.gid:
                raise AccountError(f"the group {name} has gidNumber {group.gid} in AD but {gid} in the storage LDAP",
                                   "Your groups differ between the directories. Please contact the facility's "
                                   "computing support.")
        return group

    def _number_in_use(self, attribute: str, number: int) -> bool:
        if ad.number_in_use(self.ad_server.connection(), self.layout, attribute, number):
            return True
        return self.storage_server is not None and storage.number_in_use(
            self.storage_server.connection(), self.storage_layout, attribute, number)

    def _ensure_user(self, conn, person: Person, user: ad.ADUser | None, undo: _Undo) -> ad.ADUser:
        home = self.policy.home.format(username=person.username)
        if user is not None:
            if user.uid is None or user.gid is None or not user.home or not user.shell:
                # An account made by hand without Unix attributes: give it the missing ones.
                primary = self._ensure_group(conn, self.policy.primary_group, PRIMARY_DESCRIPTION)
                uid = user.uid if user.uid is not None else \
                    self.uids.take(conn, lambda n: self._number_in_use("uidNumber", n))
                ad.set_posix(conn, user, uid=uid, gid=primary.gid, home=home, shell=self.policy.shell)
                user = ad.find_user(conn, self.layout, person.username)
            return user
        primary = self._ensure_group(conn, self.policy.primary_group, PRIMARY_DESCRIPTION)
        uid = self.uids.take(conn, lambda n: self._number_in_use("uidNumber", n))
        dn = ad.create_user(conn, self.layout, name=person.username, subject=person.subject, uid=uid,
                            gid=primary.gid, home=home, shell=self.policy.shell,
                            display_name=person.display_name, mail=person.email)
        if dn is None:  # the same person signing in twice at once: the other sign-in made it
            user = ad.find_user(conn, self.layout, person.username)
            if user is None or user.subject != person.subject:
                raise AccountError(f"the AD account {person.username} appeared for another identity",
                                   f"The computing account {person.username} belongs to another person. "
                                   "Please contact the facility's user office.")
            return user
        undo.add(f"the AD account {dn}", lambda: delete_entry(conn, dn))
        ad.enable(conn, dn)
        log.info("created the AD account %s (uidNumber %d, gidNumber %d) for SSO identity %s",
                 dn, uid, primary.gid, person.subject)
        return ad.find_user(conn, self.layout, person.username)

    def _wanted_groups(self, person: Person) -> dict[str, str]:
        """The groups the person's account belongs in (the primary one first), with the
        description a new one gets (the storage's tools find a proposal's id there)."""
        wanted = {self.policy.primary_group: PRIMARY_DESCRIPTION}
        for proposal in person.proposals:
            name = self.proposal_group(proposal)
            if name is None:
                log.warning("proposal %r of %s cannot name a group; skipped", proposal[:70], person.username)
            else:
                wanted.setdefault(name, PROPOSAL_DESCRIPTION.format(proposal=proposal))
        return wanted

    def _ensure_memberships(self, conn, wanted: dict[str, str], user: ad.ADUser, undo: _Undo) -> ad.ADUser:
        have = {g.name.lower() for g in user.groups}
        changed = False
        for name, description in wanted.items():
            if name in have:
                continue
            group = self._ensure_group(conn, name, description)
            if ad.add_member(conn, group.dn, user.dn):
                undo.add(f"{user.name}'s membership of {group.dn}",
                         lambda g=group.dn: ad.remove_member(conn, g, user.dn))
                changed = True
        return ad.find_user(conn, self.layout, user.name) if changed else user

    def _ensure_storage(self, conn, person: Person, wanted: dict[str, str], user: ad.ADUser, undo: _Undo) -> None:
        if self.storage_server is None:
            return
        sconn = self.storage_server.connection()
        layout = self.storage_layout
        account = storage.find_account(sconn, layout, user.name)
        if account is None:
            dn = storage.create_account(sconn, layout, name=user.name, uid=user.uid, gid=user.gid, home=user.home,
                                        shell=user.shell, display_name=person.display_name, ad_dn=user.dn)
            if dn is not None:
                undo.add(f"the storage account {dn}", lambda: delete_entry(sconn, dn))
                log.info("created the storage account %s (uidNumber %d)", dn, user.uid)
            account = storage.find_account(sconn, layout, user.name)
        if (account.uid, account.gid) != (user.uid, user.gid):
            raise AccountError(f"{user.name} is uid/gid {user.uid}/{user.gid} in AD but {account.uid}/{account.gid} "
                               "in the storage LDAP",
                               "Your computing account differs between the directories. Please contact the "
                               "facility's computing support.")
        for name, description in list(wanted.items())[1:]:  # (the primary group: by gidNumber)
            if name in account.groups:
                continue
            self._ensure_group(conn, name, description)  # its storage twin may be missing
            if storage.add_member(sconn, layout, name, user.name):
                undo.add(f"{user.name} in the storage group {name}",
                         lambda g=name: storage.remove_member(sconn, layout, g, user.name))
        for name in account.groups:
            if self._is_proposal_group(name) and name not in wanted:
                storage.remove_member(sconn, layout, name, user.name)
                log.info("took %s out of the storage group %s (no longer in that proposal)", user.name, name)

    def _leave_old_proposals(self, conn, wanted: dict[str, str], user: ad.ADUser) -> ad.ADUser:
        left = False
        for group in user.groups:
            name = group.name.lower()
            if self._is_proposal_group(name) and name not in wanted and group.dn.lower().endswith(
                    self.layout.groups_dn.lower()):
                left |= ad.remove_member(conn, group.dn, user.dn)
                log.info("took %s out of %s (no longer in that proposal)", user.name, group.dn)
        return ad.find_user(conn, self.layout, user.name) if left else user

    def _is_proposal_group(self, name: str) -> bool:
        prefix, _, suffix = self.policy.proposal_group.lower().partition("{proposal}")
        return name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix)


def describe_error(error: Exception) -> str:
    """An LDAP error as one line for the hub's log (no passwords: ldap3 does not put them in
    result messages)."""
    if isinstance(error, ldap_errors.LDAPOperationResult):
        return f"{type(error).__name__}: {error.description} {error.message}".strip()
    if isinstance(error, IdPoolError):
        return f"id pool: {error}"
    return f"{type(error).__name__}: {error}"
