"""Attacks run to convergence: a robust accuracy is reported only once more effort stops lowering it.

After an attack's own run, :func:`escalate` runs it again with twice the iterations from a new
random start (a restart, for an attack that draws one), and keeps, per query, the worst case of
every run so far. It repeats while a round lowers the accuracy by at least ``tol`` points and
the next round's iterations stay within ``cap`` times the attack's own; the row records the
iterations and restarts it ended with and whether the last round changed the accuracy by less
than ``tol`` (``converged``). An attack that was still gaining at the cap is *not converged*:
its number is an upper bound that more iterations would lower — a different diagnosis from
gradient masking (advmeta.checks), whose remedy is another attack.

The extra rounds run only on the episodes that still have a correctly classified query: an
episode whose queries are all broken cannot lose more. (A query's prediction may depend on the
other queries of its episode — transductive batch norm — so a surviving episode is attacked
whole, as it is evaluated; the worst case is still taken per query.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from advmeta.attacks import AttackSpec, ModelFn, attack_info, per_task

Generators = Callable[[str, Tensor], Any]  # (tag, episode indices within the chunk) -> per-episode generators


@dataclass(frozen=True)
class Escalation:
    """How far an attack was escalated on one chunk of episodes.

    Attributes:
        iterations: the iterations of its strongest run (the attack's own when it converged at once);
            None for an attack without iterations (FGSM, Square, transfer, none).
        restarts: runs from a random start that entered the worst case (its own included); None as above.
        converged: the last round lowered the accuracy by less than the tolerance; None as above.
        change: points the last round took (0 when no episode had a query left to attack).
    """

    iterations: int | None
    restarts: int | None
    converged: bool | None
    change: float = 0.0


NOT_APPLICABLE = Escalation(None, None, None)


def escalates(name: str, params: dict[str, Any]) -> bool:
    """Whether the attack ``name`` with its accepted ``params`` is escalated: a white-box attack
    whose strength is a number of ``steps``."""
    info = attack_info(name)
    return bool(info.iterative and info.bounded and not info.identity and "steps" in params
                and (not info.gradient_free or name == "autoattack"))


def subset(fn: ModelFn, live: Tensor) -> ModelFn:
    """``fn`` on the episodes ``live`` only (by the per-task function every learner's model
    carries); ``fn`` itself when it has none."""
    task_fn = getattr(fn, "task_fn", None)
    if task_fn is None:
        return fn
    index = [int(i) for i in live]
    return per_task(lambda j, xt: task_fn(index[j], xt))


Round = Callable[[int, int, Tensor], Tensor]
"""``(steps, round, live episodes) -> per-query correctness of those episodes`` after one fresh run."""


def escalate(run: Round, base: int, stochastic: bool, ok: Tensor, tol: float, cap: int) -> tuple[Tensor, Escalation]:
    """Escalate an attack already run once with ``base`` iterations to convergence.

    Args:
        run: one round of the attack (a fresh run from its own random start) at a number of
            iterations, on the episodes given.
        base: the attack's own iterations.
        stochastic: it starts at a random point (each round is then a restart).
        ok: per-query correctness (T, B) after the attack's own run.
        tol: points a round may take for the attack to count as converged.
        cap: the largest multiple of ``base`` a round may use (below 2: no escalation,
            ``converged`` None: not checked).

    Returns:
        The per-query worst case over every run, and the :class:`Escalation`.
    """
    restarts = 1 if stochastic else 0
    if cap < 2:
        return ok, Escalation(base, restarts, None, float("nan"))
    steps, change, r = base, float("inf"), 0
    while change >= tol:
        if steps * 2 > base * cap:
            return ok, Escalation(steps, restarts, False, change)
        live = ok.any(-1).nonzero().flatten()
        if live.numel() == 0:
            return ok, Escalation(steps, restarts, True, 0.0)
        r, steps = r + 1, steps * 2
        now = run(steps, r, live)
        before = ok.double().mean()
        ok = ok.clone()
        ok[live] &= now
        change = float((before - ok.double().mean()) * 100)
        restarts += 1 if stochastic else 0
    return ok, Escalation(steps, restarts, True, change)


def escalate_attack(spec: AttackSpec, fn: ModelFn, x: Tensor, y: Tensor, ok: Tensor, generators: Generators,
                    tol: float, cap: int) -> tuple[Tensor, Escalation]:
    """:func:`escalate` for an attack on the query at the adapted weights (``spec`` as the
    evaluation ran it, leaving ``ok``); attacks without iterations are returned as they are."""
    params = spec.accepted()
    if not escalates(spec.name, params):
        return ok, NOT_APPLICABLE
    stochastic = attack_info(spec.name).stochastic and bool(params.get("random_start", True))

    def run(steps: int, r: int, live: Tensor) -> Tensor:
        settings = {**params, "steps": steps, **({"random_start": True} if "random_start" in params else {})}
        sub = subset(fn, live)
        idx = torch.arange(x.shape[0]) if sub is fn else live  # no per-task function: every episode again
        x_adv = AttackSpec(spec.name, spec.eps, settings)(sub, x[idx], y[idx], generators(f"escalate{r}", idx))
        with torch.no_grad():
            now: Tensor = sub(x_adv).argmax(-1) == y[idx]
        return now[live] if sub is fn else now

    return escalate(run, int(params["steps"]), stochastic, ok, tol, cap)


def worst_of(runs: list[Escalation]) -> Escalation:
    """The effort behind a per-query worst case over several attacks: the largest iterations and
    restarts, converged when every escalated attack converged (None when none was escalated)."""
    its = [e for e in runs if e.iterations is not None]
    if not its:
        return NOT_APPLICABLE
    checked = [e.converged for e in its if e.converged is not None]
    return Escalation(max(int(e.iterations or 0) for e in its), max(int(e.restarts or 0) for e in its),
                      all(checked) if checked else None, max(e.change for e in its))
