"""The dashboard's page, its live state and its actions (in the hub's process).

    /hub/hepsdesk/dashboard           the page (refreshes itself every few seconds)
    /hub/hepsdesk/dashboard/state     what it shows, as JSON (view.py)
    /hub/hepsdesk/dashboard/actions   POST {"action": "stop" | "shelve" | "delete", "vm": id}

Every one needs the ``custom:hepsdesk:operate`` scope (signed in, or a token of a role with
it). An action names the VM it was shown for: a VM that is gone, or whose server has meanwhile
been stopped or started again, is refused with what happened, and nothing else changes. Stop
stops the user's server as the hub would (its profile's stop mode); shelve and delete stop it
shelving or deleting the VM; delete on a stopped server's shelved VM, or on an orphan (a VM no
server of the hub owns), deletes that VM.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from jupyterhub import orm
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.scopes import has_scope
from tornado import web

from hepsdesk_spawner.capacity import GpuCapacity, flavor_gpu_request
from hepsdesk_spawner.cloud import CLOUD_ERRORS
from hepsdesk_spawner.desktop_reports import REPORTS
from hepsdesk_spawner.errors import CloudFailure
from hepsdesk_spawner.profiles import ProfileError, parse_profiles
from hepsdesk_spawner.settings import ConfigError, SpawnerSettings
from hepsdesk_spawner.site import CloudSite
from hepsdesk_spawner.startup import openstack_spawner_class

from .view import ACTIONS, DELETE, SHELVE, STOP, Owner, dashboard_state

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
OPERATE = "custom:hepsdesk:operate"
CUSTOM_SCOPES = {
    OPERATE: {"description": "Operate hepsdesk: see every VM of this hub on the dashboard (users, GPUs, groups' "
                             "quotas, desktops) and stop, shelve or delete them."},
}


class DashboardHandler(BaseHandler):
    """What the dashboard's handlers share: the scope check and the hub's cloud site."""

    _accept_token_auth = True  # Prometheus-style tools and tests may read it with a token

    def check_operator(self) -> None:
        if self.current_user is None:
            raise web.HTTPError(403, "Sign in to see the dashboard.")
        if not has_scope(OPERATE, self.parsed_scopes):
            raise web.HTTPError(403, f"The dashboard needs the {OPERATE} scope (ask the hub's administrators "
                                     "for the operator role).")

    @property
    def spawner_settings(self) -> SpawnerSettings:
        settings = self.settings.get("hepsdesk_dashboard_spawner_settings")
        if settings is None:
            config = self.settings.get("config")
            spawner_class = openstack_spawner_class(config)
            if spawner_class is None:
                raise web.HTTPError(500, "The dashboard needs JupyterHub.spawner_class to be OpenStackSpawner.")
            settings = self.settings["hepsdesk_dashboard_spawner_settings"] = spawner_class(config=config)
        return settings

    @property
    def site(self) -> CloudSite:
        try:
            return CloudSite.of(self.spawner_settings)
        except ConfigError as e:
            raise web.HTTPError(500, f"The hub's OpenStackSpawner settings are wrong: {e}") from None

    def owners(self) -> Callable[[str, str], Owner | None]:
        """``owner_of`` for every VM the watcher lists, with the hub's users read in one query
        (not one per VM, on the hub's event loop, every few seconds)."""
        names = {view.metadata.get("hepsdesk-user", "") for view in self.site.watcher.servers.values()} - {""}
        users = {orm_user.name: self.users[orm_user]
                 for orm_user in self.db.query(orm.User).filter(orm.User.name.in_(names))} if names else {}
        return lambda user_name, server_name: self.owner_of(user_name, server_name, users.get(user_name))

    def owner_of(self, user_name: str, server_name: str, user=None) -> Owner | None:
        """The hub's server ``user_name``/``server_name`` (``user``: that user, already read)."""
        if user is None:
            user = self.find_user(user_name) if user_name else None
        if user is None or server_name not in user.orm_spawners:
            return None
        spawner = user.spawners[server_name]
        vm = getattr(spawner, "vm", None)
        return Owner(user=user_name, server=server_name, server_id=getattr(vm, "server_id", "") or "",
                     running=bool(spawner.active), pending=spawner.pending or "",
                     last_activity=spawner.orm_spawner.last_activity if spawner.orm_spawner else None)

    async def gpu_capacity(self) -> list[GpuCapacity]:
        """Free and used GPUs of each model the profiles name (Placement, cached for all)."""
        profiles = self.spawner_settings.profiles
        if callable(profiles):
            return []
        try:
            gpu_profiles = [p for p in parse_profiles(profiles) if p.gpu_count]
        except ProfileError:
            return []
        site, seen, found = self.site, set(), []
        for profile in gpu_profiles:
            try:
                flavor = await site.client.find_flavor(profile.flavor)
                trait, _ = flavor_gpu_request((flavor.extra_specs or {}) if flavor else {})
                if trait and trait not in seen:
                    seen.add(trait)
                    found.append(await site.capacity.gpus(trait, profile.gpu_model))
            except (*CLOUD_ERRORS, ValueError) as e:  # the page says nothing about GPUs then
                self.log.warning("Dashboard: no GPU capacity for %s: %s", profile.gpu_model, str(e)[:200])
        return found

    def write_error(self, status_code, **kwargs):
        """Errors as JSON for the state and actions, as the hub's page for the page."""
        if self.request.path.rstrip("/").endswith(("/state", "/actions")):
            error = kwargs.get("exc_info", (None, None))[1]
            message = getattr(error, "log_message", None) or self._reason
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"message": message}))
            return
        super().write_error(status_code, **kwargs)


