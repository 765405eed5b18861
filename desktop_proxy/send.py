"""``hepsdesk-send FILE...``: send files from the desktop to the browser that shows it (they
download there, with a progress bar in the page). Files must be in the home or a data directory.
The file manager's "Send to my computer" runs it."""

from __future__ import annotations

import argparse
import sys

from .files import size_text
from .notebook import Desktop, DesktopError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hepsdesk-send", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", metavar="FILE")
    args = parser.parse_args(argv)
    desktop = Desktop()
    failed = 0
    for name in args.files:
        try:
            offer = desktop.send_file(name)
        except DesktopError as e:
            print(f"hepsdesk-send: {name}: {e}", file=sys.stderr)
            failed += 1
            continue
        where = ("it downloads in the browser showing your desktop" if offer.get("pages")
                 else "no browser shows your desktop now: it downloads when you open it (within 15 minutes)")
        print(f"{offer['name']} ({size_text(offer['size'])}): {where}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
