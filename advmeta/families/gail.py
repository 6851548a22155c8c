"""The ``gail`` family: GAIL and L2L-GAIL of :mod:`advmeta.gail` (the L2L paper's §4).

A trial trains one run and records one ``curves`` row per iteration (the true environment reward
of the current policy, the discriminator's accuracy, …); it has no accuracy rows of its own.
The environment is a hyper-parameter (``env``), so ``advmeta tune gail-l2l --env cartpole,mountaincar``
and a grid's ``[tables.hparams] env = [...]`` both cross it like any other field.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advmeta.eps import Epsilon
from advmeta.families import Report, RunContext, TrialOutput

NOT_TUNABLE = frozenset({"method", "seed", "dtype", "checkpoint_every", "iterations", "batch_steps", "n_envs"})
"""GAILConfig fields that are settings of the run (the budget's or the sweep's), not hyper-parameters."""
TRAIN_KEYS = ("iterations", "batch_steps", "n_envs", "seed", "checkpoint_every")
"""The budget's and the sweep's fields of a trial's ``train`` settings."""


def methods() -> list[str]:
    """GAIL and L2L-GAIL."""
    from advmeta.gail import METHOD_NAMES

    return list(METHOD_NAMES)


def config_class(method: str) -> type:
    """A dataclass of the tunable GAILConfig fields (the run settings left out)."""
    return _hparams_class()


@functools.cache
def _hparams_class() -> type:
    """``GAILHParams``, made once per process (every trainer shares it; trials' ``HParams`` hold it)."""
    from advmeta.hparams import tunable_class
    from advmeta.gail import GAILConfig

    # the fields keep their metadata: the doc `--params` shows, the choices (env, reward_form,
    # disc_optimizer) checked before any trial starts
    return tunable_class(GAILConfig, "GAILHParams", NOT_TUNABLE, __name__)


def __getattr__(name: str) -> Any:
    """``GAILHParams`` by name, as pickle finds the class of a trial's hyper-parameters in another process."""
    if name == "GAILHParams":
        return _hparams_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def uses_dataset(method: str) -> bool:
    """No: GAIL's environments are simulators (a sweep of them chooses and announces no dataset)."""
    return False


def scenarios() -> tuple[str, ...]:
    """None of its own: GAIL runs."""
    return ()


def trains_on_surrogate(method: str) -> bool:
    """No: GAIL runs never train on a surrogate's images."""
    return False


def bank_requirements(spec: Any) -> list[dict[str, Any]]:
    """None: GAIL trials read no episode bank."""
    return []


def train_settings(budget: Any, method: str, axes: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's training settings: the budget's iterations and pairs per iteration (no few-shot axes)."""
    return {"iterations": budget.gail_iterations, "batch_steps": budget.gail_batch_steps}


def budget_hparams(budget: Any) -> dict[str, Any]:
    """None: a budget sizes GAIL through its training settings only."""
    return {}


def search_evals(budget: Any, attacks: list[str], test_eps: list[Epsilon] | None, sweep: str) -> tuple[dict[str, Any], ...]:
    """None: a GAIL run's result is its learning curve."""
    return ()


def train_cost(spec: Any) -> float:
    """~0.5 s per iteration of 2000 pairs on one core (quick, measured); the sampling dominates."""
    t = spec.train
    return 0.5 * float(t.get("iterations") or 300) * float(t.get("batch_steps") or 5000) / 2000.0


def gail_config(spec: Any) -> Any:
    """The :class:`~advmeta.gail.GAILConfig` of a trial (its hyper-parameters and run settings)."""
    from advmeta.gail import GAILConfig

    hp = dict(spec.hparams)
    for key in ("policy_hidden", "value_hidden", "disc_hidden"):
        if key in hp:
            hp[key] = tuple(hp[key])
    settings = {k: spec.train[k] for k in TRAIN_KEYS if spec.train.get(k) is not None}
    return GAILConfig(method=spec.method, **{**hp, **settings})


def run(spec: Any, ctx: RunContext, report: Report) -> TrialOutput:
    """Train with :func:`advmeta.gail.train_gail`; the per-iteration rows become ``curves`` rows."""
    import json

    from advmeta.gail import train_gail
    from advmeta.results import hparam_columns

    cfg = gail_config(spec)
    _, rows, final = train_gail(cfg, Path(ctx.work_dir), resume=True, progress=ctx.progress, report=report)
    hp = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_TUNABLE}
    fixed = {"method": cfg.method, "env": cfg.env, "seed": cfg.seed, "reward_form": cfg.reward,
             "batch_steps": cfg.batch_steps, **hparam_columns(json.loads(json.dumps(hp, default=list)))}
    curves = [{**fixed, **r} for r in rows]
    return TrialOutput([], [], {**final, "device": "cpu"}, [], curves)
