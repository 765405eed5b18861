"""The admins' dashboard: every VM of this hub at a glance, GPUs per model and per group, the
desktops connected, orphans the reaper will remove; stop, shelve and delete with confirmation.

It runs in the hub's process (``JupyterHub.extra_handlers``), so it reads what the spawners
share (the watcher's list of the hub's servers, the quota book, the desktops' reports) and asks
the cloud nothing per VM. It is guarded by a custom scope, given with a role (the example
configuration gives it to the hub's admin groups)::

    from hepsdesk_dashboard import CUSTOM_SCOPES, TEMPLATES, handlers as dashboard_handlers
    c.JupyterHub.extra_handlers = [..., *dashboard_handlers]
    c.JupyterHub.custom_scopes = {..., **CUSTOM_SCOPES}
    c.JupyterHub.template_paths = [str(TEMPLATES)]  # the "Dashboard" link in the hub's navigation
"""

from .handlers import CUSTOM_SCOPES, OPERATE, TEMPLATES, handlers

__all__ = ["CUSTOM_SCOPES", "OPERATE", "TEMPLATES", "handlers"]
