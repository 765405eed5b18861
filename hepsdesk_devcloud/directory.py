"""Development directory servers: a Samba Active Directory domain controller and an OpenLDAP server.

The identity work provisions accounts in the facility's AD (users with RFC 2307 attributes) and
in the storage cluster's LDAP (posixAccount/posixGroup); these are real servers of both kinds for
its tests and the demo, on loopback addresses. Both speak LDAPS only, with server certificates
from one development CA (``ca_file``), so clients verify them with ``ssl.CERT_REQUIRED`` exactly
as in production, and the AD keeps Samba's default "strong auth" rule (a simple bind over plain
LDAP is refused). Each server runs in the foreground under a ``ProcessTable`` (stopped by pid,
log in ``<state_dir>/logs/``). Nothing here reads /etc/samba or /etc/ldap configuration; only
the schema files in /etc/ldap/schema.

Samba's LDAP ports are fixed (389/636), so AD instances that run side by side differ by address:
any of 127.0.0.0/8 works without network setup. The domain is provisioned once per Samba version
into a cached template (seconds) and copied per instance (under a second); each copy gets its own
administrator password.

Measured on Samba 4.17 (Debian 12), for account provisioning:

* ``--use-rfc2307`` provisioning creates the NIS domain object ``CN=dev,CN=ypservers,CN=ypServ30,
  CN=RpcServices,CN=System,DC=dev,DC=heps`` (objectClass ``msSFU30DomainInfo``) with only
  ``msSFU30Domains: dev``, ``msSFU30MasterServerName: DC1`` and ``msSFU30OrderNumber: 10000``.
  It has no ``msSFU30MaxUidNumber`` / ``msSFU30MaxGidNumber`` (Samba's provision ignores its
  maxuid/maxgid arguments); an administrator can add both, so an allocator must create them.
* An administrator can write ``altSecurityIdentities`` on a user (multi-valued free strings such
  as ``OIDC:http://127.0.0.1:9400#alice``, found again by an equality filter) and ``uid``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import ssl
import string
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ldap3 import BASE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPBindError, LDAPException

from .processes import START_MARKER, ProcessTable, port_owner

SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SAMBA_PACKAGES = "samba samba-ad-provision samba-dsdb-modules samba-vfs-modules"
LDAP_SCHEMA_DIR = Path("/etc/ldap/schema")
LDAP_SCHEMAS = ("core", "cosine", "nis", "inetorgperson")
LDAP_MODULE_DIR = Path("/usr/lib/ldap")
ENTRY_ALREADY_EXISTS = 68
TEMPLATE_STAMP = "hepsdesk-template.json"
PROVISIONED_CONF = "smb.conf.provisioned"
PASSWORD_SYMBOLS = "-_.,!%+="

# Run with Samba's own Python (samba-tool's interpreter): sets the Administrator's password in
# an instance's sam.ldb while the server is down; the password comes on stdin, never in argv.
SET_ADMIN_PASSWORD = """
import sys
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB
lp = LoadParm()
lp.load(sys.argv[1])
samdb = SamDB(url=lp.private_path("sam.ldb"), session_info=system_session(), lp=lp)
samdb.setpassword("(&(objectClass=user)(sAMAccountName=Administrator))", sys.stdin.read(),
                  force_change_at_next_login=False, username="Administrator")
"""


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hepsdesk"


def strong_password(length: int = 24) -> str:
    """A random password that meets AD's complexity rule (all four character classes)."""
    classes = (string.ascii_lowercase, string.ascii_uppercase, string.digits, PASSWORD_SYMBOLS)
    alphabet = "".join(classes)
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if all(any(c in chars for c in password) for chars in classes):
            return password


