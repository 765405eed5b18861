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
import hashlib
import ipaddress
import re
import time
from datetime import UTC
from urllib.parse import urlparse

from jupyterhub.spawner import Spawner, SpawnException
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Bool, Callable, Dict, Enum, Float, Integer, List, Unicode, Union, default

from . import __version__, errors, options_form
from .capacity import CapacityReader, flavor_gpu_request
from .cloud import HttpError, OpenStackClient, SDKError
from .cloudinit import (
    EXITED_MARKER,
    LOG_LINE_PREFIX,
    MISSING_MOUNT_MARKER,
    NO_ENV_MARKER,
    STARTING_MARKER,
    render_env_file,
    render_singleuser_user_data,
)
from .datamounts import DataMount, DataMountError, expand_all, needs_identity, parse_data_mounts
from .errors import SpawnError
from .identity import IdentityError, PosixIdentity, proposals_of
from .profiles import Profile, ProfileError, ProfileRefused, choose, parse_profiles
from .resume import resume_key
from .watcher import ServerView, ServerWatcher, WatcherUnavailable

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
    image = Unicode("hepsdesk-desktop", config=True,
                    help="Glance image (name or id) the VMs boot from when no ``profiles`` are configured.")
    flavor = Unicode("c1.small", config=True,
                     help="Nova flavor (name or id) of the VMs when no ``profiles`` are configured.")
    profiles = Union(
        [List(Dict()), Callable()],
        default_value=[],
        config=True,
        help="""The environments users choose from on the spawn page (and by ``{"profile": slug}``
        through the REST API). A list of dicts, or a callable ``(spawner) -> list`` (may be async).

        Keys: ``slug`` (the name users and the API use), ``display_name``, ``description``,
        ``image`` (Glance name or id), ``flavor`` (Nova name or id; GPU flavors ask Placement for
        ``resources:VGPU`` with a ``CUSTOM_GPU_<MODEL>`` trait), ``gpu_model`` and ``gpu_count``
        (shown on the card, with the GPUs free right now), ``stop_mode`` (``delete``: the VM is
        deleted when the server stops; ``shelve``: Nova shelves it, keeping its disk as an
        image and freeing the host, and the next start of the same server with the same
        profile resumes it; needs ``hepsdesk_spawner.resume.handlers`` in
        ``JupyterHub.extra_handlers``), ``idle_timeout`` (seconds without activity after which the hub
        stops the server; 0: never), ``allowed_groups`` (JupyterHub groups that may use it;
        empty: everyone; admins may use every profile), ``default``.

        Empty: one implicit profile of ``image`` and ``flavor``, and no form.
        """,
    )
    data_mounts = List(
        Dict(),
        config=True,
        help="""Shares of the facility's storage every VM mounts, by the user's identity (a
        profile's ``data_mounts`` add to these; the same target: the profile's wins).

        Each: ``source`` (e.g. ``nfs.heps.example:/home/{username}``), ``target`` (e.g.
        ``{home}``), ``fstype`` (``nfs4``), ``options`` (``rw,hard,_netdev``; ``ro`` for raw
        data), ``required`` (true: JupyterLab does not start without it, so nothing is written
        to the VM's own disk). Placeholders: ``{username}``, ``{uid}``, ``{gid}``, ``{home}``
        from the POSIX identity in ``auth_state["hepsdesk"]["posix"]``, and ``{proposal}``:
        one mount per proposal in ``auth_state["hepsdesk"]["proposals"]``. With an identity the
        VM gets the user's account (same uid, gid, groups) and JupyterLab runs as them.
        """,
    )
    min_posix_id = Integer(
        1000,
        config=True,
        help="Lowest uid/gid an identity from auth_state may have: root and system accounts are refused.",
    )
    capacity_cloud = Unicode(
        "",
        config=True,
        help="""Cloud in clouds.yaml used to read free GPUs from Placement for the spawn page.

        Placement's default policy lets only admins and system readers read resource
        providers, so this is usually a separate, read-only credential (e.g. a user with the
        ``reader`` role and system scope). Empty: ``cloud``. If Placement cannot be read the
        cards say that the free GPUs are unknown.
        """,
    )
    capacity_ttl = Float(10.0, config=True, help="Seconds one reading of free GPUs serves every spawn page.")
    network = Unicode(
        "hepsdesk-net",
        config=True,
        help="Neutron network (name or id) the VMs are attached to. The hub must reach the VMs' "
        "fixed addresses on it (the port's address is what the hub connects to).",
    )
    floating_ip_network = Unicode(
        "",
        config=True,
        help="""External network (name or id) to give each VM a floating IP from; empty: none.

        The VMs' ``network`` must reach it through a router. The floating IP is tagged like the
        port, passed to the VM as ``HEPSDESK_PUBLIC_ADDRESS`` and deleted with the VM (deleting
        a port only disassociates its floating IP). See ``connect_to``.
        """,
    )
    connect_to = Enum(
        ["fixed", "floating"],
        default_value="fixed",
        config=True,
        help="""The VM's address the hub and its proxy connect to: ``fixed`` (the port's address on
        ``network``: the hub runs inside the cloud or routes to it) or ``floating`` (the floating
        IP: the hub runs outside the cloud; needs ``floating_ip_network``).""",
    )
    security_group = Unicode(
        "{hub_tag}-vms",
        config=True,
        help="""Security group the spawner creates and keeps for its VMs ({hub_tag} is filled in).

        Its ingress rules are exactly: TCP ``singleuser_port`` from ``hub_cidrs`` (the hub and its
        proxy) and UDP ``media_ports`` from ``media_cidrs`` (the desktop's WebRTC media); rules
        added by hand are removed when the hub starts its first server. Egress is Neutron's
        default (all). Empty: no group is managed and ports get the project's default group.
        """,
    )
    hub_cidrs = List(
        Unicode(),
        config=True,
        help="Addresses (CIDR) the hub and its proxy reach the VMs from. Default: the host of the "
        "hub's API URL as /32 (the address the VMs' JupyterLab talks to, usually the hub's host).",
    )
    media_cidrs = List(
        Unicode(),
        default_value=["0.0.0.0/0"],
        config=True,
        help="Addresses (CIDR) the desktop's WebRTC media may come from: the users' browsers (the "
        "campus and VPN ranges) or the TURN relays. Default: anywhere.",
    )
    media_ports = Unicode(
        "32768-60999",
        config=True,
        help="UDP port range of the desktop's WebRTC media in the VM (aiortc uses the kernel's "
        "ephemeral ports: /proc/sys/net/ipv4/ip_local_port_range of the image).",
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
    notebook_dir = Unicode(
        "",
        config=True,
        help="Directory JupyterLab starts in and serves, inside the VM. Empty: the user's home (from "
        "their POSIX identity; /root when JupyterLab runs as root).",
    )
    start_deadline = Float(
        0,
        config=True,
        help="Seconds a start may take before the VM is deleted and the user told why; "
        "0 means start_timeout minus 15 s, so this message wins over the hub's generic timeout.",
    )
    api_request_timeout = Float(30, config=True, help="Timeout of each OpenStack API request, in seconds.")
    status_interval = Float(1.0, config=True, help="Seconds between status checks while a VM starts.")
    console_interval = Float(
        4.0,
        config=True,
        help="Seconds between reads of a starting VM's console (boot stages, JupyterLab exiting). "
        "Each read is an API request per starting VM; JupyterLab answering is checked every "
        "status_interval without any.",
    )
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

    @default("options_form")
    def _options_form_default(self):
        return lambda spawner: spawner.render_options_form()

    @default("options_from_form")
    def _options_from_form_default(self):
        return self._simple_options_from_form  # {"profile": ["gpu"]} -> {"profile": "gpu"}

    @default("cmd")
    def _cmd_default(self):
        return ["jupyterhub-singleuser"]

    @default("args")
    def _args_default(self):
        return ["--allow-root"]

    # state

    server_id = Unicode("")
    profile_slug = Unicode("")
    idle_timeout = Integer(0)  # the profile's, kept in the state: polls need not read the profiles
    port_id = Unicode("")
    address = Unicode("")
    floating_ip_id = Unicode("")
    floating_address = Unicode("")
    shelved = Bool(False)  # the VM is shelved: its ids survive stop, for the next start to resume it
    resume_key = Unicode("")  # SHA-256 of the API token the VM holds (see resume.py)
    mounts_digest = Unicode("")  # of the account and data mounts the VM was created with
    events = List()
    _resume_env_file = None  # while a start resumes the VM: the env file the hub gives it
    _resuming = False  # this start unshelves the VM (a failure shelves it again)
    _deleting = Dict()  # server id -> task deleting that dead VM
    _ready_at = 0.0  # when this process saw the server become ready (time.time())
    _security_groups: dict[tuple, asyncio.Future] = {}  # one ensure per group and rules per hub process

    def get_state(self):
        state = super().get_state()
        if self.server_id:
            state.update(server_id=self.server_id, port_id=self.port_id, address=self.address,
                         profile=self.profile_slug, idle_timeout=self.idle_timeout, version=__version__)
            if self.floating_ip_id:
                state.update(floating_ip_id=self.floating_ip_id, floating_address=self.floating_address)
            if self.resume_key:
                state.update(resume_key=self.resume_key, mounts_digest=self.mounts_digest)
            if self.shelved:
                state.update(shelved=True)
        return state

    def load_state(self, state):
        super().load_state(state)
        self.server_id = state.get("server_id", "")
        self.port_id = state.get("port_id", "")
        self.address = state.get("address", "")
        self.profile_slug = state.get("profile", "")
        self.idle_timeout = int(state.get("idle_timeout", 0))
        self.floating_ip_id = state.get("floating_ip_id", "")
        self.floating_address = state.get("floating_address", "")
        self.shelved = bool(state.get("shelved", False))
        self.resume_key = state.get("resume_key", "")
        self.mounts_digest = state.get("mounts_digest", "")

    def clear_state(self):
        super().clear_state()
        if self.shelved:
            return  # kept for the next start, which resumes the shelved VM
        self.server_id = self.port_id = self.address = self.profile_slug = ""
        self.floating_ip_id = self.floating_address = self.resume_key = self.mounts_digest = ""
        self.idle_timeout = 0

    def take_resume_env(self) -> str | None:
        """The env file for the VM this start resumes (None if it resumes none); called by
        the resume handler once the VM proved it holds the last token. From now on, the VM
        holds this start's token."""
        env_file = self._resume_env_file
        if env_file is not None:
            self.resume_key = resume_key(self.api_token)
        return env_file

    @property
    def client(self) -> OpenStackClient:
        return OpenStackClient(self.cloud, self.clouds_yaml, self.api_request_timeout)

    @property
    def watcher(self) -> ServerWatcher:
        return ServerWatcher.shared(self.client, self.hub_tag, self.watch_interval, min_gap=self.status_interval)

    async def _server_view(self, fresh: bool) -> ServerView | None:
        """This server as the shared watcher sees it (``fresh``: from a list made from now on,
        shared with every other start waiting), confirmed by a direct request if the list does
        not have it (it may be newer than the list) or the watcher cannot list."""
        try:
            view = await (self.watcher.fresh(self.server_id, time.monotonic(), wait=self.api_request_timeout)
                          if fresh else self.watcher.get(self.server_id, wait=self.api_request_timeout))
        except WatcherUnavailable:
            view = None
        if view is None:
            server = await self.client.get_server(self.server_id)
            view = ServerView.of(server) if server is not None else None
        return view

    @property
    def vm_name(self) -> str:
        servername = f"-{self.name}" if self.name else ""
        return self.server_name_template.format(username=self.user.name, servername=servername)

    @property
    def owner_metadata(self) -> dict[str, str]:
        """The metadata that says a server is this spawner's."""
        return {"hepsdesk-hub": self.hub_tag, "hepsdesk-user": self.user.name, "hepsdesk-server": self.name or ""}

    @property
    def port_name(self) -> str:
        return f"{self.vm_name}-port"

    @property
    def vm_metadata(self) -> dict[str, str]:
        return {**self.extra_metadata, "hepsdesk-hub": self.hub_tag, "hepsdesk-user": self.user.name,
                "hepsdesk-server": self.name or "", "hepsdesk-profile": self.profile_slug}

    # profiles

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
        cards = await asyncio.gather(*(self._card(p) for p in profiles))
        return options_form.render(list(cards))

    async def _card(self, profile: Profile) -> options_form.Card:
        try:
            image, flavor = await asyncio.gather(self.client.find_image(profile.image),
                                                 self.client.find_flavor(profile.flavor))
        except SDKError as e:
            self.log.warning("Cannot read image/flavor of profile %s: %s", profile.slug, e)
            image = flavor = None
        card = {"software": (image.properties or {}).get("hepsdesk_software", "") if image else "",
                "vcpus": flavor.vcpus if flavor else 0, "ram_mb": flavor.ram if flavor else 0,
                "shelved": self.shelved and profile.slug == self.profile_slug and profile.stop_mode == "shelve"}
        trait, _ = flavor_gpu_request(flavor.extra_specs or {}) if flavor else ("", 0)
        if profile.gpu_count and trait:
            try:
                card["gpus"] = await self.capacity.gpus(trait, profile.gpu_model)
            except (SDKError, OSError, ValueError) as e:  # e.g. 403: no right to read Placement
                self.log.warning("Cannot read free %s GPUs from Placement: %s", profile.gpu_model, e)
                card["capacity_note"] = "free GPUs unknown right now"
        return options_form.Card(profile, **card)

    @property
    def capacity(self) -> CapacityReader:
        client = OpenStackClient(self.capacity_cloud or self.cloud, self.clouds_yaml, self.api_request_timeout)
        return CapacityReader.shared(client, self.capacity_ttl)

    async def _choose_profile(self) -> Profile:
        """The profile in user_options, checked: anything else is refused before anything is created."""
        options = dict(self.user_options or {})
        unknown = sorted(set(options) - {"profile"})
        if unknown:
            raise SpawnError(f"Unknown option(s) {', '.join(map(repr, unknown))[:200]}: the only option is "
                                 "'profile', the name of an environment.", reason="bad_options", status_code=400)
        try:
            return choose(await self.user_profiles(), options.get("profile"))
        except ProfileRefused as e:
            raise SpawnError(str(e), reason="profile_refused", status_code=403) from None
        except ProfileError as e:
            self.log.error("OpenStackSpawner.profiles is wrong: %s", e)
            raise SpawnError("The hub's list of environments is misconfigured, so no server can be started. "
                                 "Please tell the hub's administrators.", reason="bad_profiles",
                                 status_code=500) from None

    async def _identity_and_mounts(self, profile: Profile) -> tuple[PosixIdentity | None, list[DataMount]]:
        """The user's account and data mounts for this VM, from their auth_state (checked)."""
        auth_state = await self.user.get_auth_state()
        try:
            identity = PosixIdentity.from_auth_state(auth_state, min_id=self.min_posix_id)
            proposals = proposals_of(auth_state)
        except IdentityError as e:
            self.log.warning("Unusable identity for %s: %s", self._log_name, e)
            raise SpawnError(f"Your computing account cannot be set up in a VM: {e}. Please tell the facility's "
                             "user office.", reason="bad_identity", status_code=403) from None
        try:
            templates = [*parse_data_mounts(self.data_mounts, "OpenStackSpawner.data_mounts"), *profile.data_mounts]
            if identity is None and needs_identity(templates):
                raise SpawnError("Your data cannot be mounted: your account has no computing identity (uid and "
                                 "gid) yet. Please sign out and in again; if this stays, tell the facility's user "
                                 "office.", reason="no_identity", status_code=403)
            return identity, expand_all(templates, identity, proposals)
        except DataMountError as e:
            self.log.error("The data mounts of %s cannot be used: %s", self._log_name, e)
            raise SpawnError("The hub's data mounts are misconfigured, so no server can be started. Please tell "
                             "the hub's administrators.", reason="bad_data_mounts", status_code=500) from None

    # progress

    @property
    def _new_event(self) -> asyncio.Event:
        if not hasattr(self, "_new_event_"):
            self._new_event_ = asyncio.Event()
        return self._new_event_

    def _emit(self, progress: int, message: str) -> None:
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

    # start

    async def start(self):
        self.events = []
        self._started = time.monotonic()
        self._resuming = False
        deadline = self.start_deadline or max(60.0, self.start_timeout - 15)
        try:
            return await asyncio.wait_for(self._start(), timeout=deadline)
        except TimeoutError:
            console = await self._console_excerpt()
            what = await self._undo_start()
            raise SpawnError(
                f"Your VM was not ready within {deadline:.0f} seconds, so {what}. "
                f"Please try again; if this keeps happening, contact the facility's support. {console}",
                reason="timeout", status_code=504) from None
        except SpawnException:
            await self._undo_start()
            raise
        except SDKError as e:
            what = await self._undo_start()
            raise SpawnError(
                f"The cloud could not start your VM, and {what}. Please try "
                f"again; if this keeps happening, tell the facility's support: {str(e)[:300]}",
                reason="cloud_error", status_code=502) from None
        except BaseException:
            await self._undo_start()
            raise
        finally:
            self._resume_env_file = None

    async def _undo_start(self) -> str:
        """After a failed start: a VM being resumed is shelved again (its disk is kept);
        anything else created for the start is deleted. Says which, for the user."""
        if self._resuming and await self._shelve():
            return "it has been shelved again: nothing on its disk was lost"
        await self._cleanup()
        return "anything created for it has been removed"

    async def _start(self):
        profile = await self._choose_profile()
        identity, mounts = await self._identity_and_mounts(profile)
        digest = hashlib.sha256(repr((identity, tuple(mounts))).encode()).hexdigest()
        if self.shelved and self.server_id:
            url = await self._resume(profile, identity, digest)
            if url:
                return url
        self.profile_slug, self.idle_timeout, self.mounts_digest = profile.slug, profile.idle_timeout, digest
        await self._remove_leftovers()
        self._emit(5, f"Looking up the image, flavor and network of {profile.display_name}")
        if self.connect_to == "floating" and not self.floating_ip_network:
            raise SpawnError("The hub's network settings are misconfigured, so no server can be started. Please "
                             "tell the hub's administrators.", reason="bad_network_config", status_code=500,
                             log_message="OpenStackSpawner.connect_to is 'floating' but floating_ip_network is unset")
        image, flavor, network, public = await asyncio.gather(
            self.client.find_image(profile.image), self.client.find_flavor(profile.flavor),
            self.client.find_network(self.network),
            self._find_public_network())
        for kind, wanted, found in (("image", profile.image, image), ("flavor", profile.flavor, flavor),
                                    ("network", self.network, network),
                                    *([("network", self.floating_ip_network, public)] if self.floating_ip_network
                                      else [])):
            if found is None:
                raise SpawnError(
                    f"The {kind} '{wanted}' does not exist on the cloud, so no VM can be started. "
                    "Please tell the hub's administrators.", reason=f"no_{kind}", status_code=500)

        self._profile = profile
        self._gpu_trait = flavor_gpu_request(flavor.extra_specs or {})[0]
        self._emit(10, "Reserving a network address")
        try:
            try:
                port = await self._create_port(network.id)
            except HttpError as e:
                if not (self.security_group and e.status_code in (400, 404) and "ecurity group" in str(e)):
                    raise
                # The group was deleted since this hub made sure of it (by an operator): again.
                self.log.warning("Security group of %s gone (%s): creating it again", self._log_name, e)
                port = await self._create_port(network.id, renew_group=True)
        except HttpError as e:
            raise errors.quota_exceeded(e, "network port") or e from None
        self.port_id = port.id
        self.address = port.fixed_ips[0]["ip_address"]
        if self.floating_ip_network:
            self._emit(12, "Reserving a public address")
            try:
                ip = await self.client.create_floating_ip(public.id, port.id, self._port_description,
                                                          tags=[self.hub_tag])
            except HttpError as e:
                raise errors.quota_exceeded(e, "public address") or e from None
            self.floating_ip_id, self.floating_address = ip.id, ip.floating_ip_address
        self.ip, self.port = self.connect_address, self.singleuser_port

        command = [*self.cmd, *self.get_args()]
        user_data = render_singleuser_user_data(command, self._singleuser_env(), workdir=self.notebook_dir,
                                                identity=identity, mounts=mounts)
        self.resume_key = resume_key(self.api_token)
        self._emit(15, f"Creating your VM ({image.name}, {flavor.name})")
        try:
            server = await self.client.create_server(
                name=self.vm_name, image_id=image.id, flavor_id=flavor.id, networks=[{"port": port.id}],
                user_data=base64.b64encode(user_data.encode()).decode(), metadata=self.vm_metadata,
                tags=[self.hub_tag])
        except HttpError as e:
            raise errors.quota_exceeded(e, "VM") or e from None
        self.server_id = server.id
        self.log.info("Spawn of %s: created VM %s (%s, %s, %s) on port %s", self._log_name, server.id,
                      profile.slug, image.name, flavor.name, self.address)

        await self._wait_active()
        await self._wait_ready()
        self._ready_at = time.time()
        return f"http://{self.connect_address}:{self.singleuser_port}"

    def _singleuser_env(self) -> dict[str, str]:
        """The single-user server's environment in the VM."""
        env = self.get_env()
        env.update(self.extra_user_data_env)
        # The desktop offers this address for WebRTC media (see desktop_proxy.peers).
        env["HEPSDESK_VM_ADDRESS"] = self.address
        if self.floating_address:
            env["HEPSDESK_PUBLIC_ADDRESS"] = self.floating_address
        return env

    async def _resume(self, profile: Profile, identity: PosixIdentity | None, digest: str) -> str | None:
        """Unshelve this server's shelved VM and wait until JupyterLab answers in it; or, when
        it cannot serve this start (another profile, a changed account or data mounts, gone),
        delete it and return None: a new VM is started."""
        if self.server_id in self._deleting:  # an idle server still being shelved
            await asyncio.shield(self._deleting[self.server_id])
        # Asked directly: the watcher's newest list may predate the shelve.
        server = await self.client.get_server(self.server_id)
        view = ServerView.of(server) if server is not None else None
        same = (profile.slug, profile.stop_mode, digest) == (self.profile_slug, "shelve", self.mounts_digest)
        if same and view is not None and view.status in ("ACTIVE", "SHUTOFF"):
            # A resume the hub did not see finish (it was restarted) left it running: its disk
            # is still the user's, so it is shelved again and resumed the usual way.
            self._emit(4, "Your VM was left running by an interrupted start: shelving it first")
            if await self._shelve():
                server = await self.client.get_server(self.server_id)
                view = ServerView.of(server) if server is not None else None
        why = ("it no longer exists" if view is None
               else f"it is {view.status}" if view.status not in SHELVED_STATES
               else f"you chose {profile.display_name}" if (profile.slug, profile.stop_mode) != (self.profile_slug,
                                                                                                 "shelve")
               else "your account or data mounts changed" if digest != self.mounts_digest else "")
        if why:
            self._emit(3, f"Not resuming your shelved VM ({why}): starting a new one")
            self.log.info("Not resuming the shelved VM %s of %s (%s): deleting it", self.server_id, self._log_name,
                          why)
            await self._cleanup()  # no longer shelved
            return None
        self._resuming = True
        self._profile, self.idle_timeout = profile, profile.idle_timeout
        flavor = await self.client.find_flavor(profile.flavor)
        self._gpu_trait = flavor_gpu_request(flavor.extra_specs or {})[0] if flavor else ""
        self.ip, self.port = self.connect_address, self.singleuser_port
        self._resume_env_file = render_env_file(self._singleuser_env(), identity)
        self._emit(15, f"Resuming your shelved VM ({profile.display_name})")
        self.log.info("Spawn of %s: unshelving VM %s", self._log_name, self.server_id)
        await self.client.unshelve_server(self.server_id)
        await self._wait_active()
        await self._wait_ready()
        self.shelved = self._resuming = False
        self._ready_at = time.time()
        return f"http://{self.connect_address}:{self.singleuser_port}"

    def security_rules(self) -> set[tuple]:
        """The ingress rules of the managed group: (protocol, port_min, port_max, remote CIDR)."""
        hub_cidrs = list(self.hub_cidrs)
        if not hub_cidrs:
            host = urlparse(self.hub.api_url).hostname or ""
            try:
                hub_cidrs = [str(ipaddress.ip_network(host))]
            except ValueError:
                raise SpawnError(f"Set OpenStackSpawner.hub_cidrs: the hub's API host {host!r} is not an address, "
                                 "so the VMs' security group cannot admit the hub.", reason="bad_config",
                                 status_code=500) from None
        try:
            low, high = (int(p) for p in self.media_ports.split("-"))
            cidrs = [str(ipaddress.ip_network(c, strict=False)) for c in [*hub_cidrs, *self.media_cidrs]]
        except ValueError as e:
            raise SpawnError(f"The VMs' security group is misconfigured ({e}); please tell the hub's administrators.",
                             reason="bad_config", status_code=500) from None
        hub, media = cidrs[:len(hub_cidrs)], cidrs[len(hub_cidrs):]
        return ({("tcp", self.singleuser_port, self.singleuser_port, c) for c in hub}
                | {("udp", low, high, c) for c in media})

    async def _find_public_network(self):
        """The floating IPs' network, or None when VMs get no floating IP."""
        return await self.client.find_network(self.floating_ip_network) if self.floating_ip_network else None

    @property
    def _port_description(self) -> str:
        """Names the hub's tag: what finds a port (or floating IP) whose create answer was lost."""
        return f"hepsdesk ({self.hub_tag}): {self.user.name}'s server {self.name or '(default)'}"

    @property
    def connect_address(self) -> str:
        """The address the hub connects to (see ``connect_to``)."""
        return self.floating_address if self.connect_to == "floating" and self.floating_address else self.address

    async def _create_port(self, network_id: str, renew_group: bool = False):
        groups = [await self._security_group_id(renew_group)] if self.security_group else None
        return await self.client.create_port(network_id, self.port_name, self._port_description,
                                             security_group_ids=groups, tags=[self.hub_tag])

    async def _security_group_id(self, renew: bool = False) -> str:
        name = self.security_group.format(hub_tag=self.hub_tag)
        rules = self.security_rules()
        key = (self.cloud, self.clouds_yaml, name, frozenset(rules))
        if renew and key in self._security_groups and self._security_groups[key].done():
            del self._security_groups[key]
        if key not in self._security_groups or self._security_groups[key].cancelled():
            self._security_groups[key] = asyncio.ensure_future(self.client.ensure_security_group(
                name, f"hepsdesk: VMs of the hub tagged {self.hub_tag} (managed; manual changes are undone)", rules))
        try:
            return await asyncio.shield(self._security_groups[key])
        except BaseException:
            if self._security_groups.get(key) is not None and self._security_groups[key].done():
                self._security_groups.pop(key, None)  # try again at the next spawn
            raise

    async def _remove_leftovers(self) -> None:
        """Delete what an interrupted start of this server left (the hub was restarted while it
        ran, so it never saved the ids): servers with this name, user and hub, and their ports."""
        server_ids, port_ids = await self._find_own()
        if server_ids or port_ids:
            self._emit(8, "Removing a VM left over from an interrupted start")
            self.log.warning("Removing leftovers of %s: servers %s, ports %s", self._log_name, server_ids, port_ids)
            await self._delete(server_ids, port_ids)

    async def _find_own(self) -> tuple[set[str], set[str]]:
        """Ids of the servers and ports with this server's name and owner, including those whose
        create answer was lost on the way (so their ids were never known)."""
        servers = await self.client.find_servers(self.vm_name, self.owner_metadata)
        ports = await self.client.find_ports(self.port_name, self.hub_tag)
        return {s.id for s in servers}, {p.id for p in ports}

    async def _wait_active(self) -> None:
        reported = None
        while True:
            started = time.monotonic()
            server = await self._server_view(fresh=True)
            if server is None:
                raise SpawnError("Your VM disappeared while it was starting. Please try again.",
                                     reason="vm_gone", status_code=500)
            if server.status == "ACTIVE":
                self._emit(50, "Your VM is running; waiting for it to boot")
                return
            if server.status == "ERROR":
                fault = server.fault or "no reason given"
                raise await self._no_capacity(fault) or SpawnError(
                    f"The cloud could not start your VM: {fault}", reason="vm_error", status_code=500)
            stage = TASK_STAGES.get(server.task_state or "")
            if stage and server.task_state != reported:
                reported = server.task_state
                self._emit(*stage)
            await asyncio.sleep(max(0.0, self.status_interval - (time.monotonic() - started)))

    async def _no_capacity(self, fault: str) -> SpawnError | None:
        profile = self._profile
        free = ""
        if profile.gpu_count and self._gpu_trait and errors.NO_HOST_RE.search(fault):
            try:
                free = str(await self.capacity.gpus(self._gpu_trait, profile.gpu_model))
            except Exception as e:  # only a detail of the message
                self.log.debug("No GPU capacity for the message: %s", e)
        return errors.no_capacity(fault, profile.gpu_model, profile.gpu_count, free)

    async def _wait_ready(self) -> None:
        """Until JupyterLab answers: its port every ``status_interval`` (no API request), the
        console every ``console_interval`` (boot stages, and JupyterLab exiting: fail at once)."""
        url = f"http://{self.connect_address}:{self.singleuser_port}{self.user.url}api"
        http = AsyncHTTPClient()
        booted = starting = False
        console_read = -self.console_interval
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
            if time.monotonic() - console_read >= self.console_interval:
                console_read = time.monotonic()
                console = await self.client.console_tail(self.server_id, 80)
                if not booted and BOOTED_RE.search(console):
                    booted = True
                    self._emit(60, "The guest is booting (cloud-init is running)")
                if not starting and STARTING_MARKER in console:
                    starting = True
                    self._emit(70, "Your VM booted; starting JupyterLab")
                self._check_jupyterlab_alive(console)
            await asyncio.sleep(self.status_interval)
        if not starting:
            self._emit(70, "Your VM booted; starting JupyterLab")
        self._emit(90, "JupyterLab is answering")

    def _check_jupyterlab_alive(self, console: str) -> None:
        """Fail at once, with the end of its log, when JupyterLab exited in the VM."""
        if EXITED_MARKER not in console:
            return
        if NO_ENV_MARKER in console:
            why = console[console.rindex(NO_ENV_MARKER) + len(NO_ENV_MARKER):].splitlines()[0]
            raise SpawnError(
                f"Your VM was resumed but the hub did not give it its new credentials ({self._scrub(why.strip())}), "
                "so JupyterLab was not started. Please tell the hub's administrators (is "
                "hepsdesk_spawner.resume.handlers in JupyterHub.extra_handlers?).", reason="no_resume_env",
                status_code=500)
        if MISSING_MOUNT_MARKER in console:
            missing = console[console.rindex(MISSING_MOUNT_MARKER) + len(MISSING_MOUNT_MARKER):].splitlines()[0]
            why = [line for line in console.splitlines() if line.startswith(("mount:", "mount."))]
            raise SpawnError(
                f"Your data could not be mounted in the VM ({missing.strip()}"
                + (f": {self._scrub(why[-1])}" if why else "") + "). JupyterLab was not started, so nothing was "
                "written to the VM's own disk, and the VM has been removed. Please tell the facility's support.",
                reason="data_not_mounted", status_code=500)
        tail = console[console.rindex(EXITED_MARKER):].splitlines()
        status = re.search(r"with status (\d+)", tail[0])
        log = [line[len(LOG_LINE_PREFIX):] for line in tail[1:] if line.startswith(LOG_LINE_PREFIX)]
        raise SpawnError(
            f"JupyterLab could not start in your VM (it exited with status {status.group(1) if status else '?'}), "
            "so the VM has been removed. Please tell the hub's administrators; the end of its log: "
            + (self._scrub(" | ".join(log[-5:])) or "(empty)"), reason="singleuser_exited", status_code=500)

    async def _check_still_running(self) -> None:
        server = await self._server_view(fresh=False)
        if server is None or server.status in GONE_STATES:
            console = await self._console_excerpt()
            raise SpawnError(f"Your VM stopped while it was starting ({server.status if server else 'deleted'}). "
                                 f"{console}", reason="vm_stopped", status_code=500)

    async def _console_excerpt(self) -> str:
        if not self.server_id:
            return ""
        try:
            lines = [line for line in (await self.client.console_tail(self.server_id, 10)).splitlines() if line]
        except SDKError:
            return ""
        return ("Last lines of its console: " + self._scrub(" | ".join(lines[-5:]))) if lines else ""

    def _scrub(self, text: str) -> str:
        """Console text for the user's eyes: without the server's token or anything secret-looking."""
        env = self.get_env()
        known = [self.api_token or "", *(v for k, v in {**env, **self.extra_user_data_env}.items()
                                         if errors.SECRET_RE.search(f"{k}=x"))]
        return errors.scrub_secrets(text, known)

    # poll and stop

    async def poll(self):
        if not self.server_id:
            return 0
        try:
            # Not in the newest list (gone, or created after the list was requested) or no
            # list to be had: asked directly.
            view = await self._server_view(fresh=False)
        except SDKError as e:
            self.log.warning("Cannot poll server %s of %s: %s", self.server_id, self._log_name, e)
            return None  # the cloud may be briefly unreachable: do not declare the server dead
        if view is None or view.status in GONE_STATES:
            if view is not None and view.status in SHELVED_STATES:
                # Shelved by a stop the hub did not see finish (it was restarted), or by an
                # operator: kept, for the next start to resume.
                self.shelved = True
            if view is not None and view.status in DEAD_STATES:
                self._delete_in_background(view, f"is {view.status}")
            return 0
        if self._idle_too_long():
            shelve = await self._stop_mode() == "shelve"
            # Set now: the hub saves the state (clear_state keeps a shelved VM's) when poll returns.
            self.shelved = shelve
            self._delete_in_background(view, "is idle", shelve=shelve)
            return 0
        return None

    async def _stop_mode(self) -> str:
        """The stop mode of this server's profile (``delete`` if the profile is gone from the config)."""
        try:
            profiles = await self.all_profiles()
        except ProfileError:
            return "delete"
        return next((p.stop_mode for p in profiles if p.slug == self.profile_slug), "delete")

    def _idle_too_long(self) -> bool:
        """Has this server been idle longer than its profile's idle_timeout? Idle time counts
        from the last activity the hub saw (JupyterLab's reports, proxy traffic), or from the
        moment the server became ready, whichever is later."""
        if not self.idle_timeout:
            return False
        last = self.orm_spawner.last_activity if self.orm_spawner is not None else None
        since = last.replace(tzinfo=last.tzinfo or UTC).timestamp() if last else 0.0
        idle = time.time() - max(since, self._ready_at)
        if idle < self.idle_timeout:
            return False
        self.log.info("%s has been idle for %.0f s (profile %s allows %d s): stopping it", self._log_name, idle,
                      self.profile_slug, self.idle_timeout)
        return True

    def _delete_in_background(self, view: ServerView, why: str, shelve: bool = False) -> None:
        """Delete (or ``shelve``) a VM that poll() reports as stopped (it died: crash, shut down
        from inside or by an operator; or it was idle too long) with its port, as stop() would:
        the hub never calls stop() for a server that poll() says is not running. Only these ids
        are deleted, so a new start for the same user is never touched."""
        if view.id in self._deleting:
            return
        self.log.warning("Server %s of %s %s: %s it", view.id, self._log_name, why,
                         "shelving" if shelve else "deleting")

        async def delete(port_id: str = self.port_id) -> None:
            try:
                if shelve and await self._shelve():
                    return
                self.shelved = False
                await self._delete({view.id}, {port_id} - {""})
            except SDKError as e:  # logged; the server stays until deleted by hand
                self.log.error("Deleting the dead server %s of %s failed: %s", view.id, self._log_name, e)
            finally:
                self._deleting.pop(view.id, None)

        self._deleting[view.id] = asyncio.ensure_future(delete())

    async def stop(self, now=False):
        if self.server_id and await self._stop_mode() == "shelve" and await self._shelve():
            return
        await self._cleanup()

    async def _shelve(self) -> bool:
        """Shelve this server's VM and wait (up to ``delete_timeout``) until Nova has; False when
        it cannot be (it is gone or in ERROR, or Nova failed): then the caller deletes it."""
        try:
            server = await self.client.get_server(self.server_id)
            if server is not None and server.status not in (*SHELVED_STATES, "ERROR"):
                self.log.info("Shelving VM %s of %s", self.server_id, self._log_name)
                await self.client.shelve_server(self.server_id)
            deadline = time.monotonic() + self.delete_timeout
            # Until Nova is done (an offload follows the shelve when the cloud offloads at once).
            while server is not None and (server.status not in SHELVED_STATES or server.task_state):
                if server.status == "ERROR" or time.monotonic() > deadline:
                    self.log.error("Shelving VM %s of %s failed (%s): deleting it instead", self.server_id,
                                   self._log_name, server.fault or server.status)
                    return False
                await asyncio.sleep(self.status_interval)
                server = await self.client.get_server(self.server_id)
        except (SDKError, OSError) as e:
            self.log.error("Shelving VM %s of %s failed (%s): deleting it instead", self.server_id, self._log_name,
                           str(e)[:300])
            return False
        if server is None:
            return False
        self.shelved = True
        self.log.info("Shelved VM %s of %s", self.server_id, self._log_name)
        return True

    async def delete_forever(self):
        """The server (or its user) is removed: a shelved VM goes, with its port and floating IP."""
        if self.server_id or self.port_id:
            await self._cleanup()

    async def _cleanup(self) -> None:
        """Delete this server's VM and port (the known ids and any found by name and owner) and
        wait until the VM is gone."""
        server_ids, port_ids = {self.server_id} - {""}, {self.port_id} - {""}
        try:
            found_servers, found_ports = await self._find_own()
            server_ids, port_ids = server_ids | found_servers, port_ids | found_ports
        except SDKError as e:
            self.log.error("Listing the servers and ports of %s failed: %s", self._log_name, e)
        await self._delete(server_ids, port_ids)
        self.server_id = self.port_id = self.address = self.floating_ip_id = self.floating_address = ""
        self.shelved = False

    async def _delete(self, server_ids: set[str], port_ids: set[str]) -> None:
        """Delete these servers and ports, waiting (up to delete_timeout) until the servers are
        gone. A delete the cloud refuses even after retries is logged and the rest goes on: what
        is left carries the hub's tag, so the orphan reaper removes it later."""
        for server_id in server_ids:
            await self._try(self.client.delete_server(server_id), f"deleting server {server_id}")
        deadline = time.monotonic() + self.delete_timeout
        for server_id in server_ids:
            while await self._try(self.client.get_server(server_id), f"checking server {server_id}") is not None:
                if time.monotonic() > deadline:
                    self.log.error("Server %s of %s is still there after %.0f s", server_id, self._log_name,
                                   self.delete_timeout)
                    break
                await asyncio.sleep(self.status_interval)
        for port_id in port_ids:
            if self.floating_ip_network:
                await self._try(self.client.delete_floating_ips_of_port(port_id),
                                f"deleting the floating IPs of port {port_id}")
            await self._try(self.client.delete_port(port_id), f"deleting port {port_id}")

    async def _try(self, call, what: str):
        """Await ``call``; on a cloud error log it and return None."""
        try:
            return await call
        except (SDKError, OSError) as e:
            self.log.error("%s of %s failed: %s", what.capitalize(), self._log_name, str(e)[:300])
            return None
