"""The names both sides agree on: computing account names and proposal (experiment) ids.

An account name is valid in POSIX, in Active Directory (at most 20 characters there: the
authenticator shortens further) and in JupyterHub; a proposal id names a directory and a
group. Both end up in LDAP filters, shell scripts and paths, so nothing else is allowed.
"""

from __future__ import annotations

import re

NAME_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
PROPOSAL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
