"""The image catalogue (``catalogue.yaml``), read and checked.

One file says what each beamline image carries; the dev cloud's images (``store.py``), the
production recipes (``recipes.py``), the Glance properties and through them the spawn page's
cards, and the launcher tiles are all made from it, so they cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

HERE = Path(__file__).parent
CATALOGUE = HERE / "catalogue.yaml"
SERVER_STACK = "server"
# name==version, the only form a catalogue pin may take (no ranges: an image is reproducible).
PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!-]+)")
NAME = re.compile(r"[a-z][a-z0-9-]{0,40}")
EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}")


class CatalogueError(ValueError):
    """The catalogue is not valid; the message names the entry and what is wrong."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Stack:
    """One Python environment of an image, built from pinned wheels."""
    name: str
    description: str
    software: tuple[Pin, ...]
    support: tuple[Pin, ...] = ()
    kernel: str = ""                 # display name of its Jupyter kernel ("" = none)
    build_from_source: tuple[str, ...] = ()
    debian: tuple[str, ...] = ()
    hepsdesk: bool = False           # hepsdesk's VM side is installed into it

    @property
    def requirements(self) -> list[str]:
        return [str(p) for p in (*self.software, *self.support)]

    def fingerprint(self, python: str) -> str:
        """The content address of this environment: what pip is asked for, and with which Python."""
        spec = {"python": python, "requirements": sorted(self.requirements),
                "from_source": sorted(self.build_from_source), "hepsdesk": self.hepsdesk}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Application:
    """A GUI program of an image: a launcher tile, and what ``desktop.open(name)`` starts."""
    name: str
    title: str
    version: str
    command: tuple[str, ...]
    window: str                      # part of its main window's title
    opens: tuple[str, ...] = ()
    icon: str = ""                   # path relative to this package
    stack: str = ""                  # its environment ("" for a Debian program)
    debian: str = ""                 # the Debian package it comes from
    opener: str = ""                 # script (relative to this package) that starts it with files

    @property
    def opener_path(self) -> Path | None:
        return HERE / self.opener if self.opener else None

    @property
    def icon_path(self) -> Path | None:
        return HERE / self.icon if self.icon else None

    @property
    def label(self) -> str:
        return f"{self.title} {self.version}"


@dataclass(frozen=True)
class ProductionSoftware:
    """Software the seeds name that only production images carry (not installable here)."""
    name: str
    title: str
    version: str
    why: str
    conda: dict = field(default_factory=dict)   # {"channel": ..., "package": ...}
    archive: str = ""
    command: tuple[str, ...] = ()
    window: str = ""
    opens: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.title} {self.version}"


@dataclass(frozen=True)
class SampleData:
    name: str
    description: str
    stack: str
    path: str                        # inside the stack's site-packages


@dataclass(frozen=True)
class Image:
    name: str
    title: str
    facility: str
    beamline: str
    description: str
    stacks: tuple[str, ...]
    applications: tuple[str, ...]
    production: tuple[str, ...] = ()
    sample_data: tuple[SampleData, ...] = ()


