"""What a user reads when a start fails, and what JupyterHub counts as the hub's failure.

Two kinds, as the Spawner contract has them:

- ``SpawnError`` (a ``SpawnException``): an expected refusal. Scarce GPUs, a used-up quota,
  a scheduler that finds no host, a profile the user may not use, an identity the user office
  must fix. Normal at a facility, not faults of the hub: JupyterHub does not count them towards
  ``consecutive_failure_limit``, so a busy cloud never restarts the hub.
- ``CloudFailure``: everything else. The cloud unreachable or answering 5xx, Keystone refusing
  the hub's credential, a deadline passed, a VM that broke, the hub's own configuration.
  JupyterHub counts them (they are no ``SpawnException``; an HTTP error of 500 or more), so a
  hub that cannot start anything for anyone is restarted after ``consecutive_failure_limit``.

Both carry the text users see (``jupyterhub_message``), saying what happened and what to do;
the hub's log gets the technical detail, without secrets.
"""

from __future__ import annotations

import re

from jupyterhub.spawner import SpawnException
from tornado import web

from .cloud import HttpError


class SpawnError(SpawnException):
    """A SpawnException whose user-facing text is exactly ``message``: the hub shows
    ``jupyterhub_message`` on the spawn page and in progress events (``str()`` would add the
    status code, reason label and ``log_message``, which are for the hub's log)."""

    def __init__(self, message, **kwargs):
        super().__init__(message, **kwargs)
        self.jupyterhub_message = message


class CloudFailure(web.HTTPError):
    """A start or stop that failed for a reason that is not the user's (see the module's text):
    ``message`` for the user, ``detail`` (which call failed, with which ids) for the hub's log."""

    def __init__(self, message: str, status_code: int = 502, detail: str = ""):
        super().__init__(status_code, "%s", f"{message} [{detail}]" if detail else message)
        self.jupyterhub_message = message


SECRET_RE = re.compile(r"(?i)\b([\w.-]*(?:token|secret|passw(?:or)?d|api[_-]?key|credential)[\w.-]*)(['\"]?\s*[=:]\s*)"
                       r"(['\"]?)[^\s'\",;&]+")


def scrub_secrets(text: str, known: list[str] = ()) -> str:
    """``text`` (a console or log excerpt shown to a user) without secrets: the ``known``
    values anywhere, and the value of anything that looks like ``token=...``/``password: ...``."""
    for value in known:
        if value and len(value) >= 6:
            text = text.replace(value, "[secret]")
    return SECRET_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}[secret]", text)


QUOTA_RE = re.compile(r"quota exceeded|overquota|quota.*exceeded|exceeded.*quota", re.I)
NO_HOST_RE = re.compile(r"no valid host", re.I)


def quota_exceeded(error: HttpError, creating: str) -> SpawnError | None:
    """The SpawnException for a create refused by a quota (Nova 403, Neutron 409), or None."""
    detail = str(getattr(error, "details", "") or error)
    if error.status_code not in (403, 409, 413) or not QUOTA_RE.search(detail):
        return None
    resource = re.search(r"for (?:resources: )?\[?'?(\w+)", detail)
    what = f" ({resource.group(1)})" if resource else ""
    return SpawnError(
        f"The hub's share of the cloud is used up{what}, so your {creating} could not be created. "
        "Please try again when other users have stopped their servers, or ask the facility's support "
        "to raise the quota.", reason="quota_exceeded", status_code=503,
        log_message=f"Quota exceeded creating a {creating}: {detail[:300]}")


def no_capacity(fault: str, gpu_model: str, gpu_count: int, free: str = "") -> SpawnError | None:
    """The SpawnException for a server the scheduler could place on no host, or None."""
    if not NO_HOST_RE.search(fault):
        return None
    if gpu_count:
        what = f"{gpu_count} free {gpu_model} GPU{'s' if gpu_count > 1 else ''}"
        now = f" ({free})" if free else ""
        message = (f"No machine has {what} right now{now}. Please try again later or choose an environment "
                   "without GPUs; your VM has been removed.")
    else:
        message = ("No machine of the cloud has room for your VM right now. Please try again later or choose "
                   "a smaller environment; your VM has been removed.")
    return SpawnError(message, reason="no_capacity", status_code=503,
                          log_message=f"No valid host: {fault[:300]}")
