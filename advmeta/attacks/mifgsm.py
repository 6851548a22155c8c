"""MI-FGSM: iterative FGSM with momentum on ℓ1-normalised gradients.

References:
    Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018 (μ = 1, T steps of ε/T).
"""

from __future__ import annotations

from torch import Tensor

from advmeta.attacks._core import Ball, Gen, ModelFn, ascent_direction, check_inputs, check_step_size
from advmeta.attacks._core import check_steps, input_grad, parse_norm
from advmeta.attacks._losses import make_objective
from advmeta.attacks._registry import register_attack
from advmeta.eps import Eps, parse_eps


@register_attack("mifgsm", iterative=True, test_params=(("steps", 10),))
def mifgsm(
    model_fn: ModelFn,
    x: Tensor,
    y: Tensor | None,
    *,
    eps: Eps,
    steps: int = 10,
    step_size: Eps | None = None,
    momentum: float = 1.0,
    norm: str = "linf",
    loss: str = "ce",
    generator: Gen = None,
) -> Tensor:
    """g ← μ·g + ∇/‖∇‖₁ (per sample); x ← Π(x + s·sign(g)); s = ε/steps by default.

    ``generator`` is unused (no random start). Shape: x (..., C, H, W) -> same.
    """
    e = parse_eps(eps)
    n = parse_norm(norm)
    steps = check_steps(steps)
    s = check_step_size(step_size, e / steps)
    check_inputs(x, y)
    x = x.detach()
    if e == 0:
        return x.clone()
    objective = make_objective(loss, model_fn, x, y)
    ball = Ball(x, e, n)
    x_adv = x.clone()
    g = None
    for _ in range(steps):
        grad, _, _ = input_grad(model_fn, objective, x_adv)
        grad.div_(grad.abs().flatten(-3).sum(-1).clamp_min(1e-12)[..., None, None, None])
        g = grad if g is None else g.mul_(momentum).add_(grad)
        x_adv.add_(ascent_direction(g, n), alpha=s)
        ball.project_(x_adv)
    return x_adv
