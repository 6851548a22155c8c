"""The sequential rule of the claims (advmeta.stats.SequentialRule, tune/extend.py): looking again
until decided must not inflate the error rate.

1000 simulated claims whose true paired effect sits exactly on the threshold are looked at as the
sweep looks (a first block, then up to ``claim_looks − 1`` more blocks of as many episodes while
undecided). The rule may declare such a claim decided in its favour at most 5 % of the time (plus
simulation error); a 95 % interval at every look would not keep that bound over many looks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from advmeta.stats import SequentialRule, verdict
from advmeta.plan.budgets import get_budget

N = 1000
BOUND = 0.05 + 2 * math.sqrt(0.05 * 0.95 / N)  # 5 % plus two standard errors of the simulation


def simulate(rule: SequentialRule, looks: int, block: int, op: str, threshold: float, seed: int,
             naive: bool = False) -> tuple[float, float]:
    """Share of claims declared in their favour, and decided either way, over ``N`` simulations."""
    rng = np.random.default_rng(seed)
    favour = decided = 0
    for _ in range(N):
        # per-episode paired differences in points: accuracy differences of 75 queries are lumpy
        diffs = np.round(rng.normal(threshold, 12.0, size=looks * block) * 0.75) / 0.75
        for look in range(1, looks + 1):
            seen = diffs[: look * block]
            if naive:
                mean = float(seen.mean())
                ci = 1.96 * float(seen.std(ddof=1)) / math.sqrt(len(seen))
                v = verdict(mean, ci, op, threshold)
            else:
                v, _, _ = rule.decide(seen, op, threshold)
            if v != "inconclusive":
                favour += v == "holds"
                decided += 1
                break
    return favour / N, decided / N


@pytest.mark.parametrize("budget", ["quick", "paper"])
@pytest.mark.parametrize("op", [">=", "<="])
def test_a_claim_on_its_threshold_is_rarely_decided_in_its_favour(budget: str, op: str) -> None:
    looks = get_budget(budget).claim_looks
    block = {"quick": 20, "paper": 30}[budget]  # a first evaluation's white-box episodes (paper: scaled down)
    rule = SequentialRule(looks=looks)
    favour, decided = simulate(rule, looks, block, op, threshold=15.0, seed=looks * 7 + len(op))
    assert looks >= 2
    assert favour <= BOUND, f"{budget}: decided in its favour {favour:.1%} of the time"
    assert decided <= BOUND + 0.03, f"{budget}: decided either way {decided:.1%} of the time"


def test_a_95_percent_interval_at_every_look_would_inflate_the_error() -> None:
    """What the rule prevents: ten looks, each at 95 %, decide a null claim far more than 5 % of
    the time; the rule at the same looks does not."""
    naive = simulate(SequentialRule(looks=10), 10, 20, ">=", 0.0, seed=1, naive=True)[1]
    ruled = simulate(SequentialRule(looks=10), 10, 20, ">=", 0.0, seed=1)[1]
    assert naive > 0.10 and ruled <= BOUND, (naive, ruled)


def test_a_real_effect_is_still_decided() -> None:
    """Power: an effect 8 points past the threshold is decided in favour most of the time within the looks."""
    looks = get_budget("quick").claim_looks
    rng = np.random.default_rng(3)
    rule = SequentialRule(looks=looks)
    wins = 0
    for _ in range(200):
        diffs = rng.normal(23.0, 12.0, size=looks * 20)
        for look in range(1, looks + 1):
            v, _, _ = rule.decide(diffs[: look * 20], ">=", 15.0)
            if v != "inconclusive":
                wins += v == "holds"
                break
    assert wins / 200 > 0.8
