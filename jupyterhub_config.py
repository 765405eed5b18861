# hepsdesk's JupyterHub configuration.
#
# As it stands it runs the development setup that `hepsdesk demo` starts: the embedded dev
# cloud (OpenStack on this machine), the development OIDC provider, the hub on
# http://127.0.0.1:8000. Every setting a production hub needs is here too, with what to put
# in it; values come from environment variables so one file serves both (`hepsdesk demo`
# sets the HEPSDESK_* variables; production sets its own or edits the defaults below).
import json
import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821 -- provided by JupyterHub

here = Path(__file__).resolve().parent
state = Path(os.environ.get("HEPSDESK_HUB_STATE", here / ".hepsdesk-hub"))
state.mkdir(parents=True, exist_ok=True)
public_url = os.environ.get("HEPSDESK_PUBLIC_URL", "http://127.0.0.1:8000")

# --- Where the hub listens ------------------------------------------------------------------
# Production: public_url is the facility's https:// address; TLS terminates at the proxy
# (c.JupyterHub.ssl_cert / ssl_key) or at a load balancer in front of it.
c.JupyterHub.bind_url = public_url
# The hub API must be reachable from the users' VMs: in production set hub_connect_url to an
# address on the VMs' network (e.g. "http://10.20.0.5:8081"); the dev cloud's VMs share
# this machine's loopback, so 127.0.0.1 works here.
c.JupyterHub.hub_bind_url = os.environ.get("HEPSDESK_HUB_BIND_URL", "http://127.0.0.1:8081")
if os.environ.get("HEPSDESK_HUB_CONNECT_URL"):
    c.JupyterHub.hub_connect_url = os.environ["HEPSDESK_HUB_CONNECT_URL"]

# --- State and secrets ----------------------------------------------------------------------
# The hub's database (HEPSDESK_HUB_DB_URL). SQLite (the default) serves one hub on one machine;
# production puts it on a server database that is backed up and survives the hub's machine:
#   MariaDB/MySQL: "mysql+pymysql://jupyterhub:PASSWORD@db.example/jupyterhub?charset=utf8mb4"
#     (the database made with CHARACTER SET utf8mb4; pymysql comes with hepsdesk[hub]);
#   PostgreSQL: "postgresql://jupyterhub:PASSWORD@db.example/jupyterhub" (pip install psycopg2).
# The dev cloud makes one on its MariaDB: DevCloud.hub_database() (tests/integration/test_hub_on_mariadb.py).
# The cookie secret and JUPYTERHUB_CRYPT_KEY (encrypts auth_state: `openssl rand -hex 32`) come
# from a secret store in production.
c.JupyterHub.db_url = os.environ.get("HEPSDESK_HUB_DB_URL", f"sqlite:///{state / 'jupyterhub.sqlite'}")
if c.JupyterHub.db_url.startswith("sqlite"):
    # JupyterHub commits on its event loop. In SQLite's default (rollback journal) mode every
    # commit creates, syncs and deletes a journal file: 10-40 ms each on a busy disk, the
    # largest part of the hub's loop lag while 100 servers start. Write-ahead logging with
    # synchronous=NORMAL commits without a sync; a power cut may lose the last commits (never
    # the database), and the reaper removes VMs whose start was not saved.
    import sqlite3  # noqa: E402

    from sqlalchemy import event  # noqa: E402
    from sqlalchemy.engine import Engine  # noqa: E402

    @event.listens_for(Engine, "connect")
    def _sqlite_write_ahead_log(connection, record):
        if isinstance(connection, sqlite3.Connection):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(state / "jupyterhub-proxy.pid")
# The proxy's REST API (only the hub talks to it).
c.ConfigurableHTTPProxy.api_url = os.environ.get("HEPSDESK_PROXY_API_URL", "http://127.0.0.1:8001")
if os.environ.get("HEPSDESK_CHP_COMMAND"):
    c.ConfigurableHTTPProxy.command = os.environ["HEPSDESK_CHP_COMMAND"].split()

