"""Spawn each JupyterHub user's server in an OpenStack VM."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hepsdesk")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from .spawner import OpenStackSpawner  # noqa: E402

__all__ = ["OpenStackSpawner", "__version__"]
