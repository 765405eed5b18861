#!/bin/sh
# Set up everything the tests need (Debian packages, .venv, the dev cloud) and run them.
# Extra arguments go to pytest, e.g. `sh scripts/test.sh tests/unit -x`.
set -eu
cd "$(dirname "$0")/.."
. scripts/setup.sh

.venv/bin/ruff check .

# Bring the dev cloud up first, so its progress shows in the log; stop it afterwards unless
# it was already running (a developer's cloud is reused and left alone).
started=0
.venv/bin/hepsdesk devcloud status >/dev/null 2>&1 || started=1
.venv/bin/hepsdesk devcloud up
if [ "$started" = 1 ]; then
    trap '.venv/bin/hepsdesk devcloud down >/dev/null 2>&1 || true' EXIT
fi
# pytest exits 5 when it collected no tests: that fails this script like any other failure.
.venv/bin/pytest "$@"
