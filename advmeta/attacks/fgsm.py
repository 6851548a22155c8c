"""FGSM: one signed-gradient step of size ε — PGD with one step and no random start.

References:
    Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015.
"""

from __future__ import annotations

from torch import Tensor

from advmeta.attacks._core import Gen, ModelFn
from advmeta.attacks._registry import register_attack
from advmeta.attacks.pgd import pgd_attack
from advmeta.eps import Eps, parse_eps


@register_attack("fgsm")
def fgsm(
    model_fn: ModelFn,
    x: Tensor,
    y: Tensor | None,
    *,
    eps: Eps,
    norm: str = "linf",
    loss: str = "ce",
    generator: Gen = None,
) -> Tensor:
    """x + ε·sign(∇ₓL) clipped to [0, 1] (ℓ2: x + ε·∇/‖∇‖₂). ``generator`` is unused.

    Shape:
        x (..., C, H, W), y (...) -> (..., C, H, W).
    """
    e = parse_eps(eps)
    return pgd_attack(
        model_fn, x, y, eps=e, steps=1, step_size=e if e > 0 else None, norm=norm, loss=loss,
        random_start=False, generator=None,
    )
