#!/bin/sh
# Set up (first time) and run the demo: the dev cloud, the development SSO with demo users,
# and JupyterHub in the foreground at the URL it prints. Ctrl-C stops the hub; the dev cloud
# keeps running (`.venv/bin/hepsdesk devcloud down` stops it). Arguments go to `hepsdesk demo`.
set -eu
cd "$(dirname "$0")/.."
. scripts/setup.sh
exec .venv/bin/hepsdesk demo "$@"
