# JupyterHub configuration for the login benchmark's baseline: hub_with_lag_probe.py (the
# repository's configuration and the loop-lag probe), with oauthenticator's plain
# GenericOAuthenticator instead of HEPSAuthenticator: the same SSO, the same scopes and groups,
# no directory.
import os
from pathlib import Path

_probe_config = Path(__file__).with_name("hub_with_lag_probe.py")
exec(compile(_probe_config.read_text(), str(_probe_config), "exec"),  # noqa: S102
     {"get_config": get_config, "load_subconfig": load_subconfig, "__file__": str(_probe_config)})  # noqa: F821

c = get_config()  # noqa: F821
_issuer = os.environ["HEPSDESK_OIDC_ISSUER"]
c.JupyterHub.authenticator_class = "generic-oauth"
c.GenericOAuthenticator.client_id = c.HEPSAuthenticator.client_id
c.GenericOAuthenticator.oauth_callback_url = c.HEPSAuthenticator.oauth_callback_url
c.GenericOAuthenticator.authorize_url = f"{_issuer}/auth"
c.GenericOAuthenticator.token_url = f"{_issuer}/token"
c.GenericOAuthenticator.userdata_url = f"{_issuer}/me"
c.GenericOAuthenticator.scope = ["openid", "profile", "email", "groups", "proposals"]
c.GenericOAuthenticator.username_claim = "preferred_username"
c.GenericOAuthenticator.login_service = "facility SSO"
c.GenericOAuthenticator.allowed_groups = c.HEPSAuthenticator.allowed_groups
c.GenericOAuthenticator.admin_groups = c.HEPSAuthenticator.admin_groups
c.GenericOAuthenticator.manage_groups = True
c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"
c.GenericOAuthenticator.enable_auth_state = True
