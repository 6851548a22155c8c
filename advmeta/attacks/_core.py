"""Shared machinery of the attacks: argument checks, the ε-ball projection with [0, 1]
clipping, random starts, input gradients and the one-step update PGD composes.

Leading dimensions of ``x`` (everything before the last three, C, H, W) are samples: norms,
step directions and per-sample decisions are taken over (C, H, W) only, and the objective is
the *sum* of per-sample losses, so a sample's gradient does not depend on how many samples are
attacked together (up to batch-norm coupling inside ``model_fn``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum

import torch
from torch import Tensor

from advmeta.eps import Eps, parse_eps
from advmeta.errors import ConfigError, NonFiniteLossError

ModelFn = Callable[[Tensor], Tensor]
Gen = torch.Generator | Sequence[torch.Generator] | None
Objective = Callable[..., Tensor]  # (logits, x_adv[, task index]) -> per-sample loss (...)


class Norm(str, Enum):
    """Threat-model norms."""

    LINF = "linf"
    L2 = "l2"


def parse_norm(norm: str | Norm, allowed: Sequence[str] = ("linf", "l2")) -> Norm:
    """``norm`` as a :class:`Norm`; :class:`ConfigError` when unknown or not in ``allowed``."""
    value = norm.value if isinstance(norm, Norm) else norm
    if value not in allowed:
        raise ConfigError(f"unknown norm {norm!r} for this attack; known: {', '.join(allowed)}")
    return Norm(value)


def check_inputs(x: Tensor, y: Tensor | None) -> None:
    """Images are floats in [0, 1] with ≥ 3 dims; labels match the leading dims."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 3:
        raise ConfigError("attack input x must be a float tensor of shape (..., C, H, W)")
    if y is not None and tuple(y.shape) != tuple(x.shape[:-3]):
        raise ConfigError(f"labels of shape {tuple(y.shape)} do not match images {tuple(x.shape)}")
    if x.numel() and (bool(x.min() < 0) or bool(x.max() > 1)):
        raise ConfigError("attack input x must lie in [0, 1] (normalise inside the model)")


