"""The share rule, step by step in time: quotas by weight, a newcomer queued for the next free
slot, free slots to whoever asks, a lost driver's slots freed and its weight kept."""
from __future__ import annotations

from searcher.tune.shares import GONE_S, WANTING_S, Shares


def _fill(shares: Shares, search: str, held: int, now: float) -> int:
    """Ask until refused; the slots held then."""
    while shares.ask(search, held, now):
        held += 1
    return held


def test_one_search_alone_takes_every_slot():
    shares = Shares()
    shares.join("a", 1.0, 4, "ann", 0.0)
    assert _fill(shares, "a", 0, 0.0) == 4


def test_a_newcomer_gets_its_share_as_slots_free_and_nothing_is_taken_back():
    shares = Shares()
    shares.join("a", 1.0, 4, "ann", 0.0)
    assert _fill(shares, "a", 0, 0.0) == 4
    shares.join("b", 1.0, 4, "bob", 1.0)
    # b is under its quota of 2: granted twice though all 4 slots are taken (its trials wait
    # for the next that frees); a keeps its 4 running
    assert _fill(shares, "b", 0, 1.0) == 2
    assert shares.view(1.0)["a"]["held"] == 4
    # a's trials end one by one; a asks again each time and is refused while over its quota
    assert not shares.ask("a", 3, 2.0)
    assert not shares.ask("a", 2, 3.0)
    assert shares.ask("a", 1, 4.0)  # under its quota again
    assert shares.quotas(4.0) == {"a": 2, "b": 2}


def test_weights_set_the_shares():
    shares = Shares()
    for name, weight in (("a", 1.0), ("b", 1.0), ("p", 2.0)):
        shares.join(name, weight, 4, name, 0.0)
        shares.ask(name, 0, 0.0)
    assert shares.quotas(0.0) == {"a": 1, "b": 1, "p": 2}
    shares.join("q", 1.0, 8, "q", 0.0)  # a search whose trials fit 8 at once: 8 slots in all
    shares.ask("q", 0, 0.0)
    assert shares.quotas(0.0) == {"a": 1, "b": 1, "p": 3, "q": 1}


def test_slots_no_one_waits_for_go_to_whoever_asks():
    shares = Shares()
    shares.join("a", 1.0, 4, "ann", 0.0)
    shares.join("b", 1.0, 4, "bob", 0.0)
    assert _fill(shares, "b", 0, 0.0) == 4  # a has not asked: it wants nothing
    # ... until it asks: then it is under its quota, and b, over it, is refused once a frees
    assert shares.ask("a", 0, 1.0)
    assert not shares.ask("b", 3, 2.0)
    # a search that stopped asking (its trials all proposed) stops counting
    later = 1.0 + WANTING_S + 1
    assert shares.ask("b", 3, later) and shares.quotas(later)["b"] == 4


def test_a_search_at_its_own_limit_still_counts_as_wanting():
    """Tune asks a search's searcher nothing while it runs its maximum: it still wants its share."""
    shares = Shares()
    shares.join("a", 1.0, 2, "ann", 0.0)
    _fill(shares, "a", 0, 0.0)
    shares.join("b", 1.0, 2, "bob", WANTING_S + 5)
    assert shares.ask("b", 0, WANTING_S + 5)
    assert shares.quotas(WANTING_S + 5) == {"a": 1, "b": 1}


def test_a_lost_driver_frees_its_slots_and_a_resumed_one_keeps_its_weight():
    shares = Shares()
    shares.join("a", 3.0, 4, "ann", 0.0)
    shares.join("b", 1.0, 4, "bob", 0.0)
    assert _fill(shares, "a", 0, 0.0) == 4
    shares.beat("b", 0, GONE_S + 1)  # a's driver went silent
    assert "a" not in shares.quotas(GONE_S + 1)
    assert _fill(shares, "b", 0, GONE_S + 1) == 4
    assert shares.ask("a", 0, GONE_S + 2)  # resumed: known again, with its weight
    assert shares.quotas(GONE_S + 2) == {"a": 3, "b": 1}


def test_the_timeline_records_each_change_of_who_holds_what():
    shares = Shares()
    shares.join("a", 1.0, 2, "ann", 0.0)
    shares.ask("a", 0, 1.0)
    shares.ask("a", 1, 2.0)
    shares.leave("a", 3.0)
    assert [held for _, held in shares.timeline] == [{"a": 0}, {"a": 1}, {}]