def ssha(password: str) -> str:
    """``password`` as an OpenLDAP ``{SSHA}`` hash (for rootpw and userPassword)."""
    salt = secrets.token_bytes(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def _program(name: str, packages: str) -> str:
    path = shutil.which(name, path=f"{os.environ.get('PATH', '')}:{SBIN_PATH}")
    if path is None:
        raise RuntimeError(f"{name} is needed for the development directory servers "
                           f"(as root: apt-get install -y --no-install-recommends {packages})")
    return path


def _run(argv: list[str], what: str, *, input: str | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, input=input, stdin=subprocess.DEVNULL if input is None else None,
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise RuntimeError(f"{what} failed ({Path(argv[0]).name} exited with {result.returncode}):\n{tail}")
    return result.stdout


def _write_private(path: Path, text: str) -> None:
    """Write ``path`` atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialise a one-time preparation between processes (the lock ends with the process)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _check_loopback(address: str) -> None:
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = False
    if not loopback or ":" in address:
        raise ValueError(f"development directory servers listen on 127.0.0.0/8 addresses only, not {address!r}")


class DevCertificateAuthority:
    """The development CA, made once per machine, and the server certificates it issues.

    It lives in ``~/.cache/hepsdesk/dev-ca``; every development directory server gets its
    certificate from it, so one ``ca.pem`` lets clients verify all of them. A server certificate
    is issued per address (subject alternative names: the address, 127.0.0.1, localhost) and
    re-issued when it would expire within 30 days or no longer chains to the CA.
    """

    VALID_DAYS = 3650
    RENEW_BEFORE_S = 30 * 86400

    def __init__(self, directory: Path | None = None):
        self.directory = Path(directory or cache_root() / "dev-ca").absolute()

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def install(self, address: str, target: Path) -> None:
        """Put ``ca.pem``, ``server.pem`` and ``server.key`` (mode 0600) for ``address`` in ``target``."""
        target.mkdir(parents=True, exist_ok=True)
        os.chmod(target, 0o700)
        with _exclusive(self.directory.with_name(self.directory.name + ".lock")):
            if not self._valid(self.ca_file):
                self._make_ca()
            cert, key = self.directory / f"server-{address}.pem", self.directory / f"server-{address}.key"
            if not (key.exists() and self._valid(cert)):
                self._issue(address, cert, key)
            shutil.copyfile(self.ca_file, target / "ca.pem")
            shutil.copyfile(cert, target / "server.pem")
            _write_private(target / "server.key", key.read_text())

    def _valid(self, cert: Path) -> bool:
        if not (cert.exists() and self.ca_file.exists()):
            return False
        check = subprocess.run([_program("openssl", "openssl"), "verify", "-CAfile", str(self.ca_file),
                                "-attime", str(int(time.time() + self.RENEW_BEFORE_S)), str(cert)],
                               stdin=subprocess.DEVNULL, capture_output=True)
        return check.returncode == 0

    def _make_ca(self) -> None:
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{self.directory.name}-", dir=self.directory.parent))
        try:
            _run([_program("openssl", "openssl"), "req", "-x509", "-newkey", "ec",
                  "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(work / "ca.key"),
                  "-out", str(work / "ca.pem"), "-days", str(self.VALID_DAYS),
                  "-subj", "/O=hepsdesk/CN=hepsdesk development CA",
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"], "making the development CA")
            os.chmod(work / "ca.key", 0o600)
            shutil.rmtree(self.directory, ignore_errors=True)  # an expired CA and what it issued
            work.rename(self.directory)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _issue(self, address: str, cert: Path, key: Path) -> None:
        openssl = _program("openssl", "openssl")
        names = ",".join(dict.fromkeys([f"IP:{address}", "IP:127.0.0.1", "DNS:localhost"]))
        with tempfile.TemporaryDirectory(dir=self.directory) as tmp:
            work = Path(tmp)
            (work / "ext.cnf").write_text(
                f"subjectAltName={names}\nbasicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
                "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
            _run([openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", str(work / "server.key"), "-subj", f"/O=hepsdesk/CN={address}",
                  "-out", str(work / "server.csr")], f"making a key for {address}")
            _run([openssl, "x509", "-req", "-in", str(work / "server.csr"), "-CA", str(self.ca_file),
                  "-CAkey", str(self.directory / "ca.key"), "-set_serial", f"0x{secrets.token_hex(16)}",
                  "-days", str(self.VALID_DAYS), "-extfile", str(work / "ext.cnf"), "-out", str(work / "server.pem")],
                 f"issuing the certificate for {address}")
            os.chmod(work / "server.key", 0o600)
            (work / "server.key").replace(key)
            (work / "server.pem").replace(cert)


class _DirectoryServer:
    """What both servers share: state directory, secrets, TLS files, the process and its readiness."""

    service = ""  # the ProcessTable name
    label = ""  # for messages
    base_dn = ""
    admin_dn = ""

    def __init__(self, state_dir: Path, address: str, port: int):
        _check_loopback(address)
        self.state_dir = Path(state_dir).absolute()
        self.address = address
        self.port = port
        self.tls_dir = self.state_dir / "tls"
        self.secrets_path = self.state_dir / "secrets.json"
        self.processes = ProcessTable(self.state_dir / "run", self.state_dir / "logs")
        self.ca = DevCertificateAuthority()

    @property
    def url(self) -> str:
        return f"ldaps://{self.address}:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The development CA's certificate: clients verify the server with it (``ssl.CERT_REQUIRED``)."""
        return self.tls_dir / "ca.pem"

    @property
    def admin_password(self) -> str:
        """The administrator's password, made at first use and kept in ``secrets.json`` (mode 0600)."""
        stored = self._secrets()
        if "admin_password" not in stored:
            stored["admin_password"] = strong_password()
            _write_private(self.secrets_path, json.dumps(stored, indent=2))
        return stored["admin_password"]

    def _secrets(self) -> dict:
        try:
            return json.loads(self.secrets_path.read_text())
        except FileNotFoundError:
            return {}

    def connect(self, user: str | None = None, password: str | None = None,
                ca_file: Path | None = None) -> Connection:
        """A connection bound over LDAPS, as the administrator unless ``user`` is given; the
        server's certificate is checked against ``ca_file`` (default: the development CA)."""
        if user is None:
            user, password = self.admin_dn, self.admin_password
        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca_file or self.ca_file))
        server = Server(self.address, port=self.port, use_ssl=True, tls=tls, connect_timeout=5)
        return Connection(server, user, password, auto_bind=True, receive_timeout=10)

    # process

    def is_running(self) -> bool:
        return self.processes.running(self.service) is not None

    def healthy(self) -> bool:
        """True if the administrator can bind over LDAPS and read the base entry."""
        try:
            conn = self.connect()
        except (LDAPException, OSError):
            return False
        try:
            return conn.search(self.base_dn, "(objectClass=*)", BASE, attributes=["1.1"])
        except (LDAPException, OSError):
            return False
        finally:
            conn.unbind()

    def start(self, timeout: float = 60) -> None:
        """Start the server unless it runs; return once the administrator can bind over LDAPS
        and the base entries exist. Raises RuntimeError (with the log's tail) otherwise."""
        if self.is_running():
            return
        for port in self._listen_ports():
            owner = port_owner(port, self.address)
            if owner:
                raise RuntimeError(f"{self.address}:{port} for the {self.label} is already in use by {owner}; "
                                   f"stop it or use another address")
        argv, env = self._prepare()
        self.processes.start(self.service, argv, env, cwd=self.state_dir)
        try:
            self._wait_ready(timeout)
            conn = self.connect()
            try:
                self._ensure_entries(conn)
            finally:
                conn.unbind()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.processes.stop(self.service)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no answer"
        while True:
            if not self.is_running():
                raise RuntimeError(f"the {self.label} exited during start-up "
                                   f"({self.processes.log_path(self.service)}):\n{self._log_tail()}")
            try:
                self.connect().unbind()
                return
            except LDAPBindError as e:
                raise RuntimeError(f"the {self.label} at {self.url} refused the administrator's password "
                                   f"from {self.secrets_path}: {e}") from None
            except (LDAPException, OSError) as e:
                last_error = str(e)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self.label} did not accept an LDAPS bind at {self.url} within "
                                   f"{timeout:.0f} s (last error: {last_error}):\n{self._log_tail()}")
            time.sleep(0.1)

    def _log_tail(self) -> str:
        """The end of this run's log (earlier runs' lines are left out)."""
        lines = self.processes.log_tail(self.service, 200)
        starts = [i for i, line in enumerate(lines) if line.startswith(START_MARKER)]
        return "\n".join((lines[starts[-1] + 1:] if starts else lines)[-20:])

    def _listen_ports(self) -> list[int]:
        return [self.port]

    def _prepare(self) -> tuple[list[str], dict[str, str]]:
        """Write the server's files; return its command line and environment."""
        raise NotImplementedError

    def _ensure_entries(self, conn: Connection) -> None:
        raise NotImplementedError


