"""The project's one interval and its one sequential decision rule (numpy only).

Every 95 % interval advmeta prints — a summary row's ``acc_ci95``, a claim's ``ci95``, a masking
check's, a learning curve's band, the ε calibration's — is :func:`mean_ci95`: the sample mean
± ``t · s / √n`` with the Student-t quantile of ``n − 1`` degrees of freedom. At the 20 episodes of
a quick white-box cell the normal 1.96 would be 7 % too narrow (t = 2.093); at 3 seeds 2.2× too
narrow (t = 4.303).

A claim that may look at its data more than once (:class:`SequentialRule`) spends its error
budget over the planned looks (Bonferroni): with ``K`` looks each look uses the two-sided
``1 − α/K`` interval, so the chance that *any* look wrongly decides is at most α, however the
looks are correlated. Conservative but valid for any stopping rule — the price is a wider
interval at each look (K = 4: t ≈ 2.50 instead of 1.96 at large n). docs: docs/verdicts.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

LEVEL = 0.95
"""The confidence level of every interval advmeta reports."""


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


@lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (``df`` ≥ 1, 0 < p < 1)."""
    if not 0.0 < p < 1.0 or not df >= 1:
        return math.nan
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):  # bisection to machine precision: monotone, no derivative needed
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def half_width(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> float:
    """Half-width of the two-sided ``level`` Student-t interval of the mean of ``values``
    (NaN for fewer than two values)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size < 2:
        return math.nan
    sd = float(arr.std(ddof=1))
    return t_quantile(0.5 + level / 2.0, arr.size - 1) * sd / math.sqrt(arr.size)


def mean_ci95(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and 95 % interval half-width (Student t, ``n − 1`` degrees of freedom) of ``values``.

    NaN half-width for one value, NaN both for none.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), half_width(arr)


def proportion_ci95(percent: float, n: int) -> float:
    """:func:`mean_ci95`'s half-width for ``n`` values of 0 or 100 whose mean is ``percent``
    (an accuracy over ``n`` independent test images), in closed form."""
    if n < 2:
        return math.nan
    q = percent / 100.0
    sd = math.sqrt(max(q * (1.0 - q), 0.0) * n / (n - 1))
    return 100.0 * t_quantile(0.5 + LEVEL / 2.0, n - 1) * sd / math.sqrt(n)


OPS = (">=", ">", "<=", "<")


def verdict(value: float | None, ci: float | None, op: str, threshold: float) -> str:
    """``holds`` when all of ``value ± ci`` satisfies ``op threshold``, ``fails`` when none of it
    does, else ``inconclusive`` (also for a missing value or interval)."""
    if value is None or ci is None or math.isnan(value) or math.isnan(ci):
        return "inconclusive"
    lo, hi = value - ci, value + ci
    ok, bad = {">=": (lo >= threshold, hi < threshold), ">": (lo > threshold, hi <= threshold),
               "<=": (hi <= threshold, lo > threshold), "<": (hi < threshold, lo >= threshold)}[op]
    return "holds" if ok else "fails" if bad else "inconclusive"


@dataclass(frozen=True)
class SequentialRule:
    """Decide a paired claim from blocks of episodes, looking after each block.

    Attributes:
        looks: the planned number of looks (the first evaluation and each added block). The
            error budget ``alpha`` is spread evenly over them (Bonferroni): each look's interval
            is the two-sided ``1 − alpha/looks`` Student-t interval of the mean paired difference.
        alpha: the error budget of the whole sequence (5 %: a claim whose true value sits on
            its threshold is declared decided in its favour at most 2.5 % of the time, and
            decided either way at most 5 %).
    """

    looks: int = 1
    alpha: float = 1.0 - LEVEL

    @property
    def level(self) -> float:
        """The confidence level of each look's interval."""
        return 1.0 - self.alpha / self.looks

    def interval(self, diffs: Sequence[float] | np.ndarray) -> tuple[float, float]:
        """Mean and half-width of the paired differences at one look."""
        arr = np.asarray(diffs, dtype=np.float64)
        if arr.size == 0:
            return math.nan, math.nan
        return float(arr.mean()), half_width(arr, self.level)

    def decide(self, diffs: Sequence[float] | np.ndarray, op: str, threshold: float) -> tuple[str, float, float]:
        """``(verdict, mean, half-width)`` of one look."""
        mean, ci = self.interval(diffs)
        return verdict(mean, ci, op, threshold), mean, ci
