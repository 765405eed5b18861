"""The spawner's one door to OpenStack: openstacksdk calls off the hub's event loop.

openstacksdk is synchronous, so every call runs in a thread pool (the hub-wide ``CloudSite``
gives all spawners one, as dockerspawner does with its docker client); the event loop only
awaits futures. Each call has a per-request timeout (the connection's) and nothing here ever
logs a request body: keystoneauth would log server user-data, which carries the hub API
token, at debug level, so its body logger is switched off.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import keystoneauth1.exceptions
import openstack
import openstack.config
import openstack.exceptions

from .metrics import CLOUD_REQUESTS

# Request bodies (user-data with the hub token, passwords) never reach a log.
logging.getLogger("keystoneauth.session.body").disabled = True

NotFound = openstack.exceptions.NotFoundException
SDKError = openstack.exceptions.SDKException
HttpError = openstack.exceptions.HttpException
# Whatever a call to the cloud can fail with: the API's answers, keystoneauth's (no answer,
# a timeout, Keystone refusing the credential), the network's.
CLOUD_ERRORS = (SDKError, keystoneauth1.exceptions.ClientException, OSError)
# Nova lists servers of a cell that is down as records with status UNKNOWN from this
# microversion on (before, it leaves them out: a missing server would look deleted).
DOWN_CELL_MICROVERSION = "2.69"
log = logging.getLogger("hepsdesk.cloud")


def transient(error: BaseException) -> bool:
    """An error worth retrying: the service failed (5xx) or could not be reached."""
    if isinstance(error, HttpError):
        return error.status_code is None or error.status_code >= 500
    return isinstance(error, keystoneauth1.exceptions.ConnectionError)


class OpenStackClient:
    """A lazily opened openstacksdk connection for one cloud, used from worker threads."""

    lookup_ttl = 300.0

    def __init__(self, cloud: str, clouds_yaml: str = "", request_timeout: float = 30.0, retries: int = 3,
                 retry_delay: float = 0.5, executor: Executor | None = None):
        self.cloud = cloud
        self.clouds_yaml = clouds_yaml
        self.request_timeout = request_timeout
        self.retries = retries
        self.retry_delay = retry_delay
        # The hub's spawners share their site's pool (SpawnerSettings.api_threads); a client
        # made on its own (the reaper, tests) gets a small one at first use.
        self._executor = executor
        self._conn: openstack.connection.Connection | None = None
        self._lock = threading.Lock()
        self._resolved: dict[tuple, tuple[float, str]] = {}  # (kind, name) -> (until, id); see _find
        self._finding: dict[tuple, asyncio.Future] = {}  # lookups under way

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hepsdesk-openstack")
        return self._executor

    def connection(self) -> openstack.connection.Connection:
        """The connection (opened at first use; safe to share between the worker threads)."""
        with self._lock:
            if self._conn is None:
                files = [self.clouds_yaml] if self.clouds_yaml else None
                config = openstack.config.OpenStackConfig(config_files=files) if files else \
                    openstack.config.OpenStackConfig()
                region = config.get_one(cloud=self.cloud, split_loggers=True, api_timeout=self.request_timeout)
                self._conn = openstack.connection.Connection(config=region)
            return self._conn

    async def call(self, fn: Callable[[openstack.connection.Connection], Any], idempotent: bool = False) -> Any:
        """Run ``fn(connection)`` in the worker pool and return its result. An ``idempotent``
        call (a read, a delete) is retried on transient errors, ``retries`` times with doubling
        delays; anything else is tried once (a create that failed may still have happened)."""
        loop = asyncio.get_running_loop()
        delay = self.retry_delay
        for attempt in range(self.retries + 1 if idempotent else 1):
            try:
                result = await loop.run_in_executor(self.executor, functools.partial(self._run, fn))
            except (SDKError, keystoneauth1.exceptions.ConnectionError) as e:
                CLOUD_REQUESTS.labels("error").inc()
                if attempt == self.retries or not idempotent or not transient(e):
                    raise
                log.warning("OpenStack request failed (%s); retrying in %.1f s", str(e)[:200], delay)
                await asyncio.sleep(delay)
                delay *= 2
            else:
                CLOUD_REQUESTS.labels("ok").inc()
                return result

    def _run(self, fn):
        return fn(self.connection())

    # the calls the spawner makes

    async def _find(self, kind: str, name_or_id: str, by_id: Callable, by_name: Callable) -> Any:
        """An image, flavor or network by name or id, as the cloud describes it now. A hundred
        starts at once ask for the same few: one request answers every start asking while it
        runs. Finding by name costs a failed GET and a list (of every flavor, for a flavor),
        so the id a name resolves to is remembered for ``lookup_ttl`` and fetched directly; a
        remembered id that is gone (an image replaced under the same name) is resolved again."""
        key = (kind, name_or_id)
        pending = self._finding.get(key)
        if pending is None:
            pending = self._finding[key] = asyncio.ensure_future(self._look_up(key, by_id, by_name))
            pending.add_done_callback(lambda _: self._finding.pop(key, None))
        return await asyncio.shield(pending)

    async def _look_up(self, key: tuple, by_id: Callable, by_name: Callable) -> Any:
        known = self._resolved.get(key)
        found = None
        if known is not None and known[0] > time.monotonic():
            def fetch(c):
                try:
                    return by_id(c, known[1])
                except NotFound:
                    return None
            found = await self.call(fetch, idempotent=True)
        if found is None:
            found = await self.call(lambda c: by_name(c, key[1]), idempotent=True)
            if found is not None:
                self._resolved[key] = (time.monotonic() + self.lookup_ttl, found.id)
        return found

    async def find_image(self, name_or_id: str):
        return await self._find("image", name_or_id, lambda c, i: c.image.get_image(i),
                                lambda c, n: c.image.find_image(n, ignore_missing=True))

    async def find_flavor(self, name_or_id: str):
        return await self._find("flavor", name_or_id, lambda c, i: c.compute.get_flavor(i, get_extra_specs=True),
                                lambda c, n: c.compute.find_flavor(n, ignore_missing=True, get_extra_specs=True))

    async def find_network(self, name_or_id: str):
        return await self._find("network", name_or_id, lambda c, i: c.network.get_network(i),
                                lambda c, n: c.network.find_network(n, ignore_missing=True))

    async def create_port(self, network_id: str, name: str, description: str, security_group_ids=None,
                          tags: list[str] = ()):
        """A new port, tagged (Neutron takes tags only after creation: a port whose tagging
        fails is deleted again, so no untagged port escapes the reaper)."""
        attrs = {"network_id": network_id, "name": name, "description": description}
        if security_group_ids is not None:
            attrs["security_group_ids"] = list(security_group_ids)

        return await self.call(lambda c: _tagged(c.network.create_port(**attrs), tags, c.network.set_tags,
                                                 c.network.delete_port))

    async def ensure_security_group(self, name: str, description: str, rules: set[tuple]) -> str:
        """The id of the project's security group ``name``, created if missing, whose ingress
        rules are exactly ``rules`` ((protocol, port_min, port_max, remote_cidr) tuples): missing
        ones are added, any other ingress rule is removed. Egress stays as Neutron creates it."""
        def ensure(c):
            group = c.network.find_security_group(name, ignore_missing=True, project_id=c.current_project_id)
            if group is None:
                group = c.network.create_security_group(name=name, description=description)
            have = {}
            for rule in c.network.security_group_rules(security_group_id=group.id, direction="ingress"):
                have[(rule.protocol, rule.port_range_min, rule.port_range_max, rule.remote_ip_prefix)] = rule.id
            for protocol, low, high, cidr in sorted(rules - set(have), key=str):
                c.network.create_security_group_rule(
                    security_group_id=group.id, direction="ingress", ethertype="IPv6" if ":" in cidr else "IPv4",
                    protocol=protocol, port_range_min=low, port_range_max=high, remote_ip_prefix=cidr,
                    description="managed by hepsdesk")
            for key in set(have) - rules:
                c.network.delete_security_group_rule(have[key], ignore_missing=True)
            return group.id
        return await self.call(ensure)

    async def create_floating_ip(self, network_id: str, port_id: str, description: str, tags: list[str] = ()):
        """A floating IP from ``network_id`` associated with ``port_id``, tagged like ports
        (deleted again if tagging fails)."""
        return await self.call(lambda c: _tagged(
            c.network.create_ip(floating_network_id=network_id, port_id=port_id, description=description),
            tags, c.network.set_tags, c.network.delete_ip))

    async def delete_floating_ips_of_port(self, port_id: str) -> None:
        """Delete the floating IPs associated with a port (deleting the port would only
        disassociate them, and they would stay allocated)."""
        def delete(c):
            for ip in c.network.ips(port_id=port_id):
                c.network.delete_ip(ip, ignore_missing=True)
        await self.call(delete, idempotent=True)

    async def delete_port(self, port_id: str) -> None:
        await self.call(lambda c: c.network.delete_port(port_id, ignore_missing=True), idempotent=True)

    async def create_server(self, **attrs):
        return await self.call(lambda c: c.compute.create_server(**attrs))

    async def rename_server(self, server_id: str, name: str, metadata: dict[str, str]) -> None:
        """Give a server a new name and exactly ``metadata`` (a pooled VM becomes a user's:
        found by name and owner from then on)."""
        def rename(c):
            response = c.compute.put(f"/servers/{server_id}/metadata", json={"metadata": metadata})
            openstack.exceptions.raise_from_response(response)
            c.compute.update_server(server_id, name=name)
        await self.call(rename, idempotent=True)

    async def rename_port(self, port_id: str, name: str, description: str) -> None:
        await self.call(lambda c: c.network.update_port(port_id, name=name, description=description), idempotent=True)

    async def get_server(self, server_id: str):
        """The server, or None if it does not exist (any more)."""
        def get(c):
            try:
                return c.compute.get_server(server_id)
            except NotFound:
                return None
        return await self.call(get, idempotent=True)

    async def server_exists(self, server_id: str, name: str) -> bool:
        """Is the server still there? Asked by id; when that read fails, by the list of the
        servers with its name (another API path, which may still answer). Raises when neither
        answers: a failed read never means "gone"."""
        try:
            return await self.get_server(server_id) is not None
        except CLOUD_ERRORS as e:
            log.warning("Reading server %s failed (%s); asking the list of %s instead", server_id, str(e)[:200], name)

        def listed(c):
            response = c.compute.get("/servers", params={"name": f"^{re.escape(name)}$"},
                                     microversion=DOWN_CELL_MICROVERSION)
            openstack.exceptions.raise_from_response(response)
            return any(s.get("id") == server_id for s in response.json().get("servers", []))
        return await self.call(listed, idempotent=True)

    async def find_servers(self, name: str, metadata: dict[str, str]) -> list:
        """Servers called ``name`` (exactly) whose metadata includes ``metadata``."""
        def find(c):
            return [s for s in c.compute.servers(name=f"^{name}$")
                    if all((s.metadata or {}).get(k) == v for k, v in metadata.items())]
        return await self.call(find, idempotent=True)

    async def find_ports(self, name: str, tag: str) -> list[str]:
        """Ids of the ports called ``name`` carrying ``tag``, or naming it in their description
        (a port whose create answer was lost never got its tag). Read as plain JSON: the worker
        threads hold the interpreter lock the hub's event loop needs for as little as possible."""
        def find(c):
            response = c.network.get("/ports", params={"name": name, "fields": ["id", "tags", "description"]})
            openstack.exceptions.raise_from_response(response)
            return [p["id"] for p in response.json().get("ports", [])
                    if tag in (p.get("tags") or []) or f"({tag})" in (p.get("description") or "")]
        return await self.call(find, idempotent=True)

    async def delete_server(self, server_id: str) -> None:
        await self.call(lambda c: c.compute.delete_server(server_id, ignore_missing=True), idempotent=True)

    async def shelve_server(self, server_id: str) -> None:
        """Shelve: Nova snapshots the disk to an image and (offloaded) frees the host."""
        await self.call(lambda c: c.compute.shelve_server(server_id))

    async def unshelve_server(self, server_id: str) -> None:
        await self.call(lambda c: c.compute.unshelve_server(server_id))

    async def console_tail(self, server_id: str, lines: int = 40) -> str:
        def tail(c):
            try:
                return c.compute.get_server_console_output(server_id, length=lines).get("output", "")
            except NotFound:
                return ""
        try:
            return await self.call(tail, idempotent=True)
        except HttpError:  # the console is a progress detail: never fail a spawn for it
            return ""


def _tagged(resource, tags, set_tags: Callable, delete: Callable):
    """``resource`` (just created) with ``tags``; deleted again if tagging fails, so nothing
    untagged escapes the reaper (Neutron takes tags only after creation)."""
    if tags:
        try:
            set_tags(resource, list(tags))
        except BaseException:
            delete(resource, ignore_missing=True)
            raise
    return resource
