"""The spawner's configuration, checked when the hub loads it.

JupyterHub makes spawners at start-up only for users whose servers run, so a wrong setting
would otherwise show up at some user's first spawn, as a failure. Call ``check_config(c)`` at
the end of ``jupyterhub_config.py``: it builds the spawner's configuration from ``c``
(every ``@validate`` runs), checks what the settings can contradict together, and builds the
hub-wide ``CloudSite`` (its watcher starts listing the hub's servers at once). A bad value
stops the hub with one line naming the setting and what is wrong::

    from hepsdesk_spawner import check_config
    check_config(c)
"""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import entry_points

from traitlets import TraitError
from traitlets.config import Config
from traitlets.utils.importstring import import_item

from desktop_proxy.ice_servers import IceConfigError

from .pool import PoolClaimHandler
from .resume import ResumeEnvHandler
from .settings import ConfigError
from .site import CloudSite
from .turn import TurnRelay

log = logging.getLogger("JupyterHub")


def check_config(config: Config) -> CloudSite | None:
    """Check the OpenStackSpawner settings in ``config``; ``SystemExit`` naming the setting when
    one is wrong. Returns the hub-wide site (None outside a running event loop, e.g. a command
    that only reads the configuration, or when the hub's ``spawner_class`` is another spawner)."""
    spawner_class = openstack_spawner_class(config)
    if spawner_class is None:
        log.info("hepsdesk: JupyterHub.spawner_class is not an OpenStackSpawner; its settings are not checked")
        return None
    try:
        settings = spawner_class(config=config)
        settings.check_configuration()
        _check_resume_handlers(config, settings)
        _check_turn_relay(config)
    except (TraitError, ConfigError, HubSettingError) as e:
        message = f"hepsdesk: the hub's configuration is wrong: {e}"
        log.critical(message)
        raise SystemExit(message) from None
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None
    site = CloudSite.of(settings)
    site.start()
    return site


def openstack_spawner_class(config: Config) -> type | None:
    """The hub's spawner class when it is OpenStackSpawner or a subclass, else None."""
    from .spawner import OpenStackSpawner

    chosen = config.JupyterHub.get("spawner_class", None)
    if isinstance(chosen, str):
        chosen = _load_spawner_class(chosen)
    return chosen if isinstance(chosen, type) and issubclass(chosen, OpenStackSpawner) else None


def _load_spawner_class(name: str) -> type | None:
    """A spawner named as JupyterHub accepts it: an entry point of ``jupyterhub.spawners`` or a
    dotted import path."""
    for entry_point in entry_points(group="jupyterhub.spawners"):
        if entry_point.name == name:
            return entry_point.load()
    try:
        return import_item(name)
    except (ImportError, AttributeError, ValueError) as e:
        raise SystemExit(f"hepsdesk: the hub's configuration is wrong: JupyterHub.spawner_class: "
                         f"cannot load {name!r}: {e}") from None


class HubSettingError(ValueError):
    """A setting of the hub's, not of the spawner's, is wrong (the text names it)."""


def _check_resume_handlers(config: Config, settings) -> None:
    """Every VM asks the resume endpoint for its environment at boot (``resume.py``), and a
    pooled one the pool's for its user (``pool.py``)."""
    handlers = config.JupyterHub.get("extra_handlers", [])
    if not any(len(h) > 1 and h[1] is ResumeEnvHandler for h in handlers):
        raise HubSettingError("JupyterHub.extra_handlers lacks hepsdesk_spawner.resume.handlers, which every VM "
                              "needs to get its environment at boot")
    if settings.warm_pool and not any(len(h) > 1 and h[1] is PoolClaimHandler for h in handlers):
        raise HubSettingError("JupyterHub.extra_handlers lacks hepsdesk_spawner.pool.handlers, which the warm "
                              "pool's VMs need to get their users")


def _check_turn_relay(config: Config) -> None:
    """TURN settings that cannot work stop the hub, not each desktop connect later."""
    try:
        TurnRelay(config=config).servers_for("check")
    except IceConfigError as e:
        raise HubSettingError(f"TurnRelay (urls, secret_file, policy): {e}") from None
