"""Start nova-compute with the hepsdesk process driver.

Nova loads its virt driver as ``nova.virt.<compute_driver>``, so an out-of-tree driver must
be importable under that package: this launcher registers ``hepsdesk_virt_driver`` as
``nova.virt.hepsdesk_process`` and then runs nova-compute's own entry point, with
``compute_driver = hepsdesk_process.ProcessDriver`` in nova.conf. nova-compute's module must
be imported first: it chooses the concurrency mode before anything imports eventlet.
"""

# ruff: noqa: I001 -- the import order below is the point of this module.
import sys

from nova.cmd.compute import main

import hepsdesk_virt_driver

sys.modules["nova.virt.hepsdesk_process"] = hepsdesk_virt_driver

if __name__ == "__main__":
    sys.exit(main())