# --- Sign-in: the facility's OIDC single sign-on --------------------------------------------
c.JupyterHub.authenticator_class = "hepsdesk"
c.HEPSAuthenticator.oidc_issuer = os.environ.get("HEPSDESK_OIDC_ISSUER", "http://127.0.0.1:9400")
c.HEPSAuthenticator.client_id = os.environ.get("HEPSDESK_OIDC_CLIENT_ID", "hepsdesk-hub")
# The client secret comes from OAUTH_CLIENT_SECRET (never put it in this file).
c.HEPSAuthenticator.oauth_callback_url = f"{public_url}/hub/oauth_callback"
c.HEPSAuthenticator.login_service = os.environ.get("HEPSDESK_LOGIN_SERVICE", "facility SSO")
# Who may use hepsdesk: members of these groups (the provider's `groups` claim).
c.HEPSAuthenticator.allowed_groups = set(
    os.environ.get("HEPSDESK_ALLOWED_GROUPS", "heps-users,csns-users,bsrf-users").split(","))
# Who administers it (the control panel, other users' servers).
c.HEPSAuthenticator.admin_groups = set(os.environ.get("HEPSDESK_ADMIN_GROUPS", "hepsdesk-admins").split(","))
# Production with a provider that cannot issue tokens over plain HTTP: nothing to change here,
# but the issuer must be https://.

# --- Computing accounts: Active Directory and the storage's LDAP ----------------------------
# With a domain controller configured, each sign-in looks the person up in AD (over LDAPS, the
# certificate checked against the CA below). A member of an allowed group who has no account
# gets one at the first sign-in: RFC2307 attributes (uidNumber/gidNumber from the domain's NIS
# object), the primary group, one group per proposal in the SSO's `proposals` claim, and the
# same account and groups in the storage's LDAP, which decides who reads which experiment's
# data. The VM's user then has the AD uid/gid and those groups. `hepsdesk demo` runs a Samba AD
# DC and a slapd and sets these variables. The bind passwords come from
# HEPSDESK_AD_BIND_PASSWORD and HEPSDESK_STORAGE_LDAP_BIND_PASSWORD (never put them here).
if os.environ.get("HEPSDESK_AD_URL"):
    ad_base = os.environ.get("HEPSDESK_AD_BASE_DN", "DC=dev,DC=heps")
    c.HEPSAuthenticator.ad_urls = os.environ["HEPSDESK_AD_URL"].split(",")  # ldaps://dc1,ldaps://dc2
    c.HEPSAuthenticator.ad_ca_file = os.environ.get("HEPSDESK_AD_CA_FILE", "")
    c.HEPSAuthenticator.ad_bind_dn = os.environ.get("HEPSDESK_AD_BIND_DN", f"CN=Administrator,CN=Users,{ad_base}")
    c.HEPSAuthenticator.ad_base_dn = ad_base
    c.HEPSAuthenticator.ad_users_dn = os.environ.get("HEPSDESK_AD_USERS_DN", f"OU=Users,OU=HEPS,{ad_base}")
    c.HEPSAuthenticator.ad_groups_dn = os.environ.get("HEPSDESK_AD_GROUPS_DN", f"OU=Groups,OU=HEPS,{ad_base}")
    c.HEPSAuthenticator.id_counter_dn = os.environ.get(
        "HEPSDESK_AD_ID_COUNTER_DN", f"CN=dev,CN=ypservers,CN=ypServ30,CN=RpcServices,CN=System,{ad_base}")
    if os.environ.get("HEPSDESK_STORAGE_LDAP_URL"):
        storage_base = os.environ.get("HEPSDESK_STORAGE_LDAP_BASE_DN", "dc=storage,dc=heps")
        c.HEPSAuthenticator.storage_ldap_urls = os.environ["HEPSDESK_STORAGE_LDAP_URL"].split(",")
        c.HEPSAuthenticator.storage_ldap_ca_file = os.environ.get("HEPSDESK_STORAGE_LDAP_CA_FILE", "")
        c.HEPSAuthenticator.storage_ldap_bind_dn = os.environ.get("HEPSDESK_STORAGE_LDAP_BIND_DN",
                                                                  f"cn=admin,{storage_base}")
        c.HEPSAuthenticator.storage_ldap_people_dn = f"ou=people,{storage_base}"
        c.HEPSAuthenticator.storage_ldap_groups_dn = f"ou=groups,{storage_base}"
