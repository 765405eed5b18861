"""``Shelving``: a profile with ``stop_mode: shelve`` keeps the user's VM between starts.

``stop()`` (and an idle timeout) shelves the VM instead of deleting it: Nova keeps its disk
as an image and frees the host. The next start of that server with the same profile, account
and data mounts unshelves the same VM on the same port; the VM then asks the hub for its new
environment (``resume.py``). Anything else (another profile, a changed account or mounts,
the VM gone or broken) deletes it and a new one is started, and the progress says why. A
resume that fails shelves the VM again, so its disk is never lost to a failure.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .account import GuestAccount
from .boot import SHELVED_STATES
from .cloud import CLOUD_ERRORS
from .cloudinit import singleuser_environment
from .profiles import Profile
from .watcher import ServerView

if TYPE_CHECKING:
    from .spawner import OpenStackSpawner


class Shelving:
    def __init__(self, spawner: OpenStackSpawner):
        self.spawner = spawner

    async def shelve(self) -> bool:
        """Shelve the server's VM and wait (up to ``delete_timeout``) until Nova has; False when
        it cannot be (it is gone or in ERROR, or Nova failed): then the caller deletes it."""
        spawner = self.spawner
        server_id, client = spawner.vm.server_id, spawner.site.client
        try:
            server = await client.get_server(server_id)
            if server is not None and server.status not in (*SHELVED_STATES, "ERROR"):
                spawner.log.info("Shelving VM %s of %s", server_id, spawner._log_name)
                await client.shelve_server(server_id)
            deadline = time.monotonic() + spawner.delete_timeout
            # Until Nova is done (an offload follows the shelve when the cloud offloads at once).
            while server is not None and (server.status not in SHELVED_STATES or server.task_state):
                if server.status == "ERROR" or time.monotonic() > deadline:
                    spawner.log.error("Shelving VM %s of %s failed (%s): deleting it instead", server_id,
                                      spawner._log_name, server.fault or server.status)
                    return False
                await asyncio.sleep(spawner.status_interval)
                server = await client.get_server(server_id)
        except CLOUD_ERRORS as e:
            spawner.log.error("Shelving VM %s of %s failed (%s): deleting it instead", server_id, spawner._log_name,
                              str(e)[:300])
            return False
        if server is None:
            return False
        spawner.vm.shelved = True
        spawner.log.info("Shelved VM %s of %s", server_id, spawner._log_name)
        return True

    async def why_not_resume(self, profile: Profile, account: GuestAccount) -> str:
        """Why the shelved VM cannot serve this start ("" when it can); it is ready to be
        unshelved when this returns "" (a VM an interrupted resume left running is shelved again)."""
        spawner, state = self.spawner, self.spawner.vm
        # Asked directly: the watcher's newest list may predate the shelve.
        view = await self._view()
        same = (profile.slug, profile.stop_mode, account.digest) == (state.profile, "shelve", state.mounts_digest)
        if same and view is not None and view.status in ("ACTIVE", "SHUTOFF"):
            # A resume the hub did not see finish (it was restarted) left it running: its disk
            # is still the user's, so it is shelved again and resumed the usual way.
            spawner.emit(4, "Your VM was left running by an interrupted start: shelving it first")
            if await self.shelve():
                view = await self._view()
        if view is None:
            return "it no longer exists"
        if view.status not in SHELVED_STATES:
            return f"it is {view.status}"
        if (profile.slug, profile.stop_mode) != (state.profile, "shelve"):
            return f"you chose {profile.display_name}"
        if account.digest != state.mounts_digest:
            return "your account or data mounts changed"
        return ""

    async def _view(self) -> ServerView | None:
        server = await self.spawner.site.client.get_server(self.spawner.vm.server_id)
        return ServerView.of(server) if server is not None else None

    async def unshelve(self, account: GuestAccount) -> None:
        """Unshelve the VM, with the environment the resume handler will give it."""
        spawner = self.spawner
        spawner.resume_env = singleuser_environment(spawner.singleuser_env(), account.identity,
                                                     account.mounts)
        spawner.log.info("Spawn of %s: unshelving VM %s", spawner._log_name, spawner.vm.server_id)
        await spawner.site.client.unshelve_server(spawner.vm.server_id)
