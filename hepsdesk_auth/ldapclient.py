"""One directory server (Active Directory, or the storage's LDAP) as the hub uses it: over
LDAPS with the server's certificate checked, with timeouts, and never on the hub's event loop.

ldap3 is synchronous, so directory work runs in a small thread pool (``Directories``), and
each thread keeps one bound connection per directory for the sign-ins after it (a bind over
TLS costs a handshake and ~10 ms; a search on an open connection ~1 ms). A connection that
failed is dropped and opened again once; a directory that still cannot be reached is
``DirectoryUnavailable``, which the authenticator turns into a sign-in error page.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlparse

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.log import set_library_log_hide_sensitive_data

log = logging.getLogger(__name__)
T = TypeVar("T")

# What says "the server is not there" rather than "the server refused this operation".
UNREACHABLE = (ldap_errors.LDAPCommunicationError, ldap_errors.LDAPServerPoolError,
               ldap_errors.LDAPServerPoolExhaustedError,
               ldap_errors.LDAPResponseTimeoutError, ldap_errors.LDAPSessionTerminatedByServerError,
               ldap_errors.LDAPStartTLSError, ssl.SSLError, ConnectionError, TimeoutError)


class _NoPasswords(logging.Filter):
    """ldap3's own log (when an admin turns it on) never shows a password: ldap3 hides bind
    passwords only when told to, and never a ``unicodePwd`` or ``userPassword`` being set."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage().lower()
        except Exception:  # noqa: BLE001 - a message that cannot be formatted is not shown either
            text = "unicodepwd"
        if "unicodepwd" in text or "userpassword" in text:
            record.msg, record.args = "(an ldap3 message carrying a password, left out)", ()
        return True


logging.getLogger("ldap3").addFilter(_NoPasswords())
set_library_log_hide_sensitive_data(True)


class DirectoryUnavailable(Exception):
    """A directory cannot be reached, or refuses the hub's bind (the message says which)."""

    def __init__(self, directory: str, reason: str):
        super().__init__(f"{directory} cannot be reached: {reason}")
        self.directory = directory
        self.reason = reason


@dataclass(frozen=True)
class LDAPSettings:
    """Where a directory is and how the hub binds to it."""
    name: str  # for messages: "Active Directory", "the storage LDAP"
    urls: tuple[str, ...]  # ldaps://host[:port]; several: tried in order (domain controllers)
    bind_dn: str
    password: str
    ca_file: str = ""  # the CA that signed the servers' certificates; "" = the system's CAs
    timeout: float = 5.0  # seconds, for connecting and for each answer

    def __repr__(self) -> str:  # never show the password
        return f"LDAPSettings(name={self.name!r}, urls={self.urls!r}, bind_dn={self.bind_dn!r})"


class LDAPServer:
    """One directory: its connection for the calling thread."""

    def __init__(self, settings: LDAPSettings):
        if not settings.urls:
            raise ValueError(f"{settings.name}: no server URL configured")
        self.settings = settings
        self._tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, version=ssl.PROTOCOL_TLS_CLIENT,
                              ca_certs_file=settings.ca_file or None)
        servers = []
        for url in settings.urls:
            parsed = urlparse(url)
            if parsed.scheme != "ldaps" or not parsed.hostname:
                raise ValueError(f"{settings.name}: {url!r} is not an ldaps:// URL (the hub only "
                                 "talks to directories over TLS)")
            servers.append((parsed.hostname, parsed.port or 636))
        self._servers = servers
        self._preferred = 0  # the server that answered last: tried first
        self._local = threading.local()

    def connection(self) -> ldap3.Connection:
        """This thread's bound connection (opened at the first use, and after a failure): to
        the server that answered last, else the others in order (no waiting between them:
        ldap3's ServerPool sleeps 10 s before it tries a server again)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed and conn.bound:
            return conn
        s = self.settings
        order = self._servers[self._preferred:] + self._servers[:self._preferred]
        reasons = []
        for server in order:
            try:
                conn = self._bind(*server)
            except UNREACHABLE as e:
                reasons.append(f"{server[0]}:{server[1]}: {_reason(e)}")
                continue
            self._preferred = self._servers.index(server)
            self._local.conn = conn
            return conn
        raise DirectoryUnavailable(s.name, "; ".join(reasons))

    def _bind(self, host: str, port: int) -> ldap3.Connection:
        s = self.settings
        # A new ldap3.Server each time: one that failed to connect marks its address unusable
        # for minutes ("invalid server address"), even once the server is back.
        server = ldap3.Server(host, port=port, use_ssl=True, tls=self._tls, connect_timeout=s.timeout,
                              get_info=ldap3.NONE)
        try:
            # (ldap3 packs receive_timeout into a socket option: whole seconds.)
            return ldap3.Connection(server, s.bind_dn, s.password, auto_bind=ldap3.AUTO_BIND_NO_TLS,
                                    receive_timeout=max(1, math.ceil(s.timeout)), raise_exceptions=True,
                                    read_only=False, return_empty_attributes=True)
        except (ldap_errors.LDAPBindError, ldap_errors.LDAPInvalidCredentialsResult):
            raise DirectoryUnavailable(s.name, f"the hub's account {s.bind_dn} could not bind "
                                               "(wrong password, or the account is locked)") from None

    def drop(self) -> None:
        """Forget this thread's connection (it failed)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.unbind()
            except Exception:  # noqa: BLE001 - it is broken already
                pass


class Directories:
    """The directories and the threads that talk to them. ``run(job)`` calls ``job()`` in a
    thread; a job gets its connections with ``server.connection()``. A connection that broke
    under the job (a server restarted since it was opened) is opened again and the job run once
    more (jobs are idempotent); a server that cannot be connected to is ``DirectoryUnavailable``
    at once."""

    def __init__(self, servers: list[LDAPServer], workers: int = 8):
        self.servers = servers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="hepsdesk-directory")

    async def run(self, job: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._attempt, job)

    def _attempt(self, job: Callable[[], T]) -> T:
        for attempt in range(2):
            try:
                return job()
            except UNREACHABLE as e:
                for server in self.servers:
                    server.drop()
                if attempt:
                    raise DirectoryUnavailable("the directory", _reason(e)) from None
                log.info("a directory connection failed (%s); trying again on a new one", _reason(e))
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def delete_entry(conn: ldap3.Connection, dn: str) -> None:
    """Delete ``dn``; one that is gone already is fine."""
    try:
        conn.delete(dn)
    except ldap_errors.LDAPNoSuchObjectResult:
        pass
