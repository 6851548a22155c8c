"""One source of defaults: the Python API trains what ``advmeta tune`` plans, and ``--params`` shows it.

A learner's per-dataset defaults (``DATASET_DEFAULTS``: on Omniglot the MAML family adapts with
one inner step of α = 0.4, second order) reach a run described directly
(``TrainConfig(method=m, dataset=d)``) exactly as they reach a trial that ``advmeta tune m
--dataset d`` plans. At ``paper`` the budget sets no hyper-parameter, so the two learner configs
must be equal field for field; at ``quick`` they may differ only where the budget sets a value.
"""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from advmeta.data import dataset_names
from advmeta.hparams import dataset_defaults
from advmeta.learners import get_learner, learner_names
from advmeta.train import TrainConfig
from advmeta.plan.budgets import get_budget
from advmeta.families import RunContext, get_family
from advmeta.families.meta import train_config
from advmeta.plan.space import tune_trials


def _datasets_with_defaults() -> list[str]:
    found = {d for m in learner_names() for klass in get_learner(m).Config.__mro__
             for d in vars(klass).get("DATASET_DEFAULTS", {})}
    return sorted(found)


CASES = [(m, d) for d in [*_datasets_with_defaults(), "miniimagenet"] for m in learner_names()]


def test_some_dataset_has_defaults() -> None:
    assert "omniglot" in _datasets_with_defaults()
    assert dataset_defaults(get_learner("tafl").Config, "omniglot")["inner_lr"] == 0.4


@pytest.mark.parametrize(("method", "dataset"), CASES)
def test_trainconfig_trains_what_tune_plans(method: str, dataset: str) -> None:
    assert dataset in dataset_names()
    direct = TrainConfig(method=method, dataset=dataset).learner_config
    (paper,) = tune_trials(method, {}, get_budget("paper", dataset), dataset=dataset, seed=0)
    assert direct == paper.config, (method, dataset)
    # the trial's own TrainConfig (what the trial's process trains) keeps the same parsed Config
    assert train_config(paper, RunContext(sweep_dir="")).learner_config is paper.config
    # at quick, only the fields the budget sets differ
    quick_budget = get_budget("quick", dataset)
    (quick,) = tune_trials(method, {}, quick_budget, dataset=dataset, seed=0)
    differ = {f.name for f in dataclasses.fields(direct) if getattr(direct, f.name) != getattr(quick.config, f.name)}
    assert differ <= set(get_family("meta").budget_hparams(quick_budget)), (method, dataset, differ)


def test_the_users_values_win_over_the_dataset_defaults() -> None:
    cfg = TrainConfig(method="tafl", dataset="omniglot", hparams={"inner_lr": 0.1, "gamma": 3.0})
    assert cfg.learner_config.inner_lr == 0.1 and cfg.learner_config.inner_steps == 1  # given, then Omniglot's
    assert cfg.learner_config.first_order is False and cfg.learner_config.train_eps == "16/255"
    assert dict(cfg.hparams)["inner_steps"] == 1  # recorded in the checkpoint's config
    assert TrainConfig(method="tafl", dataset="glyphs").learner_config.inner_lr == 0.01  # no defaults there
    # a config rebuilt from its own record (a checkpoint's) is the same run
    again = TrainConfig(**cfg.to_dict())
    assert again.learner_config == cfg.learner_config and again.result_dict() == cfg.result_dict()


def test_params_shows_the_values_a_trial_on_the_dataset_runs_with() -> None:
    from advmeta.cli.app import app

    runner = CliRunner()
    omni = runner.invoke(app, ["tune", "tafl", "--params", "--dataset", "omniglot"])
    assert omni.exit_code == 0, omni.output
    assert "--inner-lr (float, default 0.4 on omniglot; 0.01 elsewhere" in omni.output
    assert "--first-order (bool, default False on omniglot; True elsewhere)" in omni.output
    glyphs = runner.invoke(app, ["tune", "tafl", "--params", "--dataset", "glyphs"])
    assert "--inner-lr (float, default 0.01," in glyphs.output
    mini = runner.invoke(app, ["tune", "maml", "--params", "--dataset", "miniimagenet", "--budget", "quick"])
    assert "--inner-lr (float, default 0.1 at budget quick on miniimagenet; 0.01 elsewhere" in mini.output
