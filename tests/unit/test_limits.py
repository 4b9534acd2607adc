"""relay.core.limiter.sliding_log: the sliding log never lets limit + 1 hits into any window."""

from __future__ import annotations

import random

import pytest
from relay.core.limiter.sliding_log import Log, Rule

RULE = Rule(limit=3, window_s=2.0)


def _max_in_any_window(times: list[float], window_s: float) -> int:
    ordered, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] + window_s <= t:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_empty_log_is_free_now() -> None:
    log = Log()
    assert log.next_slot(RULE, 100.0) == 100.0
    assert log.free(RULE, 100.0) == 3
    assert log.slot_for(RULE, 100.0, 3) == 100.0


def test_full_window_waits_for_the_oldest_relevant_hit() -> None:
    log = Log(hits=[10.0, 10.5, 11.0])
    assert log.free(RULE, 11.0) == 0
    assert log.next_slot(RULE, 11.0) == 12.0  # 10.0 leaves the window at 12.0
    assert log.free(RULE, 12.0) == 1
    assert log.slot_for(RULE, 11.0, 2) == 12.5
    assert log.slot_for(RULE, 11.0, 3) == 13.0
    assert log.slot_for(RULE, 11.0, 10) == 13.0  # never more than the limit at once


def test_old_hits_do_not_count_and_are_dropped() -> None:
    log = Log(hits=[1.0, 2.0, 10.0])
    assert log.free(RULE, 10.5) == 2
    taken = log.with_hits(RULE, 10.5, 2)
    assert taken.hits == [10.0]
    assert taken.unsettled == [10.5, 10.5]


def test_blocked_until_holds_everything_back() -> None:
    log = Log(hits=[], blocked_until=50.0)
    assert log.free(RULE, 49.0) == 0
    assert log.next_slot(RULE, 49.0) == 50.0
    assert log.slot_for(RULE, 49.0, 3) == 50.0
    assert log.free(RULE, 50.0) == 3
    assert log.with_hits(RULE, 50.0).blocked_until == 50.0


def test_with_hits_keeps_the_version() -> None:
    assert Log(hits=[1.0], version=7).with_hits(RULE, 1.5).version == 7


@pytest.mark.parametrize("seed", range(20))
def test_taking_every_offered_slot_never_exceeds_the_limit(seed: int) -> None:
    rng = random.Random(seed)
    rule = Rule(limit=rng.randint(1, 5), window_s=rng.choice([0.5, 1.0, 2.0, 3.7]))
    log, now, taken = Log(), 0.0, []
    for _ in range(200):
        now += rng.choice([0.0, 0.01, 0.1, 0.5, 1.3])
        if rng.random() < 0.5:
            count = rng.randint(1, rule.limit + 2)
            at = log.slot_for(rule, now, count)
            n = min(count, rule.limit, log.free(rule, at))
        else:
            at = log.next_slot(rule, now)
            n = 1
        assert at >= now
        assert log.free(rule, at) >= n
        log = log.with_hits(rule, at, n).settled(at, [at] * n)
        taken += [at] * n
        now = at
    assert _max_in_any_window(taken, rule.window_s) <= rule.limit
    # The log is no slower than it has to be: the next slot is exactly when a window frees up.
    assert _max_in_any_window([*taken, log.next_slot(rule, now)], rule.window_s) <= rule.limit


def test_next_slot_is_tight() -> None:
    log = Log(hits=[0.0, 0.1, 0.2])
    slot = log.next_slot(RULE, 0.2)
    assert slot == 2.0
    assert log.free(RULE, slot - 1e-6) == 0


def test_an_unsettled_hit_holds_its_window_open_until_it_is_settled() -> None:
    # Claimed at 11.0; its request may reach the upstream any time until it is answered, so a
    # reader must not count it as having happened at 11.0 (that would free the slot at 13.0).
    rule = Rule(limit=1, window_s=2.0)
    log = Log().with_hits(rule, 11.0)
    assert log.free(rule, 13.5) == 0
    assert log.next_slot(rule, 13.5) == 15.5  # counted as "now" while unsettled
    answered = log.settled(11.0, [11.8])
    assert answered.unsettled == []
    assert answered.next_slot(rule, 13.5) == 13.8  # 11.8 + 2.0: the answer time bounds the arrival


def test_an_unsettled_hit_counts_no_later_than_its_bound() -> None:
    rule = Rule(limit=1, window_s=2.0, unsettled_max_s=5.0)
    log = Log().with_hits(rule, 100.0)  # its dispatcher died before settling
    assert log.next_slot(rule, 101.0) == 103.0
    assert log.next_slot(rule, 110.0) == 110.0  # 100 + 5 (bound) + 2 (window) has passed


def test_slots_taken_but_never_used_are_dropped_when_settling() -> None:
    rule = Rule(limit=3, window_s=2.0)
    log = Log().with_hits(rule, 11.0, 3).settled(11.0, [11.4], unused=2)
    assert log.unsettled == []
    assert log.hits == [11.4]
    assert log.free(rule, 11.5) == 2


def test_a_slot_claimed_ahead_keeps_what_other_readers_still_count() -> None:
    # Window 2 s, limit 3. Three sends answered at 0.0-0.2; at 0.5 a dispatcher claims a slot at
    # 2.3 (prepared ahead of its slot). Another reader at 1.0 must still see the window full.
    rule = Rule(3, 2.0)
    log = Log(hits=[0.0, 0.1, 0.2])
    claimed = log.with_hits(rule, 2.3, 1, now=0.5)
    assert claimed.free(rule, 1.0) == 0
    assert claimed.next_slot(rule, 1.0) >= 2.0
    # Without ``now`` the entries are dropped by the stamp: only right for a slot taken now.
    assert log.with_hits(rule, 2.3, 1).hits == []