class DashboardPage(DashboardHandler):
    @web.authenticated
    async def get(self):
        self.check_operator()
        loader = self.settings["jinja2_env"]
        html = await loader.get_template("hepsdesk-dashboard.html").render_async(
            **self.template_namespace, state_url=f"{self.hub.base_url}hepsdesk/dashboard/state",
            actions_url=f"{self.hub.base_url}hepsdesk/dashboard/actions",
            script_url=f"{self.hub.base_url}hepsdesk/dashboard/static/dashboard.js")
        self.finish(html)


class DashboardState(DashboardHandler):
    async def get(self):
        self.check_operator()
        gpus = await self.gpu_capacity()
        state = dashboard_state(self.site, self.owners(), REPORTS, gpus)
        self.set_header("Cache-Control", "no-store")
        self.finish(state)


class DashboardAction(DashboardHandler):
    async def post(self):
        self.check_operator()
        try:
            body = json.loads(self.request.body or b"{}")
            action, vm_id = body["action"], body["vm"]
            if action not in ACTIONS or not isinstance(vm_id, str):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise web.HTTPError(400, f'Send {{"action": one of {", ".join(ACTIONS)}, "vm": the VM\'s id}}.') \
                from None
        site = self.site
        view = site.watcher.servers.get(vm_id)
        if view is None:
            raise web.HTTPError(409, "That VM is already gone.")
        user_name, server_name = view.metadata.get("hepsdesk-user", ""), view.metadata.get("hepsdesk-server", "")
        owner = self.owner_of(user_name, server_name)
        operator = self.current_user.name
        if owner is None or owner.server_id != vm_id:  # an orphan: only deleting it makes sense
            if action != DELETE:
                raise web.HTTPError(409, "No server of the hub owns that VM any more; it can only be deleted.")
            self.log.warning("Dashboard: %s deletes orphan VM %s (of %r)", operator, vm_id, user_name[:100])
            try:
                await site.client.delete_server(vm_id)
            except CLOUD_ERRORS as e:
                raise web.HTTPError(502, f"The cloud did not delete the VM: {str(e)[:200]}") from None
            return self.done(f"Deleting the orphan VM {vm_id}.")
        user = self.find_user(user_name)
        spawner = user.spawners[server_name]
        what = f"{user_name}'s server {server_name!r}" if server_name else f"{user_name}'s server"
        if owner.pending:
            raise web.HTTPError(409, f"{what} is busy ({owner.pending}); try again when that is done.")
        if owner.running:
            self.log.warning("Dashboard: %s %ss %s (VM %s)", operator, action, what, vm_id)
            spawner.stop_override = {STOP: "", SHELVE: "shelve", DELETE: "delete"}[action]
            future = asyncio.ensure_future(self.stop_single_user(user, server_name))
            try:  # long enough for most stops, but the page is not held for a slow cloud
                await asyncio.wait_for(asyncio.shield(future), 20)
            except TimeoutError:
                return self.done(f"Stopping {what}: the cloud is still at it.", status=202)
            except (CloudFailure, web.HTTPError) as e:
                raise web.HTTPError(502, f"Stopping {what} failed: {getattr(e, 'log_message', e)}") from None
            return self.done(f"Stopped {what}" + {STOP: ".", SHELVE: "; its VM is shelved.",
                                                   DELETE: "; its VM is deleted."}[action])
        if action != DELETE:
            raise web.HTTPError(409, f"{what} is already stopped (its VM is kept shelved); it can only be deleted.")
        self.log.warning("Dashboard: %s deletes the shelved VM %s of %s", operator, vm_id, what)
        try:
            await spawner.delete_forever()
        except (CloudFailure, *CLOUD_ERRORS) as e:
            raise web.HTTPError(502, f"Deleting the VM failed: {getattr(e, 'log_message', e)}") from None
        spawner.orm_spawner.state = spawner.get_state()
        self.db.commit()
        return self.done(f"Deleted the shelved VM of {what}.")

    def done(self, message: str, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish({"message": message})


class DashboardStatic(web.StaticFileHandler):
    """The page's script (public, like the hub's own static files)."""


handlers = [
    (r"/hepsdesk/dashboard/?", DashboardPage),
    (r"/hepsdesk/dashboard/state", DashboardState),
    (r"/hepsdesk/dashboard/actions", DashboardAction),
    (r"/hepsdesk/dashboard/static/(.*)", DashboardStatic, {"path": str(STATIC)}),
]
