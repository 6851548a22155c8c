"""The cost of a sweep before it runs: an estimate of its wall time on this machine.

Each trial's seconds on one core come from the families' measured per-iteration training costs and
the evaluation's measured per-step and per-episode attack costs, escalation to convergence included
(:func:`trial_cost`, the same model that orders the trials longest first), times :data:`SCALE`, the
ratio of measured to modelled seconds over a whole quick paper-tables run (what the per-unit costs
miss). The trials are then packed longest
first onto the concurrent slots, and the ε calibration, when the sweep must run one, goes before
them. It is an estimate: the run records it beside the measured wall time (``sweep.json``:
``estimate_seconds``, ``wall_seconds``), so the model can be checked against every run.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from advmeta.plan.trial import TrialSpec

SCALE = 0.865
"""Measured ÷ modelled trial seconds (:func:`trial_cost`, less :data:`TRIAL_START` each): the 18
trials of the committed quick paper-tables run on Omniglot (results/paper-tables-omniglot, commit
78fa3dc) took 5642 s of trial processes against 6459 s modelled — (5642 − 18 × 3) / 6459 —, per
trial between 0.50 (AQ-ProtoNet) and 1.33 (Grad-L2L) of its model. The claims' further blocks,
which depend on what the trials find, are not in the estimate."""
TRIAL_START = 3.0
"""Seconds a trial takes beyond its modelled training and attacks in a reused Ray worker (loading its
data, building its learner, recording): the larger of two smoke paper-tables runs of 31 trials on 2
slots (at c6af70b), each trial's share of the slots' time less its modelled seconds × :data:`SCALE`
— 0.7 s on Omniglot (trials from 23 s to 91 s of the run), 3.1 s on mini-ImageNet (27 s to 133 s).
(It was 8 s: one whole run's 110 s over its trials, counting in the start, banks, merge and report.)"""
START_SECONDS = 45.0
"""Ray's start, the episode banks and the final merge and report of a sweep (quick, measured)."""
TOO_MANY = 50
"""More trials than this get a warning line before they run."""

# Evaluation costs on one CPU core at quick on Omniglot 28 px, 15 queries per class (training
# costs: each family's ``train_cost``); an episode's cost scales with its queries.
ATTACK_STEP_COST = 0.048
"""One white-box attack step (forward and input gradient) on one 75-query episode: PGD-10 on 20
episodes of quick MAML took 17.5 s (seconds, one core, measured) before Conv4 ran channels-last on
the CPU; the quick paper-tables' white-box attacks then took 0.55 of their time (1219 s against
2221 s, the committed runs of db58f27 and 78fa3dc)."""
QUERY_COST = 0.0085
"""One forward of a 75-query episode: a Square query (seconds, quick AQ, measured; halved with
channels-last: the Square check's 155 s against 314 s in the same two runs)."""
ADAPTIVE_STEP_COST = 0.11
"""One step of PGD through the fine-tuning (the support scenarios; measured)."""
SURROGATE_EPISODE_COST = 0.3
"""One episode of the surrogate table (its supports and queries; 100 episodes of quick MAML took
49 s, measured; 0.6 of that channels-last: the surrogate scenario's 195 s against 326 s)."""
ORDER_OVERHEAD = 30.0
"""A per-trial constant of :func:`trial_cost` for ordering only (a cheap trial still starts)."""


def escalation_factor(cap: int) -> float:
    """How many times an attack's own run escalation to convergence costs: rounds of 2, 4, …
    times its iterations; on quick Omniglot trials PGD and C&W converged at the second round
    (10 + 20 + 40 = 7× PGD-10, measured), so 7× when the cap allows it, 3× at cap 2."""
    return 1.0 if cap < 2 else 2.0 * min(cap, 4) - 1.0


def _escalated(spec: TrialSpec, ev: Mapping[str, Any], attacks: Sequence[str]) -> tuple[set[str], float]:
    """Which of an eval's attacks are escalated, and the factor (from its ``checks`` settings)."""
    from advmeta.checks import CheckSettings

    checks = ev.get("checks", {})
    if checks is False:
        return set(), 1.0
    settings = CheckSettings(**dict(checks or {}))
    if settings.converge_scope == "claims":
        from advmeta.claims import claimed_attacks

        chosen = set(claimed_attacks(spec.method, list(attacks)))
    else:
        chosen = set(attacks) | {"support", "support+query"}
    return chosen, escalation_factor(settings.converge_cap)


def _runs(attack: str, ev: Mapping[str, Any], n_way: int) -> tuple[float, float]:
    """An attack's (gradient runs of its steps, forwards of its query budget) on one episode."""
    from advmeta.plan.settings import queries_of

    if attack == "autoattack":
        parts = list(dict(ev.get("attack_params", {})).get("autoattack", {}).get(
            "components", ["apgd-ce", "apgd-t", "square"]))
        runs = ("apgd-ce" in parts) + (n_way - 1) * ("apgd-t" in parts) + ("apgd-dlr" in parts)
        return float(runs), float(queries_of("square")) if "square" in parts else 0.0
    q = queries_of(attack)
    return (0.0, float(q)) if q else (1.0, 0.0)


def trial_cost(spec: TrialSpec, trained: bool = False) -> float:
    """A trial's modelled seconds on one core: its training (unless ``trained``: the calibration's
    MAML only evaluates), its attacks — each escalated one times :func:`escalation_factor`, an
    attack that several evals run counted once, on the most episodes (the evaluation merges them)
    — the masking checks' Square, and the surrogate table. Also the order trials start in
    (longest first, so the last minutes of a sweep are not one long trial on one core)."""
    from advmeta.families import get_family

    t = spec.train
    size = (float(t.get("image_size") or 28) / 28.0) ** 2
    n_way = int(t.get("n_way") or 5)
    train = 0.0 if trained else get_family(spec.family).train_cost(spec)
    attacks: dict[str, float] = {}
    other = 0.0
    for ev in spec.evals:
        scenario, episodes = ev.get("scenario"), float(ev.get("episodes", 100))
        per_episode = float(ev.get("q_query") or 15) / 15.0 * size
        steps = float(ev.get("attack_steps") or 10)
        if scenario == "whitebox":
            names = [a for a in ev.get("attacks", []) if a != "none"]
            chosen, factor = _escalated(spec, ev, names)
            for a in names:
                runs, queries = _runs(a, ev, n_way)
                cost = episodes * per_episode * (ATTACK_STEP_COST * steps * runs * (factor if a in chosen else 1.0)
                                                 + QUERY_COST * queries)
                attacks[a] = max(attacks.get(a, 0.0), cost)
            checks = ev.get("checks", {})
            if checks is not False:
                c = dict(checks or {})
                other = max(other, float(c.get("episodes", 20)) * per_episode * QUERY_COST * float(
                    c.get("square_queries") or 1000))
        elif scenario in ("support", "support+query"):
            chosen, factor = _escalated(spec, ev, [])
            attacks[scenario] = (episodes * per_episode * ADAPTIVE_STEP_COST * steps
                                 * (factor if scenario in chosen else 1.0))
        elif scenario == "surrogate":
            other += episodes * per_episode * SURROGATE_EPISODE_COST
    return ORDER_OVERHEAD + train + sum(attacks.values()) + other


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
    return TRIAL_START + SCALE * (trial_cost(spec) - ORDER_OVERHEAD)


def calibration_seconds(spec: TrialSpec | None, episodes: int) -> float:
    """The ε calibration: its MAML's training, then PGD-20 on ``episodes`` episodes per rung
    (usually three rungs of the bisection), the surrogate trained beside it."""
    if spec is None:
        return 0.0
    from advmeta.families import get_family

    return SCALE * (get_family(spec.family).train_cost(spec) + 3 * episodes * 20 * ATTACK_STEP_COST * 2)


def estimate(specs: Sequence[TrialSpec], slots: int, calibration: TrialSpec | None = None,
             calibration_episodes: int = 20) -> Estimate:
    """The wall time of running ``specs`` ``slots`` at a time (longest first), after the calibration
    of ``calibration`` (the grid's MAML trial) when the sweep must calibrate ε."""
    finish = [0.0] * max(1, slots)
    heapq.heapify(finish)
    for cost in sorted((trial_seconds(s) for s in specs), reverse=True):
        heapq.heappush(finish, heapq.heappop(finish) + cost)
    cal = calibration_seconds(calibration, calibration_episodes)
    start = START_SECONDS if specs else 0.0  # nothing to run starts no cluster
    return Estimate(len(specs), max(1, slots), cal + max(finish) + start, cal)
