"""Rate limits: exactly the allowed burst passes, refill over (fake) time, per identity and
per target, clear retry message, bounded memory, thread safety."""

from __future__ import annotations

import threading

import pytest

from coral_lib.colony import ratelimit


@pytest.mark.parametrize("burst", [1, 5, 20])
def test_rate_limit_burst_exactly_the_allowed_number_pass(clock, burst: int) -> None:
    limiter = ratelimit.RateLimiter(per_identity=ratelimit.Rate(per_second=1.0, burst=burst),
                                    per_target=None, clock=clock)
    verdicts = [limiter.check("alice", f"agent-{i}") for i in range(burst + 3)]
    assert [v.allowed for v in verdicts] == [True] * burst + [False] * 3
    refused = verdicts[-1]
    assert refused.scope == "identity" and refused.key == "alice"
    assert refused.retry_after == pytest.approx(1.0)
    assert "rate limit for identity 'alice' exceeded; retry in 1.0s" == refused.reason


def test_refill_over_fake_time(clock) -> None:
    limiter = ratelimit.RateLimiter(per_identity=ratelimit.Rate(per_second=2.0, burst=4),
                                    per_target=None, clock=clock)
    assert all(limiter.check("a", "t").allowed for _ in range(4))
    assert not limiter.check("a", "t").allowed
    clock.advance(0.25)
    verdict = limiter.check("a", "t")
    assert not verdict.allowed and verdict.retry_after == pytest.approx(0.25)
    clock.advance(0.25)
    assert limiter.check("a", "t").allowed
    assert not limiter.check("a", "t").allowed
    clock.advance(100.0)  # refills only up to the burst
    assert [limiter.check("a", "t").allowed for _ in range(5)] == [True] * 4 + [False]


def test_per_target_limit_applies_across_identities(clock) -> None:
    limiter = ratelimit.RateLimiter(per_identity=None,
                                    per_target=ratelimit.Rate(per_second=0.5, burst=2),
                                    clock=clock)
    assert limiter.check("alice", "agent-1").allowed
    assert limiter.check("bob", "agent-1").allowed
    verdict = limiter.check("carol", "agent-1")
    assert (verdict.allowed, verdict.scope, verdict.key) == (False, "target", "agent-1")
    assert verdict.retry_after == pytest.approx(2.0)
    assert limiter.check("carol", "agent-2").allowed


def test_refused_call_costs_no_token_from_the_other_bucket(clock) -> None:
    limiter = ratelimit.RateLimiter(per_identity=ratelimit.Rate(per_second=1.0, burst=3),
                                    per_target=ratelimit.Rate(per_second=1.0, burst=1),
                                    clock=clock)
    assert limiter.check("alice", "busy").allowed
    for _ in range(5):
        assert limiter.check("alice", "busy").scope == "target"
    # alice still has two identity tokens left
    assert limiter.check("alice", "x").allowed and limiter.check("alice", "y").allowed
    assert limiter.check("alice", "z").scope == "identity"


def test_unlimited_when_no_rates(clock) -> None:
    limiter = ratelimit.RateLimiter(per_identity=None, per_target=None, clock=clock)
    assert all(limiter.check("a", "b").allowed for _ in range(1000))
    assert limiter.tracked() == 0


def test_memory_bounded_idle_buckets_are_evicted(clock) -> None:
    limiter = ratelimit.RateLimiter(per_identity=ratelimit.Rate(per_second=1.0, burst=2),
                                    per_target=ratelimit.Rate(per_second=1.0, burst=2),
                                    clock=clock, max_buckets=100)
    for i in range(5000):
        limiter.check(f"user-{i}", f"agent-{i}")
    assert limiter.tracked() <= 200
    clock.advance(10.0)  # everyone refilled: idle buckets go on the next call
    limiter.check("fresh", "fresh")
    assert limiter.tracked() == 2


def test_thread_safe_exact_count_under_contention(clock) -> None:
    limiter = ratelimit.RateLimiter(per_identity=ratelimit.Rate(per_second=1.0, burst=50),
                                    per_target=None, clock=clock)
    allowed: list[bool] = []

    def worker() -> None:
        for _ in range(40):
            allowed.append(limiter.check("alice", "t").allowed)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert allowed.count(True) == 50


@pytest.mark.parametrize("text, per_second, burst", [
    ("10/s", 10.0, 10), ("30/m", 0.5, 30), ("30/m, burst=5", 0.5, 5), ("3600/h", 1.0, 3600),
    ("0.5/s,burst=2", 0.5, 2),
])
def test_parse_rate(text, per_second, burst) -> None:
    assert ratelimit.parse_rate(text) == ratelimit.Rate(per_second=per_second, burst=burst)


@pytest.mark.parametrize("text", ["", "10", "10/d", "0/s", "5/m, burst=0", "fast"])
def test_parse_rate_rejects_bad_input_with_accepted_forms(text) -> None:
    with pytest.raises(ValueError, match="invalid rate"):
        ratelimit.parse_rate(text)