# Roles from directory groups, given again at every sign-in (and before every spawn), e.g. an
# instrument scientist whom the beamline's users may invite to their desktops (the desktop only,
# never their server: hepsdesk_share), and the facility's desktop support, who may ask to join
# any desktop (the owner lets them in):
# c.HEPSAuthenticator.group_roles = [
#     {"name": "b7-instrument-scientist", "groups": ["heps-b7-staff"],
#      "description": "Instrument scientist of beamline B7",
#      "scopes": ["read:users:name!group=heps-b7-users", "custom:hepsdesk:shared-desktops!group=heps-b7-users"]},
#     {"name": "desktop-support", "groups": ["hepsdesk-support"],
#      "description": "The facility's desktop support",
#      "scopes": ["read:users:name", "custom:hepsdesk:desktop-support"]},
# ]
# The hub's admin groups operate hepsdesk: the dashboard (every VM; stop, shelve, delete) and
# the metrics. Give the role to other groups (e.g. the facility's operators) the same way. With
# group_roles the authenticator manages roles, and it is one of them; without, it is given to
# the groups through load_roles (below).
OPERATOR_ROLE = {"name": "hepsdesk-operator", "groups": sorted(c.HEPSAuthenticator.admin_groups),
                 "description": "Operates hepsdesk: the dashboard and the metrics",
                 "scopes": ["custom:hepsdesk:operate", "read:metrics"]}
if os.environ.get("HEPSDESK_GROUP_ROLES_FILE"):
    c.HEPSAuthenticator.group_roles = [*json.loads(Path(os.environ["HEPSDESK_GROUP_ROLES_FILE"]).read_text()),
                                       OPERATOR_ROLE]

# --- Servers: one OpenStack VM per user -----------------------------------------------------
c.JupyterHub.spawner_class = "openstack"
# The hub's project in clouds.yaml. Production: an application credential of that project.
c.OpenStackSpawner.cloud = os.environ.get("OS_CLOUD", "devcloud")
c.OpenStackSpawner.clouds_yaml = os.environ.get("HEPSDESK_CLOUDS_YAML", str(here / ".devcloud" / "clouds.yaml"))
# VMs refuse to take their environment from a hub that is not https (they ask for it at boot):
# the dev cloud's hub is http://127.0.0.1:8081, so it allows plain http. Production: never.
c.OpenStackSpawner.allow_http_hub = os.environ.get(
    "HEPSDESK_ALLOW_HTTP_HUB", "1" if c.OpenStackSpawner.cloud == "devcloud" else "0") == "1"
