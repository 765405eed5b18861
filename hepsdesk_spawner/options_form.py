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

if TYPE_CHECKING:
    from .spawner import OpenStackSpawner


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

    @property
    def full(self) -> bool:
        return self.gpus is not None and self.gpus.free < self.profile.gpu_count


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
    (what the REST API takes); every value is checked by the spawner."""
    return {key: values[0] if len(values) == 1 else values for key, values in form_data.items()}


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
    trait, _ = flavor_gpu_request(flavor.extra_specs or {}) if flavor else ("", 0)
    if profile.gpu_count and trait:
        try:
            facts["gpus"] = await site.capacity.gpus(trait, profile.gpu_model)
        except (*CLOUD_ERRORS, ValueError) as e:  # e.g. 403: no right to read Placement
            spawner.log.warning("Cannot read free %s GPUs from Placement: %s", profile.gpu_model, e)
            facts["capacity_note"] = "free GPUs unknown right now"
    return Card(profile, **facts)


def render(cards: list[Card]) -> str:
    checked = next((c.profile.slug for c in cards if c.shelved and not c.full), None)
    if checked is None:
        checked = next((c.profile.slug for c in cards if c.profile.default and not c.full), None)
    if checked is None:
        checked = next((c.profile.slug for c in cards if not c.full), None)
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
        if card.shelved:
            note += ("<p><em>Your VM of this environment is shelved: starting it resumes it as you left it. "
                     "Starting another environment deletes it (your home and data are not on it).</em></p>")
        attrs = " disabled" if card.full else (" checked" if p.slug == checked else "")
        items.append(
            f'<label class="hepsdesk-profile{" full" if card.full else ""}" data-profile="{escape(p.slug)}">'
            f'<input type="radio" name="profile" value="{escape(p.slug)}"{attrs}> '
            f"<h4>{escape(p.display_name)}</h4>"
            f"<p>{escape(p.description)}</p>{software}<p>{' · '.join(facts)}</p>{note}</label>")
    return f'{STYLE}<div class="hepsdesk-profiles">{"".join(items)}</div>'
