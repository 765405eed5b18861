"""The OpenStackSpawner's configuration: every trait, what it is for, and what it accepts.

Each value is checked when the configuration is loaded (``@validate``): a bad one is a
``TraitError`` that names the setting. What only several traits together can contradict is
checked by ``check_configuration()``, which the hub runs at start-up (``startup.check_config``
in ``jupyterhub_config.py``), so a wrong setting stops the hub instead of failing every spawn.
"""

from __future__ import annotations

import ipaddress
import os
import re
import string

from traitlets import Bool, Callable, Dict, Enum, Float, Integer, List, TraitError, Unicode, Union, default, validate
from traitlets.config import LoggingConfigurable

from .datamounts import DataMountError, parse_data_mounts
from .profiles import ProfileError, parse_profiles
from .quotas import QuotaConfigError, parse_quotas

NAME = "OpenStackSpawner"  # how messages name the settings (subclasses are configured the same way)
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Nova tags: at most 60 characters, no "/" or ","; the tag also names the security group.
TAG_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,60}$")


class ConfigError(ValueError):
    """The hub's configuration is wrong; ``trait`` names the setting to change."""

    def __init__(self, trait: str, problem: str):
        super().__init__(f"{NAME}.{trait}: {problem}")
        self.trait = trait


def port_range(text: str) -> tuple[int, int]:
    """``"LOW-HIGH"`` as two ports; ValueError when it is not a range of ports."""
    match = re.fullmatch(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a port range LOW-HIGH (e.g. 32768-60999)")
    low, high = int(match.group(1)), int(match.group(2))
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"{text!r} is not a port range within 1-65535 with LOW <= HIGH")
    return low, high