@dataclass(frozen=True)
class Catalogue:
    python: str
    stacks: dict[str, Stack]
    applications: dict[str, Application]
    production: dict[str, ProductionSoftware]
    images: dict[str, Image]

    def image(self, name: str) -> Image:
        try:
            return self.images[name]
        except KeyError:
            raise CatalogueError(f"no image {name!r} in the catalogue; it has {', '.join(self.images)}") from None

    def image_stacks(self, image: Image) -> list[Stack]:
        """The environments a VM of ``image`` has: the server's first, then the image's own."""
        return [self.stacks[SERVER_STACK], *(self.stacks[s] for s in image.stacks)]

    def image_applications(self, image: Image) -> list[Application]:
        return [self.applications[a] for a in image.applications]

    def software(self, image: Image) -> list[str]:
        """What the image really carries, as its card shows it: the named software of its
        stacks with their versions, then its Debian GUI programs."""
        shown = ["JupyterLab " + next(p.version for p in self.stacks[SERVER_STACK].software if p.name == "jupyterlab")]
        for stack in image.stacks:
            shown += [label for label in (f"{p.name} {p.version}" for p in self.stacks[stack].software)
                      if label not in shown]
        shown += [a.label for a in self.image_applications(image) if a.debian]
        return shown

    def production_only(self, image: Image) -> list[str]:
        return [self.production[p].label for p in image.production]

    def glance_properties(self, image: Image) -> dict[str, str]:
        """The image's Glance properties: the ``hepsdesk_*`` ones are what the spawner's
        profiles and the spawn page's cards read."""
        return {
            "hepsdesk_beamline": image.beamline,
            "hepsdesk_facility": image.facility,
            "hepsdesk_description": image.description,
            "hepsdesk_software": ", ".join(self.software(image)),
            "hepsdesk_applications": ", ".join(a.title for a in self.image_applications(image)),
            "hepsdesk_production_only": ", ".join(self.production_only(image)),
            "os_type": "linux",
            "os_distro": "debian",
            "os_version": "12",
        }

    def debian_packages(self, image: Image | None = None) -> list[str]:
        """The Debian packages the image's GUIs need (all images' without ``image``)."""
        images = [image] if image is not None else list(self.images.values())
        packages: dict[str, None] = {}
        for img in images:
            for stack in img.stacks:
                packages.update(dict.fromkeys(self.stacks[stack].debian))
            packages.update(dict.fromkeys(a.debian for a in self.image_applications(img) if a.debian))
        return list(packages)


def _pins(where: str, values) -> tuple[Pin, ...]:
    pins = []
    for value in values or ():
        match = PIN.fullmatch(str(value))
        if match is None:
            raise CatalogueError(f"{where}: {value!r} is not pinned as name==version")
        pins.append(Pin(match["name"], match["version"]))
    return tuple(pins)


def _strings(where: str, values, pattern: re.Pattern | None = None) -> tuple[str, ...]:
    if values is None:
        return ()
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise CatalogueError(f"{where}: expected a list of names, got {values!r}")
    for value in values:
        if pattern is not None and not pattern.fullmatch(value):
            raise CatalogueError(f"{where}: {value!r} is not valid")
    return tuple(values)


def _fields(where: str, entry, required: set[str], optional: set[str]) -> dict:
    if not isinstance(entry, dict):
        raise CatalogueError(f"{where}: expected a mapping, got {type(entry).__name__}")
    missing = required - entry.keys()
    unknown = entry.keys() - required - optional
    if missing:
        raise CatalogueError(f"{where}: missing {', '.join(sorted(missing))}")
    if unknown:
        raise CatalogueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    return entry


