"""ML2 mechanism driver that binds ports without an agent.

The dev cloud's VMs sit on loopback addresses of the host, so there is no switch to program:
binding a port only has to record that it is bound on the compute host. This driver binds the
first flat or local segment with VIF type ``tap`` and reports the port ACTIVE, which lets
Nova boot servers on a real Neutron network (IPAM, ports, security groups) with no L2 agent.
Registered as ``hepsdesk_noagent`` under ``neutron.ml2.mechanism_drivers`` by the
``hepsdesk_devcloud_plugins`` dist-info next to this file.
"""

from neutron_lib import constants
from neutron_lib.plugins.ml2 import api


class NoAgentMechanismDriver(api.MechanismDriver):
    """Bind flat/local segments immediately, as if an agent had wired a tap device."""

    vif_type = "tap"
    vif_details = {"port_filter": False}

    def initialize(self):
        pass

    def bind_port(self, context):
        for segment in context.segments_to_bind:
            if segment[api.NETWORK_TYPE] in (constants.TYPE_FLAT, constants.TYPE_LOCAL):
                context.set_binding(segment[api.ID], self.vif_type, self.vif_details,
                                    status=constants.PORT_STATUS_ACTIVE)
                return