# The environments users choose from (cards on the spawn page, or {"profile": slug} through the
# REST API): beamline image x flavor x GPU, and the JupyterHub groups (from the SSO's `groups`
# claim) that may use each. Admins may use all of them. See OpenStackSpawner.profiles.
# HEPSDESK_PROFILES_FILE: a JSON file with the list instead (e.g. kept by the facility's
# configuration management).
c.OpenStackSpawner.profiles = json.loads(Path(os.environ["HEPSDESK_PROFILES_FILE"]).read_text()) \
    if os.environ.get("HEPSDESK_PROFILES_FILE") else [
    {"slug": "desktop", "display_name": "Analysis desktop", "default": True,
     "description": "JupyterLab and a graphical desktop for everyday analysis.",
     "image": os.environ.get("HEPSDESK_IMAGE", "hepsdesk-desktop"),
     "flavor": os.environ.get("HEPSDESK_FLAVOR", "c1.small")},
    {"slug": "imaging", "display_name": "HEPS X-ray imaging",
     "description": "Tomography and imaging analysis for HEPS beamlines.",
     "image": "hepsdesk-imaging", "flavor": "c1.medium", "allowed_groups": ["heps-users"]},
    {"slug": "imaging-gpu", "display_name": "HEPS X-ray imaging with a GPU",
     "description": "Tomographic reconstruction and 3D visualisation on an A100.",
     "image": "hepsdesk-imaging", "flavor": "g1.a100.1", "gpu_model": "A100", "gpu_count": 1,
     "allowed_groups": ["heps-users"]},
    {"slug": "diffraction", "display_name": "HEPS powder diffraction",
     "description": "Dioptas and pyFAI for HEPS diffraction beamlines.",
     "image": "hepsdesk-diffraction", "flavor": "c1.medium", "allowed_groups": ["heps-users"]},
    {"slug": "xrf", "display_name": "HEPS X-ray fluorescence",
     "description": "PyMca for HEPS fluorescence beamlines.",
     "image": "hepsdesk-xrf", "flavor": "c1.medium", "allowed_groups": ["heps-users"]},
    {"slug": "neutron", "display_name": "CSNS neutron scattering",
     "description": "SasView and neutron data reduction for CSNS instruments.",
     "image": "hepsdesk-neutron", "flavor": "c1.medium", "allowed_groups": ["csns-users"]},
]
# Group quotas: the most a JupyterHub group's members may hold at once (VMs, vCPUs, GPUs per
# model), checked at every start; a server counts against the group through which its profile
# is allowed (the user picks when several apply). HEPSDESK_GROUP_QUOTAS_FILE: a JSON file, e.g.
# {"heps-users": {"vms": 40, "vcpus": 200, "gpus": {"A100": 4}}}. See OpenStackSpawner.group_quotas.
c.OpenStackSpawner.group_quotas = json.loads(Path(os.environ["HEPSDESK_GROUP_QUOTAS_FILE"]).read_text()) \
    if os.environ.get("HEPSDESK_GROUP_QUOTAS_FILE") else {}
# The warm pool: VMs booted ahead per profile, so a start takes seconds instead of a boot
# (HEPSDESK_WARM_POOL: JSON, e.g. {"imaging": 2} or {"imaging": {"size": 1, "schedule":
# [{"days": "mon-fri", "hours": "8-20", "size": 4}]}}); GPU profiles within
# HEPSDESK_WARM_POOL_GPUS, e.g. {"A100": 1}. See OpenStackSpawner.warm_pool.
c.OpenStackSpawner.warm_pool = json.loads(os.environ.get("HEPSDESK_WARM_POOL", "{}"))
c.OpenStackSpawner.warm_pool_gpus = json.loads(os.environ.get("HEPSDESK_WARM_POOL_GPUS", "{}"))
c.OpenStackSpawner.pool_claim_timeout = float(os.environ.get("HEPSDESK_POOL_CLAIM_TIMEOUT", "60"))
# Free GPUs on the spawn page come from Placement, which a project member may not read:
# production gives the hub a read-only cloud entry for it (the dev cloud: its admin).
c.OpenStackSpawner.capacity_cloud = os.environ.get("HEPSDESK_CAPACITY_CLOUD", "devcloud-admin")
# Every VM asks the hub for its environment (its API token among it) at each boot, for the
# one-time key in its user-data or the token it holds (a resumed one: a profile with
# "stop_mode": "shelve" keeps the VM shelved between starts); each desktop session asks for its
# TURN credentials (TurnRelay, below). A pooled VM asks for its user (hepsdesk_spawner.pool).
# Each desktop also reports who watches it and how its stream does (the admins' dashboard, the
# hub's metrics) and learns when an idle server will be stopped. The admins' dashboard
# (hepsdesk_dashboard): every VM of this hub, GPUs per model and group, desktops connected,
# orphans; stop, shelve, delete. Linked from the hub's navigation for holders of
# custom:hepsdesk:operate (the hepsdesk-operator role above).
from hepsdesk_dashboard import TEMPLATES as DASHBOARD_TEMPLATES  # noqa: E402
from hepsdesk_dashboard import handlers as dashboard_handlers  # noqa: E402
from hepsdesk_share import handlers as share_handlers  # noqa: E402
from hepsdesk_spawner.desktop_reports import handlers as report_handlers  # noqa: E402
from hepsdesk_spawner.idle import handlers as idle_handlers  # noqa: E402
from hepsdesk_spawner.pool import handlers as pool_handlers  # noqa: E402
from hepsdesk_spawner.resume import handlers as resume_handlers  # noqa: E402
from hepsdesk_spawner.turn import handlers as turn_handlers  # noqa: E402

