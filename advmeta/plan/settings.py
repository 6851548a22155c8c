"""A trial's settings at a budget: its training settings (the family's, from the budget, under a
table's axes) and its evaluations (a table's ``evals`` with the budget's numbers filled in).

What a grid (:mod:`advmeta.plan.grids`), a search (:mod:`advmeta.plan.space`), a family's planning
side (:mod:`advmeta.families`) and the estimate (:mod:`advmeta.plan.estimate`) share, below them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from advmeta.eps import TABLE
from advmeta.errors import ConfigError
from advmeta.families import MethodRef, scenario_owners
from advmeta.plan.budgets import Budget
from advmeta.plan.epsplan import as_list
from advmeta.plan.validate import check_eval


def train_settings(budget: Budget, method: MethodRef, axes: Mapping[str, Any], seed: int,
                   extra: Mapping[str, Any]) -> dict[str, Any]:
    """Training settings of a trial: the seed, the family's settings from the budget under the
    table's axes (:meth:`Family.train_settings`), then the table's own ``train`` values."""
    train: dict[str, Any] = {"seed": seed, "budget": budget.name}
    train.update(method.family.train_settings(budget, method.name, axes))
    train.update(extra)
    return train


def queries_of(attack: str) -> int:
    """The query budget an attack declares (``n_queries`` of its test settings: Square's forwards
    per episode, the cost that dominates it); 0 for attacks whose cost is their steps."""
    from advmeta.attacks import attack_info, attack_names

    return int(dict(attack_info(attack).test_params).get("n_queries", 0)) if attack in attack_names() else 0


def eval_settings(table: Mapping[str, Any], budget: Budget) -> list[dict[str, Any]]:
    """A table's ``evals`` with the budget's numbers filled in (episodes, attack steps, masking
    checks), validated; what a grid and ``advmeta tune`` evaluate with. An eval at ``eps = "table"``
    keeps it: the grid puts the table's ε in (:func:`advmeta.plan.grids.expand`)."""
    evals = as_list(table.get("evals", table.get("eval", [])))
    out = []
    for ev in evals:
        if not isinstance(ev, Mapping):
            raise ConfigError(f"table {table.get('name')!r}: each eval must be a table of settings")
        check_eval(ev, str(table.get("name", "table")))
        full: dict[str, Any] = {"episodes": budget.test_episodes, "attack_steps": budget.attack_steps, "split": "test",
                "n_test": budget.l2l_test_images}
        if ev.get("scenario") in ("whitebox", "support", "support+query") and budget.whitebox_episodes:
            full["episodes"] = budget.whitebox_episodes
        attacks = as_list(ev.get("attacks", []))
        heavy = ev.get("scenario") in ("support", "support+query") or any(queries_of(a) for a in attacks)
        if heavy and budget.adaptive_episodes:
            full["episodes"] = budget.adaptive_episodes
        scenario = str(ev.get("scenario", "whitebox"))
        owner = scenario_owners()[scenario]
        full.update(owner.eval_defaults(budget, scenario))
        full.update(ev)
        own = {str(a): dict(p) for a, p in dict(ev.get("attack_params", {})).items()}
        by_budget = {a: {k: list(v) if isinstance(v, tuple) else v for k, v in p}
                     for a, p in budget.attack_params if a in attacks}
        if own or by_budget:  # the budget's settings of an attack, the grid's own winning
            full["attack_params"] = {a: {**by_budget.get(a, {}), **own.get(a, {})} for a in sorted({*own, *by_budget})}
        if full.get("scenario", "whitebox") == "whitebox":
            # The masking checks of every white-box evaluation, sized by the budget (a grid's
            # `checks = false` turns them off, a table of CheckSettings fields overrides).
            own = ev.get("checks", {})
            full["checks"] = False if own is False else {**dict(budget.checks), **dict(own)}
        if "eps" in full and full["eps"] != TABLE:  # (the table's ε: its grid puts it in, with its source)
            full["eps_source"] = "grid"
        for key in ("attacks", "eps", "support", "query"):
            if key in full and full[key] != TABLE:
                full[key] = as_list(full[key])
        if "attacks" in full:
            full["attacks"] = owner.budget_attacks(budget, scenario, full["attacks"])
        out.append(full)
    return out
