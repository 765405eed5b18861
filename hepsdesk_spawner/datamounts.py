"""The user's data in their VM: shares of the facility's central storage, mounted by identity.

A data mount is configured as a template (``OpenStackSpawner.data_mounts``, and a profile's
``data_mounts`` for a beamline's own shares)::

    {"source": "nfs.heps.example:/home/{username}", "target": "{home}"}
    {"source": "nfs.heps.example:/proposals/{proposal}", "target": "/data/{proposal}",
     "options": "ro"}

``{username}``, ``{uid}``, ``{gid}`` and ``{home}`` come from the user's POSIX identity;
a template with ``{proposal}`` is mounted once for each of the user's proposals. The VM
mounts them with cloud-init's ``mounts``. The home and the data live on the storage, so
deleting a VM loses nothing; a ``required`` mount that is missing in the VM stops JupyterLab
from starting (it would write to the VM's own disk, lost with the VM).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from hepsdesk_identity import PosixIdentity

FIELDS = ("username", "uid", "gid", "home", "proposal")
KEYS = ("source", "target", "fstype", "options", "required")
IDENTITY_FIELDS = ("username", "uid", "gid", "home")


class DataMountError(ValueError):
    """A data mount template is wrong (an admin's mistake)."""


@dataclass(frozen=True)
class DataMount:
    source: str
    target: str
    fstype: str = "nfs4"
    options: str = "rw,hard,_netdev"
    required: bool = True

    @property
    def fields(self) -> set[str]:
        return {name for text in (self.source, self.target)
                for _, name, _, _ in string.Formatter().parse(text) if name is not None}

    @classmethod
    def from_config(cls, entry: dict, where: str) -> DataMount:
        if not isinstance(entry, dict):
            raise DataMountError(f"{where}: a data mount must be a dict with source and target")
        unknown = sorted(set(entry) - set(KEYS))
        if unknown:
            raise DataMountError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(KEYS)})")
        if not entry.get("source") or not entry.get("target"):
            raise DataMountError(f"{where}: a data mount needs source and target")
        mount = cls(source=str(entry["source"]), target=str(entry["target"]),
                    fstype=str(entry.get("fstype", cls.fstype)), options=str(entry.get("options", cls.options)),
                    required=bool(entry.get("required", True)))
        try:
            bad = sorted(mount.fields - set(FIELDS))
        except ValueError as e:
            raise DataMountError(f"{where}: {e} in {mount.source!r} or {mount.target!r}") from None
        if bad:
            raise DataMountError(f"{where}: unknown placeholder(s) {', '.join(bad)} "
                                 f"(known: {', '.join(FIELDS)})")
        for text in (mount.fstype, mount.options):
            if not text or any(c.isspace() for c in text):
                raise DataMountError(f"{where}: fstype and options cannot be empty or contain spaces")
        return mount

    def expand(self, identity: PosixIdentity | None, proposals: list[str]) -> list[DataMount]:
        """This template for one user: one mount, one per proposal, or none (no proposals)."""
        values = {}
        if identity is not None:
            values = {"username": identity.username, "uid": identity.uid, "gid": identity.gid,
                      "home": identity.home}
        fields = self.fields
        if fields & set(IDENTITY_FIELDS) and identity is None:
            raise DataMountError("needs the user's POSIX identity")
        out = []
        for proposal in (proposals if "proposal" in fields else [None]):
            filled = {**values, "proposal": proposal}
            source, target = self.source.format(**filled), self.target.format(**filled)
            if not target.startswith("/") or ".." in target.split("/") or any(c.isspace() for c in source + target):
                raise DataMountError(f"the mount {source!r} on {target!r} is not a plain absolute path")
            out.append(DataMount(source, target.rstrip("/") or "/", self.fstype, self.options, self.required))
        return out


def parse_data_mounts(entries, where: str) -> tuple[DataMount, ...]:
    if isinstance(entries, (str, dict)) or entries is None:
        raise DataMountError(f"{where}: data_mounts must be a list of dicts")
    return tuple(DataMount.from_config(entry, f"{where}, data mount #{i}") for i, entry in enumerate(entries))


def needs_identity(templates) -> bool:
    """Does any of ``templates`` use the user's POSIX identity?"""
    return any(template.fields & set(IDENTITY_FIELDS) for template in templates)


def expand_all(templates, identity: PosixIdentity | None, proposals: list[str]) -> list[DataMount]:
    """Every mount of this user, in order; a later mount on the same target replaces an earlier one."""
    by_target: dict[str, DataMount] = {}
    for template in templates:
        for mount in template.expand(identity, proposals):
            by_target.pop(mount.target, None)
            by_target[mount.target] = mount
    return list(by_target.values())
