#!/bin/sh
# Set up and start what hepsdesk has so far: the dev cloud (a real single-node OpenStack).
set -eu
cd "$(dirname "$0")/.."
. scripts/setup.sh
.venv/bin/hepsdesk devcloud up
cat <<MSG

The dev cloud is up. Try:
    . .venv/bin/activate
    openstack --os-cloud devcloud image list
    openstack --os-cloud devcloud server create --image hepsdesk-desktop --flavor c1.small \\
        --network hepsdesk-net --user-data examples/devcloud/web-server.sh --wait demo
    openstack --os-cloud devcloud console log show demo
Stop it with: .venv/bin/hepsdesk devcloud down
MSG
