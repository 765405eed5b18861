"""Sharing a desktop, the hub's side: an owner shares their desktop (only the desktop) with a
user, a group, or by a single-use link; guests sign in with the hub and reach the desktop
through the hub's relay. Register the handlers (``jupyterhub_config.py``)::

    from hepsdesk_share import CUSTOM_SCOPES, handlers as share_handlers
    c.JupyterHub.extra_handlers = [..., *share_handlers]
    c.JupyterHub.custom_scopes = {..., **CUSTOM_SCOPES}

The desktop's side is ``desktop_proxy/sharing.py``; the threat model, docs/security.md.
"""

from .handlers import handlers
from .hub import CUSTOM_SCOPES, DESKTOP_SUPPORT, SHARED_DESKTOPS, DesktopSharing

__all__ = ["CUSTOM_SCOPES", "DESKTOP_SUPPORT", "SHARED_DESKTOPS", "DesktopSharing", "handlers"]
