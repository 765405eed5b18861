"""Sign-in for hepsdesk: the facility's OIDC single sign-on bridged to AD/LDAP computing accounts.

``HEPSAuthenticator`` is imported on first use (``hepsdesk_auth.HEPSAuthenticator``, the
``jupyterhub.authenticators`` entry point), so importing one module of the package does not
import them all.
"""

__all__ = ["HEPSAuthenticator"]


def __getattr__(name: str):
    if name == "HEPSAuthenticator":
        from .authenticator import HEPSAuthenticator

        return HEPSAuthenticator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
