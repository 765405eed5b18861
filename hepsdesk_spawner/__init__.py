"""Spawn each JupyterHub user's server in an OpenStack VM.

``OpenStackSpawner`` (the ``jupyterhub.spawners`` entry point ``openstack``) and
``check_config`` are imported on first use, so a module of this package (the resume
handlers, the reaper) can be imported without the whole spawner.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hepsdesk")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["OpenStackSpawner", "check_config", "__version__"]


def __getattr__(name: str):
    if name == "OpenStackSpawner":
        from .spawner import OpenStackSpawner

        return OpenStackSpawner
    if name == "check_config":
        from .startup import check_config

        return check_config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
