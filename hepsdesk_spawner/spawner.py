"""OpenStackSpawner: each user's JupyterLab runs in their own OpenStack VM.

``start()`` creates a Neutron port (so the VM's address is known before it boots), renders
cloud-init that starts ``jupyterhub-singleuser`` on that address, creates the server tagged
with this hub and the user, and follows it through real stages (Nova's task states, the
guest's console, JupyterLab answering) until the single-user server responds. Everything
created for a spawn is deleted if it fails or passes the spawner's deadline, which is a
little shorter than ``start_timeout`` so the user sees why instead of the hub's generic
timeout. All OpenStack calls run off the event loop (see ``cloud.py``).
"""

from __future__ import annotations

import asyncio
import base64
import re
import time

from jupyterhub.spawner import Spawner, SpawnException
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Dict, Float, Integer, List, Unicode, default

from . import __version__
from .cloud import OpenStackClient, SDKError
from .cloudinit import EXITED_MARKER, LOG_LINE_PREFIX, STARTING_MARKER, render_singleuser_user_data
from .watcher import ServerView, ServerWatcher, WatcherUnavailable

BOOTED_RE = re.compile(r"Cloud-init v\. \S+ running 'modules:final'")
TASK_STAGES = {
    "scheduling": (20, "Finding a host with room for your VM"),
    "networking": (30, "Connecting your VM to the network"),
    "block_device_mapping": (35, "Preparing your VM's disk"),
    "spawning": (40, "Booting your VM"),
}
# A server in one of these states died: poll() deletes it (shelved servers keep their disk).
DEAD_STATES = ("SHUTOFF", "ERROR")
GONE_STATES = ("SHUTOFF", "ERROR", "SHELVED", "SHELVED_OFFLOADED", "DELETED", "SOFT_DELETED")


