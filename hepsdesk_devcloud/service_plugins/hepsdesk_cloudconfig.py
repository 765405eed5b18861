"""Turn a server's user-data into the boot plan of a hepsdesk process VM.

A process VM honours the part of cloud-init that the hepsdesk spawner emits and that a
process tree can honour faithfully: shell-script user-data, ``#cloud-config`` with
``bootcmd``, ``write_files``, ``runcmd``, ``mounts``, ``hostname``/``fqdn`` and
``final_message``, and MIME multipart documents made of those (NFS ``mounts`` come from the
dev cloud's storage directory: see ``hepsdesk_guest``). Anything else is refused with a
message naming what is not supported, so the instance goes to ERROR instead of booting half-configured.

This module runs inside the OpenStack services' virtualenv (loaded by nova-compute) and
in hepsdesk's own environment (unit tests), so it imports nothing but the standard
library and PyYAML, and no sibling module.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import gzip
import shlex

import yaml

SUPPORTED_KEYS = ("bootcmd", "write_files", "runcmd", "mounts", "hostname", "fqdn", "final_message", "users")
# Keys that only tune how cloud-init itself behaves and have no effect on a process VM.
NEUTRAL_KEYS = ("preserve_hostname", "manage_etc_hosts", "prefer_fqdn_over_hostname")
WRITE_FILE_FIELDS = ("path", "content", "encoding", "owner", "permissions", "append", "defer")
ENCODINGS = {
    "": (),
    "text/plain": (),
    "b64": ("b64",),
    "base64": ("b64",),
    "gz": ("gz",),
    "gzip": ("gz",),
    "gz+b64": ("b64", "gz"),
    "gzip+base64": ("b64", "gz"),
    "gz+base64": ("b64", "gz"),
    "gzip+b64": ("b64", "gz"),
}
UNSUPPORTED_FORMATS = {
    "## template: jinja": "jinja-templated user-data",
    "#include": "#include user-data",
    "#cloud-boothook": "cloud-boothook user-data",
    "#part-handler": "part-handler user-data",
    "#upstart-job": "upstart-job user-data",
    "#cloud-config-archive": "cloud-config-archive user-data",
    "#cloud-config-jsonp": "cloud-config-jsonp user-data",
}
MIME_SHELL = ("text/x-shellscript",)
MIME_CLOUD_CONFIG = ("text/cloud-config",)


class UnsupportedUserData(ValueError):
    """The user-data asks for something a process VM cannot honour."""


def build_boot_plan(user_data: bytes | str | None) -> dict:
    """Return the boot plan for ``user_data`` (raw bytes, not base64).

    The plan is plain JSON-able data: ``bootcmd`` (shell lines run on every boot),
    ``write_files`` (content base64-encoded; written at the instance's first boot), ``scripts``
    (name and base64 content, run in order at the end of the instance's first boot), ``hostname`` and ``final_message``.
    ``mounts`` lists ``source``, ``target``, ``fstype`` and ``options`` of each mount.
    """
    plan: dict = {"bootcmd": [], "write_files": [], "scripts": [], "mounts": [], "hostname": None,
                  "final_message": None}
    if user_data is None:
        return plan
    data = user_data.encode() if isinstance(user_data, str) else bytes(user_data)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise UnsupportedUserData(f"user-data looks gzip-compressed but does not decompress: {e}") from e
    _add_part(plan, data, part_name="part-001")
    return plan


def _add_part(plan: dict, data: bytes, part_name: str, content_type: str | None = None) -> None:
    text = _decode_text(data)
    stripped = text.lstrip()
    if not stripped:
        return
    if content_type is None:
        first_line = stripped.splitlines()[0].strip()
        for prefix, what in UNSUPPORTED_FORMATS.items():
            if first_line.lower().startswith(prefix):
                raise UnsupportedUserData(f"{what} is not supported by the hepsdesk dev cloud")
        if first_line.startswith("#!"):
            content_type = MIME_SHELL[0]
        elif first_line.lower().startswith("#cloud-config"):
            content_type = MIME_CLOUD_CONFIG[0]
        elif first_line.lower().startswith(("content-type:", "mime-version:")):
            content_type = "multipart/mixed"
        else:
            raise UnsupportedUserData(
                "user-data is neither a shell script (#!), #cloud-config nor MIME multipart; "
                f"it starts with {first_line[:40]!r}")
    if content_type in MIME_SHELL:
        if not stripped.startswith("#!"):
            raise UnsupportedUserData(f"shell-script part {part_name} does not start with #!")
        plan["scripts"].append({"name": part_name, "content_b64": _b64(text.encode())})
    elif content_type in MIME_CLOUD_CONFIG:
        _add_cloud_config(plan, text)
    elif content_type.startswith("multipart/"):
        _add_multipart(plan, data)
    else:
        raise UnsupportedUserData(f"MIME part type {content_type} is not supported by the hepsdesk dev cloud")


def _add_multipart(plan: dict, data: bytes) -> None:
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    if not message.is_multipart():
        raise UnsupportedUserData("user-data has MIME headers but is not a multipart message")
    index = 0
    for part in message.walk():
        if part.is_multipart():
            continue
        index += 1
        payload = part.get_payload(decode=True) or b""
        name = part.get_filename() or f"part-{index:03d}"
        _add_part(plan, payload, part_name=name, content_type=part.get_content_type())


def _add_cloud_config(plan: dict, text: str) -> None:
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UnsupportedUserData(f"#cloud-config is not valid YAML: {e}") from e
    if config is None:
        return
    if not isinstance(config, dict):
        raise UnsupportedUserData("#cloud-config must be a YAML mapping")
    unknown = sorted(set(config) - set(SUPPORTED_KEYS) - set(NEUTRAL_KEYS))
    if unknown:
        raise UnsupportedUserData(
            f"cloud-config key(s) {', '.join(unknown)} not supported by the hepsdesk dev cloud "
            f"(supported: {', '.join(SUPPORTED_KEYS)})")
    # users: [] (cloud-init makes no default user) is what a process image does anyway; making
    # users is not supported.
    if config.get("users") not in (None, []):
        raise UnsupportedUserData("cloud-config users other than [] (no default user) is not supported by the "
                                  "hepsdesk dev cloud")
    plan["bootcmd"].extend(_commands(config.get("bootcmd"), "bootcmd"))
    for index, entry in enumerate(config.get("write_files") or []):
        plan["write_files"].append(_write_file(entry, index))
    for index, entry in enumerate(_list(config.get("mounts"), "mounts")):
        plan["mounts"].append(_mount(entry, index))
    runcmd = _commands(config.get("runcmd"), "runcmd")
    if runcmd:
        script = "#!/bin/sh\n" + "\n".join(runcmd) + "\n"
        plan["scripts"].append({"name": "runcmd", "content_b64": _b64(script.encode())})
    for key in ("hostname", "fqdn"):
        if config.get(key) is not None:
            if not isinstance(config[key], str):
                raise UnsupportedUserData(f"cloud-config {key} must be a string")
            if key == "hostname" or plan["hostname"] is None:
                plan["hostname"] = config[key].split(".")[0] if key == "fqdn" else config[key]
    if config.get("final_message") is not None:
        plan["final_message"] = str(config["final_message"])


def _commands(value, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise UnsupportedUserData(f"cloud-config {key} must be a list")
    lines = []
    for item in value:
        if isinstance(item, str):
            lines.append(item)
        elif isinstance(item, list) and all(isinstance(arg, (str, int, float)) for arg in item):
            lines.append(shlex.join(str(arg) for arg in item))
        else:
            raise UnsupportedUserData(f"cloud-config {key} entries must be strings or lists of strings")
    return lines


def _list(value, key: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise UnsupportedUserData(f"cloud-config {key} must be a list")
    return value


def _mount(entry, index: int) -> dict:
    """One ``mounts`` entry: ``[source, target, fstype, options, dump, pass]``, as cloud-init
    reads it (fstype and options may be left out)."""
    where = f"mounts[{index}]"
    if not isinstance(entry, list) or not 2 <= len(entry) <= 6 or not all(
            isinstance(field, (str, int)) for field in entry):
        raise UnsupportedUserData(f"{where} must be a list [source, target, fstype, options, dump, pass]")
    source, target, fstype, options = ([str(field) for field in entry] + ["auto", "defaults"])[:4]
    if not target.startswith("/") or "/../" in f"{target}/" or "\n" in target:
        raise UnsupportedUserData(f"{where}: the mount point must be an absolute path without '..'")
    return {"source": source, "target": target, "fstype": fstype, "options": options}


def _write_file(entry, index: int) -> dict:
    where = f"write_files[{index}]"
    if not isinstance(entry, dict):
        raise UnsupportedUserData(f"{where} must be a mapping")
    unknown = sorted(set(entry) - set(WRITE_FILE_FIELDS))
    if unknown:
        raise UnsupportedUserData(f"{where}: field(s) {', '.join(unknown)} not supported by the hepsdesk dev cloud")
    path = entry.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise UnsupportedUserData(f"{where}: path must be an absolute path")
    encoding = str(entry.get("encoding") or "").lower()
    if encoding not in ENCODINGS:
        known = ", ".join(e for e in ENCODINGS if e)
        raise UnsupportedUserData(f"{where}: encoding {encoding!r} is not one of {known}")
    content = entry.get("content", "")
    raw = content.encode() if isinstance(content, str) else bytes(content or b"")
    try:
        for step in ENCODINGS[encoding]:
            raw = base64.b64decode(raw, validate=False) if step == "b64" else gzip.decompress(raw)
    except (binascii.Error, OSError, EOFError) as e:
        raise UnsupportedUserData(f"{where}: content does not decode as {encoding}: {e}") from e
    permissions = entry.get("permissions")
    if permissions is not None:
        try:
            permissions = int(str(permissions), 8)
        except ValueError:
            raise UnsupportedUserData(f"{where}: permissions {permissions!r} is not an octal mode") from None
    owner = entry.get("owner") or "root:root"
    if not isinstance(owner, str):
        raise UnsupportedUserData(f"{where}: owner must be 'user:group'")
    return {"path": path, "content_b64": _b64(raw), "permissions": permissions, "owner": owner,
            "append": bool(entry.get("append", False)), "defer": bool(entry.get("defer", False))}


def _decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsupportedUserData("user-data is not UTF-8 text") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
