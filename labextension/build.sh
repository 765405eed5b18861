#!/bin/sh
# Build the extension against the JupyterLab installed next to this build (its staging
# metadata), so the build needs no network beyond the npm registry.
set -eu
core=$(python3 -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))')
exec jupyter labextension build --core-path "$core" "$@" .
