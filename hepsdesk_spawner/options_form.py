"""The spawn page's choice of environment: one card per profile the user may start.

Each card says what the user gets: the image's software (its ``hepsdesk_software`` Glance
property, and ``hepsdesk_production_only``: software the image's recipe names that this cloud's
image does not carry, as Mantid on the dev cloud), the flavor's CPUs and memory, the GPUs
and how many of them are free right now.
Every value is HTML-escaped: profile texts come from the hub's config, image properties from
whoever may edit images. A GPU profile with no free GPU is shown but cannot be chosen. The
profile of a shelved VM is chosen first, and its card says that starting another deletes it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from .capacity import GpuCapacity, flavor_gpu_request
from .cloud import CLOUD_ERRORS
from .profiles import Profile
from .quotas import Charge, Usage

if TYPE_CHECKING:
    from .spawner import OpenStackSpawner


@dataclass(frozen=True)
class GroupChoice:
    """A group a server of the card's profile can be charged to (quotas.py)."""

    name: str
    use: str = ""  # "3 of 4 A100, 20 of 64 vCPUs" ("" without a quota)
    refusal: str = ""  # why a server of this profile does not fit now ("" when it does)


@dataclass(frozen=True)
class Card:
    profile: Profile
    software: str = ""
    production_only: str = ""  # software the image's recipe has that this cloud's image lacks
    vcpus: int = 0
    ram_mb: int = 0
    gpus: GpuCapacity | None = None
    capacity_note: str = ""  # e.g. "free GPUs unknown right now"
    shelved: bool = False  # the user's VM of this profile is shelved: starting it resumes that VM
    groups: tuple[GroupChoice, ...] = ()  # the groups it can count against (the user picks when several)

    @property
    def full(self) -> bool:
        return self.gpus is not None and self.gpus.free < self.profile.gpu_count

    @property
    def over_quota(self) -> bool:
        return bool(self.groups) and all(choice.refusal for choice in self.groups)

    @property
    def closed(self) -> bool:
        """It cannot be chosen now."""
        return self.full or self.over_quota


STYLE = """
<style>
.hepsdesk-profiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(18em, 1fr)); gap: 0.8em; }
.hepsdesk-profile { display: block; border: 1px solid #ccc; border-radius: 6px; padding: 0.8em; cursor: pointer;
  font-weight: normal; }
.hepsdesk-profile:has(input:checked) { border-color: #f37524; box-shadow: 0 0 0 2px #f3752455; }
.hepsdesk-profile.full { opacity: 0.6; cursor: not-allowed; }
.hepsdesk-profile h4 { margin: 0 0 0.3em 0; display: inline; }
.hepsdesk-profile p { margin: 0.3em 0; }
.hepsdesk-profile .hepsdesk-gpu { font-weight: bold; }
</style>
"""


def options_from_form(form_data: dict[str, list[str]]) -> dict:
    """The form's fields as ``user_options``: ``{"profile": ["gpu"]}`` -> ``{"profile": "gpu"}``
    (what the REST API takes), and the chosen card's group (``group-<slug>``) as ``group``;
    every value is checked by the spawner."""
    fields = {key: values[0] if len(values) == 1 else values for key, values in form_data.items()}
    # (JupyterHub's page sends _xsrf in the URL; a client that sends it in the body is not wrong.)
    options = {key: value for key, value in fields.items() if not key.startswith("group-") and key != "_xsrf"}
    group = fields.get(f"group-{options.get('profile')}")
    if isinstance(group, str) and group:
        options["group"] = group
    return options


def group_choices(spawner: OpenStackSpawner, profile: Profile, flavor) -> tuple[GroupChoice, ...]:
    """The groups a server of ``profile`` can count against, with their use and whether it fits."""
    groups = spawner.charge_groups(profile)
    if not groups:
        return ()
    site = spawner.site
    usage = site.quotas.usage(exclude=spawner.quota_key)
    _, count = flavor_gpu_request(flavor.extra_specs or {}) if flavor else ("", 0)
    gpus = ((profile.gpu_model, count),) if count and profile.gpu_model else ()
    choices = []
    for group in groups:
        quota = site.group_quotas.get(group)
        if quota is None:
            choices.append(GroupChoice(group))
            continue
        used = usage.get(group, Usage())
        charge = Charge(group, int(flavor.vcpus or 0) if flavor else 0, gpus)
        choices.append(GroupChoice(group, quota.describe(used), quota.refusal(used, charge)))
    return tuple(choices)


