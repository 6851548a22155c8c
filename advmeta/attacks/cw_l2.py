"""Carlini–Wagner ℓ2: minimal perturbations via a tanh box, Adam, and a binary search over c.

References:
    Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", S&P 2017.
    Differences: a fixed number of Adam steps per search step (no early abort) [choice].
"""

from __future__ import annotations

import torch
from torch import Tensor

from advmeta.attacks._core import Ball, Gen, ModelFn, Norm, check_finite_step, check_inputs, check_steps
from advmeta.attacks._losses import margin
from advmeta.attacks._registry import register_attack
from advmeta.eps import Eps, parse_eps
from advmeta.errors import ConfigError


@register_attack("cw-l2", norms=("l2",), bounded=False, iterative=True, test_params=(("steps", 100),))
def cw_l2(
    model_fn: ModelFn,
    x: Tensor,
    y: Tensor,
    *,
    eps: Eps | None = None,
    steps: int = 100,
    search_steps: int = 5,
    initial_const: float = 0.1,
    lr: float = 0.01,
    kappa: float = 0.0,
    norm: str = "l2",
    generator: Gen = None,
) -> Tensor:
    """min ‖x′ − x‖₂² + c·max(z_y − max_{j≠y} z_j, −κ) with x′ = (tanh w + 1)/2.

    Per sample, c starts at ``initial_const``; after each run of ``steps`` Adam steps it is
    bisected when the attack succeeded and multiplied by 10 (or bisected upwards) when not.
    The returned image is the successful one with the smallest ℓ2 norm, or x where none was
    found. ``eps`` (optional) caps the result's ℓ2 norm by projection; ``None`` is unbounded.

    Shape: x (..., C, H, W), y (...) -> same as x.
    """
    if norm != "l2":
        raise ConfigError(f"unknown norm {norm!r} for cw-l2; known: l2")
    cap = None if eps is None else parse_eps(eps)
    steps = check_steps(steps)
    search_steps = check_steps(search_steps, "search_steps")
    if initial_const <= 0 or lr <= 0 or kappa < 0:
        raise ConfigError("cw-l2 needs initial_const > 0, lr > 0 and kappa >= 0")
    check_inputs(x, y)
    x = x.detach()
    if cap == 0:
        return x.clone()
    samples = x.shape[:-3]
    c = x.new_full(samples, initial_const)
    lo = torch.zeros_like(c)
    hi = torch.full_like(c, float("inf"))
    best_l2 = torch.full_like(c, float("inf"))
    best = x.clone()
    w0 = torch.atanh((2 * x - 1).clamp_(-1 + 1e-6, 1 - 1e-6))
    for _ in range(search_steps):
        success, best, best_l2 = _adam_run(model_fn, x, y, w0, c, best, best_l2, steps=steps, lr=lr, kappa=kappa)
        hi = torch.where(success, torch.minimum(hi, c), hi)
        lo = torch.where(success, lo, torch.maximum(lo, c))
        c = torch.where(torch.isinf(hi), c * 10, (lo + hi) / 2)
    best.clamp_(0.0, 1.0)
    if cap is not None:
        Ball(x, cap, Norm.L2).project_(best)
    return best


def _adam_run(model_fn: ModelFn, x: Tensor, y: Tensor, w0: Tensor, c: Tensor, best: Tensor, best_l2: Tensor, *,
              steps: int, lr: float, kappa: float) -> tuple[Tensor, Tensor, Tensor]:
    """``steps`` Adam steps on the objective at the constants ``c``, from ``w0`` (tanh space).

    Returns:
        Which samples were misclassified (by more than κ) at some step, and the best images and
        their squared ℓ2 distances: ``best`` and ``best_l2`` replaced where a step found a closer hit.
    """
    w = w0.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    success = torch.zeros(x.shape[:-3], dtype=torch.bool, device=x.device)
    for _ in range(steps):
        with torch.enable_grad():
            x_adv = (torch.tanh(w) + 1) / 2
            logits = model_fn(x_adv)
            m = margin(logits, y)
            l2sq = (x_adv - x).square().flatten(-3).sum(-1)
            objective = l2sq + c * (-m).clamp(min=-kappa)
            (w.grad,) = torch.autograd.grad(objective.sum(), w)
        check_finite_step(w.grad, objective.detach(), logits.detach())  # NaN would never count as a hit
        with torch.no_grad():
            hit = m.detach() > kappa if kappa > 0 else m.detach() > 0
            better = hit & (l2sq.detach() < best_l2)
            best_l2 = torch.where(better, l2sq.detach(), best_l2)
            best = torch.where(better[..., None, None, None], x_adv.detach(), best)
            success |= hit
        opt.step()
    return success, best, best_l2
