"""APGD-CE: Auto-PGD on the cross-entropy (Croce & Hein, ICML 2020); see ``_apgd``."""

from __future__ import annotations

from torch import Tensor

from advmeta.attacks._apgd import apgd, check_apgd_args
from advmeta.attacks._core import Gen, ModelFn
from advmeta.attacks._registry import register_attack
from advmeta.eps import Eps


@register_attack("apgd-ce", stochastic=True, iterative=True, test_params=(("steps", 100),))
def apgd_ce(
    model_fn: ModelFn,
    x: Tensor,
    y: Tensor,
    *,
    eps: Eps,
    steps: int = 100,
    n_restarts: int = 1,
    norm: str = "linf",
    random_start: bool = True,
    generator: Gen = None,
) -> Tensor:
    """Step-size-free PGD maximising CE; returns a misclassifying iterate where one was found,
    else the iterate of highest loss. 100 steps, 1 restart as in AutoAttack's default.

    Shape: x (..., C, H, W), y (...) -> same as x.
    """
    e, n, steps, n_restarts = check_apgd_args(x, y, eps, norm, steps, n_restarts)
    x = x.detach()
    if e == 0:
        return x.clone()
    return apgd(
        model_fn, x, y, eps=e, norm=n, steps=steps, loss="ce", n_restarts=n_restarts, targets=0,
        random_start=random_start, generator=generator,
    )
