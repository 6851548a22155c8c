"""APGD-DLR: Auto-PGD on the difference-of-logits-ratio loss, untargeted or targeted.

References:
    Croce & Hein, ICML 2020. DLR needs ≥ 3 classes, its targeted form ≥ 4; in few-class tasks
    the targeted variant runs against each of the n_classes − 1 other classes (docs/attacks.md#the-attacks).
"""

from __future__ import annotations

import torch
from torch import Tensor

from advmeta.attacks._apgd import apgd, check_apgd_args
from advmeta.attacks._core import Gen, ModelFn, check_steps
from advmeta.attacks._registry import register_attack
from advmeta.eps import Eps
from advmeta.errors import ConfigError


@register_attack("apgd-dlr", stochastic=True, min_classes=3, iterative=True, test_params=(("steps", 100),))
def apgd_dlr(
    model_fn: ModelFn,
    x: Tensor,
    y: Tensor,
    *,
    eps: Eps,
    steps: int = 100,
    n_restarts: int = 1,
    targeted: bool | None = None,
    n_targets: int | None = None,
    norm: str = "linf",
    random_start: bool = True,
    generator: Gen = None,
) -> Tensor:
    """APGD maximising DLR.

    Args:
        targeted: ``None`` (default) = targeted when the model has ≥ 4 classes, else untargeted.
        n_targets: target classes for the targeted variant (default n_classes − 1, all of them;
            capped at n_classes − 1).
        Others: as :func:`advmeta.attacks.apgd_ce.apgd_ce`.

    Raises:
        ConfigError: fewer than 3 classes, or targeted with fewer than 4.
    """
    e, n, steps, n_restarts = check_apgd_args(x, y, eps, norm, steps, n_restarts)
    x = x.detach()
    if e == 0:
        return x.clone()
    with torch.no_grad():
        clean_logits = model_fn(x)
    n_classes = clean_logits.shape[-1]
    if n_classes < 3:
        raise ConfigError(f"apgd-dlr needs at least 3 classes, the model has {n_classes}; use apgd-ce")
    if targeted is None:
        targeted = n_classes >= 4
    if targeted and n_classes < 4:
        raise ConfigError(f"targeted apgd-dlr needs at least 4 classes, the model has {n_classes}")
    k = 0
    if targeted:
        k = n_classes - 1 if n_targets is None else min(check_steps(n_targets, "n_targets"), n_classes - 1)
    return apgd(
        model_fn, x, y, eps=e, norm=n, steps=steps, loss="dlr", n_restarts=n_restarts, targets=k,
        random_start=random_start, generator=generator, clean_logits=clean_logits,
    )