c.JupyterHub.extra_handlers = [*resume_handlers, *pool_handlers, *turn_handlers, *report_handlers,
                               *idle_handlers, *share_handlers, *dashboard_handlers]
c.JupyterHub.template_paths = [str(DASHBOARD_TEMPLATES)]
# Sharing a desktop (the desktop only, never the server): owners share from the desktop's
# people button with a user, a group, or a single-use link; guests see it through the hub
# (hepsdesk_share). By default only with people in one of the owner's groups (their proposal's)
# and with holders of custom:hepsdesk:shared-desktops (instrument scientists, below). Every
# share, join, hand-over of control and revoke goes to the hub's log and to this file.
c.DesktopSharing.within_groups = os.environ.get("HEPSDESK_SHARE_WITHIN_GROUPS", "1") == "1"
c.DesktopSharing.audit_file = os.environ.get("HEPSDESK_SHARE_AUDIT_FILE", "")
# Several servers per user (e.g. a GPU desktop beside a CPU one), each its own VM.
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = int(os.environ.get("HEPSDESK_SERVERS_PER_USER", "3"))
c.OpenStackSpawner.network = os.environ.get("HEPSDESK_NETWORK", "hepsdesk-net")
# A floating IP per VM from this external network (the dev cloud's: "hepsdesk-public"), e.g.
# when the hub runs outside the cloud: then HEPSDESK_CONNECT_TO=floating. Unset: none.
c.OpenStackSpawner.floating_ip_network = os.environ.get("HEPSDESK_FLOATING_IP_NETWORK", "")
c.OpenStackSpawner.connect_to = os.environ.get("HEPSDESK_CONNECT_TO", "fixed")
# The user's data, by their identity, from the facility's storage (NFS): their home, and one
# directory per proposal (experiment) under /data. HEPSDESK_DATA_SERVER names the storage
# server (the dev cloud's is "devcloud-storage", its .devcloud/storage directory); unset: no
# mounts, and JupyterLab runs as root unless the user's auth_state has a POSIX identity.
if os.environ.get("HEPSDESK_DATA_SERVER"):
    data_server = os.environ["HEPSDESK_DATA_SERVER"]
    c.OpenStackSpawner.data_mounts = [
        {"source": f"{data_server}:/home/{{username}}", "target": "{home}"},
        {"source": f"{data_server}:/proposals/{{proposal}}", "target": "/data/{proposal}"},
    ]
