"""Calibrating ε where no paper fixes it (docs/protocols.md#epsilon-per-dataset): the smallest rung of a ladder at
which a trained MAML falls below a threshold under white-box PGD on validation episodes.

The papers' ε belong to their datasets (mini-ImageNet, CIFAR-FS, FC100). On Omniglot, the
built-in glyphs or a user's dataset a fixed ε answers nothing: at 2/255 an Omniglot MAML does
not move (measured 75.9 / 57.2 / 21.2 / 0.2 % under PGD-20 at 8 / 16 / 32 / 64 /255). The rule
used throughout: ε* = the smallest ε of :data:`LADDER` at which MAML's PGD-20 accuracy (step
size ``auto``: max(2/255, ε/4)) is below :data:`THRESHOLD` %; every adversarial method then
trains at ε* and every table is evaluated there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advmeta.eps import Epsilon, format_eps, parse_eps
from advmeta.errors import ConfigError

LADDER: tuple[str, ...] = ("2/255", "4/255", "8/255", "16/255", "32/255", "64/255")
THRESHOLD = 40.0


@dataclass(frozen=True)
class CalibrationPoint:
    """MAML's accuracy at one rung: clean and under PGD, mean ± 95% CI over validation episodes."""

    eps: str
    acc: float
    acc_ci95: float
    clean_acc: float


class _CurveRecord:
    """``to_dict`` of the calibration records: the dataclass as JSON-able dicts, the curve a list."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what the sweep records in ``calibration.json``)."""
        out = asdict(self)  # type: ignore[call-overload]
        out["curve"] = list(out["curve"])
        return dict(out)


