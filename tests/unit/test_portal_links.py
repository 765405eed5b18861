"""Token mode's one-time links (hepsdesk_auth/token_login.py): good once, for a short time,
kept hashed, and bounded in number."""

from __future__ import annotations

import time

import pytest
from tornado import web

from hepsdesk_auth.token_login import PortalLinks


def test_a_link_opens_once_for_its_person_and_only_its_hash_is_kept():
    links = PortalLinks()
    secret = links.make("alice")
    assert len(secret) >= 40 and secret not in repr(links._waiting)
    assert links.take("not-" + secret) is None
    assert links.take(secret) == "alice"
    assert links.take(secret) is None, "used once"


def test_a_link_expires():
    links = PortalLinks()
    links.lifetime = 0.2
    secret = links.make("alice")
    time.sleep(0.3)
    assert links.take(secret) is None


def test_no_more_than_most_links_wait_and_expired_ones_make_room():
    links = PortalLinks()
    links.most, links.lifetime = 3, 0.2
    for _ in range(3):
        links.make("alice")
    with pytest.raises(web.HTTPError) as refused:
        links.make("alice")
    assert refused.value.status_code == 429
    time.sleep(0.3)
    assert links.take(links.make("bob")) == "bob"