def check_steps(steps: int, name: str = "steps") -> int:
    """``steps`` as an int ≥ 1."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {steps!r}")
    return steps


def check_step_size(step_size: Eps | None, default: float) -> float:
    """``step_size`` (``"2/255"`` or a float) or ``default`` when ``None``."""
    if step_size is None:
        return default
    value = parse_eps(step_size)
    if value <= 0:
        raise ConfigError(f"step_size must be > 0, got {step_size!r}")
    return value


def sample_norm(d: Tensor, norm: Norm) -> Tensor:
    """Per-sample norm over (C, H, W), shape (...)."""
    if norm is Norm.LINF:
        return d.abs().flatten(-3).amax(-1)
    out: Tensor = d.flatten(-3).norm(dim=-1)
    return out


def _expand(v: Tensor) -> Tensor:
    return v[..., None, None, None]


class Ball:
    """The feasible set {x′ : ‖x′ − x‖ ≤ ε, 0 ≤ x′ ≤ 1}; :meth:`project_` maps into it in place,
    :meth:`project` out of place (differentiable: the L2L attackers learn through it).

    For ℓ∞ the bounds are precomputed, so projection and clipping are one ``clamp``. For ℓ2,
    projecting onto the ball and then clipping stays in the ball (clipping only shrinks |δ|).
    """

    def __init__(self, x: Tensor, eps: float, norm: Norm) -> None:
        self.x, self.eps, self.norm = x, eps, norm
        if norm is Norm.LINF:
            self.lo = (x - eps).clamp_(min=0.0)
            self.hi = (x + eps).clamp_(max=1.0)

    def project(self, x_adv: Tensor) -> Tensor:
        """``x_adv`` in the set, a new tensor that gradients flow through (where no bound binds)."""
        if self.norm is Norm.LINF:
            return torch.clamp(x_adv, self.lo, self.hi)
        d = x_adv - self.x
        scale = (self.eps / sample_norm(d, Norm.L2).clamp_min(1e-12)).clamp(max=1.0)
        return (self.x + d * _expand(scale)).clamp(0.0, 1.0)

    def project_(self, x_adv: Tensor) -> Tensor:
        """``x_adv`` moved into the set in place (attack iterates, no gradient)."""
        if self.norm is Norm.LINF:
            return torch.clamp(x_adv, self.lo, self.hi, out=x_adv)
        d = x_adv.sub_(self.x)
        scale = (self.eps / sample_norm(d, Norm.L2).clamp_min(1e-12)).clamp_(max=1.0)
        return d.mul_(_expand(scale)).add_(self.x).clamp_(0.0, 1.0)


def _draw(shape: Sequence[int], generator: Gen, like: Tensor, normal: bool) -> Tensor:
    fn = torch.randn if normal else torch.rand
    if generator is None:
        return fn(tuple(shape), device=like.device, dtype=like.dtype)
    if isinstance(generator, torch.Generator):
        return fn(tuple(shape), generator=generator, device=generator.device, dtype=like.dtype).to(like.device)
    gens = list(generator)
    if len(gens) != shape[0]:
        raise ConfigError(f"{len(gens)} generators given for {shape[0]} tasks (one per leading index)")
    return torch.stack([fn(tuple(shape[1:]), generator=g, device=g.device, dtype=like.dtype) for g in gens]).to(
        like.device
    )


def random_delta(x: Tensor, eps: float, norm: Norm, generator: Gen) -> Tensor:
    """A uniform random point of the ε-ball (ℓ∞: U(−ε, ε) per pixel; ℓ2: uniform in the ball).

    With a sequence of generators (one per leading index t), task t's noise is drawn from
    ``generator[t]`` alone, so attacking the batch of tasks equals attacking each task with
    its own generator.
    """
    if norm is Norm.LINF:
        return _draw(x.shape, generator, x, normal=False).mul_(2 * eps).sub_(eps)
    direction = _draw(x.shape, generator, x, normal=True)
    u = _draw(x.shape[:-3], generator, x, normal=False)
    radius = eps * u.pow(1.0 / x.shape[-3:].numel())
    return direction.mul_(_expand(radius / sample_norm(direction, Norm.L2).clamp_min(1e-12)))


def input_grad(model_fn: ModelFn, objective: Objective, x_adv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gradient of Σ objective at ``x_adv`` w.r.t. the input, with the per-sample losses and
    logits (both detached). Works under ``torch.no_grad()`` callers; parameters' ``.grad``
    are never touched.

    When ``model_fn`` was built by :func:`advmeta.attacks.per_task` (it carries ``task_fn``),
    each task's forward and backward run one after the other, so only one task's graph is
    alive at a time: the same numbers, at the per-task loop's memory and speed on CPU.
    """
    task_fn = getattr(model_fn, "task_fn", None)
    with torch.enable_grad():
        if task_fn is not None and x_adv.dim() >= 5:
            parts = []
            for t, xt in enumerate(x_adv.unbind(0)):
                xa = xt.detach().requires_grad_(True)
                logits = task_fn(t, xa)
                losses = objective(logits, xa, t)
                (grad,) = torch.autograd.grad(losses.sum(), xa)
                parts.append((grad, losses.detach(), logits.detach()))
            grads, losses, logits = (torch.stack(p) for p in zip(*parts))
            return check_finite_step(grads, losses, logits)
        xa = x_adv.detach().requires_grad_(True)
        logits = model_fn(xa)
        losses = objective(logits, xa)
        (grad,) = torch.autograd.grad(losses.sum(), xa)
    return check_finite_step(grad, losses.detach(), logits.detach())


def check_finite_step(grad: Tensor, losses: Tensor, logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(grad, losses, logits)`` unchanged when all are finite.

    Raises:
        NonFiniteLossError: the attack's objective or its input gradient is NaN or infinite at
            some perturbed point. ``sign(NaN)`` would otherwise leave a sample where it is, or a
            best-so-far comparison would skip it, and the attack would silently report a
            robustness it never tested.
    """
    bad = int((~torch.isfinite(losses)).sum())
    bad_grad = int((~torch.isfinite(grad.flatten(-3))).any(-1).sum()) if grad.dim() >= 3 else 0
    if bad or bad_grad:
        raise NonFiniteLossError(
            f"attack: non-finite {'objective' if bad else 'input gradient'} on {max(bad, bad_grad)} of "
            f"{losses.numel()} samples at a perturbed point; the logits overflowed — lower the inner learning rate "
            "or the fine-tune steps")
    return grad, losses, logits


def ascent_direction(grad: Tensor, norm: Norm) -> Tensor:
    """Steepest-ascent direction of unit norm: sign(∇) for ℓ∞, ∇/‖∇‖₂ per sample for ℓ2."""
    if norm is Norm.LINF:
        return grad.sign()
    return grad / _expand(sample_norm(grad, Norm.L2).clamp_min(1e-12))


def gradient_step_(
    model_fn: ModelFn, objective: Objective, x_adv: Tensor, ball: Ball, step_size: float | Tensor, norm: Norm
) -> Tensor:
    """One projected ascent step, in place on ``x_adv``: x ← Π(x + s·dir(∇)). PGD is this, repeated."""
    grad, _, _ = input_grad(model_fn, objective, x_adv)
    step = ascent_direction(grad, norm)
    if isinstance(step_size, Tensor):
        x_adv.addcmul_(_expand(step_size), step)
    else:
        x_adv.add_(step, alpha=step_size)
    return ball.project_(x_adv)
