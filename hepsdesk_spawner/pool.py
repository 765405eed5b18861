"""The warm pool: VMs booted ahead of time, so a start takes seconds instead of a boot.

Per profile, ``OpenStackSpawner.warm_pool`` keeps a number of VMs booted (more during set
hours, e.g. beamtime). A pooled VM holds no one's identity, environment or data: its
user-data has only the start program (``guest_start.py``), the hub's URL and a one-time pool
key, and its guest waits, asking the hub for a user (``PoolClaimHandler``). A start of that
profile takes a waiting VM (``WarmPool.take``, synchronous: two starts never get the same
one), makes it the server's (its name, its port's and its metadata, as if the start had made
it) and hands the guest its plan and environment through that request: the guest makes the
user's account, mounts their data and starts JupyterLab. The pool refills in the background.
A VM that does not take its user within ``pool_claim_timeout`` is deleted and the start boots
a new one, saying so.

The hub keeps only the SHA-256 of each key, also in the VM's metadata: a restarted hub adopts
its pooled VMs from its server list (the reaper leaves them alone: they are the hub's). A
pooled VM serves one user once: the key is dead after the claim, and the VM goes with the
server (a profile's ``stop_mode`` applies as to any VM of it).

GPU profiles may be pooled, within ``warm_pool_gpus`` per model (a separate cap: pooled GPUs
wait for users instead of computing); pooled VMs hold their GPUs in Placement as any VM does,
so they count against the cloud's GPUs. A pool that asks for more GPUs than the cloud has is
not kept: an error in the hub's log and on the admins' dashboard, nothing else changes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from jupyterhub.apihandlers.base import APIHandler
from prometheus_client import Counter
from tornado import web

from . import guest_start
from .boot import GONE_STATES
from .capacity import flavor_gpu_request
from .cloud import CLOUD_ERRORS
from .cloudinit import render_pool_user_data
from .errors import CloudFailure
from .profiles import Profile, ProfileError
from .resources import ServerResources

if TYPE_CHECKING:
    from .settings import SpawnerSettings
    from .site import CloudSite

log = logging.getLogger("hepsdesk.pool")

POOL_PROFILE = "hepsdesk-pool"  # metadata: the profile a pooled VM waits for a user of
POOL_KEY = "hepsdesk-pool-key"  # metadata: SHA-256 of its one-time key (a restarted hub adopts it)
POOL_PORT = "hepsdesk-pool-port"  # metadata: its port's id
POOL_ADDRESS = "hepsdesk-pool-address"  # metadata: its fixed address
POOL_METADATA = (POOL_PROFILE, POOL_KEY, POOL_PORT, POOL_ADDRESS)
HOLD = 20.0  # seconds the hub holds a waiting guest's request before "ask again" (204)
INTERVAL = 10.0  # seconds between looks at the pool (sooner after a claim)
BOOTS_AT_ONCE = 4  # pooled VMs booted concurrently (the cloud's scheduler takes them in turn)
MISSING_RETRY = 300.0  # seconds before a pool whose image, flavor or network is missing looks again
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

CLAIMS = Counter("hepsdesk_pool_claims", "Starts that asked the warm pool, by outcome (claimed: served by a "
                 "pooled VM; fallback: the pooled VM failed and a new one was booted; empty: none was waiting)",
                 ["profile", "outcome"])


class PoolConfigError(ValueError):
    """``warm_pool`` or ``warm_pool_gpus`` is wrong (an admin's mistake)."""


# -- settings -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Period:
    """More (or fewer) pooled VMs on some days between two hours (the hub's local time)."""

    days: frozenset[int]  # 0 = Monday
    start: int  # hour, inclusive
    end: int  # hour, exclusive
    size: int

    def covers(self, when: datetime) -> bool:
        return when.weekday() in self.days and self.start <= when.hour < self.end


@dataclass(frozen=True)
class PoolSetting:
    profile: str
    size: int
    schedule: tuple[Period, ...] = ()

    def size_at(self, when: datetime) -> int:
        """How many VMs to keep at ``when``: the first period that covers it, else ``size``."""
        return next((period.size for period in self.schedule if period.covers(when)), self.size)

    @property
    def most(self) -> int:
        return max([self.size, *(period.size for period in self.schedule)])


def parse_warm_pool(entries: dict) -> dict[str, PoolSetting]:
    """``{"profile": 2}`` or ``{"profile": {"size": 1, "schedule": [{"days": "mon-fri",
    "hours": "8-20", "size": 4}]}}``, checked (``PoolConfigError`` names what is wrong)."""
    if not isinstance(entries, dict):
        raise PoolConfigError("must map profile slugs to pool sizes")
    pools = {}
    for slug, entry in entries.items():
        where = f"profile {slug!r}"
        if isinstance(entry, int) and not isinstance(entry, bool):
            entry = {"size": entry}
        if not isinstance(entry, dict):
            raise PoolConfigError(f"{where}: give a size, or {{size, schedule}}")
        unknown = sorted(set(entry) - {"size", "schedule"})
        if unknown:
            raise PoolConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: size, schedule)")
        schedule = tuple(_period(period, f"{where}, schedule #{i}") for i, period in enumerate(entry.get("schedule")
                                                                                                 or []))
        pools[str(slug)] = PoolSetting(str(slug), _size(entry.get("size", 0), where), schedule)
    return pools