def parse(data) -> Catalogue:
    """Check the catalogue's data and build it; :class:`CatalogueError` says what is wrong."""
    data = _fields("catalogue", data, {"python", "stacks", "applications", "images"}, {"production"})
    stacks = {}
    for name, entry in (data["stacks"] or {}).items():
        where = f"stacks.{name}"
        if not NAME.fullmatch(name):
            raise CatalogueError(f"{where}: not a valid name")
        e = _fields(where, entry, {"description", "software"},
                    {"support", "kernel", "build_from_source", "debian", "hepsdesk"})
        stacks[name] = Stack(name, e["description"], _pins(f"{where}.software", e["software"]),
                             _pins(f"{where}.support", e.get("support")), str(e.get("kernel", "")),
                             _strings(f"{where}.build_from_source", e.get("build_from_source")),
                             _strings(f"{where}.debian", e.get("debian")), bool(e.get("hepsdesk", False)))
        if not stacks[name].software:
            raise CatalogueError(f"{where}: names no software")
    if SERVER_STACK not in stacks or not stacks[SERVER_STACK].hepsdesk:
        raise CatalogueError(f"stacks: a '{SERVER_STACK}' stack with hepsdesk: true is required")
    if not any(p.name == "jupyterlab" for p in stacks[SERVER_STACK].software):
        raise CatalogueError(f"stacks.{SERVER_STACK}: must name jupyterlab in its software")

    applications = {}
    for name, entry in (data["applications"] or {}).items():
        where = f"applications.{name}"
        if not NAME.fullmatch(name):
            raise CatalogueError(f"{where}: not a valid name")
        e = _fields(where, entry, {"title", "version", "command", "window"},
                    {"opens", "icon", "stack", "debian", "opener"})
        app = Application(name, e["title"], str(e["version"]), _strings(f"{where}.command", e["command"]),
                          e["window"], _strings(f"{where}.opens", e.get("opens"), EXTENSION),
                          e.get("icon", ""), e.get("stack", ""), e.get("debian", ""), e.get("opener", ""))
        if bool(app.stack) == bool(app.debian):
            raise CatalogueError(f"{where}: give exactly one of stack (its environment) or debian (its package)")
        if app.stack and app.stack not in stacks:
            raise CatalogueError(f"{where}: unknown stack {app.stack!r}")
        if not app.command:
            raise CatalogueError(f"{where}: command is empty")
        if app.icon and not (HERE / app.icon).is_file():
            raise CatalogueError(f"{where}: icon {app.icon} does not exist")
        if app.opener and (not app.stack or not (HERE / app.opener).is_file()):
            raise CatalogueError(f"{where}: opener {app.opener} must be a script of this package, run by a stack")
        applications[name] = app

    production = {}
    for name, entry in (data.get("production") or {}).items():
        where = f"production.{name}"
        e = _fields(where, entry, {"title", "version", "why"}, {"conda", "archive", "command", "window", "opens"})
        if not (e.get("conda") or e.get("archive")):
            raise CatalogueError(f"{where}: say where production gets it (conda or archive)")
        production[name] = ProductionSoftware(
            name, e["title"], str(e["version"]), e["why"], dict(e.get("conda") or {}), e.get("archive", ""),
            _strings(f"{where}.command", e.get("command")), e.get("window", ""),
            _strings(f"{where}.opens", e.get("opens"), EXTENSION))

    images = {}
    for name, entry in (data["images"] or {}).items():
        where = f"images.{name}"
        e = _fields(where, entry, {"title", "facility", "beamline", "description", "stacks", "applications"},
                    {"production", "sample_data"})
        image_stacks = _strings(f"{where}.stacks", e["stacks"])
        for stack in image_stacks:
            if stack not in stacks or stack == SERVER_STACK:
                raise CatalogueError(f"{where}: unknown stack {stack!r}")
        image_apps = _strings(f"{where}.applications", e["applications"])
        for app in image_apps:
            if app not in applications:
                raise CatalogueError(f"{where}: unknown application {app!r}")
            if applications[app].stack and applications[app].stack not in image_stacks:
                raise CatalogueError(f"{where}: application {app!r} needs stack {applications[app].stack!r}, "
                                     f"which the image does not have")
        image_production = _strings(f"{where}.production", e.get("production"))
        for item in image_production:
            if item not in production:
                raise CatalogueError(f"{where}: unknown production software {item!r}")
        samples = []
        for i, sample in enumerate(e.get("sample_data") or []):
            s = _fields(f"{where}.sample_data[{i}]", sample, {"name", "description", "stack", "path"}, set())
            if s["stack"] not in image_stacks:
                raise CatalogueError(f"{where}.sample_data[{i}]: stack {s['stack']!r} is not the image's")
            if s["path"].startswith("/") or ".." in s["path"].split("/"):
                raise CatalogueError(f"{where}.sample_data[{i}]: path must stay inside the stack")
            samples.append(SampleData(s["name"], s["description"], s["stack"], s["path"]))
        images[name] = Image(name, e["title"], e["facility"], e["beamline"], e["description"], image_stacks,
                             image_apps, image_production, tuple(samples))
    return Catalogue(str(data["python"]), stacks, applications, production, images)


@cache
def load(path: Path = CATALOGUE) -> Catalogue:
    """The catalogue at ``path`` (default: the one in this package)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise CatalogueError(f"cannot read the image catalogue {path}: {e}") from e
    return parse(data)
