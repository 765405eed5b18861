"""Who may type on a shared desktop (desktop_proxy.sharing) and the hub's share book
(hepsdesk_share.book): the rules, without a network."""

from __future__ import annotations

import asyncio
import time

import pytest

from desktop_proxy import sharing
from desktop_proxy.messages import SHARE_HELLO, SHARE_SIGNALLING, SIGNALLING, Rejected
from desktop_proxy.sharing import Participant, Sharing, SharingError
from hepsdesk_share.book import ShareBook, ShareError


class Page:
    def __init__(self, name: str, role: str):
        self.messages: list[dict] = []
        self.reason = None
        self.participant = Participant(name, role, self.messages.append, self._disconnect)

    def _disconnect(self, reason: str) -> None:
        self.reason = reason

    def last(self, kind: str) -> dict:
        return [m for m in self.messages if m["type"] == kind][-1]


async def test_a_viewer_types_only_while_it_has_control_and_its_keys_are_released_after():
    released = []
    desk = Sharing(on_control_lost=lambda: released.append(1))
    owner, bob, eve = Page("alice", "owner"), Page("bob", "viewer"), Page("eve", "viewer")
    for page in (owner, bob, eve):
        desk.join(page.participant)
    assert desk.may_type(owner.participant) and not desk.may_type(bob.participant)
    assert [p["name"] for p in owner.last("participants")["participants"]] == ["alice", "bob", "eve"]
    assert {"type": "notice", "text": "bob joined"} in owner.messages

    desk.ask_control(bob.participant)
    assert {"type": "notice", "text": "bob asks for control"} in owner.messages
    assert {"type": "notice", "text": "bob asks for control"} not in eve.messages  # only the owner is asked
    desk.give(bob.participant.id)
    assert desk.may_type(bob.participant) and not desk.may_type(eve.participant)
    assert bob.last("participants")["control"] == bob.participant.id
    desk.give(eve.participant.id)  # to someone else: bob loses it, his keys are let go
    assert not desk.may_type(bob.participant) and released == [1]
    desk.take_back()
    assert not desk.may_type(eve.participant) and released == [1, 1]
    assert desk.may_type(owner.participant)
    with pytest.raises(SharingError):
        desk.give(owner.participant.id)

    desk.give(bob.participant.id)
    desk.leave(bob.participant)  # leaving with control gives it back
    assert desk.control is None and released == [1, 1, 1]
    assert {"type": "notice", "text": "bob left"} in eve.messages
    assert desk.end() == 1 and eve.reason == "The owner ended the sharing of their desktop."
    assert list(desk.participants) == [owner.participant.id]


async def test_support_waits_for_the_owner_and_is_refused_when_unanswered(monkeypatch):
    monkeypatch.setattr(sharing, "ADMIT_TIMEOUT", 0.2)
    desk = Sharing()
    owner, helper, late = Page("alice", "owner"), Page("helpdesk", "support"), Page("admin", "support")
    desk.join(owner.participant)
    admitted = []
    helper.participant.admitted = lambda: admitted.append(True)
    desk.join(helper.participant)
    desk.join(late.participant)
    assert helper.participant.waiting and not desk.may_see(helper.participant)
    assert not helper.messages  # who is on the desktop is not shown to someone not let in
    assert {"type": "notice", "text": "helpdesk (support) asks to join your desktop"} in owner.messages
    with pytest.raises(SharingError):
        desk.give(helper.participant.id)
    desk.admit(helper.participant.id, True)
    assert admitted == [True] and desk.may_see(helper.participant)
    await asyncio.sleep(0.4)
    assert late.reason == "The owner did not answer within a minute; ask them again."
    assert late.participant.id not in desk.participants and helper.participant.id in desk.participants


def test_what_a_guest_and_the_relay_may_say():
    assert SHARE_HELLO.parse('{"type": "viewer", "name": "bob", "role": "viewer", "share": "x"}')["name"] == "bob"
    for message in ('{"type": "resize", "width": 10, "height": 10, "scale": 1}',  # the owner's size is not theirs
                    '{"type": "give-control", "id": "x"}', '{"type": "preset", "name": "auto"}',
                    '{"type": "viewer", "name": "alice", "role": "owner", "share": ""}'):
        with pytest.raises(Rejected):
            SHARE_SIGNALLING.parse(message)
    assert SIGNALLING.parse('{"type": "admit", "id": "ab12", "accept": false}')["accept"] is False


def test_a_link_works_once_for_one_person_and_one_desktop():
    book = ShareBook()
    share, key = book.add("alice", "", "link", "", ttl=60)
    assert key and share.key_hash and key not in repr(share.as_dict())
    with pytest.raises(ShareError, match="for alice's desktop on server 'gpu'|not this one"):
        book.use_link("alice", "gpu", key, "dave")
    assert book.use_link("alice", "", key, "dave") is share
    assert book.use_link("alice", "", key, "dave") is share  # dave again (a reload): still his
    with pytest.raises(ShareError, match="already used"):
        book.use_link("alice", "", key, "carol")
    with pytest.raises(ShareError, match="not valid"):
        book.use_link("alice", "", "guessed", "carol")
    assert book.grant("alice", "", "dave", set()) is share and book.grant("alice", "", "carol", set()) is None

    old, old_key = book.add("alice", "", "link", "", ttl=60)
    old.expires = time.time() - 1
    with pytest.raises(ShareError, match="expired"):
        book.use_link("alice", "", old_key, "dave")


def test_groups_renewal_and_revoke():
    book = ShareBook()
    group, _ = book.add("alice", "", "group", "heps-users", ttl=60)
    assert book.grant("alice", "", "dave", {"heps-users"}) is group
    assert book.grant("alice", "gpu", "dave", {"heps-users"}) is None  # another server of hers
    again, _ = book.add("alice", "", "group", "heps-users", ttl=3600)
    assert again is group and group.expires > time.time() + 3000
    book.revoke(group.id)
    assert book.grant("alice", "", "dave", {"heps-users"}) is None
    with pytest.raises(ShareError):
        book.revoke(group.id)
    expired, _ = book.add("alice", "", "user", "dave", ttl=60)
    expired.expires = time.time() - 1
    assert book.purge() == [expired] and not book.shares
