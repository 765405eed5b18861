"""The identity contract between the authenticator and the spawner.

``hepsdesk_auth`` writes who a person is into ``auth_state["hepsdesk"]`` at every sign-in;
``hepsdesk_spawner`` reads it before every start to make the person's account in their VM
and mount their data. Neither owns the shape: it is described here, with the patterns both
sides check names and proposal ids against. Importing this package imports nothing else of
hepsdesk (no openstacksdk, no ldap3).
"""

from .auth_state import (
    AUTH_STATE_KEY,
    DataPaths,
    DirectoryEntry,
    HepsdeskState,
    IdentityError,
    PosixGroup,
    PosixIdentity,
    PosixRecord,
    hepsdesk_state,
    proposals_of,
)
from .names import NAME_RE, PROPOSAL_RE

__all__ = [
    "AUTH_STATE_KEY", "NAME_RE", "PROPOSAL_RE", "DataPaths", "DirectoryEntry", "HepsdeskState", "IdentityError",
    "PosixGroup", "PosixIdentity", "PosixRecord", "hepsdesk_state", "proposals_of",
]
