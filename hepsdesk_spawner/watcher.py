"""One view of all of this hub's servers, shared by every spawner: one list call per interval.

The naive way, each spawner asking Nova about its own server every poll, costs the cloud one
request per user per interval: 1000 idle users, 1000 requests. Here one background task (the
hub's ``CloudSite`` owns it) lists the hub's servers (``GET /servers/detail?tags=<hub tag>``, one page up
to Nova's page size) every ``interval`` seconds and keeps the result; ``poll()`` is a lookup
in it. Polls wait for the first complete list, so a hub that just started never declares a
server gone because it has not looked yet; when listing fails, the watcher backs off
(doubling up to ``max_backoff``) and keeps the last good view. A server missing from the view
is confirmed with one direct request before anyone calls it gone (it may have been created
after the list began). Like KubeSpawner's shared reflector, for Nova.

Starts want news every second, not every ``interval``: ``fresh()`` asks for an early list,
and one list (at most one per ``min_gap``) answers every start waiting at that moment.

Lists are incremental: after a full list, each asks only for the servers that changed since
the previous one (Nova's ``changes-since``, a few seconds of margin, by the API's own clock),
so a thousand idle servers cost the hub no parsing; a full list every ``resync_interval``
catches anything an incremental one could miss. Responses are read as plain JSON (not
openstacksdk resources): the worker threads hold the interpreter lock, which the hub's event
loop needs, for as little as possible.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import time
from dataclasses import dataclass, field

from openstack import exceptions

from .cloud import OpenStackClient
from .metrics import WATCHER_LIST_SECONDS

log = logging.getLogger("hepsdesk.watcher")


class WatcherUnavailable(RuntimeError):
    """The cloud has not answered a list yet (within the caller's patience)."""


@dataclass(frozen=True)
class ServerView:
    id: str
    name: str
    status: str
    task_state: str | None
    fault: str
    metadata: dict = field(default_factory=dict)
    # For the admins' dashboard (as listed: no request per server).
    created: str = ""  # ISO 8601, as Nova gives it
    flavor: str = ""  # its name (Nova embeds the flavor from microversion 2.47)
    host: str = ""  # the compute host (admins' credentials), else Nova's opaque host id
    image: str = ""  # the image's id

    @classmethod
    def of(cls, server) -> ServerView:
        return cls(id=server.id, name=server.name, status=server.status, task_state=server.task_state,
                   fault=(server.fault or {}).get("message", ""), metadata=dict(server.metadata or {}),
                   created=server.created_at or "")  # (one server's state, for a start: no dashboard fields)

    @classmethod
    def from_json(cls, server: dict) -> ServerView:
        """From one server of Nova's ``GET /servers/detail`` body."""
        flavor, image = server.get("flavor") or {}, server.get("image") or {}
        return cls(id=server["id"], name=server.get("name", ""), status=server.get("status", ""),
                   task_state=server.get("OS-EXT-STS:task_state"),
                   fault=(server.get("fault") or {}).get("message", ""), metadata=dict(server.get("metadata") or {}),
                   created=server.get("created", ""), flavor=flavor.get("original_name") or flavor.get("id", ""),
                   host=server.get("OS-EXT-SRV-ATTR:host") or server.get("hostId", ""),
                   image=image.get("id", "") if isinstance(image, dict) else "")


# Nova's list filters by tag from 2.26 on (earlier ones ignore ``tags``); from 2.47 each server
# carries its flavor's name, CPUs and extra specs (the dashboard needs no request per server).
LIST_MICROVERSION = "2.47"
# Incremental lists overlap the previous one by this much (updates committed late, clocks).
CHANGES_MARGIN = 5.0


class ServerWatcher:
    """This hub's servers as Nova last listed them (one per ``CloudSite``)."""

    def __init__(self, client: OpenStackClient, hub_tag: str, interval: float = 10.0, max_backoff: float = 120.0,
                 min_gap: float = 1.0, resync_interval: float = 60.0):
        self.client = client
        self.hub_tag = hub_tag
        self.interval = interval
        self.max_backoff = max_backoff
        self.min_gap = min_gap
        self.resync_interval = resync_interval
        self.servers: dict[str, ServerView] = {}
        self._changes_since: float | None = None  # API clock (epoch) from which the next list may start
        self._full_at = 0.0  # monotonic time of the newest full list
        self.list_calls = 0
        self.failures = 0
        self.listed_at = 0.0  # monotonic time at which the newest complete list was requested
        self._loaded: asyncio.Event | None = None
        self._hurry: asyncio.Event | None = None  # someone waits for a fresh list (see fresh())
        self._new_list: asyncio.Event | None = None  # set (and replaced) after each list
        self._task: asyncio.Task | None = None

    @property
    def stopped(self) -> bool:
        return self._task is not None and self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._loaded, self._hurry, self._new_list = asyncio.Event(), asyncio.Event(), asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"hepsdesk-watch-{self.hub_tag}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def get(self, server_id: str, wait: float = 30.0) -> ServerView | None:
        """The server as last listed, None if it was not in the list.

        Raises WatcherUnavailable if no list has succeeded within ``wait`` seconds.
        """
        self.start()
        if not self._loaded.is_set() and self.failures:  # the cloud fails to answer: do not make callers wait
            raise WatcherUnavailable(f"no list of the servers tagged {self.hub_tag} yet "
                                     f"({self.failures} failed attempts)")
        try:
            await asyncio.wait_for(self._loaded.wait(), wait)
        except TimeoutError:
            raise WatcherUnavailable(f"no list of the servers tagged {self.hub_tag} yet "
                                     f"({self.failures} failed attempts)") from None
        return self.servers.get(server_id)

    async def fresh(self, server_id: str, after: float, wait: float = 30.0) -> ServerView | None:
        """The server as seen by a list requested after ``after`` (``time.monotonic()``).

        For starts, which want news every second: callers ask for an early list, and every
        caller waiting at that moment is answered by the same one (lists are at least
        ``min_gap`` apart), so a hundred starts cost one request a second, not a hundred.
        """
        await self._listed_since(after, wait)
        return self.servers.get(server_id)

    async def owned(self, metadata: dict[str, str], after: float, wait: float = 30.0) -> list[ServerView]:
        """The servers whose metadata includes ``metadata``, as seen by a list requested after
        ``after``: a start looks for what an interrupted start of its server left without a
        request of its own (a hundred starts at once share one list)."""
        await self._listed_since(after, wait)
        return [v for v in self.servers.values() if all(v.metadata.get(k) == val for k, val in metadata.items())]

    async def _listed_since(self, after: float, wait: float) -> None:
        self.start()
        deadline = time.monotonic() + wait
        while self.listed_at < after:
            if self.failures:  # listing fails right now: the caller asks the cloud itself
                raise WatcherUnavailable(f"listing the servers tagged {self.hub_tag} fails "
                                         f"({self.failures} failed attempts)")
            remaining = deadline - time.monotonic()
            listed = self._new_list
            self._hurry.set()
            try:
                await asyncio.wait_for(listed.wait(), max(0.0, remaining))
            except TimeoutError:
                raise WatcherUnavailable(f"no fresh list of the servers tagged {self.hub_tag} within {wait:.0f} s "
                                         f"({self.failures} failed attempts)") from None

    def _list(self, conn, since: float | None) -> tuple[dict[str, ServerView], float | None]:
        """This hub's servers (run in a worker thread): all of them (``since`` None), or the
        ones changed since ``since`` merged into the current view. Returns the view and the
        API's clock at the list (from its Date header) for the next incremental list."""
        if since is None:
            params = {"tags": self.hub_tag}
        else:
            # Without the tag filter: a deleted server may have lost its tags; the view keeps
            # only this hub's (and drops the deleted ones it holds).
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since - CHANGES_MARGIN))
            params = {"changes-since": stamp}
        servers, clock, path = [], None, "/servers/detail"
        for _ in range(1000):  # pages (Nova's max_limit each); bounded
            response = conn.compute.get(path, params=params, microversion=LIST_MICROVERSION)
            exceptions.raise_from_response(response)
            if clock is None and response.headers.get("Date"):
                clock = email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()
            body = response.json()
            servers += body.get("servers", [])
            following = [link["href"] for link in body.get("servers_links", []) if link.get("rel") == "next"]
            if not following:
                break
            path, params = following[0], None
        if since is None:
            return {s["id"]: ServerView.from_json(s) for s in servers}, clock
        view = dict(self.servers)
        for server in servers:
            if server.get("status") == "DELETED" or self.hub_tag not in (server.get("tags") or []):
                view.pop(server["id"], None)
            else:
                view[server["id"]] = ServerView.from_json(server)
        return view, clock

    async def _run(self) -> None:
        while True:
            self._hurry.clear()  # this list answers whoever asked so far
            requested = time.monotonic()
            full = self._changes_since is None or requested - self._full_at >= self.resync_interval
            since = None if full else self._changes_since
            try:
                servers, clock = await self.client.call(functools.partial(self._list, since=since))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any failure: keep the last view, back off, try again
                self.failures += 1
                delay = min(self.max_backoff, self.interval * 2 ** min(self.failures, 10))
                log.warning("Listing the servers tagged %s failed (%d in a row), next try in %.1f s: %s",
                            self.hub_tag, self.failures, delay, e)
                listed, self._new_list = self._new_list, asyncio.Event()
                listed.set()  # whoever waits for a fresh list learns that there is none
            else:
                WATCHER_LIST_SECONDS.observe(time.monotonic() - requested)
                self.list_calls += 1
                self.failures = 0
                self.servers = servers
                # No Date header: the hub's clock, which must then agree with the cloud's.
                self._changes_since = clock if clock is not None else time.time() - (time.monotonic() - requested)
                if full:
                    self._full_at = requested
                self.listed_at = requested
                self._loaded.set()
                listed, self._new_list = self._new_list, asyncio.Event()
                listed.set()
                delay = self.interval
            if self.failures:
                await asyncio.sleep(delay)  # backing off: no early list, whoever asks
                continue
            try:  # until the interval ends, or someone wants a fresh list sooner
                await asyncio.wait_for(self._hurry.wait(), delay)
            except TimeoutError:
                pass
            await asyncio.sleep(max(0.0, self.min_gap - (time.monotonic() - requested)))
