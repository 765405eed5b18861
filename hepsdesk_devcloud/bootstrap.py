"""Seed a dev cloud through its own APIs: catalog, users, network, flavors, images, quotas.

Everything here is idempotent (find, then create what is missing), runs through
openstacksdk as the bootstrap admin, and is what an operator would do by hand on a new
cloud. It also writes ``clouds.yaml`` with the clouds ``devcloud`` (the hub's project, member
role) and ``devcloud-admin``.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import tempfile
from pathlib import Path

import openstack
import openstack.config
import yaml

from hepsdesk_images.catalogue import Catalogue, Image
from hepsdesk_images.store import BuiltImage
from hepsdesk_spawner.image_accounts import declaration

from . import flavors
from .service_plugins import hepsdesk_process_image as process_image
from .settings import DevCloudSettings

HUB_PROJECT = "hepsdesk"
HUB_USER = "hepsdesk-hub"
ADMIN_USER = "admin"
NETWORK = "hepsdesk-net"
SUBNET = "hepsdesk-subnet"
PUBLIC_NETWORK = "hepsdesk-public"
PUBLIC_SUBNET = "hepsdesk-public-subnet"
ROUTER = "hepsdesk-router"
CLOUD = "devcloud"
ADMIN_CLOUD = "devcloud-admin"
ENDPOINTS = {  # service type -> (service name, port name, path)
    "compute": ("nova", "nova-api", "/v2.1"),
    "placement": ("placement", "placement", ""),
    "image": ("glance", "glance", ""),
    "network": ("neutron", "neutron", ""),
}
HUB_QUOTAS = {"instances": 100, "cores": 800, "ram": 4 * 1024 * 1024}
HUB_NETWORK_QUOTAS = {"port": 500, "security_group": 50, "security_group_rule": 500, "floatingip": 100}
USER_CLOUDS_YAML = Path.home() / ".config" / "openstack" / "clouds.yaml"
MANIFEST_DIGEST = "hepsdesk_manifest_sha256"


def clouds(settings: DevCloudSettings, secrets: dict) -> dict:
    def cloud(user: str, password: str, project: str) -> dict:
        return {
            "auth": {"auth_url": settings.auth_url, "username": user, "password": password,
                     "project_name": project, "user_domain_name": "Default", "project_domain_name": "Default"},
            "region_name": settings.region,
            "identity_api_version": 3,
            "interface": "public",
        }
    return {CLOUD: cloud(HUB_USER, secrets["hub"], HUB_PROJECT),
            ADMIN_CLOUD: cloud(ADMIN_USER, secrets["admin"], "admin")}


def write_clouds_yaml(settings: DevCloudSettings, secrets: dict, user_file: Path | None = USER_CLOUDS_YAML) -> None:
    """Write ``<state>/clouds.yaml`` and merge our two clouds into the user's clouds.yaml,
    so ``openstack --os-cloud devcloud ...`` works from any directory."""
    ours = clouds(settings, secrets)
    _write_private_yaml(settings.clouds_yaml, {"clouds": ours})
    if user_file is None:
        return
    existing = {}
    if user_file.exists():
        existing = yaml.safe_load(user_file.read_text()) or {}
    merged = dict(existing)
    merged["clouds"] = {**(existing.get("clouds") or {}), **ours}
    if merged != existing:
        user_file.parent.mkdir(parents=True, exist_ok=True)
        _write_private_yaml(user_file, merged)


def remove_from_user_clouds_yaml(user_file: Path = USER_CLOUDS_YAML, auth_url: str | None = None) -> None:
    """Forget our clouds in the user's clouds.yaml (only if they still point at this cloud)."""
    if not user_file.exists():
        return
    data = yaml.safe_load(user_file.read_text()) or {}
    entries = data.get("clouds") or {}
    for name in (CLOUD, ADMIN_CLOUD):
        if name in entries and (auth_url is None or entries[name].get("auth", {}).get("auth_url") == auth_url):
            del entries[name]
    _write_private_yaml(user_file, data)


