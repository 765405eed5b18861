"""The hepsdesk dev cloud: real OpenStack services on one machine, VMs as process trees.

``hepsdesk devcloud up`` runs Keystone, Placement, Glance, Neutron and Nova (with the
process-VM virt driver in ``service_plugins/``) on 127.0.0.1, backed by MariaDB and RabbitMQ,
with all state under one directory. The spawner talks to it exactly as to a production
cloud, through ``clouds.yaml``.
"""

from .settings import DevCloudSettings

__all__ = ["DevCloud", "DevCloudError", "DevCloudSettings"]


def __getattr__(name: str):
    # DevCloud pulls in openstacksdk; keep `import hepsdesk_devcloud` cheap for the CLI's help.
    if name in ("DevCloud", "DevCloudError"):
        from . import devcloud

        return getattr(devcloud, name)
    raise AttributeError(name)