def _add_if_missing(conn: Connection, dn: str, object_classes: list[str], attributes: dict) -> None:
    if not conn.add(dn, object_classes, attributes) and conn.result["result"] != ENTRY_ALREADY_EXISTS:
        raise RuntimeError(f"adding {dn} failed: {conn.result['description']} {conn.result['message']}")


def _global_options(smb_conf: str) -> dict[str, str]:
    """The ``[global]`` section of an smb.conf as ``{name: value}``."""
    options: dict[str, str] = {}
    section = ""
    for line in smb_conf.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]").strip().lower()
        elif section == "global" and "=" in line:
            name, _, value = line.partition("=")
            options[name.strip().lower()] = value.strip()
    return options


class DevActiveDirectory(_DirectoryServer):
    """A Samba AD domain controller for ``DEV.HEPS`` with the RFC 2307 schema, LDAPS on ``address``:636.

    ``cache_dir`` holds the provisioned domain that instances are copied from (default
    ``~/.cache/hepsdesk/samba-ad-<samba version>``). Samba runs as one process (``-M single``)
    with only its LDAP service; it must run as root.
    """

    service = "samba"
    label = "development Active Directory"
    realm = "DEV.HEPS"
    domain = "DEV"
    base_dn = "DC=dev,DC=heps"
    admin_dn = "CN=Administrator,CN=Users,DC=dev,DC=heps"
    heps_dn = "OU=HEPS,DC=dev,DC=heps"
    users_dn = "OU=Users,OU=HEPS,DC=dev,DC=heps"
    groups_dn = "OU=Groups,OU=HEPS,DC=dev,DC=heps"
    nis_domain_dn = "CN=dev,CN=ypservers,CN=ypServ30,CN=RpcServices,CN=System,DC=dev,DC=heps"

    def __init__(self, state_dir: Path, address: str = "127.0.0.2", cache_dir: Path | None = None):
        super().__init__(state_dir, address, 636)
        self.cache_dir = Path(cache_dir).absolute() if cache_dir else None
        self.ad_dir = self.state_dir / "ad"
        self.smb_conf = self.ad_dir / "etc" / "smb.conf"

    def _listen_ports(self) -> list[int]:
        return [636, 389]

    def _env(self) -> dict[str, str]:
        return {"PATH": SBIN_PATH, "HOME": str(self.state_dir), "LANG": "C.UTF-8",
                "KRB5_CONFIG": str(self.ad_dir / "private" / "krb5.conf")}

    def _prepare(self) -> tuple[list[str], dict[str, str]]:
        if os.geteuid() != 0:
            raise RuntimeError("the development Active Directory (Samba AD DC) must run as root")
        samba = _program("samba", SAMBA_PACKAGES)
        copied = not self.ad_dir.exists()
        if copied:
            template = self._template(samba)
            work = self.state_dir / "ad.partial"
            shutil.rmtree(work, ignore_errors=True)
            self.state_dir.mkdir(parents=True, exist_ok=True)
            shutil.copytree(template, work, symlinks=True)
            work.rename(self.ad_dir)
        self.ca.install(self.address, self.tls_dir)
        self._write_smb_conf()
        if copied or "admin_password" not in self._secrets():
            _run([self._samba_python(), "-c", SET_ADMIN_PASSWORD, str(self.smb_conf)],
                 "setting the development AD's administrator password", input=self.admin_password, env=self._env())
        return [samba, "-F", "--debug-stdout", "-M", "single", "-s", str(self.smb_conf)], self._env()

    def _template(self, samba: str) -> Path:
        """The provisioned domain for this Samba version: made once per machine, then copied."""
        version = _run([samba, "--version"], "samba --version").split()[-1]
        template = self.cache_dir or cache_root() / f"samba-ad-{re.sub(r'[^A-Za-z0-9.+-]', '_', version)}"
        if (template / TEMPLATE_STAMP).exists():
            return template
        with _exclusive(template.with_name(template.name + ".lock")):
            if (template / TEMPLATE_STAMP).exists():  # another process made it meanwhile
                return template
            samba_tool = _program("samba-tool", SAMBA_PACKAGES)
            template.parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f".{template.name}-", dir=template.parent))
            try:
                target = work / "ad"
                (work / "empty.conf").touch()  # so that provisioning ignores /etc/samba/smb.conf
                # No --adminpass: every copy gets its own password (SET_ADMIN_PASSWORD).
                _run([samba_tool, "domain", "provision", "-s", str(work / "empty.conf"), "--use-rfc2307",
                      f"--realm={self.realm}", f"--domain={self.domain}", "--server-role=dc",
                      "--dns-backend=NONE", "--host-name=dc1", f"--targetdir={target}"],
                     "provisioning the development AD domain", env={"PATH": SBIN_PATH, "LANG": "C.UTF-8"})
                (target / "etc" / "smb.conf").rename(target / "etc" / PROVISIONED_CONF)
                (target / TEMPLATE_STAMP).write_text(json.dumps(
                    {"provisioned_in": str(target), "samba": version, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}))
                shutil.rmtree(template, ignore_errors=True)
                target.rename(template)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return template

    def _write_smb_conf(self) -> None:
        """smb.conf from the provisioned one: the copy's own paths, the address, TLS, LDAP only."""
        provisioned_in = json.loads((self.ad_dir / TEMPLATE_STAMP).read_text())["provisioned_in"]
        provisioned = (self.ad_dir / "etc" / PROVISIONED_CONF).read_text()
        options = {name: value.replace(provisioned_in, str(self.ad_dir))
                   for name, value in _global_options(provisioned).items()}
        ad, tls = self.ad_dir, self.tls_dir
        options.update({
            "interfaces": f"{self.address}/8",
            "bind interfaces only": "yes",
            "server services": "ldap",
            "pid directory": str(ad / "run"),
            "log file": str(ad / "log" / "log.%m"),
            "ncalrpc dir": str(ad / "ncalrpc"),
            "ntp signd socket directory": str(ad / "ntp_signd"),
            "winbindd socket directory": str(ad / "winbindd"),
            "tls enabled": "yes",
            "tls keyfile": str(tls / "server.key"),
            "tls certfile": str(tls / "server.pem"),
            "tls cafile": str(tls / "ca.pem"),
        })
        for directory in ("run", "log"):
            (ad / directory).mkdir(exist_ok=True)
        lines = [f"# Written by hepsdesk_devcloud.directory at each start, from {PROVISIONED_CONF}.", "[global]"]
        lines += [f"\t{name} = {value}" for name, value in options.items()]
        self.smb_conf.write_text("\n".join(lines) + "\n")

    @staticmethod
    def _samba_python() -> str:
        """The interpreter samba-tool runs with (the one that has Samba's Python modules)."""
        with open(_program("samba-tool", SAMBA_PACKAGES)) as f:
            shebang = f.readline()
        return shebang[2:].strip().split()[0] if shebang.startswith("#!") else "python3"

    def _ensure_entries(self, conn: Connection) -> None:
        for dn in (self.heps_dn, self.users_dn, self.groups_dn):
            _add_if_missing(conn, dn, ["top", "organizationalUnit"], {})