def _write_private_yaml(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".clouds-")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(data, f, default_flow_style=False, sort_keys=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def connect(settings: DevCloudSettings, cloud: str = CLOUD) -> openstack.connection.Connection:
    """An openstacksdk connection to this dev cloud (``devcloud`` or ``devcloud-admin``)."""
    config = openstack.config.OpenStackConfig(config_files=[str(settings.clouds_yaml)],
                                              vendor_files=[], load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=cloud))


def ensure_identity(conn, settings: DevCloudSettings, secrets: dict) -> None:
    """Service project, service users, the hub's project and user, and the catalog."""
    roles = {role.name: role for role in conn.identity.roles()}
    for name in ("admin", "member", "reader", "service"):
        if name not in roles:
            roles[name] = conn.identity.create_role(name=name)
    domain = conn.identity.find_domain("default")
    service_project = _ensure_project(conn, "service", domain.id, "OpenStack service users")
    for user in ("nova", "placement", "glance", "neutron"):
        account = _ensure_user(conn, user, secrets[user], domain.id, service_project.id)
        for role in ("admin", "service"):
            conn.identity.assign_project_role_to_user(service_project, account, roles[role])
    hub_project = _ensure_project(conn, HUB_PROJECT, domain.id, "The hepsdesk JupyterHub's servers")
    hub_user = _ensure_user(conn, HUB_USER, secrets["hub"], domain.id, hub_project.id)
    for role in ("member", "reader"):
        conn.identity.assign_project_role_to_user(hub_project, hub_user, roles[role])
    services = {service.type: service for service in conn.identity.services()}
    endpoints = {(e.service_id, e.interface) for e in conn.identity.endpoints()}
    for service_type, (name, port_name, path) in ENDPOINTS.items():
        service = services.get(service_type) or conn.identity.create_service(name=name, type=service_type)
        for interface in ("public", "internal", "admin"):
            if (service.id, interface) not in endpoints:
                conn.identity.create_endpoint(service_id=service.id, interface=interface,
                                              url=settings.url(port_name) + path, region_id=settings.region)


def _ensure_project(conn, name: str, domain_id: str, description: str):
    return (conn.identity.find_project(name, domain_id=domain_id)
            or conn.identity.create_project(name=name, domain_id=domain_id, description=description))


def _ensure_user(conn, name: str, password: str, domain_id: str, project_id: str):
    user = conn.identity.find_user(name, domain_id=domain_id)
    if user is None:
        return conn.identity.create_user(name=name, password=password, domain_id=domain_id,
                                         default_project_id=project_id)
    return conn.identity.update_user(user, password=password)


def _flat_network(conn, name: str, subnet: str, cidr: str, physnet: str, description: str, **attrs):
    """A flat provider network on loopback with one gateway-less subnet (created if missing)."""
    network = conn.network.find_network(name)
    if network is None:
        network = conn.network.create_network(name=name, provider_network_type="flat",
                                              provider_physical_network=physnet, description=description, **attrs)
    if conn.network.find_subnet(subnet) is None:
        prefix = cidr.split("/")[0].rsplit(".", 2)[0]
        conn.network.create_subnet(
            name=subnet, network_id=network.id, ip_version=4, cidr=cidr, gateway_ip=None, is_dhcp_enabled=False,
            allocation_pools=[{"start": f"{prefix}.0.10", "end": f"{prefix}.255.250"}])
    return network


def ensure_network(conn, settings: DevCloudSettings) -> None:
    _flat_network(conn, NETWORK, SUBNET, settings.network_cidr, "physnet1", is_shared=True,
                  description="Loopback network of the dev cloud: every server gets its own 127.x.y.z address")


