"""``ServerResources``: the cloud resources of one server, made, found and deleted.

A server is a Neutron port (made first, in the hub's managed security group, so the VM's
address can go into its user-data), maybe a floating IP on that port, and the Nova server.
Every one of them is tagged with the hub's tag and named after the server's owner, so what a
lost answer or an interrupted start left behind is found again by name and owner and
deleted: by the next start of the same server, or by the orphan reaper.

Deleting is confirmed: ``delete()`` returns only once Nova no longer has the servers. An
error while asking is retried (never read as "gone") until ``delete_timeout``; then it raises,
and the hub's log names what is left.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from . import errors
from .cloud import CLOUD_ERRORS, HttpError
from .errors import CloudFailure
from .settings import port_range
from .watcher import WatcherUnavailable

if TYPE_CHECKING:
    from .spawner import OpenStackSpawner

# A server still there this long after its delete was accepted (and not being deleted) is asked again.
DELETE_AGAIN_AFTER = 15.0


class ServerResources:
    def __init__(self, spawner: OpenStackSpawner):
        self.spawner = spawner
        # Whether the current start has asked the cloud to create anything (reset by each start):
        # a start that failed before it did has nothing of its own to remove.
        self.create_asked = False

    @property
    def client(self):
        return self.spawner.site.client

    # names: how a server's resources are found again

    @property
    def vm_name(self) -> str:
        servername = f"-{self.spawner.name}" if self.spawner.name else ""
        return self.spawner.server_name_template.format(username=self.spawner.user.name, servername=servername)

    @property
    def port_name(self) -> str:
        return f"{self.vm_name}-port"

    @property
    def owner_metadata(self) -> dict[str, str]:
        """The metadata that says a server is this spawner's."""
        return {"hepsdesk-hub": self.spawner.hub_tag, "hepsdesk-user": self.spawner.user.name,
                "hepsdesk-server": self.spawner.name or ""}

    @property
    def description(self) -> str:
        """Names the hub's tag: what finds a port (or floating IP) whose create answer was lost."""
        spawner = self.spawner
        return f"hepsdesk ({spawner.hub_tag}): {spawner.user.name}'s server {spawner.name or '(default)'}"

    # making

    def security_rules(self) -> set[tuple]:
        """The ingress rules of the managed group: (protocol, port_min, port_max, remote CIDR)."""
        spawner = self.spawner
        hub_cidrs = list(spawner.hub_cidrs)
        if not hub_cidrs:
            host = urlparse(spawner.hub.api_url).hostname or ""
            try:
                hub_cidrs = [str(ipaddress.ip_network(host))]
            except ValueError:
                raise CloudFailure("The hub's network settings are incomplete, so no server can be started. Please "
                                   "tell the hub's administrators.", status_code=500,
                                   detail=f"set OpenStackSpawner.hub_cidrs: the hub's API host {host!r} is not an "
                                   "address, so the VMs' security group cannot admit the hub") from None
        low, high = port_range(spawner.media_ports)
        return ({("tcp", spawner.singleuser_port, spawner.singleuser_port, str(ipaddress.ip_network(c, strict=False)))
                 for c in hub_cidrs}
                | {("udp", low, high, str(ipaddress.ip_network(c, strict=False))) for c in spawner.media_cidrs})

    async def create_port(self, network_id: str):
        """The server's port, in the managed security group (made again if an operator deleted it)."""
        try:
            try:
                return await self._create_port(network_id)
            except HttpError as e:
                if not (self.spawner.security_group and e.status_code in (400, 404) and "ecurity group" in str(e)):
                    raise
                self.spawner.log.warning("Security group of %s gone (%s): creating it again",
                                         self.spawner._log_name, e)
                return await self._create_port(network_id, renew_group=True)
        except HttpError as e:
            raise errors.quota_exceeded(e, "network port") or e from None

    async def _create_port(self, network_id: str, renew_group: bool = False):
        self.create_asked = True
        groups = None
        if self.spawner.security_group:
            name = self.spawner.security_group.format(hub_tag=self.spawner.hub_tag)
            description = f"hepsdesk: VMs of the hub tagged {self.spawner.hub_tag} (managed; manual changes are undone)"
            groups = [await self.spawner.site.security_group(name, description, self.security_rules(), renew_group)]
        return await self.client.create_port(network_id, self.port_name, self.description,
                                             security_group_ids=groups, tags=[self.spawner.hub_tag])

    async def create_floating_ip(self, network_id: str, port_id: str):
        self.create_asked = True
        try:
            return await self.client.create_floating_ip(network_id, port_id, self.description,
                                                        tags=[self.spawner.hub_tag])
        except HttpError as e:
            raise errors.quota_exceeded(e, "public address") or e from None

    async def create_server(self, **attrs):
        self.create_asked = True
        try:
            return await self.client.create_server(name=self.vm_name, tags=[self.spawner.hub_tag], **attrs)
        except HttpError as e:
            raise errors.quota_exceeded(e, "VM") or e from None

    # finding and deleting

    async def find_own(self) -> tuple[set[str], set[str]]:
        """Ids of the servers and ports with this server's name and owner, including those whose
        create answer was lost on the way (so their ids were never known). The servers come
        from a fresh list of the hub's watcher (one request for every start that asks at the
        same moment), or from Nova when the watcher cannot list."""
        try:
            views = await self.spawner.site.watcher.owned(self.owner_metadata, time.monotonic(),
                                                          wait=self.spawner.api_request_timeout)
            servers = {v.id for v in views if v.name == self.vm_name}
        except WatcherUnavailable:
            servers = {s.id for s in await self.client.find_servers(self.vm_name, self.owner_metadata)}
        return servers, set(await self.client.find_ports(self.port_name, self.spawner.hub_tag))

    async def delete_all(self) -> None:
        """Delete this server's VM and port (the known ids and any found by name and owner),
        confirmed gone; then the state forgets them."""
        state = self.spawner.vm
        server_ids, port_ids = {state.server_id} - {""}, {state.port_id} - {""}
        try:
            found_servers, found_ports = await self.find_own()
            server_ids, port_ids = server_ids | found_servers, port_ids | found_ports
        except CLOUD_ERRORS as e:  # the known ids are still deleted; the next start looks again
            self.spawner.log.error("Listing the servers and ports of %s failed: %s", self.spawner._log_name,
                                   str(e)[:300])
        await self.delete(server_ids, port_ids)
        state.forget_vm()

    async def delete(self, server_ids: set[str], port_ids: set[str]) -> None:
        """Delete these servers, and return once Nova confirms they are gone; then their
        floating IPs and ports. The cloud's errors are retried until ``delete_timeout``, then
        ``CloudFailure``. A port that cannot be deleted is logged and left: it carries the hub's
        tag, and the orphan reaper removes it."""
        spawner = self.spawner
        deadline = time.monotonic() + spawner.delete_timeout
        asked: dict[str, float] = {}  # server id -> when its delete was accepted
        left = set(server_ids)
        while left:
            for server_id in sorted(left):
                if time.monotonic() - asked.get(server_id, -DELETE_AGAIN_AFTER) >= DELETE_AGAIN_AFTER:
                    if await self._try(self.client.delete_server(server_id), f"deleting server {server_id}"):
                        asked[server_id] = time.monotonic()
                gone = await self._try(self._gone(server_id), f"checking that server {server_id} is gone")
                if gone:
                    left.discard(server_id)
            if not left:
                break
            if time.monotonic() > deadline:
                raise CloudFailure(
                    "Your VM could not be deleted: the cloud did not confirm it within "
                    f"{spawner.delete_timeout:.0f} seconds. The hub's administrators can see which VM is left in "
                    "its log; it will be removed.", status_code=504,
                    detail=f"server(s) {', '.join(sorted(left))} of {spawner._log_name} still there after "
                    f"{spawner.delete_timeout:.0f} s")
            await asyncio.sleep(spawner.status_interval)
        for port_id in sorted(port_ids):
            if spawner.floating_ip_network:
                await self._try(self.client.delete_floating_ips_of_port(port_id),
                                f"deleting the floating IPs of port {port_id}")
            await self._try(self.client.delete_port(port_id), f"deleting port {port_id}")

    async def _gone(self, server_id: str) -> bool:
        return not await self.client.server_exists(server_id, self.vm_name)

    async def _try(self, call, what: str):
        """``await call``; on a cloud error log it and return None (the caller tries again)."""
        try:
            result = await call
            return True if result is None else result
        except CLOUD_ERRORS as e:
            self.spawner.log.warning("%s of %s failed: %s", what.capitalize(), self.spawner._log_name, str(e)[:300])
            return None
