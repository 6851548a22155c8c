"""The perturbations the L2L-family trainers train against (METHODS.md §8).

Every function returns an ℓ∞ perturbation ``delta`` with ``‖delta‖∞ ≤ ε`` and ``x + delta`` in
[0, 1]. For the learned methods ``delta`` keeps the autograd graph through the attacker g_φ (so
the attacker's update can reuse it); the classifier's input gradient it is fed is a constant.

References:
    Jiang, Chen, Zhao & Wang, "Learning to Defense by Learning to Attack", AISTATS 2021, §3
    (Naive / Gradient / Multi-step attackers). The authors' code feeds the raw input gradient
    scaled per batch; we normalise by the batch's maximum absolute value as §8 specifies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advmeta.l2l.config import Method

ModelFn = Callable[[Tensor], Tensor]


@contextmanager
def eval_mode(module: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Temporarily switch ``module`` to eval mode (batch norm on running statistics), then restore."""
    was_training = module.training
    if enabled:
        module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def project(x: Tensor, delta: Tensor, eps: float) -> Tensor:
    """The perturbation actually applied: clip ``delta`` to the ε-ball, then ``x + delta`` to [0, 1].

    Shape:
        x, delta: (B, C, H, W); returns the same shape. Differentiable in ``delta``.
    """
    delta = delta.clamp(-eps, eps)
    return (x + delta).clamp(0.0, 1.0) - x


def normalised_input_gradient(model_fn: ModelFn, x: Tensor, y: Tensor) -> Tensor:
    """``∇ₓ CE(f(x), y) / max|∇ₓ CE|`` — one scalar maximum over the whole batch.

    The gradient is a constant (detached); no gradient accumulates in the classifier's parameters.

    Shape:
        x: (B, C, H, W); y: (B,); returns (B, C, H, W) with values in [-1, 1].
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model_fn(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    # the batch maximum (not per-sample) keeps the relative gradient sizes the paper feeds g_φ
    return grad / grad.abs().amax().clamp_min(1e-12)


def learned_perturbation(
    method: Method, attacker: nn.Module, model_fn: ModelFn, x: Tensor, y: Tensor, eps: float
) -> Tensor:
    """δ from the attacker network for the naive, gradient and 2-step methods.

    Args:
        method: one of the learned methods.
        attacker: g_φ mapping (B, C·k, H, W) → (B, C, H, W), bounded by ε·tanh.
        model_fn: the classifier's logits (its mode is the caller's choice).
        x: clean images in [0, 1].
        y: labels.
        eps: ℓ∞ budget.

    Returns:
        δ with the graph through g_φ, ‖δ‖∞ ≤ ε and x + δ ∈ [0, 1].

    Shape:
        x: (B, C, H, W); y: (B,); returns (B, C, H, W).
    """
    if method is Method.NAIVE:
        return project(x, attacker(x), eps)
    grad = normalised_input_gradient(model_fn, x, y)
    delta0 = project(x, attacker(torch.cat([x, grad], dim=1)), eps)
    if method is Method.GRAD:
        return delta0
    if method is Method.TWO_STEP:
        # second step of the recurrence at x + δ₀ with the same g_φ; the gradient at x + δ₀ is a
        # constant, while δ₀ itself stays differentiable through both the sum and g's input
        x1 = x + delta0
        grad1 = normalised_input_gradient(model_fn, x1, y)
        return project(x, delta0 + attacker(torch.cat([x1, grad1], dim=1)), eps)
    raise ValueError(f"{method.value} has no learned perturbation")


def pgd_perturbation(
    model_fn: ModelFn, x: Tensor, y: Tensor, eps: float, steps: int, step_size: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """PGM Net's δ: Madry PGD with a uniform random start, from :func:`advmeta.attacks.get_attack`.

    Shape:
        x: (B, C, H, W); y: (B,); returns a detached (B, C, H, W).
    """
    from advmeta.attacks import get_attack

    pgd = get_attack("pgd")
    x_adv = pgd(model_fn, x, y, eps=eps, steps=steps, step_size=step_size, random_start=True, generator=generator)
    return project(x, x_adv.detach() - x, eps)