class OpenStackSpawner(Spawner):
    """Spawn each user's server in a VM on an OpenStack cloud."""

    cloud = Unicode(
        "devcloud",
        config=True,
        help="""Name of the cloud in clouds.yaml to create servers in (the hub's project).

        Production: an application credential of the hub's project, e.g.
        ``clouds: {heps: {auth_type: v3applicationcredential, auth: {auth_url: ...,
        application_credential_id: ..., application_credential_secret: ...}}}``.
        """,
    ).tag(config=True)
    clouds_yaml = Unicode(
        "",
        config=True,
        help="Path of the clouds.yaml to read; default: openstacksdk's search path "
        "(./clouds.yaml, ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml).",
    )
    image = Unicode("hepsdesk-desktop", config=True, help="Glance image (name or id) the VMs boot from.")
    flavor = Unicode("c1.small", config=True, help="Nova flavor (name or id) of the VMs.")
    network = Unicode(
        "hepsdesk-net",
        config=True,
        help="Neutron network (name or id) the VMs are attached to. The hub must reach the VMs' "
        "fixed addresses on it (the port's address is what the hub connects to).",
    )
    server_name_template = Unicode(
        "jupyter-{username}{servername}",
        config=True,
        help="Name of the VM; {username} and {servername} ('-name' for named servers) are filled in.",
    )
    hub_tag = Unicode(
        "hepsdesk-hub",
        config=True,
        help="Tag and metadata value marking the servers this hub created. Give each hub that "
        "shares a project its own tag.",
    )
    extra_metadata = Dict(
        config=True,
        help="Extra server metadata (visible to every member of the project: no secrets).",
    )
    singleuser_port = Integer(8888, config=True, help="Port jupyterhub-singleuser listens on in the VM.")
    notebook_dir = Unicode("/root", config=True, help="Directory JupyterLab starts in, inside the VM.")
    start_deadline = Float(
        0,
        config=True,
        help="Seconds a start may take before the VM is deleted and the user told why; "
        "0 means start_timeout minus 15 s, so this message wins over the hub's generic timeout.",
    )
    api_request_timeout = Float(30, config=True, help="Timeout of each OpenStack API request, in seconds.")
    status_interval = Float(1.0, config=True, help="Seconds between status checks while a VM starts.")
    watch_interval = Float(
        5.0,
        config=True,
        help="""Seconds between the lists of this hub's servers that answer every poll.

        One request (a page of up to Nova's ``max_limit`` servers, 1000 by default) serves all
        users, however many; ``poll()`` only looks the server up in the newest list. A VM that
        crashed shows as stopped in the hub within ``watch_interval + poll_interval``.
        """,
    )
    delete_timeout = Float(180, config=True, help="Seconds stop() waits for the VM to be gone.")
    extra_user_data_env = Dict(
        config=True, help="Extra environment variables for the single-user server (in addition to the hub's)."
    )

    # JupyterHub's defaults are made for local processes; VMs need minutes, not seconds.
    @default("poll_interval")
    def _poll_interval_default(self):
        # A poll is a lookup in the shared watcher's list, not a request: poll often.
        return 10

    @default("start_timeout")
    def _start_timeout_default(self):
        return 600

    @default("http_timeout")
    def _http_timeout_default(self):
        return 120

    @default("env_keep")
    def _env_keep_default(self):
        # The VM has its own environment: nothing of the hub's process leaks into it.
        return []

    @default("cmd")
    def _cmd_default(self):
        return ["jupyterhub-singleuser"]

    @default("args")
    def _args_default(self):
        return ["--allow-root"]

    # state

    server_id = Unicode("")
    port_id = Unicode("")
    address = Unicode("")
    events = List()
    _deleting = Dict()  # server id -> task deleting that dead VM

    def get_state(self):
        state = super().get_state()
        if self.server_id:
            state.update(server_id=self.server_id, port_id=self.port_id, address=self.address,
                         version=__version__)
        return state

    def load_state(self, state):
        super().load_state(state)
        self.server_id = state.get("server_id", "")
        self.port_id = state.get("port_id", "")
        self.address = state.get("address", "")

    def clear_state(self):
        super().clear_state()
        self.server_id = self.port_id = self.address = ""

    @property
    def client(self) -> OpenStackClient:
        return OpenStackClient(self.cloud, self.clouds_yaml, self.api_request_timeout)

    @property
    def watcher(self) -> ServerWatcher:
        return ServerWatcher.shared(self.client, self.hub_tag, self.watch_interval)

    @property
    def vm_name(self) -> str:
        servername = f"-{self.name}" if self.name else ""
        return self.server_name_template.format(username=self.user.name, servername=servername)

    @property
    def vm_metadata(self) -> dict[str, str]:
        return {**self.extra_metadata, "hepsdesk-hub": self.hub_tag, "hepsdesk-user": self.user.name,
                "hepsdesk-server": self.name or ""}

    # progress

    @property
    def _new_event(self) -> asyncio.Event:
        if not hasattr(self, "_new_event_"):
            self._new_event_ = asyncio.Event()
        return self._new_event_

    def _emit(self, progress: int, message: str) -> None:
        elapsed = time.monotonic() - self._started
        self.events.append({"progress": progress, "message": f"{message} ({elapsed:.0f} s)"})
        self.log.info("Spawn of %s: %s", self._log_name, message)
        self._new_event.set()

    async def progress(self):
        """Yield the spawn's stages as they happen (the hub stops iterating when start ends)."""
        seen = 0
        while True:
            while seen < len(self.events):
                yield self.events[seen]
                seen += 1
            self._new_event.clear()
            await self._new_event.wait()

    # start

    async def start(self):
        self.events = []
        self._started = time.monotonic()
        deadline = self.start_deadline or max(60.0, self.start_timeout - 15)
        try:
            return await asyncio.wait_for(self._start(), timeout=deadline)
        except TimeoutError:
            console = await self._console_excerpt()
            await self._cleanup()
            raise SpawnException(
                f"Your VM was not ready within {deadline:.0f} seconds, so it has been removed. "
                f"Please try again; if this keeps happening, contact the facility's support. {console}",
                reason="timeout", status_code=504) from None
        except BaseException:
            await self._cleanup()
            raise

    async def _start(self):
        self._emit(5, "Looking up the image, flavor and network")
        image, flavor, network = await asyncio.gather(
            self.client.find_image(self.image), self.client.find_flavor(self.flavor),
            self.client.find_network(self.network))
        for kind, wanted, found in (("image", self.image, image), ("flavor", self.flavor, flavor),
                                    ("network", self.network, network)):
            if found is None:
                raise SpawnException(
                    f"The {kind} '{wanted}' does not exist on the cloud, so no VM can be started. "
                    "Please tell the hub's administrators.", reason=f"no_{kind}", status_code=500)

        self._emit(10, "Reserving a network address")
        port = await self.client.create_port(network.id, f"{self.vm_name}-port",
                                             f"hepsdesk: {self.user.name}'s server {self.name or '(default)'}")
        self.port_id = port.id
        self.address = port.fixed_ips[0]["ip_address"]
        self.ip, self.port = self.address, self.singleuser_port

        env = self.get_env()
        env.update(self.extra_user_data_env)
        # The desktop offers this address for WebRTC media (see desktop_proxy.peers).
        env["HEPSDESK_VM_ADDRESS"] = self.address
        command = [*self.cmd, *self.get_args()]
        user_data = render_singleuser_user_data(command, env, workdir=self.notebook_dir)
        self._emit(15, f"Creating your VM ({image.name}, {flavor.name})")
        server = await self.client.create_server(
            name=self.vm_name, image_id=image.id, flavor_id=flavor.id, networks=[{"port": port.id}],
            user_data=base64.b64encode(user_data.encode()).decode(), metadata=self.vm_metadata,
            tags=[self.hub_tag])
        self.server_id = server.id

        await self._wait_active()
        await self._wait_console(STARTING_MARKER, 70, "Your VM booted; starting JupyterLab")
        await self._wait_http()
        return f"http://{self.address}:{self.singleuser_port}"

    async def _wait_active(self) -> None:
        reported = None
        while True:
            server = await self.client.get_server(self.server_id)
            if server is None:
                raise SpawnException("Your VM disappeared while it was starting. Please try again.",
                                     reason="vm_gone", status_code=500)
            if server.status == "ACTIVE":
                self._emit(50, "Your VM is running; waiting for it to boot")
                return
            if server.status == "ERROR":
                fault = (server.fault or {}).get("message", "no reason given")
                raise SpawnException(f"The cloud could not start your VM: {fault}", reason="vm_error",
                                     status_code=500)
            stage = TASK_STAGES.get(server.task_state or "")
            if stage and server.task_state != reported:
                reported = server.task_state
                self._emit(*stage)
            await asyncio.sleep(self.status_interval)

    async def _wait_console(self, marker: str, progress: int, message: str) -> None:
        booted = False
        while True:
            console = await self.client.console_tail(self.server_id, 80)
            if not booted and BOOTED_RE.search(console):
                booted = True
                self._emit(60, "The guest is booting (cloud-init is running)")
            if marker in console:
                self._emit(progress, message)
                return
            await self._check_still_running()
            await asyncio.sleep(self.status_interval)

    async def _wait_http(self) -> None:
        url = f"http://{self.address}:{self.singleuser_port}{self.user.url}api"
        http = AsyncHTTPClient()
        while True:
            try:
                await http.fetch(url, request_timeout=3, connect_timeout=3, follow_redirects=False)
                break
            except HTTPClientError as e:
                if e.code != 599:  # any HTTP answer means the server is up
                    break
            except OSError:
                pass
            await self._check_still_running()
            await self._check_jupyterlab_alive()
            await asyncio.sleep(self.status_interval)
        self._emit(90, "JupyterLab is answering")

    async def _check_jupyterlab_alive(self) -> None:
        """Fail at once, with the end of its log, when JupyterLab exited in the VM."""
        console = await self.client.console_tail(self.server_id, 40)
        if EXITED_MARKER not in console:
            return
        tail = console[console.rindex(EXITED_MARKER):].splitlines()
        status = re.search(r"with status (\d+)", tail[0])
        log = [line[len(LOG_LINE_PREFIX):] for line in tail[1:] if line.startswith(LOG_LINE_PREFIX)]
        raise SpawnException(
            f"JupyterLab could not start in your VM (it exited with status {status.group(1) if status else '?'}), "
            "so the VM has been removed. Please tell the hub's administrators; the end of its log: "
            + (" | ".join(log[-5:]) or "(empty)"), reason="singleuser_exited", status_code=500)

    async def _check_still_running(self) -> None:
        server = await self.client.get_server(self.server_id)
        if server is None or server.status in GONE_STATES:
            console = await self._console_excerpt()
            raise SpawnException(f"Your VM stopped while it was starting ({server.status if server else 'deleted'}). "
                                 f"{console}", reason="vm_stopped", status_code=500)

    async def _console_excerpt(self) -> str:
        if not self.server_id:
            return ""
        try:
            lines = [line for line in (await self.client.console_tail(self.server_id, 10)).splitlines() if line]
        except SDKError:
            return ""
        return ("Last lines of its console: " + " | ".join(lines[-5:])) if lines else ""

    # poll and stop

    async def poll(self):
        if not self.server_id:
            return 0
        try:
            view = await self.watcher.get(self.server_id, wait=self.api_request_timeout)
            if view is None:
                # Not in the newest list: gone, or created after that list was requested.
                server = await self.client.get_server(self.server_id)
                view = ServerView.of(server) if server is not None else None
        except (WatcherUnavailable, SDKError) as e:
            self.log.warning("Cannot poll server %s of %s: %s", self.server_id, self._log_name, e)
            return None  # the cloud may be briefly unreachable: do not declare the server dead
        if view is None or view.status in GONE_STATES:
            if view is not None and view.status in DEAD_STATES:
                self._delete_dead_vm(view)
            return 0
        return None

    def _delete_dead_vm(self, view: ServerView) -> None:
        """A VM that died (crash, shut down from inside or by an operator) is deleted with its
        port, as stop() would: the hub will not call stop() for a server that is not running.
        Only these ids are deleted, so a new start for the same user is never touched."""
        if view.id in self._deleting:
            return
        self.log.warning("Server %s of %s is %s: deleting it", view.id, self._log_name, view.status)

        async def delete(port_id: str = self.port_id) -> None:
            try:
                await self._delete({view.id}, port_id)
            except SDKError as e:  # logged; the server stays until deleted by hand
                self.log.error("Deleting the dead server %s of %s failed: %s", view.id, self._log_name, e)
            finally:
                self._deleting.pop(view.id, None)

        self._deleting[view.id] = asyncio.ensure_future(delete())

    async def stop(self, now=False):
        await self._cleanup()

    async def _cleanup(self) -> None:
        """Delete this spawn's server(s) and port and wait until the servers are gone."""
        server_id, port_id = self.server_id, self.port_id
        try:
            servers = await self.client.find_servers(self.vm_name, {"hepsdesk-hub": self.hub_tag,
                                                                    "hepsdesk-user": self.user.name})
        except SDKError as e:
            self.log.error("Listing servers of %s failed: %s", self._log_name, e)
            servers = []
        await self._delete({s.id for s in servers} | ({server_id} if server_id else set()), port_id)
        self.server_id = self.port_id = self.address = ""

    async def _delete(self, server_ids: set[str], port_id: str) -> None:
        """Delete these servers and the port, waiting (up to delete_timeout) until they are gone."""
        for server_id in server_ids:
            await self.client.delete_server(server_id)
        deadline = time.monotonic() + self.delete_timeout
        for server_id in server_ids:
            while await self.client.get_server(server_id) is not None:
                if time.monotonic() > deadline:
                    self.log.error("Server %s of %s is still there after %.0f s", server_id, self._log_name,
                                   self.delete_timeout)
                    break
                await asyncio.sleep(self.status_interval)
        if port_id:
            await self.client.delete_port(port_id)
