"""uidNumber and gidNumber for new accounts and groups, never given twice.

The next free numbers are kept where AD's own Unix tools keep them: ``msSFU30MaxUidNumber``
and ``msSFU30MaxGidNumber`` on the domain's NIS object
(``CN=<domain>,CN=ypservers,CN=ypServ30,CN=RpcServices,CN=System,<base>``). A number is taken
by one LDAP modify that deletes the value read and adds the next one: if anyone (another
sign-in, another hub, an admin's tool) took it in between, the delete fails, nothing changes,
and the counter is read again. A number somebody already has (an account made by hand, in AD
or in the storage's LDAP) is skipped.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import ldap3
from ldap3.core import exceptions as ldap_errors

MAX_ID = 2**31 - 2
CONFLICTS = 200  # concurrent takers, at most, before giving up
SKIPS = 10_000  # numbers in use, at most, before giving up


class IdPoolError(Exception):
    """No number could be taken (the message says why, for an admin)."""


@dataclass(frozen=True)
class IdPool:
    counter_dn: str
    attribute: str  # msSFU30MaxUidNumber or msSFU30MaxGidNumber
    first: int = 20000  # the lowest number given (below: the system's and hand-made accounts)
    last: int = MAX_ID

    def take(self, conn: ldap3.Connection, in_use: Callable[[int], bool]) -> int:
        """A number nobody has, taken from the counter for good."""
        conflicts = skips = 0
        while True:
            current = self._read(conn)
            number = max(current if current is not None else self.first, self.first)
            if number > self.last:
                raise IdPoolError(f"{self.attribute} on {self.counter_dn} is past the last number {self.last}: "
                                  "the range is used up")
            try:
                self._advance(conn, current, number + 1)
            except (ldap_errors.LDAPNoSuchAttributeResult, ldap_errors.LDAPAttributeOrValueExistsResult,
                    ldap_errors.LDAPConstraintViolationResult):
                conflicts += 1
                if conflicts > CONFLICTS:
                    raise IdPoolError(f"{self.attribute} on {self.counter_dn} changed under us "
                                      f"{conflicts} times in a row") from None
                time.sleep(random.uniform(0, 0.002 * min(conflicts, 20)))  # let the others finish
                continue
            if not in_use(number):
                return number
            skips += 1
            if skips > SKIPS:
                raise IdPoolError(f"{SKIPS} numbers after {self.attribute} on {self.counter_dn} are all "
                                  "in use: move the counter past the accounts made by hand")

    def _read(self, conn: ldap3.Connection) -> int | None:
        try:
            conn.search(self.counter_dn, "(objectClass=*)", ldap3.BASE, attributes=[self.attribute])
        except ldap_errors.LDAPNoSuchObjectResult:
            raise IdPoolError(f"the id counter {self.counter_dn} does not exist (it is the domain's NIS "
                              "object that `samba-tool domain provision --use-rfc2307` and AD's Unix "
                              "attributes tools create; or set HEPSAuthenticator.id_counter_dn)") from None
        values = conn.entries[0].entry_attributes_as_dict if conn.entries else {}
        found = next((v for name, v in values.items() if name.lower() == self.attribute.lower()), [])
        return int(found[0]) if found else None

    def _advance(self, conn: ldap3.Connection, current: int | None, new: int) -> None:
        """current → new in one operation, which fails if current is no longer the value."""
        if current is None:
            change = [(ldap3.MODIFY_ADD, [new])]
        else:
            change = [(ldap3.MODIFY_DELETE, [current]), (ldap3.MODIFY_ADD, [new])]
        conn.modify(self.counter_dn, {self.attribute: change})
