"""Historical-data pacing: the limiter fed timestamps, checked against IB's three rules."""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.ingestion.pacing_rules import pacing_violations
from trading.broker.pacing import PacingGate, PacingLimiter, PacingRules

IB_RULES = PacingRules()


def violations(log, rules=IB_RULES):
    return pacing_violations(
        log, rules.identical_window_s, rules.burst_limit, rules.burst_window_s,
        rules.window_limit, rules.window_s,
    )  # fmt: skip


def simulate(keys, rules=IB_RULES):
    """Send each key as early as the limiter allows; return the (time, key) log."""
    limiter = PacingLimiter(rules)
    now = 0.0
    log = []
    for key in keys:
        now += limiter.wait_s(key, now)
        assert limiter.wait_s(key, now) == 0.0
        limiter.record(key, now)
        log.append((now, key))
    return log


def test_identical_request_waits_fifteen_seconds():
    limiter = PacingLimiter()
    limiter.record("TLT 1 min", 100.0)
    assert limiter.wait_s("TLT 1 min", 100.0) == 15.0
    assert limiter.wait_s("TLT 1 min", 110.0) == 5.0
    assert limiter.wait_s("TLT 1 min", 115.0) == 0.0
    assert limiter.wait_s("TLTW 1 min", 100.0) == 0.0


def test_sixth_request_within_two_seconds_waits_for_the_first_to_leave_the_window():
    limiter = PacingLimiter()
    for i in range(5):
        limiter.record(f"k{i}", 10.0 + 0.1 * i)
    assert limiter.wait_s("k5", 10.5) == pytest.approx(1.5)  # first at 10.0 leaves at 12.0


def test_sixty_first_request_in_ten_minutes_waits():
    rules = PacingRules(burst_limit=100)
    limiter = PacingLimiter(rules)
    for i in range(60):
        limiter.record(f"k{i}", float(i))
    assert limiter.wait_s("k60", 60.0) == pytest.approx(600.0 - 60.0)


def test_backfill_of_many_instruments_never_breaks_a_rule_and_goes_as_fast_as_allowed():
    keys = [f"opt{i}" for i in range(70)]
    log = simulate(keys)
    assert violations(log) == []
    # 5 per 2 s: request 5k goes at 2k seconds; the 61st must wait for the 10-minute window.
    assert log[5][0] == pytest.approx(2.0)
    assert log[59][0] == pytest.approx(22.0)
    assert log[60][0] == pytest.approx(600.0)


def test_random_request_mix_with_repeats_never_breaks_a_rule():
    rng = random.Random(3)
    keys = [f"k{rng.randrange(8)}" for _ in range(150)]
    assert violations(simulate(keys)) == []


def test_rules_refuse_nonsense():
    with pytest.raises(ValueError, match="burst_limit"):
        PacingRules(burst_limit=0)
    with pytest.raises(ValueError, match="window_s"):
        PacingRules(window_s=-1.0)
    limiter = PacingLimiter()
    limiter.record("a", 5.0)
    with pytest.raises(ValueError, match="now"):
        limiter.record("b", 4.0)


async def test_gate_lets_requests_through_in_order_at_the_paced_times():
    rules = PacingRules(identical_window_s=0.3, burst_limit=2, burst_window_s=0.2)
    loop = asyncio.get_running_loop()
    gate = PacingGate(rules, clock=loop.time)
    sent = []

    async def request(key):
        await gate.acquire(key)
        sent.append((loop.time(), key))

    await asyncio.gather(*(request(k) for k in ["a", "b", "c", "a"]))
    assert [k for _, k in sent] == ["a", "b", "c", "a"]
    assert violations(sent, rules) == []
    assert sent[-1][0] - sent[0][0] >= 0.3 - 1e-3
