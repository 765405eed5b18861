"""Flavor extra specs and traits that the process driver understands.

Shared by the driver (nova-compute) and the catalogue that creates flavors (hepsdesk's
environment); standard library only.
"""

import re

# "none": the server's guest runs no processes at all (load tests with thousands of servers).
NO_PROCESS_SPEC = "hepsdesk:processes"


def gpu_trait(model: str) -> str:
    """Placement trait of a fake GPU model: ``A100-40GB`` -> ``CUSTOM_GPU_A100_40GB``."""
    return "CUSTOM_GPU_" + re.sub(r"[^A-Z0-9]+", "_", model.upper()).strip("_")
