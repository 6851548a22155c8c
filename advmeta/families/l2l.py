"""The ``l2l`` family: L2L trainers (plain, pgm, naive/grad/2step-l2l) of :mod:`advmeta.l2l`."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advmeta.eps import Epsilon
from advmeta.families import Report, RunContext, TrialOutput

NOT_TUNABLE = frozenset({"method", "dataset", "data_root", "device", "checkpoint_every", "eval_batches", "seed",
                         "image_size", "num_classes", "train_per_class", "test_per_class"})
"""L2LConfig fields that are settings of the run (the budget's or the sweep's), not hyper-parameters."""
TRAIN_KEYS = ("dataset", "image_size", "num_classes", "train_per_class", "epochs", "classifier", "classifier_kwargs",
              "seed", "attacker", "eval_batches")
"""The budget's and the sweep's fields of a trial's ``train`` settings an L2L trainer reads."""


def methods() -> list[str]:
    """The L2L trainers."""
    from advmeta.l2l import METHOD_NAMES

    return list(METHOD_NAMES)


def config_class(method: str) -> type:
    """A dataclass of the tunable L2LConfig fields (the run settings left out)."""
    return _hparams_class()


@functools.cache
def _hparams_class() -> type:
    """``L2LHParams``, made once per process (every trainer shares it; trials' ``HParams`` hold it)."""
    from advmeta.hparams import tunable_class
    from advmeta.l2l import L2LConfig

    return tunable_class(L2LConfig, "L2LHParams", NOT_TUNABLE, __name__)


def __getattr__(name: str) -> Any:
    """``L2LHParams`` by name, as pickle finds the class of a trial's hyper-parameters in another process."""
    if name == "L2LHParams":
        return _hparams_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Seconds per epoch per 1000 training images on one CPU core at quick, 28 px.
_TRAIN_COST = {"plain": 0.48, "naive-l2l": 1.56, "grad-l2l": 1.80, "pgm": 2.92, "2step-l2l": 3.06}


def uses_dataset(method: str) -> bool:
    """Yes: L2L trainers train on a classification view of the sweep's dataset."""
    return True


def scenarios() -> tuple[str, ...]:
    """``l2l``: the L2L table (accuracy of the trained classifier under each attack)."""
    return ("l2l",)


def check_attack(scenario: str, attack: str) -> None:
    """An attack of the L2L table (``none``, ``fgsm``, ``pgd-20``, ``cw-linf``, a learned attacker, …)."""
    from advmeta.l2l.evaluate import attack_spec

    attack_spec(str(attack), 8 / 255)


def eval_defaults(budget: Any, scenario: str) -> dict[str, Any]:
    """None: the L2L table tests images, not episodes."""
    return {}


def budget_attacks(budget: Any, scenario: str, attacks: list[str]) -> list[str]:
    """The budget's L2L attacks: those it skips left out, CW-L∞ at its steps."""
    kept = [a for a in attacks if a not in budget.l2l_skip_attacks]
    if budget.l2l_cw_steps is not None:
        kept = [f"cw-linf-{budget.l2l_cw_steps}" if a == "cw-linf" else a for a in kept]
    return kept


def trains_on_surrogate(method: str) -> bool:
    """No: L2L trainers never train on a surrogate's images."""
    return False


def bank_requirements(spec: Any) -> list[dict[str, Any]]:
    """None: L2L trials read no episode bank."""
    return []


