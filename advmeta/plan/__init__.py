"""Planning, without Ray: what a sweep or a search will run.

A grid (:mod:`advmeta.plan.grids`: a :class:`GridRequest` to :func:`plan_grid`, the shipped grids
in ``grids/*.toml``) or a search over a method's hyper-parameters (:mod:`advmeta.plan.space`: a
:class:`SearchRequest` to :func:`plan_search`) becomes a :class:`Plan` (:mod:`advmeta.plan.sweeps`,
with what both share) — a list of :class:`~advmeta.plan.trial.TrialSpec`, every setting of a trial,
its id a hash of them — under a budget (:mod:`advmeta.plan.budgets`, a trial's settings at it:
:mod:`advmeta.plan.settings`) and an ε plan (:mod:`advmeta.plan.epsplan`), checked before anything
runs (:mod:`advmeta.plan.validate`), with its cost (:mod:`advmeta.plan.estimate`).
``advmeta evaluate``'s protocol at a budget is :mod:`advmeta.plan.evaluation`. The papers' claims
about the tables ship beside the grids (``claims/*.toml``, read by :mod:`advmeta.claims`).

Running the trials is :mod:`advmeta.tune` (Ray); one trial's work, in any process, is its family's
(:mod:`advmeta.families`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["GridRequest", "Plan", "SearchRequest", "plan_grid", "plan_search"]


def __getattr__(name: str) -> Any:
    # the package face, loaded on first use: importing a planning module does not load the others
    if name in __all__:
        import importlib

        module = {"GridRequest": "grids", "plan_grid": "grids", "SearchRequest": "space", "plan_search": "space",
                  "Plan": "sweeps"}[name]
        return getattr(importlib.import_module(f"advmeta.plan.{module}"), name)
    raise AttributeError(f"module 'advmeta.plan' has no attribute {name!r}")
