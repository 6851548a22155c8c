"""The perturbations the L2L-family trainers train against (docs/methods.md#l2l).

Every function returns an ℓ∞ perturbation ``delta`` with ``‖delta‖∞ ≤ ε`` and ``x + delta`` in
[0, 1]. For the learned methods ``delta`` keeps the autograd graph through the attacker g_φ (so
the attacker's update can reuse it); the classifier's input gradient it is fed is a constant.

References:
    Jiang, Chen, Zhao & Wang, "Learning to Defense by Learning to Attack", AISTATS 2021, §3
    (Naive / Gradient / Multi-step attackers). The authors' code feeds the raw input gradient
    scaled per batch; we normalise by the batch's maximum absolute value as §8 specifies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advmeta.attacks import ModelFn
from advmeta.attacks._core import Ball, Norm
from advmeta.l2l.config import Method


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
    """The perturbation actually applied: ``x + delta`` projected onto the ℓ∞ ε-ball around ``x``
    and [0, 1] (the attacks' :class:`~advmeta.attacks._core.Ball`), minus ``x``.

    Shape:
        x, delta: (B, C, H, W); returns the same shape. Differentiable in ``delta``.
    """
    return Ball(x, eps, Norm.LINF).project(x + delta) - x


def normalised_input_gradient(model_fn: ModelFn, x: Tensor, y: Tensor) -> Tensor:
    """``∇ₓ CE(f(x), y) / max|∇ₓ CE|`` — one scalar maximum per batch.

    The gradient is a constant (detached); no gradient accumulates in the classifier's parameters.
    With a leading task dimension the maximum is taken per task (each task is its own batch).

    Shape:
        x: (B, C, H, W) or (T, B, C, H, W); y: x's leading dimensions; returns x's shape, in [-1, 1].
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model_fn(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    # the batch maximum (not per-sample) keeps the relative gradient sizes the paper feeds g_φ
    dims = tuple(range(grad.dim() - 4, grad.dim()))
    return grad / grad.abs().amax(dim=dims, keepdim=True).clamp_min(1e-12)


def _call(attacker: nn.Module, x: Tensor, grad: Tensor | None = None) -> Tensor:
    """g_φ on images with any leading dimensions (the tasks of a meta-batch become one batch)."""
    flat = x.reshape(-1, *x.shape[-3:])
    out = attacker(flat) if grad is None else attacker(flat, grad.reshape(flat.shape))
    result: Tensor = out.reshape(x.shape)
    return result


def learned_perturbation(
    method: Method, attacker: nn.Module, model_fn: ModelFn, x: Tensor, y: Tensor, eps: float
) -> Tensor:
    """δ from the attacker network for the naive, gradient and 2-step methods.

    Args:
        method: one of the learned methods.
        attacker: g_φ called as ``attacker(x)`` (naive) or ``attacker(x, grad)`` (the others),
            returning (B, C, H, W) bounded by ε·tanh — :class:`advmeta.models.l2l_attacker.L2LAttacker`.
        model_fn: the classifier's logits (its mode is the caller's choice), (..., C, H, W) → (..., K).
        x: clean images in [0, 1].
        y: labels.
        eps: ℓ∞ budget.

    Returns:
        δ with the graph through g_φ, ‖δ‖∞ ≤ ε and x + δ ∈ [0, 1].

    Shape:
        x: (B, C, H, W) or (T, B, C, H, W) (a meta-batch of query sets); y: x's leading
        dimensions; returns x's shape.
    """
    if method is Method.NAIVE:
        return project(x, _call(attacker, x), eps)
    grad = normalised_input_gradient(model_fn, x, y)
    delta0 = project(x, _call(attacker, x, grad), eps)
    if method is Method.GRAD:
        return delta0
    if method is Method.TWO_STEP:
        # second step of the recurrence at x + δ₀ with the same g_φ; the gradient at x + δ₀ is a
        # constant, while δ₀ itself stays differentiable through both the sum and g's input
        x1 = x + delta0
        grad1 = normalised_input_gradient(model_fn, x1, y)
        return project(x, delta0 + _call(attacker, x1, grad1), eps)
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
