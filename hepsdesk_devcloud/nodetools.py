"""Node.js programs the development environment runs: the OIDC provider and JupyterHub's proxy.

They are installed with npm, at pinned versions, into a cache directory keyed by those
versions (``~/.cache/hepsdesk/node-<hash>``), once per machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

NODE_PACKAGES = {
    "oidc-provider": "8.8.1",
    "configurable-http-proxy": "5.3.0",
}
PROGRAMS = Path(__file__).parent / "oidc"


class NodeToolsError(RuntimeError):
    pass


def tools_dir() -> Path:
    digest = hashlib.sha256(json.dumps(NODE_PACKAGES, sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "hepsdesk" / f"node-{digest}"


def ensure_node_tools(log_path: Path | None = None) -> Path:
    """Install the pinned npm packages if needed; return the directory holding node_modules."""
    directory = tools_dir()
    stamp = directory / ".installed"
    if not stamp.exists():
        if shutil.which("npm") is None or shutil.which("node") is None:
            raise NodeToolsError("Node.js and npm are needed (as root: apt-get install -y nodejs npm)")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "package.json").write_text(json.dumps(
            {"name": "hepsdesk-node-tools", "private": True, "dependencies": NODE_PACKAGES}, indent=2))
        if log_path:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        try:
            result = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
                                    cwd=directory, stdout=log, stderr=subprocess.STDOUT)
        finally:
            if log_path:
                log.close()
        if result.returncode != 0:
            raise NodeToolsError(f"npm install of {', '.join(NODE_PACKAGES)} failed"
                                 + (f"; see {log_path}" if log_path else ""))
        stamp.write_text(json.dumps(NODE_PACKAGES))
    # ES modules resolve packages next to the script, so the programs live beside node_modules.
    for program in PROGRAMS.glob("*.mjs"):
        target = directory / program.name
        if not target.exists() or target.read_bytes() != program.read_bytes():
            shutil.copyfile(program, target)
    return directory


def chp_command() -> list[str]:
    return [str(ensure_node_tools() / "node_modules" / ".bin" / "configurable-http-proxy")]