# The desktop's WebRTC media goes from the VM straight to the browser. For browsers that
# cannot reach the VMs (home networks, a firewall that lets media out only through a relay),
# name the facility's STUN/TURN servers. The hub holds the TURN server's shared secret (coturn's
# static-auth-secret, in a file only the hub reads) and gives each desktop session credentials
# of its user's, for 10 minutes (hepsdesk_spawner/turn.py); the secret never enters a VM.
# ICE policy "relay" sends all media through the TURN server. Unset: the browser reaches the
# VM directly.
c.TurnRelay.urls = [u.strip() for u in os.environ.get("HEPSDESK_DESKTOP_ICE_SERVERS", "").split(",") if u.strip()]
c.TurnRelay.secret_file = os.environ.get("HEPSDESK_DESKTOP_TURN_SECRET_FILE", "")
c.TurnRelay.policy = os.environ.get("HEPSDESK_DESKTOP_ICE_POLICY", "all")
# Mark this hub's servers (give every hub sharing a project its own tag).
c.OpenStackSpawner.hub_tag = os.environ.get("HEPSDESK_HUB_TAG", "hepsdesk-hub")
# VMs take minutes, not seconds: the spawner gives up (and deletes the VM, and tells the user
# why) 15 s before start_timeout; http_timeout covers JupyterLab coming up after the boot.
c.Spawner.start_timeout = int(os.environ.get("HEPSDESK_START_TIMEOUT", "600"))
c.Spawner.http_timeout = 120
# Open JupyterLab (the Desktop tile is on its launcher).
c.Spawner.default_url = "/lab"
# Show the spawn's progress page at once instead of holding the request for up to 10 s.
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}

# A hub restart (upgrade, config change) must not delete every user's VM: servers keep
# running and the hub finds them again from its database.
c.JupyterHub.cleanup_servers = False

# --- Timeouts and limits --------------------------------------------------------------------
# Restart the hub (under systemd) after this many consecutive spawn errors (0 = never). Full
# GPUs, used-up quotas and refused profiles are not errors and never count.
c.Spawner.consecutive_failure_limit = int(os.environ.get("HEPSDESK_CONSECUTIVE_FAILURE_LIMIT", "0"))
# Idle servers are stopped by the spawner itself, per profile ("idle_timeout", and "stop_mode":
# delete or shelve), counting only a person's use, and their users are warned in JupyterLab and
# on the desktop a quarter of the timeout (at most 10 minutes) before: no jupyterhub-idle-culler.
# A server's activity comes from its own reports (input on the desktop; in JupyterLab, changes,
# kernels and terminals), not from the proxy's traffic, which an open tab nobody touches keeps up.
c.JupyterHub.last_activity_interval = 0

# --- Services -------------------------------------------------------------------------------
# A token written in the configuration (a service's api_token) is checked with 16384 SHA-512
# rounds at every request, on the hub's event loop (~10 ms on two busy cores); a service the
# hub starts itself (command) gets a token the hub generated, checked in one round. Give a
# busy external service a token made through the hub's API (POST /users/{name}/tokens).
services, roles = [], []
# The orphan reaper deletes servers and ports tagged with this hub that no server in the hub's
# database owns (left by a hub killed in the middle of a start, a failed delete, ...) once
# they are older than --grace (default 15 min, longer than any start). Every deletion is logged
# in the hub's log. HEPSDESK_REAPER: "on" (default), "dry-run" (log only) or "off".
reaper = os.environ.get("HEPSDESK_REAPER", "on")
if reaper != "off":
    services.append({"name": "hepsdesk-reaper", "command": [
        sys.executable, "-m", "hepsdesk_spawner.reaper", "--cloud", c.OpenStackSpawner.cloud,
        "--clouds-yaml", c.OpenStackSpawner.clouds_yaml, "--hub-tag", c.OpenStackSpawner.hub_tag,
        *(["--dry-run"] if reaper == "dry-run" else []), *os.environ.get("HEPSDESK_REAPER_ARGS", "").split()]})
    roles.append({"name": "hepsdesk-reaper", "services": ["hepsdesk-reaper"],
                  "scopes": ["list:users", "read:users:name", "read:servers", "admin:server_state"]})

# Token mode: the facility's user portal sends a person signed in there straight to their
# desktop. It asks POST /hub/api/hepsdesk/portal-login/<name> for a one-time link and opens it
# (see hepsdesk_auth/token_login.py and docs/identity.md); only a holder of the custom scope
# below can make one. Its API token comes from HEPSDESK_PORTAL_API_TOKEN; narrow its role to the
# people it may send, e.g. "custom:hepsdesk:portal-login!group=heps-users".
from hepsdesk_auth.token_login import CUSTOM_SCOPES  # noqa: E402
from hepsdesk_auth.token_login import SCOPE as PORTAL_SCOPE  # noqa: E402
from hepsdesk_dashboard import CUSTOM_SCOPES as DASHBOARD_SCOPES  # noqa: E402
from hepsdesk_share import CUSTOM_SCOPES as SHARE_SCOPES  # noqa: E402

