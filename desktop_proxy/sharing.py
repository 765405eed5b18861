"""Who is on the desktop: its owner's pages and the people it is shared with, and who may type.

The owner's pages come through the owner's own Jupyter server (``/ws``). Everyone else comes
through the hub's relay (``hepsdesk_share``), which signs them in with the hub, checks that the
owner shared the desktop with them, and opens ``/share/ws`` with the owner's credentials; its
first message names the person (``{"type": "viewer", "name", "role", "share"}``). A viewer gets
the picture and nothing else: no clipboard, no files, no sound, no control API, and input only
while the owner has handed them control.

- **Roles**: ``owner`` (always may type), ``viewer`` (sees; types only with control),
  ``support`` (an administrator or the desktop-support role, who joined without an invitation:
  they wait until the owner accepts, and are refused after ``ADMIT_TIMEOUT`` unanswered).
- **Control**: at most one participant besides the owner has it. The owner gives it (a button)
  and takes it back (a button, or Ctrl+Alt+Shift+T on their page); a viewer may ask for it, and
  the request shows on the owner's pages. Taking it back releases every key and button the
  viewer held.
- **Presence**: every page gets the list of participants (names, roles, who has control) at
  each change, and a notice of who joined and left.

Every participant's page gets ``{"type": "participants", "you": id, "control": id | null,
"participants": [{"id", "name", "role", "waiting", "asking"}]}``; notices are
``{"type": "notice", "text"}``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("desktop_proxy")

ROLES = ("owner", "viewer", "support")
ADMIT_TIMEOUT = 60.0  # seconds the owner has to accept someone who joined without an invitation
MAX_PARTICIPANTS = 32


class SharingError(Exception):
    """What a participant asked for cannot be done; the message says why, for them."""


@dataclass(eq=False)
class Participant:
    """One page on the desktop. ``send`` gives it a message; ``disconnect`` closes its
    connection for good with a reason it shows."""

    name: str
    role: str
    send: Callable[[dict], None]
    disconnect: Callable[[str], None] = lambda reason: None
    admitted: Callable[[], object] = lambda: None  # the owner let a waiting guest in (may be a coroutine)
    share: str = ""  # the hub's share that let a viewer in
    id: str = field(default_factory=lambda: secrets.token_hex(4))
    waiting: bool = False  # support: until the owner accepts
    asking: bool = False  # asks for control
    joined_at: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "role": self.role, "waiting": self.waiting, "asking": self.asking}


class Sharing:
    """The participants of one desktop. ``on_control_lost`` is called when a viewer loses
    control (its held keys must be released); ``on_leave`` when a participant is gone (its
    peer connection must close)."""

    def __init__(self, on_control_lost: Callable[[], None] = lambda: None,
                 on_leave: Callable[[Participant], object] = lambda participant: None):
        self.participants: dict[str, Participant] = {}
        self.control: str | None = None  # the viewer with control (the owner always has it)
        self.on_control_lost = on_control_lost
        self.on_leave = on_leave
        self._admit_timers: dict[str, asyncio.TimerHandle] = {}

    # -- who is here -------------------------------------------------------------------------

    def join(self, participant: Participant) -> None:
        """A page arrives; SharingError when the desktop is full."""
        if participant.role not in ROLES:
            raise SharingError(f"unknown role {participant.role!r}")
        if len(self.participants) >= MAX_PARTICIPANTS:
            raise SharingError(f"this desktop already has {MAX_PARTICIPANTS} participants")
        self.participants[participant.id] = participant
        if participant.role == "support":
            participant.waiting = True
            self._admit_timers[participant.id] = asyncio.get_running_loop().call_later(
                ADMIT_TIMEOUT, self._unanswered, participant.id)
            self._tell_owners({"type": "notice", "text": f"{participant.name} (support) asks to join your desktop"})
            log.info("sharing: %s (support) asks to join", participant.name)
        elif participant.role == "viewer":
            self._announce(f"{participant.name} joined")
            log.info("sharing: %s joined (share %s)", participant.name, participant.share or "-")
        self.update()

    def leave(self, participant: Participant) -> None:
        """A page is gone (closed, removed, revoked)."""
        if self.participants.pop(participant.id, None) is None:
            return
        timer = self._admit_timers.pop(participant.id, None)
        if timer is not None:
            timer.cancel()
        if self.control == participant.id:
            self.control = None
            self.on_control_lost()
        self.on_leave(participant)
        if participant.role != "owner" and not participant.waiting:
            self._announce(f"{participant.name} left")
            log.info("sharing: %s left", participant.name)
        self.update()

    def viewers(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.role != "owner"]

    # -- what the owner decides --------------------------------------------------------------

    def admit(self, participant_id: str, accept: bool) -> Participant:
        """The owner accepts (or refuses) someone waiting to join."""
        participant = self._get(participant_id)
        if not participant.waiting:
            raise SharingError(f"{participant.name} is not waiting to join")
        timer = self._admit_timers.pop(participant.id, None)
        if timer is not None:
            timer.cancel()
        if not accept:
            log.info("sharing: the owner refused %s", participant.name)
            participant.disconnect("The owner did not let you join their desktop.")
            self.leave(participant)
            return participant
        participant.waiting = False
        started = participant.admitted()
        if asyncio.iscoroutine(started):
            asyncio.ensure_future(started)
        log.info("sharing: the owner let %s (support) join", participant.name)
        self._announce(f"{participant.name} joined")
        self.update()
        return participant

    def give(self, participant_id: str) -> Participant:
        """Hand control to one viewer (whoever had it loses it)."""
        participant = self._get(participant_id)
        if participant.role == "owner" or participant.waiting:
            raise SharingError(f"{participant.name} cannot be given control")
        if self.control not in (None, participant.id):
            self.on_control_lost()
        self.control = participant.id
        participant.asking = False
        log.info("sharing: control to %s", participant.name)
        self._announce(f"{participant.name} has control")
        self.update()
        return participant

    def take_back(self) -> None:
        if self.control is None:
            return
        holder = self.participants.get(self.control)
        self.control = None
        self.on_control_lost()
        log.info("sharing: control taken back")
        self._announce(f"control taken back from {holder.name}" if holder else "control taken back")
        self.update()

    def remove(self, participant_id: str) -> None:
        """The owner sends a viewer away (their share stays: the hub revokes shares)."""
        participant = self._get(participant_id)
        if participant.role == "owner":
            raise SharingError("the owner's own pages cannot be removed")
        participant.disconnect("The owner removed you from their desktop.")
        self.leave(participant)

    def end(self) -> int:
        """The owner ends sharing: every viewer is disconnected; how many were."""
        viewers = self.viewers()
        for participant in viewers:
            participant.disconnect("The owner ended the sharing of their desktop.")
            self.leave(participant)
        return len(viewers)

    # -- what a viewer asks ------------------------------------------------------------------

    def ask_control(self, participant: Participant) -> None:
        if participant.role == "owner" or participant.waiting or self.control == participant.id:
            return
        participant.asking = True
        self._tell_owners({"type": "notice", "text": f"{participant.name} asks for control"})
        self.update()

    def may_type(self, participant: Participant | None) -> bool:
        """Whether input from this participant's data channel reaches the desktop."""
        return participant is None or participant.role == "owner" or self.control == participant.id

    def may_see(self, participant: Participant) -> bool:
        return not participant.waiting

    # -- telling the pages -------------------------------------------------------------------

    def update(self) -> None:
        """Give every page the list of participants."""
        roster = [p.as_dict() for p in sorted(self.participants.values(), key=lambda p: p.joined_at)]
        for participant in list(self.participants.values()):
            if participant.waiting:
                continue  # someone not yet let in sees nobody
            self._send(participant, {"type": "participants", "you": participant.id, "control": self.control,
                                     "participants": roster})

    def stats(self) -> dict:
        return {"participants": len(self.participants), "viewers": len(self.viewers()),
                "control": self.participants[self.control].name if self.control in self.participants else None}

    def _get(self, participant_id: str) -> Participant:
        participant = self.participants.get(participant_id)
        if participant is None:
            raise SharingError("that participant has left")
        return participant

    def _unanswered(self, participant_id: str) -> None:
        participant = self.participants.get(participant_id)
        if participant is not None and participant.waiting:
            self._admit_timers.pop(participant_id, None)
            log.info("sharing: %s was not let in within %.0f s", participant.name, ADMIT_TIMEOUT)
            participant.disconnect("The owner did not answer within a minute; ask them again.")
            self.leave(participant)

    def _announce(self, text: str) -> None:
        for participant in list(self.participants.values()):
            if not participant.waiting:
                self._send(participant, {"type": "notice", "text": text})

    def _tell_owners(self, message: dict) -> None:
        for participant in list(self.participants.values()):
            if participant.role == "owner":
                self._send(participant, message)

    @staticmethod
    def _send(participant: Participant, message: dict) -> None:
        try:
            participant.send(message)
        except Exception:
            log.exception("could not tell %s", participant.name)
