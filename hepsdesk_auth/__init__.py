"""Sign-in for hepsdesk: the facility's OIDC single sign-on (and, later, AD/LDAP accounts)."""

from .authenticator import HEPSAuthenticator

__all__ = ["HEPSAuthenticator"]