def ensure_public_network(conn, settings: DevCloudSettings) -> None:
    """An external network for floating IPs and a router joining it to the VMs' network, as
    a cloud that gives VMs public addresses has (no NAT behind them: see neutron.conf)."""
    public = _flat_network(conn, PUBLIC_NETWORK, PUBLIC_SUBNET, settings.public_cidr, "physnet2",
                           is_router_external=True,
                           description="External network of the dev cloud: floating IPs (allocated, not routed)")
    router = conn.network.find_router(ROUTER)
    if router is None:
        router = conn.network.create_router(name=ROUTER, external_gateway_info={"network_id": public.id})
    internal = conn.network.find_network(NETWORK)
    if not list(conn.network.ports(device_id=router.id, network_id=internal.id)):
        # The VMs' subnet has no gateway address: the router joins it through a port of its own.
        subnet = conn.network.find_subnet(SUBNET)
        port = conn.network.create_port(network_id=internal.id, name=f"{ROUTER}-interface",
                                        fixed_ips=[{"subnet_id": subnet.id}])
        conn.network.add_interface_to_router(router, port_id=port.id)


def ensure_flavors(conn, settings: DevCloudSettings) -> None:
    existing = {flavor.name for flavor in conn.compute.flavors(is_public=None)}
    for spec in flavors.flavors(settings.gpus):
        if spec.name in existing:
            continue
        flavor = conn.compute.create_flavor(name=spec.name, vcpus=spec.vcpus, ram=spec.ram_mb, disk=spec.disk_gb,
                                            is_public=True, description=spec.description)
        if spec.extra_specs:
            conn.compute.create_flavor_extra_specs(flavor, spec.extra_specs)


def image_manifest(catalogue: Catalogue, image: Image, built: BuiltImage) -> dict:
    """A process image whose VMs run the image's own environments from the store: the
    server's programs first on PATH, the image's directory in the environment."""
    return process_image.make_manifest(
        image.name, env={"HEPSDESK_IMAGE": image.name, "HEPSDESK_BEAMLINE": image.beamline, **built.environment()},
        path=[str(built.server_bin)], software_paths=built.software_paths(), beamline=image.beamline,
        software=catalogue.software(image))


def image_accounts() -> dict[str, str]:
    """The accounts a process image holds of its own (its root is this machine's ``/``), as the
    Glance properties the spawner checks identities against (``image_accounts``)."""
    users, groups = pwd.getpwall(), grp.getgrall()
    return declaration([u.pw_uid for u in users] + [g.gr_gid for g in groups],
                       [u.pw_name for u in users] + [g.gr_name for g in groups])


def ensure_images(conn, catalogue: Catalogue, built: dict[str, BuiltImage]) -> None:
    """Upload each catalogue image (built into the store); replace one whose manifest or
    accounts changed (the old one deleted after)."""
    accounts = image_accounts()
    for name, image_dir in built.items():
        image = catalogue.image(name)
        manifest = image_manifest(catalogue, image, image_dir)
        digest = hashlib.sha256(json.dumps([manifest, accounts], sort_keys=True).encode()).hexdigest()
        existing = [i for i in conn.image.images(name=name)]
        if any(i.status == "active" and (i.properties or {}).get(MANIFEST_DIGEST) == digest for i in existing):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            blob = os.path.join(tmp, "image.tar")
            process_image.write_base_image(blob, manifest)
            conn.image.create_image(
                name=name, filename=blob, disk_format=process_image.DISK_FORMAT,
                container_format=process_image.CONTAINER_FORMAT, visibility="public", wait=True,
                **catalogue.glance_properties(image), hepsdesk_process_image="1", **accounts,
                **{MANIFEST_DIGEST: digest})
        for old in existing:
            conn.image.delete_image(old, ignore_missing=True)


def ensure_quotas(conn) -> None:
    project = conn.identity.find_project(HUB_PROJECT, domain_id="default")
    conn.set_compute_quotas(project.id, **HUB_QUOTAS)
    conn.set_network_quotas(project.id, **HUB_NETWORK_QUOTAS)