@dataclass(frozen=True)
class Calibration(_CurveRecord):
    """The outcome of :func:`calibrate`.

    Attributes:
        eps: the chosen ε (``k/255``): the first rung below the threshold, else the last rung.
        below: whether any rung fell below the threshold (``False``: the ladder's top was used).
        curve: the rungs evaluated, in ladder order (evaluation stops at the chosen rung).
        threshold: the accuracy threshold (%).
        attack: the attack and its settings.
        n_episodes: validation episodes per rung.
        split: the split of the episodes (``val``).
    """

    eps: str
    below: bool
    curve: tuple[CalibrationPoint, ...]
    threshold: float
    attack: dict[str, Any] = field(default_factory=dict)
    n_episodes: int = 0
    split: str = "val"


    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`."""
        curve = tuple(CalibrationPoint(**p) for p in data["curve"])
        return cls(str(data["eps"]), bool(data["below"]), curve, float(data["threshold"]),
                   dict(data.get("attack", {})), int(data.get("n_episodes", 0)), str(data.get("split", "val")))


def check_ladder(ladder: Sequence[str]) -> tuple[str, ...]:
    """The ladder as ``k/255`` strings in increasing order.

    Raises:
        ConfigError: an empty ladder, a malformed or non-positive ε, or rungs out of order.
    """
    if not ladder:
        raise ConfigError("the ε ladder is empty")
    values = [parse_eps(e) for e in ladder]
    if any(v <= 0 for v in values):
        raise ConfigError(f"ε ladder rungs must be > 0: {list(ladder)}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ConfigError(f"ε ladder must increase: {list(ladder)}")
    return tuple(format_eps(v) for v in values)


def _first_below(rungs: Sequence[str], below: Callable[[str], bool], search: str) -> int | None:
    """The index of the first rung ``below`` holds for (None: none), measuring up from the smallest
    (``linear``) or by bisection (``bisect``: ⌈log₂ n⌉ + 1 measurements; the same rung whenever the
    measured curve is monotone)."""
    if search == "linear":
        return next((i for i, e in enumerate(rungs) if below(e)), None)
    hi = None  # the lowest rung measured below the threshold; all below `left` are above it
    left, right = 0, len(rungs) - 1
    while left <= right:
        mid = (left + right) // 2
        if below(rungs[mid]):
            hi, right = mid, mid - 1
        else:
            left = mid + 1
    return hi


def calibrate(checkpoint: str | Path, ladder: Sequence[str] = LADDER, threshold: float = THRESHOLD,
              n_episodes: int = 100, steps: int = 20, split: str = "val", q_query: int | None = None,
              device: str = "auto", progress: bool = False, search: str = "bisect") -> Calibration:
    """The smallest rung of ``ladder`` at which the checkpoint's PGD accuracy is below ``threshold``.

    Accuracy falls as ε grows, so the rung is found by bisection over the ladder (⌈log₂ n⌉ + 1
    evaluations: 3 for the six rungs of :data:`LADDER`) [choice]; ``search="linear"`` walks up
    from the smallest rung instead. Both give the same rung whenever the measured curve is
    monotone.

    Args:
        checkpoint: a trained checkpoint (normally the grid's own MAML 5-way 1-shot).
        ladder: increasing ε (``k/255``).
        threshold: accuracy (%) below which a rung is chosen.
        n_episodes: validation episodes per rung (the same episodes at every rung).
        steps: PGD steps (step size ``auto``: max(2/255, ε/4), random start).
        split: class split of the episodes (``val``: the test classes stay unseen).
        q_query: query images per class (None: as trained).
        device: where to attack.
        progress: print one line per rung on stderr.
        search: ``bisect`` or ``linear``.

    Returns:
        The :class:`Calibration`: the chosen ε and the curve up to it.
    """
    import sys

    from advmeta.evaluate import evaluate
    from advmeta.protocol import EvalProtocol

    rungs = check_ladder(ladder)
    if search not in ("bisect", "linear"):
        raise ConfigError(f"calibration search must be bisect or linear, got {search!r}")
    params = {"pgd": {"steps": int(steps), "step_size": "auto", "random_start": True}}
    curve: dict[str, CalibrationPoint] = {}

    def measure(eps: str) -> CalibrationPoint:
        proto = EvalProtocol(split=split, n_episodes=n_episodes, q_query=q_query, scenarios=("whitebox",),
                             attacks=("pgd",), eps=(Epsilon(eps),), attack_params=params, worst=False, device=device,
                             chunk=min(50, n_episodes), checks=None)
        rows = evaluate(checkpoint, proto, progress=False).rows
        last = max(r["finetune_step"] for r in rows)
        rob = next(r for r in rows if r["attack"] == "pgd" and r["finetune_step"] == last)
        clean = next(r for r in rows if r["attack"] == "none" and r["finetune_step"] == last)
        if not all(math.isfinite(float(v)) for v in (rob["acc"], rob["acc_ci95"], clean["acc"])):
            raise ConfigError(f"calibration at {eps}: non-finite accuracy")
        point = CalibrationPoint(eps, float(rob["acc"]), float(rob["acc_ci95"]), float(clean["acc"]))
        curve[eps] = point
        if progress:
            print(f"calibration: PGD-{steps} at {eps}: {point.acc:.1f} ± {point.acc_ci95:.1f}% "
                  f"(clean {point.clean_acc:.1f}%)", file=sys.stderr, flush=True)
        return point

    hi = _first_below(rungs, lambda e: measure(e).acc < threshold, search)
    chosen, below = (rungs[hi], True) if hi is not None else (rungs[-1], False)
    ordered = tuple(curve[e] for e in rungs if e in curve)
    return Calibration(chosen, below, ordered, float(threshold), {"attack": "pgd", "search": search, **params["pgd"]},
                       int(n_episodes), split)



SURROGATE_DROP = 10.0
"""Points MAML must lose to the surrogate's FGSM for ADML's table to have an effect (issue 10)."""
SURROGATE_FACTORS: tuple[float, ...] = (1.0, 1.25, 1.5, 1.75, 2.0)
"""Rungs of the surrogate table's ε, as multiples of the calibrated ε*."""


@dataclass(frozen=True)
class SurrogatePoint:
    """MAML under the surrogate's FGSM at one ε: clean and adversarial query, paired drop ± 95% CI."""

    eps: str
    clean_acc: float
    adv_acc: float
    drop: float
    drop_ci95: float


@dataclass(frozen=True)
class SurrogateCalibration(_CurveRecord):
    """The ε of ADML's surrogate table where no paper fixes it (:func:`calibrate_surrogate`).

    Attributes:
        eps: the smallest rung at which MAML's mean drop reaches ``drop`` (else the top rung).
        reached: whether a rung reached it.
        curve: every rung, in increasing ε.
        drop: the required drop (points).
        n_episodes: validation episodes (the same at every rung).
        split: the split of the episodes.
    """

    eps: str
    reached: bool
    curve: tuple[SurrogatePoint, ...]
    drop: float
    n_episodes: int = 0
    split: str = "val"


    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SurrogateCalibration:
        """Inverse of :meth:`to_dict`."""
        return cls(str(data["eps"]), bool(data["reached"]), tuple(SurrogatePoint(**p) for p in data["curve"]),
                   float(data["drop"]), int(data.get("n_episodes", 0)), str(data.get("split", "val")))


def surrogate_rungs(start: str, factors: Sequence[float] = SURROGATE_FACTORS) -> tuple[str, ...]:
    """The surrogate table's candidate ε: ``start`` (ε*) times each factor, as ``k/255``.

    Raises:
        ConfigError: a non-positive start, or factors that do not start at 1 and increase.
    """
    s = parse_eps(start)
    if s <= 0:
        raise ConfigError(f"surrogate calibration starts at ε > 0, got {start}")
    if not factors or factors[0] != 1.0 or any(b <= a for a, b in zip(factors, factors[1:])):
        raise ConfigError(f"surrogate ε factors must start at 1 and increase: {list(factors)}")
    return check_ladder([format_eps(s * f) for f in factors])


def calibrate_surrogate(checkpoint: str | Path, start: str, drop: float = SURROGATE_DROP,
                        factors: Sequence[float] = SURROGATE_FACTORS, n_episodes: int = 100, split: str = "val",
                        q_query: int | None = None, device: str = "auto", progress: bool = False,
                        ) -> SurrogateCalibration:
    """The smallest ε ≥ ``start`` at which the checkpoint loses ``drop`` points to the surrogate.

    ADML's question (does ADML lose less than MAML when the query is the fixed surrogate's
    FGSM?) has no answer where MAML loses nothing. On Omniglot at ε* = 32/255 a Conv4
    surrogate trained on every class (true labels, 3000 or 4000 steps) takes about 7 points from
    MAML, 48/255 about 13 and 64/255 about 19 (``results/paper-tables-omniglot/calibration.json``). So where no paper fixes ε, the table's ε
    is the first of ε*·(1, 1.25, 1.5, 1.75, 2) at which MAML's mean paired drop (clean minus
    surrogate-adversarial query, clean support, the same validation episodes) is at least
    ``drop`` [choice]; ADML and MAML-AD then train at it. One evaluation scores every rung
    (the support is adapted to once).

    Args:
        checkpoint: the grid's MAML (its config names the surrogate, found in the cache).
        start: ε* (``k/255``).
        drop: the required drop in points.
        factors: multiples of ``start`` tried.
        n_episodes: validation episodes.
        split: class split of the episodes.
        q_query: query images per class (None: as trained).
        device: where to evaluate.
        progress: print the curve on stderr.
    """
    import sys

    from advmeta.evaluate import evaluate
    from advmeta.protocol import EvalProtocol
    from advmeta.stats import mean_ci95

    rungs = surrogate_rungs(start, factors)
    proto = EvalProtocol(split=split, n_episodes=n_episodes, q_query=q_query, scenarios=("surrogate",),
                         surrogate_eps=tuple(Epsilon(r) for r in rungs), surrogate_supports=("clean",), device=device,
                         chunk=min(50, n_episodes))
    episodes = evaluate(checkpoint, proto, progress=False).episodes
    per: dict[tuple[str, str], dict[int, float]] = {}
    for r in episodes:
        if r["scenario"] == "surrogate" and r["support"] == "clean":
            per.setdefault((r["eps_str"], r["query"]), {})[int(r["episode_index"])] = float(r["acc"])
    curve = []
    for eps in rungs:
        clean, adv = per.get((eps, "clean"), {}), per.get((eps, "adv"), {})
        idx = sorted(set(clean) & set(adv))
        if not idx:
            raise ConfigError(f"surrogate calibration at {eps}: no episodes were scored")
        diffs = [clean[i] - adv[i] for i in idx]
        if not all(math.isfinite(d) for d in diffs):
            raise ConfigError(f"surrogate calibration at {eps}: non-finite accuracy")
        d, ci = mean_ci95(diffs)
        point = SurrogatePoint(eps, float(np.mean([clean[i] for i in idx])), float(np.mean([adv[i] for i in idx])),
                               float(d), float(ci))
        curve.append(point)
        if progress:
            print(f"calibration: surrogate FGSM at {eps}: MAML {point.clean_acc:.1f}% → {point.adv_acc:.1f}% "
                  f"(drop {point.drop:.1f} ± {point.drop_ci95:.1f})", file=sys.stderr, flush=True)
    hit = next((p for p in curve if p.drop >= drop), None)
    chosen, reached = (hit.eps, True) if hit is not None else (curve[-1].eps, False)
    return SurrogateCalibration(chosen, reached, tuple(curve), float(drop), int(n_episodes), split)
