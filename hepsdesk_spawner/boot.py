"""``BootMonitor``: one starting VM followed to "JupyterLab is answering", at real stages.

Nova's status and task state say when the VM is scheduled, networked, spawned and running
(read from the hub's shared server list, one request a second for all starts). Then the
guest's console says when cloud-init runs and when the start script starts JupyterLab, or
why it did not (JupyterLab exited, the data is not mounted, a resumed VM got no environment):
a start fails at once with the reason, not at the deadline. Ready means the server's own URL
answers as jupyterhub-singleuser does (``GET <base_url>api``: 200 with its version), not any
HTTP answer: a server at the wrong prefix answers 404, and is not ready.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import TYPE_CHECKING

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from . import errors
from .cloud import CLOUD_ERRORS
from .cloudinit import (
    EXITED_MARKER,
    IDENTITY_CONFLICT_MARKER,
    LOG_LINE_PREFIX,
    MISSING_MOUNT_MARKER,
    NO_ENV_MARKER,
    STARTING_MARKER,
)
from .errors import CloudFailure
from .watcher import ServerView, WatcherUnavailable

if TYPE_CHECKING:
    from .spawner import OpenStackSpawner

BOOTED_RE = re.compile(r"Cloud-init v\. \S+ running 'modules:final'")
TASK_STAGES = {
    "scheduling": (20, "Finding a host with room for your VM"),
    "networking": (30, "Connecting your VM to the network"),
    "block_device_mapping": (35, "Preparing your VM's disk"),
    "spawning": (40, "Booting your VM"),
    "unshelving": (30, "Restoring your shelved VM's disk"),
}
SHELVED_STATES = ("SHELVED", "SHELVED_OFFLOADED")
# A server in one of these states died: poll() deletes it (shelved servers keep their disk).
DEAD_STATES = ("SHUTOFF", "ERROR")
# A server in one of these states is not running (poll() reports it stopped).
GONE_STATES = ("SHUTOFF", "ERROR", "SHELVED", "SHELVED_OFFLOADED", "DELETED", "SOFT_DELETED")


class NoHost(Exception):
    """Nova's scheduler found no host for the VM (NoValidHost); ``fault`` is Nova's text."""

    def __init__(self, fault: str):
        super().__init__(fault)
        self.fault = fault


class BootMonitor:
    def __init__(self, spawner: OpenStackSpawner):
        self.spawner = spawner
        self.last_answer = ""  # what the server's URL answered last (for the deadline's message)

    async def server_view(self, fresh: bool) -> ServerView | None:
        """The server as the shared watcher sees it (``fresh``: from a list made from now on,
        shared with every other start waiting), confirmed by a direct request if the list does
        not have it (it may be newer than the list) or the watcher cannot list."""
        spawner = self.spawner
        watcher, server_id = spawner.site.watcher, spawner.vm.server_id
        try:
            view = await (watcher.fresh(server_id, time.monotonic(), wait=spawner.api_request_timeout)
                          if fresh else watcher.get(server_id, wait=spawner.api_request_timeout))
        except WatcherUnavailable:
            view = None
        if view is None:
            server = await spawner.site.client.get_server(server_id)
            view = ServerView.of(server) if server is not None else None
        return view

    async def wait_active(self) -> None:
        """Until Nova says the VM runs, reporting its task states; NoHost when no host took it."""
        spawner, reported = self.spawner, None
        while True:
            started = time.monotonic()
            server = await self.server_view(fresh=True)
            if server is None:
                raise CloudFailure("Your VM disappeared while it was starting. Please try again.", status_code=502,
                                   detail=f"server {spawner.vm.server_id} is gone")
            if server.status == "ACTIVE":
                spawner.emit(50, "Your VM is running; waiting for it to boot")
                return
            if server.status == "ERROR":
                fault = server.fault or "no reason given"
                if errors.NO_HOST_RE.search(fault):
                    raise NoHost(fault)
                raise CloudFailure(f"The cloud could not start your VM: {self.scrub(fault)}", status_code=502,
                                   detail=f"server {spawner.vm.server_id} in ERROR")
            stage = TASK_STAGES.get(server.task_state or "")
            if stage and server.task_state != reported:
                reported = server.task_state
                spawner.emit(*stage)
            await asyncio.sleep(max(0.0, spawner.status_interval - (time.monotonic() - started)))

    def ready_url(self) -> str:
        """The URL jupyterhub-singleuser answers at, in the VM, for this (named) server."""
        spawner = self.spawner
        base_url = spawner.server.base_url if spawner.server is not None else spawner.user.url
        return f"http://{spawner.connect_address}:{spawner.singleuser_port}{base_url}api"

    async def answers(self, http: AsyncHTTPClient, url: str) -> bool:
        """Does ``url`` answer as jupyterhub-singleuser does (200, with its version)?"""
        try:
            response = await http.fetch(url, request_timeout=3, connect_timeout=3, follow_redirects=False,
                                        raise_error=False)
        except (HTTPClientError, OSError) as e:
            self.last_answer = f"no answer ({e})"
            return False
        try:
            ready = response.code == 200 and "version" in json.loads(response.body)
        except (ValueError, TypeError):
            ready = False
        self.last_answer = f"{response.code} {response.reason}"
        return ready

    async def wait_ready(self, booting: bool = True) -> None:
        """Until JupyterLab answers: its URL every ``status_interval`` (no API request), the
        console every ``console_interval`` (boot stages, and JupyterLab exiting: fail at once).
        Not ``booting``: a pooled VM, which booted long ago (its console's boot is old news)."""
        spawner, url, http = self.spawner, self.ready_url(), AsyncHTTPClient()
        booted, starting = not booting, not booting
        console_read = -spawner.console_interval
        while not await self.answers(http, url):
            await self._check_still_running()
            if time.monotonic() - console_read >= spawner.console_interval:
                console_read = time.monotonic()
                console = await spawner.site.client.console_tail(spawner.vm.server_id, 80)
                if not booted and BOOTED_RE.search(console):
                    booted = True
                    spawner.emit(60, "The guest is booting (cloud-init is running)")
                if not starting and STARTING_MARKER in console:
                    starting = True
                    spawner.emit(70, "Your VM booted; starting JupyterLab")
                self._check_jupyterlab_alive(console)
            # A pooled VM's JupyterLab is seconds away: its URL is asked more often (no API request).
            await asyncio.sleep(spawner.status_interval if booting else min(spawner.status_interval, 0.2))
        if not starting and booting:
            spawner.emit(70, "Your VM booted; starting JupyterLab")
        spawner.emit(90, "JupyterLab is answering")

    def _check_jupyterlab_alive(self, console: str) -> None:
        """Fail at once, with the end of its log, when JupyterLab exited in the VM."""
        if EXITED_MARKER not in console:
            return
        if NO_ENV_MARKER in console:
            raise CloudFailure(
                f"Your VM did not get its environment from the hub ({self.scrub(_after(console, NO_ENV_MARKER))}), "
                "so JupyterLab was not started. Please tell the hub's administrators (is "
                "hepsdesk_spawner.resume.handlers in JupyterHub.extra_handlers?).", status_code=500)
        if IDENTITY_CONFLICT_MARKER in console:
            why = self.scrub(_after(console, IDENTITY_CONFLICT_MARKER))
            raise CloudFailure(
                f"Your computing account cannot be made in this VM: {why}. JupyterLab was not started and the VM "
                "has been removed. Please tell the hub's administrators (the image must declare "
                "its own accounts: hepsdesk_account_ids and hepsdesk_account_names).", status_code=500)
        if MISSING_MOUNT_MARKER in console:
            missing = _after(console, MISSING_MOUNT_MARKER)
            why = [line for line in console.splitlines() if line.startswith(("mount:", "mount."))]
            raise CloudFailure(
                f"Your data could not be mounted in the VM ({missing}"
                + (f": {self.scrub(why[-1])}" if why else "") + "). JupyterLab was not started, so nothing was "
                "written to the VM's own disk, and the VM has been removed. Please tell the facility's support.",
                status_code=502)
        tail = console[console.rindex(EXITED_MARKER):].splitlines()
        status = re.search(r"with status (\d+)", tail[0])
        log = [line[len(LOG_LINE_PREFIX):] for line in tail[1:] if line.startswith(LOG_LINE_PREFIX)]
        raise CloudFailure(
            f"JupyterLab could not start in your VM (it exited with status {status.group(1) if status else '?'}), "
            "so the VM has been removed. Please tell the hub's administrators; the end of its log: "
            + (self.scrub(" | ".join(log[-5:])) or "(empty)"), status_code=500)

    async def _check_still_running(self) -> None:
        server = await self.server_view(fresh=False)
        if server is None or server.status in GONE_STATES:
            console = await self.console_excerpt()
            raise CloudFailure(f"Your VM stopped while it was starting ({server.status if server else 'deleted'}). "
                               f"{console}", status_code=502)

    async def console_excerpt(self) -> str:
        """The end of the VM's console, for a message (without secrets); "" if there is none."""
        if not self.spawner.vm.server_id:
            return ""
        try:
            lines = [line for line in (await self.spawner.site.client.console_tail(self.spawner.vm.server_id, 10))
                     .splitlines() if line]
        except CLOUD_ERRORS:
            return ""
        return ("Last lines of its console: " + self.scrub(" | ".join(lines[-5:]))) if lines else ""

    def scrub(self, text: str) -> str:
        """Console text for the user's eyes: without the server's token or anything secret-looking."""
        spawner = self.spawner
        env = {**spawner.get_env(), **spawner.extra_user_data_env}
        known = [spawner.api_token or "", *(v for k, v in env.items() if errors.SECRET_RE.search(f"{k}=x"))]
        return errors.scrub_secrets(text, known)


def _after(console: str, marker: str) -> str:
    """The rest of the line of the last ``marker`` on the console."""
    return console[console.rindex(marker) + len(marker):].splitlines()[0].strip()
