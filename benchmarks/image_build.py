"""How long the dev cloud's images take to build, cold and from the store.

    .venv/bin/python benchmarks/image_build.py [--images hepsdesk-neutron,hepsdesk-desktop] [--no-pip-cache]

For each image: ``image_build_cold_s``, building it into an empty store (its server
environment and its own stacks, from PyPI's wheels: pip's download cache is used unless
``--no-pip-cache``, which makes it a first build on a new machine), and
``image_build_cached_s``, the same build again with the store filled (what every later
``hepsdesk devcloud up`` and test run pays), side by side, with their ratio. Also the size of
each image's environments. Prints one JSON object. The stores are temporary and removed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hepsdesk_images.build import build_images  # noqa: E402
from hepsdesk_images.catalogue import load  # noqa: E402
from hepsdesk_images.store import Store  # noqa: E402


def disk_usage(paths: list[Path]) -> int:
    done = subprocess.run(["du", "-scb", *map(str, paths)], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1].split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="", help="comma-separated image names (default: all)")
    parser.add_argument("--no-pip-cache", action="store_true", help="download every wheel again (a new machine)")
    args = parser.parse_args()
    catalogue = load()
    names = [n for n in args.images.split(",") if n] or list(catalogue.images)
    if args.no_pip_cache:
        os.environ["PIP_NO_CACHE_DIR"] = "1"
    result = {"image_build_cold_s": {}, "image_build_cached_s": {}, "cached_to_cold_ratio": {},
              "image_env_bytes": {}, "pip_cache": not args.no_pip_cache}
    for name in names:
        with tempfile.TemporaryDirectory(prefix="hepsdesk-image-bench-") as tmp:
            store = Store(catalogue, Path(tmp))
            log = io.StringIO()
            started = time.monotonic()
            report = build_images(catalogue, [name], store, stream=log)
            cold = time.monotonic() - started
            started = time.monotonic()
            build_images(catalogue, [name], store, stream=log)
            cached = time.monotonic() - started
            built = report.images[name]
            result["image_build_cold_s"][name] = round(cold, 1)
            result["image_build_cached_s"][name] = round(cached, 3)
            result["cached_to_cold_ratio"][name] = round(cached / cold, 5)
            result["image_env_bytes"][name] = disk_usage(list(built.env_dirs.values()))
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"{name}: cold {cold:.0f} s, cached {cached:.2f} s", file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