class DevStorageLDAP(_DirectoryServer):
    """The storage cluster's OpenLDAP server (``dc=storage,dc=heps``: people and groups as
    posixAccount/posixGroup), LDAPS on ``address``:``port``, from a private slapd.conf."""

    service = "slapd"
    label = "development storage LDAP server"
    base_dn = "dc=storage,dc=heps"
    admin_dn = "cn=admin,dc=storage,dc=heps"
    people_dn = "ou=people,dc=storage,dc=heps"
    groups_dn = "ou=groups,dc=storage,dc=heps"

    def __init__(self, state_dir: Path, port: int = 3636, address: str = "127.0.0.1"):
        super().__init__(state_dir, address, port)
        self.conf_path = self.state_dir / "slapd.conf"
        self.db_dir = self.state_dir / "db"

    def _prepare(self) -> tuple[list[str], dict[str, str]]:
        slapd = _program("slapd", "slapd")
        missing = [name for name in LDAP_SCHEMAS if not (LDAP_SCHEMA_DIR / f"{name}.schema").exists()]
        if missing:
            raise RuntimeError(f"OpenLDAP schema files missing from {LDAP_SCHEMA_DIR}: {', '.join(missing)} "
                               "(as root: apt-get install -y --no-install-recommends slapd)")
        self.ca.install(self.address, self.tls_dir)
        self.db_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(self.conf_path, self._config())
        # -d none: stay in the foreground and log only what is always logged (errors, start, stop).
        argv = [slapd, "-d", "none", "-h", f"ldaps://{self.address}:{self.port}/", "-f", str(self.conf_path)]
        return argv, {"PATH": SBIN_PATH, "HOME": str(self.state_dir), "LDAPNOINIT": "1"}

    def _config(self) -> str:
        lines = [f"include {LDAP_SCHEMA_DIR / name}.schema" for name in LDAP_SCHEMAS]
        if (LDAP_MODULE_DIR / "back_mdb.la").exists() or (LDAP_MODULE_DIR / "back_mdb.so").exists():
            lines += [f"modulepath {LDAP_MODULE_DIR}", "moduleload back_mdb"]
        lines += [
            f"pidfile {self.state_dir / 'run' / 'slapd.pid'}",
            f"argsfile {self.state_dir / 'run' / 'slapd.args'}",
            f"TLSCACertificateFile {self.tls_dir / 'ca.pem'}",
            f"TLSCertificateFile {self.tls_dir / 'server.pem'}",
            f"TLSCertificateKeyFile {self.tls_dir / 'server.key'}",
            "access to attrs=userPassword,shadowLastChange by self write by anonymous auth by * none",
            "access to * by * read",
            "database mdb",
            "maxsize 104857600",
            f'suffix "{self.base_dn}"',
            f'rootdn "{self.admin_dn}"',
            f"rootpw {ssha(self.admin_password)}",
            f"directory {self.db_dir}",
            "index objectClass eq",
            "index uid,uidNumber,gidNumber,memberUid,cn eq",
        ]
        return "\n".join(lines) + "\n"

    def _ensure_entries(self, conn: Connection) -> None:
        _add_if_missing(conn, self.base_dn, ["top", "dcObject", "organization"], {"dc": "storage", "o": "HEPS storage"})
        _add_if_missing(conn, self.people_dn, ["top", "organizationalUnit"], {"ou": "people"})
        _add_if_missing(conn, self.groups_dn, ["top", "organizationalUnit"], {"ou": "groups"})