def train_settings(budget: Any, method: str, axes: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's training settings: the budget's L2L numbers on the classification set of ``axes["dataset"]``."""
    from advmeta.data.catalog import classification_dataset

    train: dict[str, Any] = {
        "epochs": budget.l2l_epochs, "train_per_class": budget.l2l_train_per_class,
        "classifier": budget.l2l_classifier, "classifier_kwargs": dict(budget.l2l_classifier_kwargs),
        "num_classes": budget.l2l_num_classes, "image_size": budget.image_size, "attacker": budget.l2l_attacker,
        "dataset": classification_dataset(axes.get("dataset"))}
    if budget.l2l_eval_batches is not None:
        train["eval_batches"] = budget.l2l_eval_batches
    return train


def budget_hparams(budget: Any) -> dict[str, Any]:
    """Hyper-parameters the budget sets for the L2L trainers."""
    out: dict[str, Any] = {}
    if budget.l2l_batch_size is not None:
        out["batch_size"] = budget.l2l_batch_size
    if budget.l2l_lr_milestones is not None:
        out["lr_milestones"] = list(budget.l2l_lr_milestones)
    return out


def search_evals(budget: Any, attacks: list[str], test_eps: list[Epsilon] | None, sweep: str) -> tuple[dict[str, Any], ...]:
    """What ``advmeta tune`` evaluates: the L2L table (attacks named with their steps, pgd-20) at the
    first ε (default 8/255, the paper's), a PGD-20 curve over the rest."""
    l2l_attacks = [a if a != "pgd" else "pgd-20" for a in attacks]
    return ({"scenario": "l2l", "attacks": ["none", *[a for a in l2l_attacks if a != "none"]],
             "eps": list(test_eps or [Epsilon("8/255")]), "n_test": budget.l2l_test_images},)


def train_cost(spec: Any) -> float:
    """Expected training seconds on one core (measured at 28 px; the pixels scale it)."""
    t = spec.train
    size = (float(t.get("image_size") or 28) / 28.0) ** 2
    images = float(t.get("num_classes") or 10) * float(t.get("train_per_class") or 100) / 1000.0
    return _TRAIN_COST.get(spec.method, 2.0) * float(t.get("epochs", 1)) * images * size


def run(spec: Any, ctx: RunContext, report: Report) -> TrialOutput:
    """Train with :func:`advmeta.l2l.train_l2l`, then evaluate with the trial's attacks."""
    from advmeta.env import set_threads
    from advmeta.l2l import L2LConfig, L2LEvalProtocol, evaluate_l2l, train_l2l

    # The trial's own thread count, not whatever an earlier trial of this process left: the
    # count changes the last bits of the weights, which training amplifies (issue 25).
    set_threads(ctx.threads)
    t = dict(spec.train)
    settings = {k: t[k] for k in TRAIN_KEYS if k in t and t[k] is not None}
    hp = dict(spec.hparams)
    if "lr_milestones" in hp:
        hp["lr_milestones"] = tuple(hp["lr_milestones"])
    cfg = L2LConfig(method=spec.method, data_root=ctx.data_root, device=ctx.device,
                    test_per_class=t.get("test_per_class", t.get("train_per_class")), **{**settings, **hp})
    plain = cfg.method == "plain"
    ckpt, metrics = train_l2l(cfg, Path(ctx.work_dir), resume=True, progress=ctx.progress,
                              report=lambda m, path: report(curve_metrics(m, plain), path))
    rows: list[dict[str, Any]] = []
    for ev in spec.evals:
        eps = list(ev.get("eps") or ["8/255"])
        # The table is at the first ε; further ε give the PGD-20 curve against ε.
        protocol = L2LEvalProtocol(attacks=tuple(ev.get("attacks", ("none", "pgd-20"))), eps=eps[0],
                                   seeds=tuple(ev.get("seeds", (0,))), n_test=ev.get("n_test"),
                                   eps_curve=tuple(ev.get("eps_curve", eps[1:])),
                                   steps_curve=tuple(ev.get("steps_curve", ())), **_convergence(spec))
        rows += evaluate_l2l(ckpt, protocol, device=ctx.device, progress=ctx.progress)
    final = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}
    return TrialOutput(rows, [], {**final, "device": rows[0]["device"] if rows else ctx.device}, [],
                       curve_rows(metrics["history"], cfg))


def _convergence(spec: Any) -> dict[str, Any]:
    """The budget's escalation settings (its masking checks' ``converge_tol`` / ``converge_cap``)."""
    from advmeta.checks import CheckSettings
    from advmeta.plan.budgets import get_budget

    checks = CheckSettings(**dict(get_budget(spec.budget).checks))
    return {"converge_tol": checks.converge_tol, "converge_cap": checks.converge_cap}


def curve_metrics(row: Mapping[str, Any], plain: bool) -> dict[str, Any]:
    """An epoch's metrics under their ``curves`` names (what a trial reports to Tune and its loggers):
    the training loss, the accuracy on the training attack's images (not Plain Net's: it trains on
    clean images), the held-out clean and PGD-20 accuracy."""
    names = {"epoch": "iteration", "train_loss": "train_loss", "train_adv_acc": "train_adv_acc",
             "val_clean_acc": "val_acc", "val_pgd20_acc": "val_robust_acc", "train_seconds": "train_seconds"}
    return {new: row[old] for old, new in names.items() if old in row and not (plain and old == "train_adv_acc")}


def curve_rows(history: list[dict[str, Any]], cfg: Any) -> list[dict[str, Any]]:
    """The ``curves`` rows of an L2L trainer's history (one per epoch; the runner adds the ids and provenance)."""
    from advmeta.results import hparam_columns

    hp = cfg.hparams()
    if not cfg.method_enum.learned:
        hp["attacker"] = None  # as in its summary rows (advmeta.l2l.evaluate.base_row)
    fixed = {"method": cfg.method, **hparam_columns(hp), "dataset": cfg.dataset, "seed": cfg.seed}
    return [{**fixed, **curve_metrics(r, cfg.method == "plain")} for r in history]