def template_fields(template: str) -> set[str]:
    """The ``{placeholders}`` of a format string; ValueError when it is not one."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


class SpawnerSettings(LoggingConfigurable):
    """The configurable part of ``OpenStackSpawner`` (configure it as ``c.OpenStackSpawner``); it
    also sets JupyterHub's ``Spawner`` defaults that VMs need."""

    cloud = Unicode(
        config=True,
        help="""Name of the hub's cloud in clouds.yaml, where the VMs are created (the hub's project).
        Default: the ``OS_CLOUD`` environment variable; the hub does not start without one.

        Production: an application credential of the hub's project, e.g.
        ``clouds: {heps: {auth_type: v3applicationcredential, auth: {auth_url: ...,
        application_credential_id: ..., application_credential_secret: ...}}}`` and
        ``c.OpenStackSpawner.cloud = "heps"``.
        """,
    )
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
        empty: everyone; admins may use every profile), ``default``, ``data_mounts`` (added to
        ``data_mounts``).

        Empty: one implicit profile of ``image`` and ``flavor``, and no form.
        """,
    )
    group_quotas = Dict(
        config=True,
        help="""The most each JupyterHub group's members may hold at once:
        ``{"heps-imaging": {"vms": 10, "vcpus": 64, "gpus": {"A100": 4}}}`` (any key may be left
        out: no limit). A server is charged to the group through which its profile is allowed
        (for a profile open to everyone: the user's groups with a quota); when several apply,
        the user picks one on the spawn page (``{"group": ...}`` through the REST API) and the
        choice is kept with the server. Checked at every start (and resume) before anything
        is made, race-free between concurrent starts; a start that does not fit is refused
        with what the group uses ("Your group heps-imaging uses 4 of 4 A100"). The cards show
        each group's use. Shelved VMs hold nothing. See ``hepsdesk_spawner/quotas.py``.
        """,
    )
    warm_pool = Dict(
        config=True,
        help="""VMs kept booted per profile, so a start takes seconds instead of a boot:
        ``{"heps-imaging": 2}``, or with more during set hours (the hub's local time; the first
        period that covers the moment wins): ``{"heps-imaging": {"size": 1, "schedule": [{"days":
        "mon-fri", "hours": "8-20", "size": 4}]}}``. A pooled VM holds no one's identity or data
        until a start claims it, then serves that user only (``hepsdesk_spawner/pool.py``).
        GPU profiles are pooled only within ``warm_pool_gpus``.
        """,
    )
    warm_pool_gpus = Dict(
        config=True,
        help="""The most GPUs of each model that pooled VMs may hold at once, e.g. ``{"A100": 2}``:
        pooled GPUs wait for users instead of computing. A GPU profile's pool needs its model
        here; a pool that would hold more GPUs than the cloud has is not kept (logged, and shown
        on the admins' dashboard).
        """,
    )
    pool_claim_timeout = Float(
        60.0,
        config=True,
        help="""Seconds from claiming a pooled VM until JupyterLab answers in it. A pooled VM
        that does not make it in time is deleted and the start boots a new VM instead.""",
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
        10000,
        config=True,
        help="Lowest uid/gid an identity from auth_state may have. Above every image's own accounts: "
        "system accounts, and the default user cloud images make (Debian's 'debian' is uid 1000, with "
        "sudo). Images also declare their accounts (Glance properties hepsdesk_account_ids and "
        "hepsdesk_account_names, see hepsdesk_spawner/image_accounts.py); an identity that collides "
        "with them is refused before anything is created.",
    )
    capacity_cloud = Unicode(
        "",
        config=True,
        help="""Cloud in clouds.yaml used to read free GPUs and room for a flavor from Placement.

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
        help="Addresses (CIDR, e.g. ``10.20.0.5/32``) the hub and its proxy reach the VMs from. Default: "
        "the host of the hub's API URL as /32 (the address the VMs' JupyterLab talks to, usually the hub's host).",
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
        help="UDP port range LOW-HIGH of the desktop's WebRTC media in the VM (aiortc uses the kernel's "
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
        help="Tag and metadata value marking the servers this hub created (letters, digits, '_.:-'; "
        "at most 60). Give each hub that shares a project its own tag.",
    )
    extra_metadata = Dict(
        config=True,
        help="Extra server metadata (visible to every member of the project: no secrets).",
    )
    singleuser_port = Integer(8888, config=True, help="Port jupyterhub-singleuser listens on in the VM.")
    notebook_dir = Unicode(
        "",
        config=True,
        help="Directory JupyterLab starts in and serves, inside the VM (absolute). Empty: the user's home "
        "(from their POSIX identity; /root when JupyterLab runs as root).",
    )
    start_deadline = Float(
        0,
        config=True,
        help="Seconds a start may take before the VM is deleted and the user told why; "
        "0 means start_timeout minus 15 s, so this message wins over the hub's generic timeout.",
    )
    api_request_timeout = Float(30, config=True, help="Timeout of each OpenStack API request, in seconds.")
    api_threads = Integer(
        4,
        config=True,
        help="""Threads that make the OpenStack calls of all spawners (one pool per hub: openstacksdk blocks).

        What these threads do in Python holds the interpreter lock the hub's event loop needs, so
        more threads make the hub slower to answer, not the starts faster: with 100 starts at once
        (``benchmarks/spawner_scale.py``), 8 threads stalled the loop for up to 755 ms and started
        55 servers a minute, 4 threads 469 ms and 62 a minute. Requests mostly wait on the network
        (the lock is free then), so a few threads carry many starts.
        """,
    )
    status_interval = Float(1.0, config=True, help="Seconds between status checks while a VM starts or is deleted.")
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
    delete_timeout = Float(
        180,
        config=True,
        help="Seconds stop() keeps deleting the VM (retrying the cloud's errors) until it is confirmed "
        "gone; after that the stop fails and the hub's log says which VM is left.",
    )
    extra_user_data_env = Dict(
        config=True, help="Extra environment variables for the single-user server (in addition to the hub's)."
    )
    allow_http_hub = Bool(
        False,
        config=True,
        help="Let a resumed VM fetch its environment from a hub whose API URL is plain http (development "
        "only: the dev cloud's hub is http://127.0.0.1:8081). Otherwise the VM refuses: over http, anyone on "
        "the network between hub and VM could hand root in the VM a forged environment.",
    )

    # JupyterHub's defaults are made for local processes; VMs need minutes, not seconds.
    @default("cloud")
    def _cloud_default(self):
        return os.environ.get("OS_CLOUD", "")

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

    # one value at a time, as it is loaded

    @staticmethod
    def _refuse(proposal, problem: str):
        raise TraitError(f"{NAME}.{proposal['trait'].name}: {problem}")

    @validate("media_ports")
    def _valid_media_ports(self, proposal):
        try:
            port_range(proposal["value"])
        except ValueError as e:
            self._refuse(proposal, str(e))
        return proposal["value"]

    @validate("hub_cidrs", "media_cidrs")
    def _valid_cidrs(self, proposal):
        for cidr in proposal["value"]:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                self._refuse(proposal, f"{cidr!r} is not an address range (CIDR, e.g. 10.20.0.0/16)")
        return proposal["value"]

    @validate("profiles")
    def _valid_profiles(self, proposal):
        if not callable(proposal["value"]):
            try:
                parse_profiles(proposal["value"])
            except ProfileError as e:
                self._refuse(proposal, str(e))
        return proposal["value"]

    @validate("group_quotas")
    def _valid_group_quotas(self, proposal):
        try:
            parse_quotas(proposal["value"])
        except QuotaConfigError as e:
            self._refuse(proposal, str(e))
        return proposal["value"]

    @validate("warm_pool", "warm_pool_gpus")
    def _valid_warm_pool(self, proposal):
        from .pool import PoolConfigError, parse_pool_gpus, parse_warm_pool  # (pool.py needs these settings)

        try:
            (parse_warm_pool if proposal["trait"].name == "warm_pool" else parse_pool_gpus)(proposal["value"])
        except PoolConfigError as e:
            self._refuse(proposal, str(e))
        return proposal["value"]

    @validate("data_mounts")
    def _valid_data_mounts(self, proposal):
        try:
            parse_data_mounts(proposal["value"], f"{NAME}.data_mounts")
        except DataMountError as e:
            self._refuse(proposal, str(e))
        return proposal["value"]

    @validate("server_name_template", "security_group")
    def _valid_templates(self, proposal):
        allowed = {"server_name_template": {"username", "servername"}, "security_group": {"hub_tag"}}
        allowed = allowed[proposal["trait"].name]
        try:
            unknown = template_fields(proposal["value"]) - allowed
        except ValueError as e:
            self._refuse(proposal, f"{proposal['value']!r} is not a template ({e})")
        if unknown:
            self._refuse(proposal, f"unknown placeholder(s) {', '.join(sorted(unknown))} "
                                   f"(known: {', '.join(sorted(allowed))})")
        return proposal["value"]

    @validate("hub_tag")
    def _valid_hub_tag(self, proposal):
        if not TAG_RE.match(proposal["value"]):
            self._refuse(proposal, f"{proposal['value']!r} is not a tag (letters, digits, '_.:-'; at most 60)")
        return proposal["value"]

    @validate("api_threads")
    def _valid_threads(self, proposal):
        if not 1 <= proposal["value"] <= 64:
            self._refuse(proposal, f"must be between 1 and 64, not {proposal['value']}")
        return proposal["value"]

    @validate("singleuser_port")
    def _valid_port(self, proposal):
        if not 1 <= proposal["value"] <= 65535:
            self._refuse(proposal, f"{proposal['value']} is not a port (1-65535)")
        return proposal["value"]

    @validate("min_posix_id")
    def _valid_min_posix_id(self, proposal):
        if proposal["value"] < 1:
            self._refuse(proposal, "must be at least 1: no identity may be root")
        return proposal["value"]

    @validate("api_request_timeout", "status_interval", "console_interval", "watch_interval", "delete_timeout")
    def _valid_positive(self, proposal):
        if not proposal["value"] > 0:
            self._refuse(proposal, f"must be more than 0 seconds, not {proposal['value']}")
        return proposal["value"]

    @validate("capacity_ttl", "start_deadline")
    def _valid_not_negative(self, proposal):
        if proposal["value"] < 0:
            self._refuse(proposal, f"cannot be negative ({proposal['value']})")
        return proposal["value"]

    @validate("notebook_dir")
    def _valid_notebook_dir(self, proposal):
        if proposal["value"] and not proposal["value"].startswith("/"):
            self._refuse(proposal, f"{proposal['value']!r} is not an absolute path")
        return proposal["value"]

    @validate("extra_user_data_env")
    def _valid_env(self, proposal):
        bad = sorted(str(k) for k in proposal["value"] if not ENV_NAME_RE.match(str(k)))
        if bad:
            self._refuse(proposal, f"{', '.join(map(repr, bad))} cannot be environment variable names")
        return proposal["value"]

    # the values together

    def check_configuration(self) -> None:
        """What only the settings together can get wrong (ConfigError naming the setting):
        the cloud must exist in clouds.yaml, a floating connection needs its network."""
        if not self.cloud:
            raise ConfigError("cloud", "not set: name the hub's cloud in clouds.yaml, e.g. "
                                       "c.OpenStackSpawner.cloud = 'heps' (or set OS_CLOUD)")
        for trait in ("cloud", "capacity_cloud"):
            if getattr(self, trait):
                self._check_cloud_entry(trait)
        if self.connect_to == "floating" and not self.floating_ip_network:
            raise ConfigError("connect_to", "'floating' needs OpenStackSpawner.floating_ip_network, the network "
                                            "the VMs' floating IPs come from")

    def _check_cloud_entry(self, trait: str) -> None:
        import openstack.config
        import openstack.exceptions

        name = getattr(self, trait)
        files = [self.clouds_yaml] if self.clouds_yaml else None
        if files and not os.path.isfile(self.clouds_yaml):
            raise ConfigError("clouds_yaml", f"{self.clouds_yaml!r} does not exist")
        try:
            config = openstack.config.OpenStackConfig(config_files=files) if files else \
                openstack.config.OpenStackConfig()
            config.get_one(cloud=name)
        except openstack.exceptions.ConfigException as e:
            where = self.clouds_yaml or "openstacksdk's search path"
            raise ConfigError(trait, f"the cloud {name!r} is not usable from {where}: {e}") from None
