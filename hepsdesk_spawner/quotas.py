"""Group quotas: how much of the cloud the members of one JupyterHub group may hold at once.

A facility shares a few dozen GPUs between groups (an imaging team, a proposal): each group may
have a quota of VMs, vCPUs and GPUs per model::

    c.OpenStackSpawner.group_quotas = {
        "heps-imaging": {"vms": 10, "vcpus": 64, "gpus": {"A100": 4}},
        "csns-users": {"gpus": {"A100": 1}},
    }

A server is charged to one group: the group through which its profile is allowed (a profile
open to everyone: the user's groups that have a quota). When several apply, the user picks one
on the spawn page (``group`` in ``user_options``), and the choice is kept in the server's state
and in its VM's metadata (``hepsdesk-group``, ``hepsdesk-charge``), so a restarted hub counts
it again from the watcher's list without asking the cloud anything.

What a group holds is the hub's servers as the shared watcher last listed them (running ones;
shelved VMs hold no CPU or GPU) plus this hub's starts under way (``QuotaBook.held``), each
server counted once. ``admit`` checks and books in one step on the hub's event loop, with no
``await`` in between: of two members starting at once, the second sees the first's booking.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .boot import GONE_STATES
from .errors import SpawnError
from .watcher import ServerWatcher

GROUP_META = "hepsdesk-group"
CHARGE_META = "hepsdesk-charge"
CHARGE_ITEM = re.compile(r"(vcpus|gpu:[A-Za-z0-9_.-]{1,60})=(\d{1,6})")


class QuotaConfigError(ValueError):
    """``group_quotas`` is wrong (the text names the group and key)."""


@dataclass(frozen=True)
class Charge:
    """What one server holds of its group's quota."""

    group: str
    vcpus: int = 0
    gpus: tuple[tuple[str, int], ...] = ()  # (model, count)

    def metadata(self) -> dict[str, str]:
        """The VM's metadata that lets a restarted hub count it (Nova: values up to 255 chars)."""
        items = [f"vcpus={self.vcpus}", *(f"gpu:{model}={count}" for model, count in self.gpus)]
        return {GROUP_META: self.group, CHARGE_META: ";".join(items)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> Charge | None:
        group = metadata.get(GROUP_META)
        if not group:
            return None
        vcpus, gpus = 0, []
        for item in (metadata.get(CHARGE_META) or "").split(";"):
            match = CHARGE_ITEM.fullmatch(item)
            if match and match.group(1) == "vcpus":
                vcpus = int(match.group(2))
            elif match:
                gpus.append((match.group(1)[4:], int(match.group(2))))
        return cls(group, vcpus, tuple(gpus))


@dataclass
class Usage:
    """What a group's servers hold (or a quota's limits: None is no limit)."""

    vms: int | None = 0
    vcpus: int | None = 0
    gpus: dict[str, int] = field(default_factory=dict)

    def add(self, charge: Charge) -> None:
        self.vms += 1
        self.vcpus += charge.vcpus
        for model, count in charge.gpus:
            self.gpus[model] = self.gpus.get(model, 0) + count


@dataclass(frozen=True)
class GroupQuota:
    group: str
    limits: Usage

    @classmethod
    def parse(cls, group: str, entry) -> GroupQuota:
        where = f"group_quotas[{group!r}]"
        if not isinstance(entry, dict):
            raise QuotaConfigError(f"{where} must be a dict of vms, vcpus and gpus, not {entry!r:.60}")
        unknown = sorted(set(entry) - {"vms", "vcpus", "gpus"})
        if unknown:
            raise QuotaConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; the keys are vms, "
                                   "vcpus and gpus (a dict of GPU model to count)")
        limits = Usage(vms=None, vcpus=None)
        for key in ("vms", "vcpus"):
            if key in entry:
                value = entry[key]
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise QuotaConfigError(f"{where}[{key!r}] must be a whole number of 0 or more, not {value!r:.40}")
                setattr(limits, key, value)
        gpus = entry.get("gpus", {})
        if not isinstance(gpus, dict):
            raise QuotaConfigError(f"{where}['gpus'] must map GPU models to counts, e.g. {{'A100': 4}}")
        for model, count in gpus.items():
            if not isinstance(model, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,60}", model):
                raise QuotaConfigError(f"{where}['gpus']: {model!r:.60} is not a GPU model name")
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise QuotaConfigError(f"{where}['gpus'][{model!r}] must be a whole number of 0 or more")
            limits.gpus[model] = count
        return cls(group, limits)

    def refusal(self, used: Usage, charge: Charge) -> str:
        """Why ``charge`` does not fit beside ``used`` (empty: it fits)."""
        limits = self.limits
        for model, count in charge.gpus:
            if model in limits.gpus and used.gpus.get(model, 0) + count > limits.gpus[model]:
                return f"Your group {self.group} uses {used.gpus.get(model, 0)} of {limits.gpus[model]} {model}"
        if limits.vcpus is not None and used.vcpus + charge.vcpus > limits.vcpus:
            return f"Your group {self.group} uses {used.vcpus} of {limits.vcpus} vCPUs"
        if limits.vms is not None and used.vms + 1 > limits.vms:
            return f"Your group {self.group} has {used.vms} of {limits.vms} VMs"
        return ""

    def describe(self, used: Usage) -> str:
        """For the spawn page: "3 of 4 A100, 20 of 64 vCPUs"."""
        parts = [f"{used.gpus.get(model, 0)} of {count} {model}" for model, count in sorted(self.limits.gpus.items())]
        if self.limits.vcpus is not None:
            parts.append(f"{used.vcpus} of {self.limits.vcpus} vCPUs")
        if self.limits.vms is not None:
            parts.append(f"{used.vms} of {self.limits.vms} VMs")
        return ", ".join(parts)


