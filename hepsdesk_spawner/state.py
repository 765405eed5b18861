"""What the hub saves of a server between its restarts: ``ServerState``.

JupyterHub keeps a spawner's ``get_state()`` in its database and hands it back to
``load_state()`` after a restart; the orphan reaper reads it through the REST API (the ids
below are how it knows a VM is owned). The keys are a stable format: a newer hepsdesk reads
what an older one saved (missing keys take their defaults, values of the wrong type are
dropped with them), and every saved state says which version wrote it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class ServerState:
    server_id: str = ""
    port_id: str = ""
    address: str = ""  # the port's fixed address
    floating_ip_id: str = ""
    floating_address: str = ""
    profile: str = ""  # the slug of the profile the VM was made from
    idle_timeout: int = 0  # the profile's, kept: polls need not read the profiles
    shelved: bool = False  # shelved: the ids survive a stop, for the next start to resume the VM
    resume_key: str = ""  # SHA-256 of the API token the VM holds (see resume.py)
    mounts_digest: str = ""  # of the account and data mounts the VM was made with
    group: str = ""  # the JupyterHub group whose quota the VM is charged to (quotas.py); "": none

    def saved(self, version: str) -> dict:
        """The state to save (nothing while there is no VM)."""
        if not self.server_id:
            return {}
        state = {"server_id": self.server_id, "port_id": self.port_id, "address": self.address,
                 "profile": self.profile, "idle_timeout": self.idle_timeout, "version": version}
        if self.group:
            state["group"] = self.group
        if self.floating_ip_id:
            state.update(floating_ip_id=self.floating_ip_id, floating_address=self.floating_address)
        if self.resume_key:
            state.update(resume_key=self.resume_key, mounts_digest=self.mounts_digest)
        if self.shelved:
            state["shelved"] = True
        return state

    @classmethod
    def loaded(cls, state: dict | None) -> ServerState:
        """A saved state, of this version or an older one."""
        values = {}
        for field in dataclasses.fields(cls):
            value = (state or {}).get(field.name)
            kind = type(field.default)
            if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
                values[field.name] = value
            elif kind is int and isinstance(value, str) and value.isdigit():
                values[field.name] = int(value)
        return cls(**values)

    def forget_vm(self) -> None:
        """The VM and everything made for it are gone (the profile it was for is kept)."""
        for field in dataclasses.fields(self):
            if field.name not in ("profile", "idle_timeout", "group"):
                setattr(self, field.name, field.default)

    def clear(self) -> None:
        """The server stopped: forget its VM, unless it is shelved (the next start resumes it)."""
        if not self.shelved:
            self.forget_vm()
            self.profile, self.idle_timeout, self.group = "", 0, ""
