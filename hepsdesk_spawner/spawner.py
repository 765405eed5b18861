"""OpenStackSpawner: each user's JupyterLab runs in their own OpenStack VM.

The Spawner contract, step by step (``docs/architecture.md`` has the picture):

1. ``start()`` takes the profile the user chose (only among their own), the account and data
   mounts their auth_state gives, and either resumes their shelved VM or makes a new one: a
   Neutron port first (the VM's address goes into its user-data), cloud-init that starts
   ``jupyterhub-singleuser`` on that address as the user, the server tagged with this hub and
   the user. It reports real stages (``progress()``) until the server's own URL answers, and
   returns that URL. Whatever fails, everything made for the start is removed; the spawner's
   deadline is a little shorter than ``start_timeout`` so the user sees why.
2. ``poll()`` looks the server up in the hub-wide list (``CloudSite.watcher``): no request per
   server. A VM found dead is deleted; one idle longer than its profile allows is stopped.
3. ``stop()`` shelves the VM (``stop_mode: shelve``) or deletes it, and returns only once the
   cloud confirms it.

Expected refusals are ``SpawnError``; everything else is a ``CloudFailure``, which JupyterHub
counts towards ``consecutive_failure_limit`` (``errors.py``). The work is done by collaborators
of one idea each: ``ServerResources`` (port, floating IP, server; found and deleted),
``BootMonitor`` (stages and readiness), ``Shelving``; the hub-wide ``CloudSite`` holds what
all spawners share. No OpenStack call runs on the hub's event loop (``cloud.py``).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time

from jupyterhub.spawner import Spawner, SpawnException
from traitlets import default

from . import __version__, errors, options_form
from .account import GuestAccount, check_fits_image, guest_account
from .boot import DEAD_STATES, GONE_STATES, SHELVED_STATES, BootMonitor, NoHost
from .capacity import flavor_gpu_request
from .cloud import CLOUD_ERRORS
from .cloudinit import (
    ALLOW_HTTP_HUB,
    boot_environment,
    guest_plan,
    render_singleuser_user_data,
    singleuser_environment,
)
from .datamounts import parse_data_mounts
from .desktop_reports import REPORTS
from .errors import CloudFailure, SpawnError
from .idle import ACTIVITY_INTERVAL, IDLE_TIMEOUT, activity_interval, idle_seconds
from .metrics import SpawnTimer
from .pool import CLAIMS as POOL_CLAIMS
from .pool import PooledVM
from .profiles import Profile, ProfileError, ProfileRefused, choose, parse_profiles
from .quotas import Charge, QuotaBook, candidate_groups
from .resources import ServerResources
from .resume import resume_key
from .settings import ConfigError, SpawnerSettings
from .shelving import Shelving
from .site import CloudSite
from .state import ServerState
from .watcher import ServerView


class OpenStackSpawner(SpawnerSettings, Spawner):
    """Spawn each user's server in a VM on an OpenStack cloud."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.vm = ServerState()
        self.events: list[dict] = []
        self.resume_env: dict[str, str] | None = None  # during a start: the env the hub gives its VM at boot
        self.resources = ServerResources(self)
        self.boot = BootMonitor(self)
        self.shelving = Shelving(self)
        self._new_event = asyncio.Event()
        self._started = time.monotonic()
        self.timer = SpawnTimer()  # this start's stages, for the hub's metrics
        self._resuming = False  # this start unshelves the VM (a failure shelves it again)
        self._ready_at = 0.0  # when this process saw the server become ready (time.time())
        self._deleting: dict[str, asyncio.Future] = {}  # server id -> task deleting that stopped VM
        self.stop_override = ""  # the next stop's mode instead of the profile's ("shelve", "delete": the dashboard)

    @property
    def site(self) -> CloudSite:
        return CloudSite.of(self)

    # state: what the hub saves between its restarts

    def get_state(self):
        return {**super().get_state(), **self.vm.saved(__version__)}

    def load_state(self, state):
        super().load_state(state)
        self.vm = ServerState.loaded(state)

    def clear_state(self):
        super().clear_state()
        self.vm.clear()

    # the spawn page

    @default("options_form")
    def _options_form_default(self):
        return lambda spawner: spawner.render_options_form()

    @default("options_from_form")
    def _options_from_form_default(self):
        return options_form.options_from_form

    async def all_profiles(self) -> list[Profile]:
        """Every configured profile (checked), or the implicit one of ``image`` and ``flavor``."""
        entries = self.profiles
        if callable(entries):
            entries = entries(self)
            if asyncio.iscoroutine(entries):
                entries = await entries
        if not entries:
            return [Profile(slug="default", display_name="Default", image=self.image, flavor=self.flavor,
                            default=True)]
        return parse_profiles(entries)

    async def user_profiles(self) -> list[Profile]:
        """The profiles this user may start (by their JupyterHub groups; admins: all)."""
        groups = {g.name for g in self.user.groups}
        return [p for p in await self.all_profiles() if p.allows(groups, admin=bool(self.user.admin))]

    async def render_options_form(self) -> str:
        """The spawn page's cards, or "" (no form) when the user has one profile or none."""
        try:
            profiles = await self.user_profiles()
        except ProfileError as e:
            self.log.error("OpenStackSpawner.profiles is wrong: %s", e)
            return ("<p>The hub's list of environments is misconfigured, so no server can be started. "
                    "The administrators have been told (the hub's log names the mistake).</p>")
        if len(profiles) <= 1:
            return ""
        return options_form.render(list(await asyncio.gather(*(options_form.card(self, p) for p in profiles))))

    async def choose_profile(self) -> Profile:
        """The profile in user_options, checked: anything else is refused before anything is made."""
        options = dict(self.user_options or {})
        unknown = sorted(set(options) - {"profile", "group"})
        if unknown:
            raise SpawnError(f"Unknown option(s) {', '.join(map(repr, unknown))[:200]}: the options are "
                             "'profile', the name of an environment, and 'group', the group whose quota the "
                             "server counts against.", reason="bad_options", status_code=400)
        try:
            return choose(await self.user_profiles(), options.get("profile"))
        except ProfileRefused as e:
            raise SpawnError(str(e), reason="profile_refused", status_code=403) from None
        except ProfileError as e:
            raise CloudFailure("The hub's list of environments is misconfigured, so no server can be started. "
                               "Please tell the hub's administrators.", status_code=500,
                               detail=f"OpenStackSpawner.profiles: {e}") from None

    # group quotas (quotas.py)

    def charge_groups(self, profile: Profile) -> list[str]:
        """The groups a server of ``profile`` can be charged to, for this user."""
        return candidate_groups((g.name for g in self.user.groups), profile.allowed_groups, self.site.group_quotas,
                                admin=bool(self.user.admin))

    @property
    def quota_key(self) -> str:
        return QuotaBook.key(self.user.name, self.name or "")

    def _admit(self, profile: Profile, flavor) -> Charge | None:
        """Book this server against its group's quota (``SpawnError`` when it has no room);
        None: it is charged to no group."""
        candidates = self.charge_groups(profile)
        wanted = (self.user_options or {}).get("group")
        if wanted is not None:
            if wanted not in candidates:
                choice = f"one of {', '.join(candidates)}" if candidates else "none: leave 'group' out"
                raise SpawnError(f"Your server of {profile.display_name} cannot count against the group "
                                 f"{str(wanted)[:60]!r}: choose {choice}.", reason="bad_options", status_code=400)
            candidates = [wanted]
        elif self.vm.group in candidates:  # a resumed VM stays with its group
            candidates = [self.vm.group, *(g for g in candidates if g != self.vm.group)]
        if not candidates:
            self.vm.group = ""
            return None
        _, count = flavor_gpu_request(flavor.extra_specs or {})
        gpus = ((profile.gpu_model, count),) if count and profile.gpu_model else ()
        refusal = None
        for group in candidates:  # the first with room (the user's choice: only that one)
            charge = Charge(group, int(flavor.vcpus or 0), gpus)
            try:
                self.site.quotas.admit(self.quota_key, charge, self.site.group_quotas.get(group))
            except SpawnError as e:
                refusal = refusal or e
                continue
            self.vm.group = group
            return charge
        raise refusal

    # start

    async def start(self):
        self.events, self._started, self._resuming = [], time.monotonic(), False
        self.timer = SpawnTimer()
        try:
            url = await self._start_within_deadline()
        except BaseException as e:
            self.timer.failed(e)
            site = CloudSite.existing(self)  # (none: the settings are wrong, nothing was booked)
            if site is not None:
                site.quotas.release(self.quota_key)
            raise
        self.timer.succeeded()
        return url

    async def _start_within_deadline(self) -> str:
        self.resources.create_asked = False
        deadline = self.start_deadline or max(60.0, self.start_timeout - 15)
        try:
            self.site.start()  # the site is made (its settings checked) before anything else
            async with asyncio.timeout(deadline) as limit:
                return await self._start()
        except TimeoutError as e:
            if not limit.expired():
                raise await self._cloud_failure(e) from None
            console = await self.boot.console_excerpt()
            detail = f"start deadline; {self.boot.ready_url()} answered: {self.boot.last_answer or 'nothing'}"
            what = await self._undo_start()
            raise CloudFailure(
                f"Your VM was not ready within {deadline:.0f} seconds, so {what}. Please try again; if this keeps "
                f"happening, contact the facility's support. {console}", status_code=504, detail=detail) from None
        except ConfigError as e:  # nothing was made: the site is made (and the settings checked) first
            raise CloudFailure("The hub is misconfigured, so no server can be started. Please tell the hub's "
                               "administrators.", status_code=500, detail=str(e)) from None
        except (SpawnException, CloudFailure):
            await self._undo_start()
            raise
        except CLOUD_ERRORS as e:
            raise await self._cloud_failure(e) from None
        except BaseException:
            await self._undo_start()
            raise
        finally:
            self.resume_env = None

    async def _cloud_failure(self, error: BaseException) -> CloudFailure:
        """The cloud failed a request of this start: undo it and say so."""
        what = await self._undo_start()
        return CloudFailure(f"The cloud could not start your VM, and {what}. Please try again; if this keeps "
                            f"happening, tell the facility's support: {str(error)[:300]}", status_code=502,
                            detail=f"{type(error).__name__} starting {self._log_name}")

    async def _start(self) -> str:
        # 1. What the user asked for, and who they are in the VM.
        profile = await self.choose_profile()
        self.timer.profile = profile.slug
        templates = [*parse_data_mounts(self.data_mounts, "OpenStackSpawner.data_mounts"), *profile.data_mounts]
        account = guest_account(await self.user.get_auth_state(), templates, self.min_posix_id)
        if self.vm.shelved and self.vm.server_id and await self._can_resume(profile, account):
            return await self._resume(profile, account)
        self.vm.profile, self.vm.idle_timeout, self.vm.mounts_digest = profile.slug, profile.idle_timeout, \
            account.digest
        # 2. What an interrupted start of this server left behind goes first; meanwhile
        # 3. the image, flavor and networks.
        self.emit(5, f"Looking up the image, flavor and network of {profile.display_name}")
        client = self.site.client
        wanted = [("image", profile.image, client.find_image), ("flavor", profile.flavor, client.find_flavor),
                  ("network", self.network, client.find_network)]
        if self.floating_ip_network:
            wanted.append(("network", self.floating_ip_network, client.find_network))
        (servers, ports), *found = await asyncio.gather(self.resources.find_own(),
                                                        *(find(name) for _, name, find in wanted))
        if servers or ports:
            self.emit(8, "Removing a VM left over from an interrupted start")
            self.log.warning("Removing leftovers of %s: servers %s, ports %s", self._log_name, servers, ports)
            await self.resources.delete(servers, ports)
        for (kind, name, _), thing in zip(wanted, found, strict=True):
            if thing is None:
                raise CloudFailure(f"The {kind} '{name}' does not exist on the cloud, so no VM can be started. "
                                   "Please tell the hub's administrators.", status_code=500)
        image, flavor, network, *public = found
        check_fits_image(account, image)
        charge = self._admit(profile, flavor)
        metadata = {**self.extra_metadata, **self.resources.owner_metadata, "hepsdesk-profile": profile.slug,
                    "hepsdesk-image": image.name[:255], **(charge.metadata() if charge else {})}
        # 4. A VM of the warm pool, if one waits for a user (pool.py); else a new one.
        pooled = self.site.pool.take(profile.slug) if profile.slug in self.site.pool.settings else None
        if pooled is not None:
            try:
                return await self._start_pooled(pooled, account, metadata, public)
            except (CloudFailure, *CLOUD_ERRORS, TimeoutError) as e:
                POOL_CLAIMS.labels(profile.slug, "fallback").inc()
                self.log.warning("Pooled VM %s failed to become %s's (%s): booting a new one. %s", pooled.server_id,
                                 self._log_name, str(e)[:300] or type(e).__name__, await self.boot.console_excerpt())
                self.emit(12, "The prepared VM could not be set up for you, so it is being removed: "
                              "starting a new VM instead")
                self.site.pool.drop(pooled)  # its key is dead too
                await self.resources.delete_all()
                self.vm.floating_ip_id = self.vm.floating_address = ""
        elif profile.slug in self.site.pool.settings:
            POOL_CLAIMS.labels(profile.slug, "empty").inc()
            self.emit(6, "No prepared VM is free right now: starting a new one")
        # 5. Its addresses: the port (the VM's address goes into its user-data), a floating IP.
        self.emit(10, "Reserving a network address")
        port = await self.resources.create_port(network.id)
        self.vm.port_id, self.vm.address = port.id, port.fixed_ips[0]["ip_address"]
        await self._reserve_public_address(public)
        # 6. The VM, with cloud-init that starts JupyterLab as the user. Its user-data holds a
        #    one-time key, for which the hub gives the VM its environment once (resume.py).
        boot_key, env = secrets.token_urlsafe(32), self.singleuser_env()
        self.resume_env = singleuser_environment(env, account.identity, account.mounts)
        user_data = render_singleuser_user_data([*self.cmd, *self.get_args()], boot_environment(env, boot_key),
                                                workdir=self.notebook_dir, identity=account.identity,
                                                mounts=account.mounts)
        self.vm.resume_key = resume_key(boot_key)
        self.emit(15, f"Creating your VM ({image.name}, {flavor.name})")
        self.timer.stage("boot")
        await self._create_and_boot(profile, image, flavor, port, base64.b64encode(user_data.encode()).decode(),
                                    metadata)
        # 7. Until JupyterLab answers at this server's URL.
        self.timer.stage("guest")
        await self.boot.wait_ready()
        self._ready_at = time.time()
        return f"http://{self.connect_address}:{self.singleuser_port}"

    async def _reserve_public_address(self, public: list) -> None:
        """A floating IP on the VM's port (with ``floating_ip_network``); where the hub connects."""
        if self.floating_ip_network:
            self.emit(12, "Reserving a public address")
            ip = await self.resources.create_floating_ip(public[0].id, self.vm.port_id)
            self.vm.floating_ip_id, self.vm.floating_address = ip.id, ip.floating_ip_address
        self.ip, self.port = self.connect_address, self.singleuser_port

    async def _start_pooled(self, pooled: PooledVM, account: GuestAccount, metadata: dict[str, str],
                            public: list) -> str:
        """Make a pooled VM this server's and hand its guest the user (``pool.py``); raises
        (``TimeoutError`` after ``pool_claim_timeout``) when it does not come up in time."""
        self.emit(10, "Taking a prepared VM from the warm pool")
        self.resources.create_asked = True  # from here, a failure removes it
        self.vm.server_id, self.vm.port_id, self.vm.address = pooled.server_id, pooled.port_id, pooled.address
        async with asyncio.timeout(self.site.pool.claim_timeout):
            await self._reserve_public_address(public)  # (the desktop offers it: in the environment)
            env = self.singleuser_env()
            self.resume_env = singleuser_environment(env, account.identity, account.mounts)
            # From now on the VM holds this start's token (a reboot asks the hub with it).
            self.vm.resume_key = resume_key(self.api_token)
            self.emit(40, "Setting up the prepared VM for you: your account, your data, JupyterLab")
            self.timer.stage("guest")
            pooled.hand_over(self.resume_env, guest_plan([*self.cmd, *self.get_args()], self.notebook_dir,
                                                         account.identity, account.mounts))
            # Meanwhile, named and owned as if this start had made it (find_own, the reaper, the dashboard).
            await asyncio.gather(
                self.site.client.rename_server(pooled.server_id, self.resources.vm_name, metadata),
                self.site.client.rename_port(pooled.port_id, self.resources.port_name, self.resources.description),
                pooled.delivered.wait())
            await self.boot.wait_ready(booting=False)
        POOL_CLAIMS.labels(self.vm.profile, "claimed").inc()
        self._ready_at = time.time()
        return f"http://{self.connect_address}:{self.singleuser_port}"

    async def _create_and_boot(self, profile: Profile, image, flavor, port, user_data: str,
                               metadata: dict[str, str]) -> None:
        """Create the VM and wait until Nova runs it. When no host takes it while Placement
        still shows room for the flavor (the scheduler lost a race with other boots, or could
        not reach Placement), it is tried once more before the user is told there is no room."""
        for attempt in (1, 2):
            server = await self.resources.create_server(
                image_id=image.id, flavor_id=flavor.id, networks=[{"port": port.id}], user_data=user_data,
                metadata=metadata)
            self.vm.server_id = server.id
            self.log.info("Spawn of %s: created VM %s (%s, %s, %s) on port %s", self._log_name, server.id,
                          profile.slug, image.name, flavor.name, self.vm.address)
            try:
                return await self.boot.wait_active()
            except NoHost as e:
                if attempt == 1 and await self._room_for(flavor):
                    self.log.warning("No host for %s although Placement has room (%s): trying once more",
                                     self._log_name, e.fault[:200])
                    self.emit(16, "No host took your VM although the cloud has room for it: trying once more")
                    await self.resources.delete({server.id}, set())
                    continue
                raise await self._no_capacity(profile, flavor, e.fault) from None

    async def _room_for(self, flavor) -> bool:
        try:
            return await self.site.capacity.has_room(flavor)
        except CLOUD_ERRORS as e:  # then the scheduler's answer stands
            self.log.warning("Cannot ask Placement for room for flavor %s: %s", flavor.name, str(e)[:200])
            return False

    async def _no_capacity(self, profile: Profile, flavor, fault: str) -> SpawnError:
        """The message for a VM no host took (with the GPUs free now, for a GPU profile)."""
        free = ""
        trait = flavor_gpu_request(flavor.extra_specs or {})[0] if flavor is not None else ""
        if profile.gpu_count and trait:
            try:
                free = str(await self.site.capacity.gpus(trait, profile.gpu_model))
            except (*CLOUD_ERRORS, ValueError) as e:  # only a detail of the message
                self.log.debug("No GPU capacity for the message: %s", e)
        return errors.no_capacity(fault, profile.gpu_model, profile.gpu_count, free)

    async def _undo_start(self) -> str:
        """After a failed start: a VM being resumed is shelved again (its disk is kept);
        anything else made for the start is deleted. Says which, for the user."""
        if not (self._resuming or self.resources.create_asked or self.vm.server_id or self.vm.port_id):
            # It failed before asking for anything (e.g. the cloud is down): nothing to list and
            # delete. Leftovers of an earlier start it could not look for are the next start's.
            return "anything created for it has been removed"  # (nothing was)
        try:
            if self._resuming and await self.shelving.shelve():
                return "it has been shelved again: nothing on its disk was lost"
            await self.resources.delete_all()
            return "anything created for it has been removed"
        except (CloudFailure, *CLOUD_ERRORS) as e:
            self.log.error("Removing what the failed start of %s made failed: %s", self._log_name, e)
            return "what was created for it will be removed by the hub"

    async def _can_resume(self, profile: Profile, account: GuestAccount) -> bool:
        if self.vm.server_id in self._deleting:  # an idle server still being shelved
            await asyncio.shield(self._deleting[self.vm.server_id])
        why = await self.shelving.why_not_resume(profile, account)
        if why:
            self.emit(3, f"Not resuming your shelved VM ({why}): starting a new one")
            self.log.info("Not resuming the shelved VM %s of %s (%s): deleting it", self.vm.server_id,
                          self._log_name, why)
            await self.resources.delete_all()  # no longer shelved
        return not why

    async def _resume(self, profile: Profile, account: GuestAccount) -> str:
        """Unshelve the server's shelved VM and wait until JupyterLab answers in it."""
        self._resuming = True  # from here, a failure leaves the VM shelved (its disk is the user's)
        flavor = await self.site.client.find_flavor(profile.flavor)
        if flavor is None:
            raise CloudFailure(f"The flavor '{profile.flavor}' does not exist on the cloud, so your VM cannot be "
                               "resumed. Please tell the hub's administrators.", status_code=500)
        self._admit(profile, flavor)  # its metadata keeps the group it was made with
        self.vm.idle_timeout = profile.idle_timeout
        self.ip, self.port = self.connect_address, self.singleuser_port
        self.emit(15, f"Resuming your shelved VM ({profile.display_name})")
        self.timer.stage("boot")
        await self.shelving.unshelve(account)
        try:
            await self.boot.wait_active()
        except NoHost as e:  # no host has room for it now (e.g. its GPU is taken): it stays shelved
            raise await self._no_capacity(profile, flavor, e.fault) from None
        self.timer.stage("guest")
        await self.boot.wait_ready()
        self.vm.shelved = self._resuming = False
        self._ready_at = time.time()
        return f"http://{self.connect_address}:{self.singleuser_port}"

    def singleuser_env(self) -> dict[str, str]:
        """The single-user server's environment in the VM."""
        env = {**self.get_env(), **self.extra_user_data_env}
        # The desktop offers this address for WebRTC media (see desktop_proxy.peers).
        env["HEPSDESK_VM_ADDRESS"] = self.vm.address
        if self.allow_http_hub:
            env[ALLOW_HTTP_HUB] = "1"
        if self.vm.floating_address:
            env["HEPSDESK_PUBLIC_ADDRESS"] = self.vm.floating_address
        if self.vm.idle_timeout:
            # The desktop and JupyterLab report a person's use often enough that the idle
            # timeout never stops someone working (desktop_proxy/activity.py); the VM warns
            # its user before an idle stop (desktop_proxy/idle_watch.py).
            interval = str(activity_interval(self.vm.idle_timeout))
            env[ACTIVITY_INTERVAL] = env["JUPYTERHUB_ACTIVITY_INTERVAL"] = interval
            env[IDLE_TIMEOUT] = str(self.vm.idle_timeout)
        return env

    @property
    def connect_address(self) -> str:
        """The address the hub connects to (see ``connect_to``)."""
        vm = self.vm
        return vm.floating_address if self.connect_to == "floating" and vm.floating_address else vm.address

    def take_resume_env(self) -> dict[str, str] | None:
        """The environment for the VM this start boots or resumes (None outside a start);
        called by the resume handler once the VM proved it holds the boot key or the last
        token. From now on, the VM holds this start's token (the boot key is dead)."""
        if self.resume_env is not None:
            self.vm.resume_key = resume_key(self.api_token)
        return self.resume_env

    # progress

    def emit(self, progress: int, message: str) -> None:
        """A stage of this start, for ``progress()``, with the time it has taken so far."""
        elapsed = time.monotonic() - self._started
        self.events.append({"progress": progress, "message": f"{message} ({elapsed:.0f} s)"})
        # At debug level: a hundred starts at once would write a thousand lines from the hub's
        # event loop (the start, the VM's id and the outcome are logged at info).
        self.log.debug("Spawn of %s: %s", self._log_name, message)
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

    # poll and stop

    async def poll(self):
        if not self.vm.server_id:
            return 0
        try:
            # Not in the newest list (gone, or created after the list was requested) or no
            # list to be had: asked directly.
            view = await self.boot.server_view(fresh=False)
        except CLOUD_ERRORS as e:
            self.log.warning("Cannot poll server %s of %s: %s", self.vm.server_id, self._log_name, e)
            return None  # the cloud may be briefly unreachable: do not declare the server dead
        if view is None or view.status in GONE_STATES:
            if view is not None and view.status in SHELVED_STATES:
                # Shelved by a stop the hub did not see finish (it was restarted), or by an
                # operator: kept, for the next start to resume.
                self.vm.shelved = True
            if view is not None and view.status in DEAD_STATES:
                self._retire(view, f"is {view.status}")
            return 0
        if self.vm.idle_timeout:
            last = self.orm_spawner.last_activity if self.orm_spawner is not None else None
            idle = idle_seconds(last, self._ready_at)
            if idle >= self.vm.idle_timeout:
                self.log.info("%s has been idle for %.0f s (profile %s allows %d s): stopping it", self._log_name,
                              idle, self.vm.profile, self.vm.idle_timeout)
                # Set now: the hub saves the state (clear_state keeps a shelved VM's) when poll returns.
                self.vm.shelved = await self._stop_mode() == "shelve"
                self._retire(view, "is idle", shelve=self.vm.shelved)
                return 0
        return None

    def _retire(self, view: ServerView, why: str, shelve: bool = False) -> None:
        """Delete (or ``shelve``) a VM that poll() reports as stopped (it died, or was idle too
        long) with its port, as stop() would: the hub never calls stop() for a server that
        poll() says is not running. Only these ids are deleted: a new start is never touched."""
        if view.id in self._deleting:
            return
        self.log.warning("Server %s of %s %s: %s it", view.id, self._log_name, why,
                         "shelving" if shelve else "deleting")

        self.site.quotas.release(self.quota_key)  # (its VM counts until it is gone: it may fail to go)
        REPORTS.forget(self.quota_key)

        async def retire(port_id: str = self.vm.port_id) -> None:
            try:
                if not (shelve and await self.shelving.shelve()):
                    self.vm.shelved = False
                    await self.resources.delete({view.id}, {port_id} - {""})
                    self.site.quotas.went(view.id)
            except (CloudFailure, *CLOUD_ERRORS) as e:  # the reaper removes what is left
                self.log.error("Deleting the stopped server %s of %s failed: %s", view.id, self._log_name, e)
            finally:
                self._deleting.pop(view.id, None)

        self._deleting[view.id] = asyncio.ensure_future(retire())

    async def _stop_mode(self) -> str:
        """The stop mode of this server's profile (``delete`` if the profile is gone from the config)."""
        try:
            profiles = await self.all_profiles()
        except ProfileError:
            return "delete"
        return next((p.stop_mode for p in profiles if p.slug == self.vm.profile), "delete")

    async def stop(self, now=False):
        """Shelve or delete the VM; return once the cloud confirms it (``CloudFailure`` when it
        does not within ``delete_timeout``)."""
        server_id, mode, self.stop_override = self.vm.server_id, self.stop_override, ""
        REPORTS.forget(self.quota_key)
        if server_id and (mode or await self._stop_mode()) == "shelve" and await self.shelving.shelve():
            # (A shelved VM holds nothing as listed; the same VM runs again when resumed.)
            self.site.quotas.release(self.quota_key)
            return
        await self.resources.delete_all()
        self.site.quotas.release(self.quota_key, server_id)

    async def delete_forever(self):
        """The server (or its user) is removed: a shelved VM goes, with its port and floating IP."""
        if self.vm.server_id or self.vm.port_id:
            await self.resources.delete_all()
