"""The ``hepsdesk`` command.

    hepsdesk devcloud up [--state-dir DIR] [--gpus A100:4] [--port-offset N]
    hepsdesk devcloud down [--purge]
    hepsdesk devcloud status [--json]
    hepsdesk devcloud logs [SERVICE] [-n LINES] [-f]
    hepsdesk demo [--port 8000] [--hub-dir DIR] [--state-dir DIR] [--ad-address IP]
    hepsdesk images list | build [IMAGE...] | prune [--unused-days N] | recipes --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .settings import DEFAULT_STATE_DIR, DevCloudSettings, SettingsError, parse_gpus


def _settings(args: argparse.Namespace, **overrides) -> DevCloudSettings:
    return DevCloudSettings.load(args.state_dir, **overrides)


def _devcloud(args: argparse.Namespace, **overrides):
    from .devcloud import DevCloud

    return DevCloud(_settings(args, **overrides))


def cmd_up(args: argparse.Namespace) -> int:
    gpus = parse_gpus(args.gpus) if args.gpus is not None else None
    cloud = _devcloud(args, port_offset=args.port_offset, gpus=gpus,
                      venv_dir=args.venv_dir)
    report = cloud.up()
    if not report.already_running:
        print(f"dev cloud up in {report.total_s:.0f} s; state in {cloud.settings.state_dir}", file=sys.stderr)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    cloud = _devcloud(args)
    stopped = cloud.down(purge=args.purge)
    what = ", ".join(stopped) if stopped else "nothing was running"
    print(f"stopped: {what}" + ("; state removed" if args.purge else ""), file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cloud = _devcloud(args)
    entries = cloud.status()
    if args.json:
        print(json.dumps(entries, indent=2))
    else:
        width = max(len(e["service"]) for e in entries)
        for e in entries:
            mark = "healthy" if e["healthy"] else ("UNHEALTHY" if e["running"] else "stopped")
            pid = f"pid {e['pid']}" if e["pid"] else ""
            print(f"{e['service']:<{width}}  {mark:<9}  {pid:<10}  {e['detail']}")
    return 0 if all(e["healthy"] for e in entries) else 3


def cmd_logs(args: argparse.Namespace) -> int:
    cloud = _devcloud(args)
    names = [args.service] if args.service else list(cloud.services)
    for name in names:
        lines = cloud.log_lines(name, args.lines)
        if len(names) > 1:
            print(f"==> {cloud.processes.log_path(name)} <==")
        print("\n".join(lines))
    if args.follow and args.service:
        path = cloud.processes.log_path(args.service)
        with open(path) as f:
            f.seek(0, os.SEEK_END)
            try:
                while True:
                    line = f.readline()
                    if line:
                        sys.stdout.write(line)
                        sys.stdout.flush()
                    else:
                        time.sleep(0.3)
            except KeyboardInterrupt:
                pass
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoOptions, run

    config = Path(args.config)
    if not config.exists():
        raise SettingsError(f"JupyterHub configuration {config} does not exist (run from a clone of the "
                            "repository, or pass --config)")
    return run(DemoOptions(cloud_state_dir=Path(args.state_dir), hub_state_dir=Path(args.hub_dir),
                           config_file=config, port=args.port, hub_port=args.hub_port,
                           oidc_port=args.oidc_port, ad_address=args.ad_address,
                           storage_ldap_port=args.storage_ldap_port))


def cmd_images_list(args: argparse.Namespace) -> int:
    from hepsdesk_images.catalogue import load
    from hepsdesk_images.store import Store

    catalogue = load()
    store = Store(catalogue, Path(args.store) if args.store else None)
    for image in catalogue.images.values():
        state = "built" if store.image_ready(image) else "not built"
        print(f"{image.name:<22} {state:<10} {', '.join(catalogue.software(image))}")
        only = catalogue.production_only(image)
        if only:
            print(f"{'':<33} production images only: {', '.join(only)}")
    return 0


def cmd_images_build(args: argparse.Namespace) -> int:
    from hepsdesk_images.build import build_images
    from hepsdesk_images.catalogue import load
    from hepsdesk_images.store import Store

    catalogue = load()
    report = build_images(catalogue, args.images or None, Store(catalogue, Path(args.store) if args.store else None))
    built = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in report.built_envs.items()) or "none (all cached)"
    print(f"images ready in {report.total_s:.0f} s; environments built: {built}", file=sys.stderr)
    for name, image in report.images.items():
        print(f"{name}: {image.dir}")
    return 0


def cmd_images_prune(args: argparse.Namespace) -> int:
    from hepsdesk_images.catalogue import load
    from hepsdesk_images.store import Store, prune

    catalogue = load()
    store = Store(catalogue, Path(args.store) if args.store else None)
    removed = prune(store, list(catalogue.images.values()), args.unused_days)
    for path in removed:
        print(f"removed {path}")
    print(f"{len(removed)} unused entries removed from {store.root}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hepsdesk", description="hepsdesk: JupyterHub + OpenStack analysis desktops")
    commands = parser.add_subparsers(dest="command", required=True)
    devcloud = commands.add_parser("devcloud", help="the embedded single-node OpenStack for development and tests")
    devcloud_commands = devcloud.add_subparsers(dest="devcloud_command", required=True)

    def add(name: str, handler, help_: str) -> argparse.ArgumentParser:
        sub = devcloud_commands.add_parser(name, help=help_, description=help_)
        sub.add_argument("--state-dir", default=os.environ.get("HEPSDESK_DEVCLOUD_STATE", DEFAULT_STATE_DIR),
                         help="where the cloud keeps its databases, logs and disks (default: %(default)s)")
        sub.set_defaults(handler=handler)
        return sub

    up = add("up", cmd_up, "install (first time), start and seed the dev cloud; a no-op when it is up")
    up.add_argument("--gpus", default=None,
                    help="fake GPU inventory of the compute node, MODEL:COUNT[,MODEL:COUNT] or 'none' "
                         "(default A100:4; kept for later runs)")
    up.add_argument("--port-offset", type=int, default=None,
                    help="shift every port (5000, 8774, ...) by N, to run beside services using them")
    up.add_argument("--venv-dir", default=None, help="the OpenStack services' virtualenv "
                                                     "(default: ~/.cache/hepsdesk/openstack-<pins>)")
    down = add("down", cmd_down, "stop every process the dev cloud started")
    down.add_argument("--purge", action="store_true", help="also delete the cloud's state (servers, images, databases)")
    status = add("status", cmd_status, "show each service's health (exit status 3 if any is unhealthy)")
    status.add_argument("--json", action="store_true", help="print a JSON list, one object per service")
    logs = add("logs", cmd_logs, "show the services' logs")
    logs.add_argument("service", nargs="?", help="one service (default: the tail of every log)")
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (with SERVICE)")

    from .demo import REPO_CONFIG

    demo = commands.add_parser(
        "demo", help="the dev cloud, the development SSO with demo users and the hub, in the foreground",
        description="Start everything the demo needs and keep the hub in the foreground (Ctrl-C stops "
                    "the hub and the SSO; the dev cloud and the users' VMs keep running).")
    demo.add_argument("--state-dir", default=os.environ.get("HEPSDESK_DEVCLOUD_STATE", DEFAULT_STATE_DIR),
                      help="the dev cloud's state (default: %(default)s)")
    demo.add_argument("--hub-dir", default=".hepsdesk-hub",
                      help="the hub's and the SSO's state: database, secrets, demo users (default: %(default)s)")
    demo.add_argument("--config", default=str(REPO_CONFIG if REPO_CONFIG.exists() else "jupyterhub_config.py"),
                      help="the JupyterHub configuration (default: the repository's, %(default)s)")
    demo.add_argument("--port", type=int, default=8000, help="the hub's public port (default: %(default)s)")
    demo.add_argument("--hub-port", type=int, default=8081,
                      help="the hub's API port, reached by the VMs; the proxy's API uses this minus 80 "
                           "(default: %(default)s)")
    demo.add_argument("--oidc-port", type=int, default=9400,
                      help="the development SSO's port (default: %(default)s)")
    demo.add_argument("--ad-address", default="127.0.0.2",
                      help="the development AD DC's loopback address (its ports are 389 and 636; "
                           "default: %(default)s)")
    demo.add_argument("--storage-ldap-port", type=int, default=3636,
                      help="the development storage LDAP's port (default: %(default)s)")
    demo.set_defaults(handler=cmd_demo)

    images = commands.add_parser("images", help="the beamline images of the catalogue (hepsdesk_images/catalogue.yaml)")
    images_commands = images.add_subparsers(dest="images_command", required=True)
    store_help = "the content-addressed store of built environments (default: $HEPSDESK_IMAGE_STORE or " \
                 "~/.cache/hepsdesk/images)"
    listing = images_commands.add_parser("list", help="each image, whether it is built, and its software")
    listing.add_argument("--store", default=None, help=store_help)
    listing.set_defaults(handler=cmd_images_list)
    build = images_commands.add_parser(
        "build", help="build the dev cloud's images (their environments, from wheels) into the store",
        description="Build the environments of the dev cloud's images from the catalogue's pins (wheels only), "
                    "reusing what the store has. `hepsdesk devcloud up` does this too.")
    build.add_argument("images", nargs="*", help="image names (default: every image of the catalogue)")
    build.add_argument("--store", default=None, help=store_help)
    build.set_defaults(handler=cmd_images_build)
    pruning = images_commands.add_parser(
        "prune", help="delete what the store holds that this catalogue does not use and no build used lately")
    pruning.add_argument("--unused-days", type=float, default=14,
                         help="keep what any build (of any clone) used within this many days (default: %(default)s)")
    pruning.add_argument("--store", default=None, help=store_help)
    pruning.set_defaults(handler=cmd_images_prune)
    from hepsdesk_images import recipes

    recipes.add_parsers(images_commands)  # recipes, qcow2: the production images
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hepsdesk_images.catalogue import CatalogueError
    from hepsdesk_images.store import BuildError

    from .devcloud import DevCloudError

    try:
        return args.handler(args)
    except (DevCloudError, SettingsError, RuntimeError, FileNotFoundError, CatalogueError, BuildError) as e:
        print(f"hepsdesk: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hepsdesk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
