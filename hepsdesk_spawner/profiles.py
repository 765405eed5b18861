"""Profiles: the environments a user may start (beamline image x flavor x GPU), and who may.

A profile comes from the ``OpenStackSpawner.profiles`` config as a dict; ``Profile.from_config``
checks every key, so a typo in the hub's config is an error at the first form or start, with
the profile and the key named, not a silently ignored setting. The user's choice arrives as
``user_options["profile"]`` (from the options form or the REST API) and is only ever looked up
among the profiles that user may use: unknown, forbidden or tampered values are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .datamounts import DataMount, DataMountError, parse_data_mounts

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
STOP_MODES = ("delete", "shelve")


class ProfileError(ValueError):
    """The hub's profile configuration is wrong (an admin's mistake)."""


class ProfileRefused(ValueError):
    """The user asked for a profile that does not exist or is not theirs (a user's request)."""


@dataclass(frozen=True)
class Profile:
    slug: str
    display_name: str
    image: str
    flavor: str
    description: str = ""
    gpu_model: str = ""
    gpu_count: int = 0
    stop_mode: str = "delete"
    idle_timeout: int = 0
    allowed_groups: frozenset[str] = field(default_factory=frozenset)
    default: bool = False
    data_mounts: tuple[DataMount, ...] = ()

    KEYS = ("slug", "display_name", "image", "flavor", "description", "gpu_model", "gpu_count", "stop_mode",
            "idle_timeout", "allowed_groups", "default", "data_mounts")

    @classmethod
    def from_config(cls, entry: dict, index: int) -> Profile:
        where = f"profile {entry.get('slug', index)!r}" if isinstance(entry, dict) else f"profile #{index}"
        if not isinstance(entry, dict):
            raise ProfileError(f"{where} must be a dict, not {type(entry).__name__}")
        unknown = sorted(set(entry) - set(cls.KEYS))
        if unknown:
            raise ProfileError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(cls.KEYS)})")
        missing = [k for k in ("slug", "display_name", "image", "flavor") if not entry.get(k)]
        if missing:
            raise ProfileError(f"{where}: missing {', '.join(missing)}")
        slug = str(entry["slug"])
        if not SLUG_RE.match(slug):
            raise ProfileError(f"{where}: slug must be lower-case letters, digits, '-' or '_' (at most 63)")
        stop_mode = entry.get("stop_mode", "delete")
        if stop_mode not in STOP_MODES:
            raise ProfileError(f"{where}: stop_mode must be one of {', '.join(STOP_MODES)}, not {stop_mode!r}")
        try:
            gpu_count, idle_timeout = int(entry.get("gpu_count", 0)), int(entry.get("idle_timeout", 0))
        except (TypeError, ValueError):
            raise ProfileError(f"{where}: gpu_count and idle_timeout must be whole numbers") from None
        if gpu_count < 0 or idle_timeout < 0:
            raise ProfileError(f"{where}: gpu_count and idle_timeout cannot be negative")
        if bool(entry.get("gpu_model")) != bool(gpu_count):
            raise ProfileError(f"{where}: give both gpu_model and gpu_count, or neither")
        groups = entry.get("allowed_groups", ())
        if isinstance(groups, str):
            raise ProfileError(f"{where}: allowed_groups must be a list of group names, not a string")
        try:
            data_mounts = parse_data_mounts(entry.get("data_mounts", []), where)
        except DataMountError as e:
            raise ProfileError(str(e)) from None
        return cls(slug=slug, data_mounts=data_mounts, display_name=str(entry["display_name"]),
                   image=str(entry["image"]),
                   flavor=str(entry["flavor"]), description=str(entry.get("description", "")),
                   gpu_model=str(entry.get("gpu_model", "")), gpu_count=gpu_count,
                   stop_mode=stop_mode,
                   idle_timeout=idle_timeout, allowed_groups=frozenset(groups), default=bool(entry.get("default")))

    def allows(self, groups: Iterable[str], admin: bool = False) -> bool:
        """May a member of ``groups`` use this profile? (No allowed_groups: everyone may.)"""
        return admin or not self.allowed_groups or bool(self.allowed_groups & set(groups))


def parse_profiles(entries: Iterable[dict]) -> list[Profile]:
    profiles = [Profile.from_config(entry, i) for i, entry in enumerate(entries)]
    slugs = [p.slug for p in profiles]
    duplicates = sorted({s for s in slugs if slugs.count(s) > 1})
    if duplicates:
        raise ProfileError(f"profile slug(s) used more than once: {', '.join(duplicates)}")
    if sum(p.default for p in profiles) > 1:
        raise ProfileError("more than one profile has default: True")
    return profiles


def choose(profiles: list[Profile], wanted: object) -> Profile:
    """The profile a user asked for (``wanted``; None or "" means the default) among the
    profiles they may use, or ProfileRefused with a message for them."""
    if not profiles:
        raise ProfileRefused("There is no environment you may start. Please ask the facility's user office "
                             "to add you to your experiment's group.")
    if wanted in (None, ""):
        return next((p for p in profiles if p.default), profiles[0])
    if not isinstance(wanted, str):
        raise ProfileRefused("The environment must be given by its name (a string).")
    for profile in profiles:
        if profile.slug == wanted:
            return profile
    shown = wanted if SLUG_RE.match(wanted) else "(an invalid name)"
    return_names = ", ".join(p.slug for p in profiles)
    raise ProfileRefused(f"The environment {shown} does not exist or is not available to you. "
                         f"You may start: {return_names}.")
