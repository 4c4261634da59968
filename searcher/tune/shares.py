"""Weighted fair shares of a cluster's trial slots between the searches that run on it.

The rule every search's driver is held to before it proposes a trial (searcher.tune.sharing asks
it on the cluster's one coordination point):
- a search's quota is its weight's part of the cluster's slots, counted among the searches that
  want slots now (at least one slot each): two equal searches on 4 slots hold 2 and 2, a third
  of twice the weight makes that 1, 1 and 2;
- a search under its quota is granted a slot even when every slot is taken: its trial waits for
  the next slot that frees, which the searches over their quota are no longer granted. Nothing
  running is stopped for it: shares move as trials end;
- a search at or over its quota is granted a slot only while one is free and no other search
  that wants slots is under its quota: a slot no one else waits for goes to whoever can use it.

A search wants slots while it keeps asking, or while it holds all the slots its own limit allows
(it would ask if it could). A driver that stops beating is gone (killed, its node lost): its
slots are free and it counts for nothing, until a resumed driver beats again with the same
weight, and so the same share. Slots are counted in trials, whatever a trial takes.
Plain Python, no Ray: the actor that holds it is in searcher.tune.sharing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

WANTING_S = 10.0  # a search that asked this recently still wants slots
GONE_S = 30.0  # a driver that has not beaten for this long is gone
TIMELINE_KEPT = 2000  # the last changes of who holds what, for `searcher status` and tests


@dataclass
class Member:
    weight: float
    slots: int  # the most trials the search keeps in flight (what the cluster holds for it)
    submitter: str = ""
    held: int = 0  # trials proposed and not ended: running, or waiting for a slot
    asked: float = -math.inf  # when it last asked for a slot
    beat: float = -math.inf  # when its driver was last heard
    granted: int = 0  # slots granted over its life
    refused: int = 0


@dataclass
class Shares:
    members: dict[str, Member] = field(default_factory=dict)
    timeline: list[tuple[float, dict[str, int]]] = field(default_factory=list)

    def join(self, search: str, weight: float, slots: int, submitter: str, now: float) -> None:
        """A search's driver starts (or a resumed one comes back: its record is kept)."""
        member = self.members.setdefault(search, Member(weight, slots, submitter))
        member.weight, member.slots, member.submitter = weight, max(1, slots), submitter
        member.beat = now
        self._note(now)

    def leave(self, search: str, now: float) -> None:
        """The search ended: it holds nothing and wants nothing."""
        if self.members.pop(search, None) is not None:
            self._note(now)

    def beat(self, search: str, held: int, now: float) -> None:
        member = self.members.get(search)
        if member is not None:
            member.beat = now
            self._hold(member, held, now)

    def ask(self, search: str, held: int, now: float) -> bool:
        """Whether `search`, holding `held` slots, may propose one more trial now."""
        member = self.members[search]
        member.asked = member.beat = now
        self._hold(member, held, now)
        quotas = self.quotas(now)
        live = self._live(now)
        capacity = max(m.slots for m in live.values())
        if member.held < quotas[search]:
            ok = True
        elif sum(m.held for m in live.values()) >= capacity:
            ok = False
        else:
            ok = not any(t != search and t in quotas and live[t].held < quotas[t]
                         and self._wants(live[t], now) for t in live)
        if ok:
            member.granted += 1
        else:
            member.refused += 1
        return ok

    def quotas(self, now: float) -> dict[str, int]:
        """Each live search's quota: its weight's part of the slots, among those that want."""
        live = self._live(now)
        if not live:
            return {}
        capacity = max(m.slots for m in live.values())
        wanting = {s: m for s, m in live.items() if self._wants(m, now)}
        total = sum(m.weight for m in wanting.values())
        return {s: (max(1, math.floor(capacity * m.weight / total + 1e-9)) if s in wanting
                    else m.held) for s, m in live.items()}

    def view(self, now: float) -> dict[str, dict]:
        """Each search: weight, its slots, those held, quota, whether it wants more and is live."""
        quotas, live = self.quotas(now), self._live(now)
        return {s: {"weight": m.weight, "slots": m.slots, "held": m.held if s in live else 0,
                    "quota": quotas.get(s, 0), "wants": s in live and self._wants(m, now),
                    "live": s in live, "submitter": m.submitter, "granted": m.granted,
                    "refused": m.refused}
                for s, m in self.members.items()}

    # -------------------------------------------------------------------------------- inside

    def _live(self, now: float) -> dict[str, Member]:
        return {s: m for s, m in self.members.items() if now - m.beat < GONE_S}

    @staticmethod
    def _wants(member: Member, now: float) -> bool:
        return now - member.asked < WANTING_S or member.held >= member.slots

    def _hold(self, member: Member, held: int, now: float) -> None:
        if member.held != held:
            member.held = held
            self._note(now)

    def _note(self, now: float) -> None:
        held = {s: m.held for s, m in self._live(now).items()}
        if not self.timeline or self.timeline[-1][1] != held:
            self.timeline.append((now, held))
            del self.timeline[:-TIMELINE_KEPT]