c.JupyterHub.custom_scopes = {**CUSTOM_SCOPES, **SHARE_SCOPES, **DASHBOARD_SCOPES}
if os.environ.get("HEPSDESK_PORTAL_API_TOKEN"):
    services.append({"name": "hepsdesk-portal", "api_token": os.environ["HEPSDESK_PORTAL_API_TOKEN"]})
    roles.append({"name": "hepsdesk-portal", "services": ["hepsdesk-portal"],
                  "scopes": os.environ.get("HEPSDESK_PORTAL_SCOPES", f"{PORTAL_SCOPE},read:users:name").split(",")})

# Prometheus reads /hub/metrics (JupyterHub's figures and hepsdesk's: spawn stages, failures by
# reason, GPUs, the watcher; docs/operations.md) with a token of a role holding "read:metrics",
# e.g. a service without a command whose token was made through the hub's API:
# roles.append({"name": "prometheus", "services": ["prometheus"], "scopes": ["read:metrics"]})

# --- Development tools ----------------------------------------------------------------------
# `hepsdesk demo` and the tests drive the hub's REST API with this token (not for production).
if os.environ.get("HEPSDESK_ADMIN_API_TOKEN"):
    services.append({"name": "hepsdesk-devtools", "api_token": os.environ["HEPSDESK_ADMIN_API_TOKEN"]})
    roles.append({
        "name": "hepsdesk-devtools", "services": ["hepsdesk-devtools"],
        "scopes": ["admin:users", "admin:servers", "admin:server_state", "admin:groups", "list:users", "read:users",
                   "access:servers", "tokens", "read:metrics", "custom:hepsdesk:operate"],
    })
c.JupyterHub.services = services
c.JupyterHub.load_roles = roles

# --- Local additions, then the check --------------------------------------------------------
# HEPSDESK_EXTRA_CONFIG: more configuration files (separated by ":"), loaded after this one,
# e.g. a facility's own settings kept beside this file.
for extra_config in filter(None, os.environ.get("HEPSDESK_EXTRA_CONFIG", "").split(":")):
    load_subconfig(extra_config)  # noqa: F821 -- provided by JupyterHub
# The operators' role (above) through load_roles, unless the authenticator manages roles (then
# group_roles must hold it: HEPSDESK_GROUP_ROLES_FILE adds it there).
if not c.HEPSAuthenticator.get("group_roles"):
    c.JupyterHub.load_roles = [*c.JupyterHub.load_roles, OPERATOR_ROLE]
# The spawner's settings are checked now: a wrong one stops the hub at start with the
# setting's name, instead of failing every user's spawn. This also starts the hub-wide
# watcher of the hub's servers.
from hepsdesk_spawner import check_config  # noqa: E402

check_config(c)

# --- The hub's event loop -------------------------------------------------------------------
# One process serves every user, so nothing may stop its event loop for long (measured by
# benchmarks/spawner_scale.py; HEPSDESK_LOOP_DEBUG=stacks names what did):
# - What is imported and built at start-up lives as long as the hub, so it is moved out of the
#   garbage collector's reach: each full collection scanned it all with the loop stopped
#   (150-550 ms while 100 servers started at once; 30-40 ms after gc.freeze()).
# - The loop shares the interpreter lock with the threads that make blocking calls (OpenStack,
#   LDAP): after each of the many SQLite calls JupyterHub makes on the loop it must win the
#   lock back from a busy thread, which takes up to the switch interval. 1 ms instead of 5
#   shortened the loop's longest stalls while 100 servers started (755 -> 313 ms, with
#   OpenStackSpawner.api_threads 8 -> 4).
import gc  # noqa: E402

gc.freeze()
sys.setswitchinterval(0.001)
