"""FGSM with a random start ("fast" adversarial training's attack; R-MAML's training attack).

References:
    Wong et al., "Fast is better than free: revisiting adversarial training", ICLR 2020
    (δ₀ ~ U(−ε, ε), one step of 1.25ε, project).
"""

from __future__ import annotations

from torch import Tensor

from advmeta.attacks._core import Gen, ModelFn
from advmeta.attacks._registry import register_attack
from advmeta.attacks.pgd import pgd_attack
from advmeta.eps import Eps, parse_eps


@register_attack("fgsm-rs", stochastic=True)
def fgsm_rs(
    model_fn: ModelFn,
    x: Tensor,
    y: Tensor | None,
    *,
    eps: Eps,
    step_size: Eps | None = None,
    norm: str = "linf",
    loss: str = "ce",
    generator: Gen = None,
) -> Tensor:
    """δ = Π_ε(δ₀ + s·sign∇ at x + δ₀), δ₀ uniform in the ball, s = 1.25ε by default.

    ``loss="kl"`` gives R-MAML-TRADES's attack. Shape: x (..., C, H, W) -> same.
    """
    e = parse_eps(eps)
    return pgd_attack(
        model_fn, x, y, eps=e, steps=1, step_size=step_size if step_size is not None else (1.25 * e or None),
        norm=norm, loss=loss, random_start=True, generator=generator,
    )
