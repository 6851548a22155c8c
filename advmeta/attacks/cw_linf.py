"""The ℓ∞ C&W attack as commonly run: PGD on the C&W margin loss max_{j≠y} z_j − z_y.

References:
    Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", S&P 2017
    (the margin objective f6 with κ = 0); ℓ∞ PGD on it as in Madry et al.'s evaluations.
"""

from __future__ import annotations

from torch import Tensor

from advmeta.attacks._core import Gen, ModelFn
from advmeta.attacks._registry import register_attack
from advmeta.attacks.pgd import pgd_attack
from advmeta.eps import Eps


@register_attack("cw-linf", stochastic=True, iterative=True, test_params=(("steps", 100), ("step_size", "auto")))
def cw_linf(
    model_fn: ModelFn,
    x: Tensor,
    y: Tensor,
    *,
    eps: Eps,
    steps: int = 100,
    step_size: Eps | None = None,
    norm: str = "linf",
    random_start: bool = True,
    generator: Gen = None,
) -> Tensor:
    """PGD with ``loss="margin"``; 100 steps by default (docs/attacks.md#the-attacks), step 2.5·ε/steps."""
    return pgd_attack(
        model_fn, x, y, eps=eps, steps=steps, step_size=step_size, norm=norm, loss="margin",
        random_start=random_start, generator=generator,
    )
