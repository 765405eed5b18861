"""Who a VM runs JupyterLab as, and what it mounts: ``GuestAccount``, from the user's auth_state.

The authenticator writes the person's computing account and proposals into
``auth_state["hepsdesk"]`` (``hepsdesk_identity``); here they are checked and turned into the
account the VM makes and the data mounts it needs. A problem with the person's identity is
theirs to have fixed (a ``SpawnError``: the user office can help, the hub is fine); a mount
template that cannot be filled in is the hub's (a ``CloudFailure``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from hepsdesk_identity import IdentityError, PosixIdentity, proposals_of

from .datamounts import DataMount, DataMountError, expand_all, needs_identity
from .errors import CloudFailure, SpawnError
from .image_accounts import ACCOUNT_IDS, ImageAccounts, ImageAccountsError

log = logging.getLogger("hepsdesk.spawner")
_undeclared: set[str] = set()  # images already logged as declaring no accounts


@dataclass(frozen=True)
class GuestAccount:
    identity: PosixIdentity | None  # None: JupyterLab runs as root (development images)
    mounts: tuple[DataMount, ...]

    @property
    def digest(self) -> str:
        """Changes whenever the account or the mounts do (a shelved VM made for other ones is not
        resumed). The same text as hepsdesk 0.1 hashed, so its shelved VMs are resumed after an upgrade."""
        return hashlib.sha256(repr((self.identity, tuple(self.mounts))).encode()).hexdigest()


def guest_account(auth_state: dict | None, templates: list[DataMount], min_id: int) -> GuestAccount:
    """The checked account and the mounts of ``templates`` filled in for it."""
    try:
        identity = PosixIdentity.from_auth_state(auth_state, min_id=min_id)
        proposals = proposals_of(auth_state)
    except IdentityError as e:
        raise SpawnError(f"Your computing account cannot be set up in a VM: {e}. Please tell the facility's user "
                         "office.", reason="bad_identity", status_code=403,
                         log_message=f"Unusable identity: {e}") from None
    if identity is None and needs_identity(templates):
        raise SpawnError("Your data cannot be mounted: your account has no computing identity (uid and gid) yet. "
                         "Please sign out and in again; if this stays, tell the facility's user office.",
                         reason="no_identity", status_code=403)
    try:
        return GuestAccount(identity, tuple(expand_all(templates, identity, proposals)))
    except DataMountError as e:
        raise CloudFailure("The hub's data mounts are misconfigured, so no server can be started. Please tell the "
                           "hub's administrators.", status_code=500, detail=f"data mounts: {e}") from None


def check_fits_image(account: GuestAccount, image) -> None:
    """Refuse, before anything is made, an identity that would be one of the image's own
    accounts (``image_accounts``)."""
    try:
        accounts = ImageAccounts.of(image)
    except ImageAccountsError as e:
        raise CloudFailure(f"The image '{image.name}' declares its accounts wrongly, so no VM can be started from "
                           "it. Please tell the hub's administrators.", status_code=500,
                           detail=f"image {image.id}: {e}") from None
    if not accounts.declared and account.identity is not None and image.id not in _undeclared:
        _undeclared.add(image.id)
        log.warning("Image %s (%s) declares no %s: only min_posix_id keeps identities off its own accounts",
                    image.name, image.id, ACCOUNT_IDS)
    conflict = accounts.conflict(account.identity)
    if conflict:
        raise SpawnError(f"Your computing account cannot be used in this VM image: {conflict}. Nothing was "
                         "created. Please tell the facility's user office.", reason="identity_conflict",
                         status_code=403, log_message=f"identity conflicts with image {image.name}: {conflict}")
