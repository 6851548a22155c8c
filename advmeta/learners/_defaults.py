"""Per-dataset defaults of the learners' hyper-parameters, where the papers use other values.

A learner's ``Config`` holds the mini-ImageNet defaults of METHODS.md. On Omniglot the MAML
paper (and the issue's reference run) adapts with one inner step of α = 0.4 and fine-tunes three
steps at test (METHODS §2), and AQ trains with its one-step attack at 16/255 (METHODS §5). At
α = 0.4 the meta-gradient is second order (MAML's definition) for every MAML-family learner
[choice]: first order drops a large Hessian term there, and the adversarially trained learners
then stop learning clean accuracy (measured, AQ at 32/255, 600 iterations: 48 % clean first
order, 87.8 % second order). The sweep layers apply these before the grid's and the user's own
values, which always win.
"""

from __future__ import annotations

import dataclasses
from typing import Any

_BY_DATASET: dict[str, dict[str, Any]] = {
    "omniglot": {"inner_lr": 0.4, "inner_lr_adv": 0.4, "inner_steps": 1, "test_inner_steps": 3, "first_order": False},
}

# AQ's Omniglot training attack (METHODS §5): PGD, one step of ε = 16/255 (its step size follows ε).
_AQ_OMNIGLOT = {"train_eps": "16/255"}


def dataset_defaults(config_cls: type, dataset: str | None) -> dict[str, Any]:
    """The hyper-parameters of ``config_cls`` whose default differs on ``dataset``.

    Args:
        config_cls: a learner's frozen ``Config`` dataclass.
        dataset: few-shot dataset name (``None`` or an unknown name: no changes).

    Returns:
        Field name → value, only for fields ``config_cls`` has.
    """
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    out = {k: v for k, v in _BY_DATASET.get(dataset or "", {}).items() if k in fields}
    aq_style = all(k in fields for k in ("train_attack", "train_attack_steps", *_AQ_OMNIGLOT)) and (
        fields["train_attack"].default == "pgd" and fields["train_attack_steps"].default == 1)
    if dataset == "omniglot" and aq_style:
        out.update(_AQ_OMNIGLOT)
    return out