def parse_quotas(config: dict) -> dict[str, GroupQuota]:
    """``group_quotas`` checked (QuotaConfigError naming the group and key)."""
    if not isinstance(config, dict):
        raise QuotaConfigError("group_quotas must be a dict of group name to its quota")
    return {str(group): GroupQuota.parse(str(group), entry) for group, entry in config.items()}


class QuotaBook:
    """What each group holds: the watcher's running servers and this hub's starts under way
    (one per ``CloudSite``; every spawner of the hub books here)."""

    def __init__(self, watcher: ServerWatcher):
        self.watcher = watcher
        self.held: dict[str, Charge] = {}  # "user/server" -> the charge of a start under way or a running server
        self.gone: set[str] = set()  # ids of VMs this hub deleted or shelved, while the watcher may still list them

    @staticmethod
    def key(user: str, server: str) -> str:
        return f"{user}/{server}"

    def usage(self, exclude: str = "") -> dict[str, Usage]:
        """Every group's use now (each server once: this hub's bookings stand for its own VMs;
        ``exclude``: a server that is being started again, whose old VM is going)."""
        charges = {key: charge for key, charge in self.held.items() if key != exclude}
        listed = self.watcher.servers
        self.gone &= set(listed)  # once the watcher no longer lists them, they need no remembering
        for view in listed.values():
            if view.status in GONE_STATES or view.id in self.gone:
                continue
            key = self.key(view.metadata.get("hepsdesk-user", ""), view.metadata.get("hepsdesk-server", ""))
            charge = Charge.from_metadata(view.metadata)
            if charge is not None and key not in charges and key != exclude:
                charges[key] = charge
        groups: dict[str, Usage] = {}
        for charge in charges.values():
            groups.setdefault(charge.group, Usage()).add(charge)
        return groups

    def admit(self, key: str, charge: Charge, quota: GroupQuota | None) -> None:
        """Book ``charge`` for server ``key``, or raise SpawnError (reason ``group_quota``) when
        the group's quota has no room for it. No await: check and booking are one step."""
        if quota is not None:
            used = self.usage(exclude=key).get(charge.group, Usage())
            why = quota.refusal(used, charge)
            if why:
                raise SpawnError(f"{why}, so your VM was not started. Please try again when a member of "
                                 f"{charge.group} has stopped a server, or ask the facility to raise the "
                                 "group's quota.", reason="group_quota", status_code=403)
        self.held[key] = charge

    def release(self, key: str, server_id: str = "") -> None:
        """The server stopped (its VM ``server_id`` deleted or shelved, confirmed by the cloud)
        or its start failed: its booking goes, and the VM no longer counts even while the
        watcher's list is older than the stop."""
        self.held.pop(key, None)
        if server_id:
            self.went(server_id)

    def went(self, server_id: str) -> None:
        """The cloud confirmed VM ``server_id`` deleted or shelved: it holds nothing now."""
        self.gone.add(server_id)


def candidate_groups(user_groups: Iterable[str], allowed_groups: Iterable[str], quotas: dict[str, GroupQuota],
                     admin: bool = False) -> list[str]:
    """The groups a server of a profile can be charged to: the user's groups through which the
    profile is allowed (for a profile open to all, or an admin's: the user's groups with a
    quota). Sorted; empty: the server is charged to nobody."""
    mine = set(user_groups)
    allowed = set(allowed_groups)
    through = mine & allowed
    if not through and (not allowed or admin):
        through = mine & set(quotas)
    return sorted(through)
