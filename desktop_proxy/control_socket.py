"""Where the desktop's control socket is: a unix socket that only its user can reach.

The desktop server listens there, and notebooks (``desktop_proxy.notebook``) talk to it; both
find it the same way: ``$HEPSDESK_DESKTOP_CONTROL`` if set, else in ``$XDG_RUNTIME_DIR`` when
that is a private directory of this user, else in ``/tmp/hepsdesk-<uid>/``. A directory in
``/tmp`` can be made first by another local user, so the socket's directory must be this
user's, not a symbolic link, and closed to everyone else, or it is not used.

Standard library only: notebooks import this in kernels that have none of the desktop's packages.
"""

from __future__ import annotations

import os
import stat

ENVIRONMENT = "HEPSDESK_DESKTOP_CONTROL"


class UnsafeDirectory(RuntimeError):
    """The control socket's directory could be reached or replaced by another user."""


def control_socket_path() -> str:
    """The path of the desktop's control socket (nothing is checked or made)."""
    if os.environ.get(ENVIRONMENT):
        return os.environ[ENVIRONMENT]
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        try:
            check_private_dir(runtime)
            return os.path.join(runtime, "hepsdesk-desktop.sock")
        except (OSError, UnsafeDirectory):
            pass
    return f"/tmp/hepsdesk-{os.getuid()}/desktop.sock"


def check_private_dir(directory: str) -> None:
    """Raise ``UnsafeDirectory`` unless ``directory`` is a directory (not a symbolic link) of
    this user that no one else may read, write or enter."""
    info = os.lstat(directory)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeDirectory(f"{directory} is a symbolic link, which another user may have made: "
                              "the desktop's control socket is not put there")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"{directory} is not a directory")
    if info.st_uid != os.getuid():
        raise UnsafeDirectory(f"{directory} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}): "
                              "another user may have made it; remove it or set $" + ENVIRONMENT)
    if info.st_mode & 0o077:
        raise UnsafeDirectory(f"{directory} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); "
                              f"it must be 700: chmod 700 {directory}")


def ensure_private_dir(path: str) -> str:
    """Make the directory of the socket ``path`` (mode 700) if it is missing, check that it is
    private (``check_private_dir``), and return it."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    check_private_dir(directory)
    return directory
