"""The cost of a sweep before it runs: an estimate of its wall time on this machine.

Each trial's seconds on one core come from the families' measured per-iteration training costs and
the evaluation's measured per-step and per-episode attack costs (:func:`advmeta.tune.runner.cost_estimate`,
the same model that orders the trials longest first), times :data:`SCALE`, the ratio of measured to
modelled seconds over a whole quick paper-tables run (it absorbs what the per-unit costs miss:
escalation to convergence, process start, the surrogate table). The trials are then packed longest
first onto the concurrent slots, and the ε calibration, when the sweep must run one, goes before
them. It is an estimate: the run records it beside the measured wall time (``sweep.json``:
``estimate_seconds``, ``wall_seconds``), so the model can be checked against every run.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from advmeta.tune.trial import TrialSpec

SCALE = 0.69
"""Measured ÷ modelled trial seconds: the 18 quick trials of the Omniglot paper-tables run at 641ed1b
took 4628 s of trial processes against 6463 s modelled (before escalation to convergence; less
:data:`TRIAL_START` each)."""
TRIAL_START = 8.0
"""Seconds a trial spends outside its training and attacks in a reused Ray worker (a smoke
paper-tables run: 31 trials in about 110 s on 2 slots, measured)."""
ESCALATION = 2.5
"""How much more the attacks cost with escalation to convergence, applied to the attack part of a
trial's cost: one round (quick's cap 2) measured 2.8× (quick TAFL, TAFL table: 39 s → 111 s);
each further round doubles again (cap 8: up to 15×)."""
START_SECONDS = 45.0
"""Ray's start, the episode banks and the final merge and report of a sweep (quick, measured)."""
TOO_MANY = 50
"""More trials than this get a warning line before they run."""


@dataclass(frozen=True)
class Estimate:
    """What a sweep is expected to take: ``seconds`` of wall time, of which ``calibration``."""

    trials: int
    slots: int
    seconds: float
    calibration: float

    def text(self, cpus: int) -> str:
        """One line for the terminal."""
        cal = f", {_minutes(self.calibration)} of it the ε calibration" if self.calibration else ""
        return (f"{self.trials} trials, about {_minutes(self.seconds)} of wall time on {cpus} CPUs "
                f"({self.slots} at a time{cal}; an estimate from measured per-iteration and per-episode costs)")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def trial_seconds(spec: TrialSpec) -> float:
    """A trial's expected seconds in its process (its training, its attacks escalated)."""
    from advmeta.tune.runner import _TRIAL_OVERHEAD, cost_estimate

    total = cost_estimate(spec) - _TRIAL_OVERHEAD  # the model's per-trial constant is for ordering only
    evaluation = cost_estimate(spec, trained=True) - _TRIAL_OVERHEAD
    return TRIAL_START + SCALE * (total + (ESCALATION - 1.0) * evaluation)


def calibration_seconds(spec: TrialSpec | None, episodes: int) -> float:
    """The ε calibration: its MAML's training, then PGD-20 on ``episodes`` episodes per rung
    (usually three rungs of the bisection), the surrogate trained beside it."""
    if spec is None:
        return 0.0
    from advmeta.tune.families import get_family
    from advmeta.tune.runner import _ATTACK_STEP_COST

    return SCALE * (get_family(spec.family).train_cost(spec) + 3 * episodes * 20 * _ATTACK_STEP_COST * 2)


def estimate(specs: Sequence[TrialSpec], slots: int, calibration: TrialSpec | None = None,
             calibration_episodes: int = 20) -> Estimate:
    """The wall time of running ``specs`` ``slots`` at a time (longest first), after the calibration
    of ``calibration`` (the grid's MAML trial) when the sweep must calibrate ε."""
    finish = [0.0] * max(1, slots)
    heapq.heapify(finish)
    for cost in sorted((trial_seconds(s) for s in specs), reverse=True):
        heapq.heappush(finish, heapq.heappop(finish) + cost)
    cal = calibration_seconds(calibration, calibration_episodes)
    return Estimate(len(specs), max(1, slots), cal + max(finish) + START_SECONDS, cal)
