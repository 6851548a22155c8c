"""Projected gradient descent (ℓ∞ and ℓ2), the attack the others compose.

References:
    Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.
"""

from __future__ import annotations

from torch import Tensor

from advmeta.attacks._core import Ball, Gen, ModelFn, check_inputs, check_step_size, check_steps
from advmeta.attacks._core import gradient_step_, parse_norm, random_delta
from advmeta.attacks._losses import make_objective
from advmeta.attacks._registry import register_attack
from advmeta.eps import Eps, parse_eps


def pgd_attack(
    model_fn: ModelFn,
    x: Tensor,
    y: Tensor | None,
    *,
    eps: Eps,
    steps: int,
    step_size: Eps | None,
    norm: str,
    loss: str,
    random_start: bool,
    generator: Gen,
) -> Tensor:
    """The shared PGD loop: validate, start (randomly or at x), then ``steps`` projected steps.

    Returns the last iterate, detached. ``step_size=None`` means 2.5·ε/steps [choice: Madry
    et al.'s rule]. Used by ``pgd``, ``fgsm``, ``fgsm-rs`` and ``cw-linf``.
    """
    e = parse_eps(eps)
    n = parse_norm(norm)
    steps = check_steps(steps)
    s = check_step_size(step_size, 2.5 * e / steps)
    check_inputs(x, y)
    x = x.detach()
    if e == 0:
        return x.clone()
    objective = make_objective(loss, model_fn, x, y)
    ball = Ball(x, e, n)
    x_adv = x.clone()
    if random_start:
        ball.project_(x_adv.add_(random_delta(x, e, n, generator)))
    for _ in range(steps):
        gradient_step_(model_fn, objective, x_adv, ball, s, n)
    return x_adv


@register_attack("pgd", stochastic=True, iterative=True,
                 test_params=(("steps", 20), ("step_size", "auto"), ("random_start", True)))
def pgd(
    model_fn: ModelFn,
    x: Tensor,
    y: Tensor | None,
    *,
    eps: Eps,
    steps: int = 20,
    step_size: Eps | None = None,
    norm: str = "linf",
    loss: str = "ce",
    random_start: bool = True,
    generator: Gen = None,
) -> Tensor:
    """PGD: a random start in the ε-ball (optional), then ``steps`` steps of ``step_size``.

    Args:
        model_fn: logits function, (..., C, H, W) -> (..., K).
        x: clean images in [0, 1], (..., C, H, W); never modified.
        y: labels (...); unused (may be None) with ``loss="kl"``.
        eps: budget, ``"8/255"`` or a float.
        steps: number of gradient steps (≥ 1).
        step_size: per-step size (``"2/255"`` or a float); default 2.5·ε/steps.
        norm: ``"linf"`` or ``"l2"``.
        loss: ``"ce"``, ``"ce-sum"``, ``"margin"``, ``"kl"`` (TRADES) or ``"dlr"``.
        random_start: start at a uniform random point of the ball.
        generator: a ``torch.Generator``, or one per leading task index (see
            :func:`advmeta.attacks.task_generators`), for the random start.

    Returns:
        Adversarial images, detached, same shape, in [0, 1], within ε of x.
    """
    return pgd_attack(
        model_fn, x, y, eps=eps, steps=steps, step_size=step_size, norm=norm, loss=loss,
        random_start=random_start, generator=generator,
    )