def parse_pool_gpus(entries: dict) -> dict[str, int]:
    """``{"A100": 2}``: the most GPUs of each model pooled VMs may hold at once."""
    if not isinstance(entries, dict):
        raise PoolConfigError("must map GPU models to counts")
    return {str(model): _size(count, f"GPU model {model!r}") for model, count in entries.items()}


def _size(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
        raise PoolConfigError(f"{where}: a size is a whole number from 0 to 1000, not {value!r}")
    return value


def _period(entry, where: str) -> Period:
    if not isinstance(entry, dict) or set(entry) != {"days", "hours", "size"}:
        raise PoolConfigError(f"{where}: give days (e.g. 'mon-fri'), hours (e.g. '8-20') and size")
    days: set[int] = set()
    for part in str(entry["days"]).lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise PoolConfigError(f"{where}: days {entry['days']!r} are not like 'mon-fri' or 'sat,sun'")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    hours = re.fullmatch(r"(\d{1,2})-(\d{1,2})", str(entry["hours"]).replace(" ", ""))
    if not hours or not 0 <= int(hours[1]) < int(hours[2]) <= 24:
        raise PoolConfigError(f"{where}: hours {entry['hours']!r} are not like '8-20' (from 0 to 24)")
    return Period(frozenset(days), int(hours[1]), int(hours[2]), _size(entry["size"], where))


def gpu_shortfall(pools: dict[str, PoolSetting], profiles: dict[str, Profile], existing: dict[str, int],
                  caps: dict[str, int]) -> dict[str, str]:
    """Per pooled GPU profile, why it cannot be kept ("" when it can): its pools would hold
    more GPUs of a model, at their largest, than the cloud has (``existing``). Within that,
    ``caps`` bounds pooled GPUs as they boot (``WarmPool.room_for``)."""
    wanted: dict[str, int] = {}
    for slug, setting in pools.items():
        profile = profiles.get(slug)
        if profile is not None and profile.gpu_model:
            wanted[profile.gpu_model] = wanted.get(profile.gpu_model, 0) + setting.most * profile.gpu_count
    problems = {}
    for slug, setting in pools.items():
        profile = profiles.get(slug)
        if profile is None or not profile.gpu_model:
            continue
        model, have = profile.gpu_model, existing.get(profile.gpu_model, 0)
        if wanted[model] > have:
            problems[slug] = (f"the warm pool would hold {wanted[model]} {model} GPUs at its largest, but the cloud "
                              f"has {have}: no VM of {slug} is pooled (lower warm_pool)")
        elif model not in caps:
            problems[slug] = (f"{slug} uses {model} GPUs: pool it within warm_pool_gpus "
                              f"(e.g. {{{model!r}: {setting.most * profile.gpu_count}}})")
    return problems


# -- the pooled VMs -------------------------------------------------------------------------

@dataclass(eq=False)
class PooledVM:
    """One VM of the pool, from its boot until a start took it (or it was removed)."""

    profile: str
    key_hash: str
    port_id: str
    address: str
    server_id: str = ""
    gpus: tuple[str, int] = ("", 0)  # (model, count) it holds
    made: float = field(default_factory=time.monotonic)
    asking: int = 0  # requests of its guest the hub holds now: it waits for a user
    asked_at: float = 0.0  # when its guest last asked
    plan: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    delivered: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ready(self) -> bool:
        return self.asking > 0 and not self.plan.done()

    def hand_over(self, env: dict[str, str], plan: dict) -> None:
        """Give the waiting guest its user (answered to its held or next request)."""
        if not self.plan.done():
            self.plan.set_result({"env": env, "plan": plan})


class PoolMaker:
    """What ``ServerResources`` needs of a spawner, for the pool's VMs: the hub's settings
    (an ``OpenStackSpawner`` made from the configuration, without a user) and the hub."""

    _log_name = "the warm pool"

    def __init__(self, settings: SpawnerSettings, site: CloudSite):
        self.settings, self.site = settings, site

    def __getattr__(self, name):
        return getattr(self.settings, name)

    @property
    def hub(self):
        """JupyterHub's ``Hub`` (its API URL) once the hub has made it, else None."""
        from jupyterhub.app import JupyterHub

        return getattr(JupyterHub.instance(), "hub", None) if JupyterHub.initialized() else None


class PoolResources(ServerResources):
    """A pooled VM's resources: named after the pool, owned by the hub, found by its metadata."""

    def __init__(self, maker: PoolMaker, name: str, profile: str):
        super().__init__(maker)
        self.name, self.profile = name, profile

    @property
    def vm_name(self) -> str:
        return self.name

    @property
    def owner_metadata(self) -> dict[str, str]:
        return {"hepsdesk-hub": self.spawner.hub_tag, POOL_PROFILE: self.profile}

    @property
    def description(self) -> str:
        return f"hepsdesk ({self.spawner.hub_tag}): warm pool of {self.profile}"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class WarmPool:
    """The pooled VMs of one hub (one per ``CloudSite``), kept at each profile's size."""

    def __init__(self, site: CloudSite):
        self.site = site
        self.settings: dict[str, PoolSetting] = {}
        self.gpu_caps: dict[str, int] = {}
        self.claim_timeout = 60.0
        self.vms: dict[str, PooledVM] = {}  # server id -> VM (booting or waiting)
        self.by_key: dict[str, PooledVM] = {}  # key hash -> VM, until its guest took its user
        self.problems: dict[str, str] = {}  # profile -> why its pool is not kept (admins' dashboard)
        self._missing: dict[str, tuple[str, float]] = {}  # profile -> what the cloud lacks, until when
        self._logged: dict[str, str] = {}
        self.profiles: dict[str, Profile] = {}
        self.booting: dict[str, int] = {}  # profile -> boots under way
        self._maker: PoolMaker | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._boots: set[asyncio.Task] = set()

    def configure(self, settings: SpawnerSettings) -> None:
        """Take the pool's settings (checked by the settings' validators) and start keeping it."""
        self.settings = parse_warm_pool(settings.warm_pool)
        self.gpu_caps = parse_pool_gpus(settings.warm_pool_gpus)
        self.claim_timeout = settings.pool_claim_timeout
        self._maker = PoolMaker(settings, self.site)

    def start(self) -> None:
        """Keep the pool from now on, if one is configured (idempotent)."""
        if self.settings and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"hepsdesk-pool-{self.site.hub_tag}")

    async def close(self) -> None:
        for task in [self._task, *self._boots]:
            if task is not None:
                task.cancel()

    # for starts

    def take(self, profile: str) -> PooledVM | None:
        """A VM of ``profile`` whose guest waits for a user, now the caller's (synchronous:
        no two starts get the same), or None."""
        for vm in self.vms.values():
            if vm.profile == profile and vm.ready:
                del self.vms[vm.server_id]
                self._wake.set()  # refill
                return vm
        return None

    def target(self, profile: str) -> int:
        """How many VMs of ``profile`` the pool is kept at now (0: not kept, see ``problems``)."""
        setting = self.settings.get(profile)
        return 0 if setting is None or profile in self.problems else setting.size_at(datetime.now())

    def count(self, profile: str) -> tuple[int, int]:
        """(waiting, booting) VMs of ``profile``."""
        mine = [vm for vm in self.vms.values() if vm.profile == profile]
        ready = sum(1 for vm in mine if vm.ready)
        return ready, len(mine) - ready + self.booting.get(profile, 0)

    # keeping the pool

    async def _run(self) -> None:
        maker = self._maker
        for _ in range(600):  # the hub makes its Hub right after loading the configuration
            if maker.hub is not None:
                break
            await asyncio.sleep(0.5)
        else:
            log.error("The warm pool is not kept: the hub's API URL is unknown")
            return
        await self._profiles()
        await self._adopt()
        while True:
            try:
                await self._keep()
            except asyncio.CancelledError:
                raise
            except Exception:  # the cloud may fail for a while: the next look tries again
                log.exception("Keeping the warm pool failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), INTERVAL)
            except TimeoutError:
                pass

    async def _profiles(self) -> dict[str, Profile]:
        try:
            self.profiles = {p.slug: p for p in await self._maker.settings.all_profiles()}
        except (ProfileError, TypeError, AttributeError) as e:
            log.error("The warm pool cannot read the profiles: %s", e)
        return self.profiles

    async def _adopt(self) -> None:
        """The pooled VMs a previous run of the hub left: kept (their guests ask again), or
        deleted when their profile is no longer pooled."""
        try:
            views = await self.site.watcher.owned({"hepsdesk-hub": self.site.hub_tag}, time.monotonic())
        except Exception as e:  # (WatcherUnavailable, the cloud) they are adopted at the hub's next start
            log.warning("Cannot list the pooled VMs of an earlier run: %s", e)
            return
        for view in views:
            meta = view.metadata
            if POOL_KEY not in meta:
                continue
            profile = self.profiles.get(meta.get(POOL_PROFILE, ""))
            vm = PooledVM(meta.get(POOL_PROFILE, ""), meta[POOL_KEY], meta.get(POOL_PORT, ""),
                          meta.get(POOL_ADDRESS, ""), view.id,
                          gpus=(profile.gpu_model, profile.gpu_count) if profile else ("", 0))
            if view.status in ("ERROR", *GONE_STATES):
                self._spawn_task(self._remove(vm, f"it is {view.status}"))
            elif vm.profile in self.settings:
                self.vms[vm.server_id], self.by_key[vm.key_hash] = vm, vm
                log.info("Adopted pooled VM %s of %s", vm.server_id, vm.profile)
            else:
                self._spawn_task(self._remove(vm, "its profile is no longer pooled"))

    async def _keep(self) -> None:
        """One look: drop dead VMs, boot what is missing, remove what is too much."""
        watcher, now = self.site.watcher, time.monotonic()
        profiles = await self._profiles()
        for vm in list(self.vms.values()):
            view = watcher.servers.get(vm.server_id)
            listed_since = watcher.listed_at > vm.made + 1
            if view is not None and view.status in ("ERROR", *GONE_STATES) or (view is None and listed_since):
                self.drop(vm)
                self._spawn_task(self._remove(vm, f"it is {view.status if view else 'gone'}"))
            elif not vm.asking and now - max(vm.made, vm.asked_at) > self._maker.start_timeout:
                self.drop(vm)
                self._spawn_task(self._remove(vm, f"its guest has not asked for a user for "
                                                  f"{self._maker.start_timeout:.0f} s"))
        self.problems = {slug: f"the profile {slug} does not exist" for slug in self.settings if slug not in profiles}
        existing, unknown = await self._existing_gpus(profiles)
        self.problems.update(gpu_shortfall(self.settings, profiles, existing, self.gpu_caps))
        self.problems.update(unknown)
        for slug, (problem, until) in list(self._missing.items()):  # (not tried again at every look)
            if until <= now or slug not in self.settings:
                del self._missing[slug]
            else:
                self.problems.setdefault(slug, problem)
        for slug in self.settings:
            profile, target = profiles.get(slug), self.target(slug)
            mine = [vm for vm in self.vms.values() if vm.profile == slug]
            have = len(mine) + self.booting.get(slug, 0)
            for _ in range(max(0, min(target - have, BOOTS_AT_ONCE - self.booting.get(slug, 0)))):
                if not self.room_for(profile):
                    break
                self._boot_one(profile)
            surplus = have - target
            for vm in sorted(mine, key=lambda v: (v.ready, -v.made))[:max(0, surplus)]:  # booting and newest first
                self.drop(vm)
                self._spawn_task(self._remove(vm, "the pool is smaller now"))
        for slug, problem in self.problems.items():
            if self._logged.get(slug) != problem:  # once, not at every look
                log.error("Warm pool: %s", problem)
        self._logged = dict(self.problems)

    async def _existing_gpus(self, profiles: dict[str, Profile]) -> tuple[dict[str, int], dict[str, str]]:
        """The cloud's GPUs per model of the pooled GPU profiles; and the profiles whose GPUs
        cannot be read now (not pooled until they can)."""
        existing, unknown = {}, {}
        for slug in self.settings:
            profile = profiles.get(slug)
            if profile is None or not profile.gpu_model or profile.gpu_model in existing:
                continue
            try:
                flavor = await self.site.client.find_flavor(profile.flavor)
                trait = flavor_gpu_request(flavor.extra_specs or {})[0] if flavor is not None else ""
                existing[profile.gpu_model] = (await self.site.capacity.gpus(trait, profile.gpu_model)).total \
                    if trait else 0
            except (*CLOUD_ERRORS, ValueError) as e:
                unknown[slug] = f"the cloud's {profile.gpu_model} GPUs cannot be read now: {str(e)[:200]}"
        return existing, unknown

    def room_for(self, profile: Profile) -> bool:
        """Within ``warm_pool_gpus``: the GPUs of the model its pooled and booting VMs hold."""
        if not profile.gpu_model:
            return True
        held = sum(vm.gpus[1] for vm in self.vms.values() if vm.gpus[0] == profile.gpu_model)
        held += sum(n * p.gpu_count for slug, n in self.booting.items()
                    if (p := self.profiles.get(slug)) and p.gpu_model == profile.gpu_model)
        return held + profile.gpu_count <= self.gpu_caps.get(profile.gpu_model, 0)

    def drop(self, vm: PooledVM) -> None:
        """Forget ``vm``: no start takes it, and its key is dead (its guest is refused)."""
        self.vms.pop(vm.server_id, None)
        self.by_key.pop(vm.key_hash, None)

    def _spawn_task(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._boots.add(task)
        task.add_done_callback(self._boots.discard)

    def _boot_one(self, profile: Profile) -> None:
        self.booting[profile.slug] = self.booting.get(profile.slug, 0) + 1

        async def boot() -> None:
            try:
                await self._boot(profile)
            finally:
                self.booting[profile.slug] -= 1

        self._spawn_task(boot())

    async def _boot(self, profile: Profile) -> None:
        """Boot one pooled VM of ``profile``; on any failure, remove what was made."""
        maker, client = self._maker, self.site.client
        resources = PoolResources(maker, f"hepsdesk-pool-{profile.slug}-{secrets.token_hex(4)}"[:63], profile.slug)
        image, flavor, network = await asyncio.gather(client.find_image(profile.image),
                                                      client.find_flavor(profile.flavor),
                                                      client.find_network(maker.network))
        if image is None or flavor is None or network is None:
            # Said once by the next look, and tried again only after MISSING_RETRY.
            self._missing[profile.slug] = (f"the image, flavor or network of {profile.slug} does not exist "
                                           "on the cloud", time.monotonic() + MISSING_RETRY)
            self._wake.set()
            return
        key = secrets.token_urlsafe(32)
        port = None
        vm = None
        try:
            port = await resources.create_port(network.id)
            vm = PooledVM(profile.slug, key_hash(key), port.id, port.fixed_ips[0]["ip_address"],
                          gpus=(profile.gpu_model, profile.gpu_count))
            self.by_key[vm.key_hash] = vm  # (its guest may ask before the create answers)
            user_data = render_pool_user_data(maker.hub.api_url, key, maker.allow_http_hub, maker.cmd)
            server = await resources.create_server(
                image_id=image.id, flavor_id=flavor.id, networks=[{"port": port.id}],
                user_data=base64.b64encode(user_data.encode()).decode(),
                metadata={**maker.extra_metadata, **resources.owner_metadata, POOL_KEY: vm.key_hash,
                          POOL_PORT: port.id, POOL_ADDRESS: vm.address, "hepsdesk-profile": profile.slug,
                          "hepsdesk-image": image.name[:255]})
            vm.server_id, vm.made = server.id, time.monotonic()
            if vm.key_hash in self.by_key:
                self.vms[server.id] = vm
                log.info("Booting pooled VM %s of %s", server.id, profile.slug)
                return
        except (CloudFailure, *CLOUD_ERRORS) as e:
            log.error("Booting a pooled VM of %s failed: %s", profile.slug, str(e)[:300])
        if vm is not None:
            self.by_key.pop(vm.key_hash, None)
        servers = set(await self._quietly(resources.find_own(), (set(), set()))[0])
        await self._quietly(resources.delete(servers | ({vm.server_id} - {""} if vm else set()),
                                             {port.id} if port is not None else set()), None)

    async def _remove(self, vm: PooledVM, why: str) -> None:
        log.info("Removing pooled VM %s of %s: %s", vm.server_id or "(booting)", vm.profile, why)
        resources = PoolResources(self._maker, "", vm.profile)
        await self._quietly(resources.delete({vm.server_id} - {""}, {vm.port_id} - {""}), None)

    @staticmethod
    async def _quietly(call, default):
        try:
            return await call
        except (CloudFailure, *CLOUD_ERRORS) as e:  # the next look, or the reaper, removes what is left
            log.error("Warm pool: %s", str(e)[:300])
            return default


class PoolClaimHandler(APIHandler):
    """A pooled VM's guest asks for its user: held up to ``HOLD`` s (204: ask again), answered
    once with ``{"env": ..., "plan": ...}`` when a start claims it; 403 for an unknown key."""

    def check_xsrf_cookie(self):
        """Authenticated by the VM's pool key, never by a cookie: nothing for a browser to forge."""

    def initialize(self):
        self._closed = asyncio.Event()

    def on_connection_close(self):
        self._closed.set()

    async def post(self):
        from .site import CloudSite

        scheme, _, key = self.request.headers.get("Authorization", "").partition(" ")
        hashed = key_hash(key) if key and scheme.lower() == guest_start.POOL_SCHEME else ""
        vm = next((pool.by_key.get(hashed) for pool in CloudSite.pools() if hashed in pool.by_key), None)
        if vm is None:
            self.log.warning("Refused a pool claim from %s: not a key of this hub's warm pool", self.request.remote_ip)
            raise web.HTTPError(403, "Not a pooled VM of this hub.")
        vm.asking += 1
        vm.asked_at = time.monotonic()
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait([vm.plan, closed], timeout=HOLD, return_when=asyncio.FIRST_COMPLETED)
        finally:
            vm.asking -= 1
            vm.asked_at = time.monotonic()
            closed.cancel()
        if self._closed.is_set():
            return
        if not vm.plan.done():
            self.set_status(204)
            return self.finish()
        for pool in CloudSite.pools():
            pool.by_key.pop(hashed, None)  # the key is dead
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(vm.plan.result()))  # data: the guest checks it (guest_start.py)
        if not self._closed.is_set():
            vm.delivered.set()


handlers = [(r"/api" + guest_start.POOL_CLAIM_PATH, PoolClaimHandler)]