async def card(spawner: OpenStackSpawner, profile: Profile) -> Card:
    """What the cloud says about ``profile`` right now (what cannot be read is left out)."""
    site = spawner.site
    try:
        image, flavor = await asyncio.gather(site.client.find_image(profile.image),
                                             site.client.find_flavor(profile.flavor))
    except CLOUD_ERRORS as e:
        spawner.log.warning("Cannot read image/flavor of profile %s: %s", profile.slug, e)
        image = flavor = None
    properties = (image.properties or {}) if image else {}
    facts = {"software": properties.get("hepsdesk_software", ""),
             "production_only": properties.get("hepsdesk_production_only", ""),
             "vcpus": flavor.vcpus if flavor else 0, "ram_mb": flavor.ram if flavor else 0,
             "shelved": spawner.vm.shelved and profile.slug == spawner.vm.profile and profile.stop_mode == "shelve"}
    facts["groups"] = group_choices(spawner, profile, flavor)
    trait, _ = flavor_gpu_request(flavor.extra_specs or {}) if flavor else ("", 0)
    if profile.gpu_count and trait:
        try:
            facts["gpus"] = await site.capacity.gpus(trait, profile.gpu_model)
        except (*CLOUD_ERRORS, ValueError) as e:  # e.g. 403: no right to read Placement
            spawner.log.warning("Cannot read free %s GPUs from Placement: %s", profile.gpu_model, e)
            facts["capacity_note"] = "free GPUs unknown right now"
    return Card(profile, **facts)


def render(cards: list[Card]) -> str:
    checked = next((c.profile.slug for c in cards if c.shelved and not c.closed), None)
    if checked is None:
        checked = next((c.profile.slug for c in cards if c.profile.default and not c.closed), None)
    if checked is None:
        checked = next((c.profile.slug for c in cards if not c.closed), None)
    items = []
    for card in cards:
        p = card.profile
        facts = []
        if card.vcpus:
            facts.append(f"{card.vcpus} vCPU, {card.ram_mb / 1024:g} GB RAM")
        if p.gpu_count:
            gpu = f"{p.gpu_count}x {escape(p.gpu_model)} GPU"
            if card.gpus is not None:
                gpu += f" ({escape(str(card.gpus))})"
            elif card.capacity_note:
                gpu += f" ({escape(card.capacity_note)})"
            facts.append(f'<span class="hepsdesk-gpu">{gpu}</span>')
        software = f"<p>Software: {escape(card.software)}</p>" if card.software else ""
        if card.production_only:
            software += (f'<p class="hepsdesk-production-only">Production images only: '
                         f"{escape(card.production_only)}</p>")
        note = "<p><em>All these GPUs are in use right now; try again later.</em></p>" if card.full else ""
        note += group_lines(card)
        if card.shelved:
            note += ("<p><em>Your VM of this environment is shelved: starting it resumes it as you left it. "
                     "Starting another environment deletes it (your home and data are not on it).</em></p>")
        attrs = " disabled" if card.closed else (" checked" if p.slug == checked else "")
        items.append(
            f'<label class="hepsdesk-profile{" full" if card.closed else ""}" data-profile="{escape(p.slug)}">'
            f'<input type="radio" name="profile" value="{escape(p.slug)}"{attrs}> '
            f"<h4>{escape(p.display_name)}</h4>"
            f"<p>{escape(p.description)}</p>{software}<p>{' · '.join(facts)}</p>{note}</label>")
    return f'{STYLE}<div class="hepsdesk-profiles">{"".join(items)}</div>'


def group_lines(card: Card) -> str:
    """The card's quota lines: the group it counts against and its use, or a choice of groups."""
    if not card.groups:
        return ""
    if card.over_quota:
        return "".join(f'<p class="hepsdesk-quota"><em>{escape(c.refusal)}.</em></p>' for c in card.groups)
    if len(card.groups) == 1:
        choice = card.groups[0]
        use = f" ({escape(choice.use)})" if choice.use else ""
        return f'<p class="hepsdesk-quota">Counts against your group {escape(choice.name)}{use}</p>'
    options = "".join(
        f'<option value="{escape(c.name)}"{" disabled" if c.refusal else ""}>'
        f"{escape(c.name)}{escape(f' ({c.use})') if c.use else ''}{' (full)' if c.refusal else ''}</option>"
        for c in card.groups)
    return (f'<p class="hepsdesk-quota">Counts against your group <select name="group-{escape(card.profile.slug)}" '
            f'aria-label="Group whose quota this server counts against">{options}</select></p>')
