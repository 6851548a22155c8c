"""Auto-PGD: the step-size-free PGD of Croce & Hein, shared by ``apgd-ce`` and ``apgd-dlr``.

Algorithm 1 of the paper, vectorised over samples: step size η starts at 2ε; a momentum
step with α = 0.75; at checkpoints w_j (p₀ = 0, p₁ = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} −
0.03, 0.06)) η halves per sample when (1) the loss rose in fewer than ρ = 0.75 of the steps
since the last checkpoint, or (2) neither η nor the best loss changed since it; the iterate
then restarts from the best point.

References:
    Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", ICML 2020. Unlike their code, every restart attacks every sample
    (not only those still robust), so batch-norm-coupled episodes see the whole batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from advmeta.attacks._losses import make_objective
from advmeta.attacks._core import (
    Ball,
    Gen,
    ModelFn,
    Norm,
    Objective,
    ascent_direction,
    check_inputs,
    check_steps,
    input_grad,
    parse_norm,
    random_delta,
)
from advmeta.eps import Eps, parse_eps


def check_apgd_args(x: Tensor, y: Tensor, eps: Eps, norm: str, steps: int,
                    n_restarts: int) -> tuple[float, Norm, int, int]:
    """The APGD attacks' shared argument checks: (ε, norm, steps, restarts) or a ConfigError."""
    e, n = parse_eps(eps), parse_norm(norm)
    steps, n_restarts = check_steps(steps), check_steps(n_restarts, "n_restarts")
    check_inputs(x, y)
    return e, n, steps, n_restarts


def checkpoints(steps: int) -> list[int]:
    """Iterations (1-based, ≤ steps) at which the step-size conditions are checked."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    marks = {math.ceil(q * steps - 1e-9) for q in p[1:] if q < 1}
    return sorted(m for m in marks if 0 < m <= steps)


def _x(v: Tensor) -> Tensor:
    return v[..., None, None, None]


def apgd_run(
    model_fn: ModelFn,
    x: Tensor,
    y: Tensor,
    objective: Objective,
    ball: Ball,
    norm: Norm,
    eps: float,
    steps: int,
    random_start: bool,
    generator: Gen,
    rho: float = 0.75,
    alpha: float = 0.75,
) -> tuple[Tensor, Tensor, Tensor]:
    """One APGD run.

    Returns:
        (x_out, loss_best, fooled): per sample, the last misclassifying iterate where one was
        found (``fooled``), else the iterate of highest loss; and that highest loss.
    """
    x_adv = x.clone()
    if random_start:
        ball.project_(x_adv.add_(random_delta(x, eps, norm, generator)))
    grad, loss, logits = input_grad(model_fn, objective, x_adv)
    fooled = logits.argmax(-1) != y
    x_fool = x_adv.clone()
    x_best, loss_best, grad_best = x_adv.clone(), loss.clone(), grad.clone()
    eta = torch.full_like(loss, 2 * eps)
    x_prev = x_adv.clone()
    checks = set(checkpoints(steps))
    last_check, n_up = 0, torch.zeros_like(loss)
    best_at_check, reduced = loss_best.clone(), torch.zeros_like(fooled)
    for k in range(steps):
        z = ball.project_(x_adv + _x(eta) * ascent_direction(grad, norm))
        if k == 0:
            x_new = z
        else:  # x + α(z − x) + (1 − α)(x − x_prev)
            x_new = ball.project_(x_adv.mul(2 * (1 - alpha)).add_(z, alpha=alpha).sub_(x_prev, alpha=1 - alpha))
        x_prev, x_adv = x_adv, x_new
        grad, new_loss, logits = input_grad(model_fn, objective, x_adv)
        now_fooled = logits.argmax(-1) != y
        x_fool = torch.where(_x(now_fooled), x_adv, x_fool)
        fooled |= now_fooled
        n_up += new_loss > loss
        loss = new_loss
        improved = loss > loss_best
        x_best = torch.where(_x(improved), x_adv, x_best)
        grad_best = torch.where(_x(improved), grad, grad_best)
        loss_best = torch.where(improved, loss, loss_best)
        if k + 1 in checks:
            cond1 = n_up < rho * (k + 1 - last_check)
            cond2 = ~reduced & (best_at_check >= loss_best)
            reduced = cond1 | cond2
            eta = torch.where(reduced, eta / 2, eta)
            x_adv = torch.where(_x(reduced), x_best, x_adv)
            grad = torch.where(_x(reduced), grad_best, grad)
            best_at_check = loss_best.clone()
            n_up.zero_()
            last_check = k + 1
    x_fool = torch.where(_x(fooled), x_fool, x_best)
    return x_fool, loss_best, fooled


def apgd(
    model_fn: ModelFn,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: Norm,
    steps: int,
    loss: str,
    n_restarts: int,
    targets: int,
    random_start: bool,
    generator: Gen,
    clean_logits: Tensor | None = None,
) -> Tensor:
    """APGD with restarts; ``targets > 0`` runs targeted DLR against the 2nd … (targets+1)-th
    most likely clean classes, one run each (per restart). Per sample the first run that
    misclassifies wins; otherwise the run with the highest final loss."""
    ball = Ball(x, eps, norm)
    if targets and clean_logits is None:
        with torch.no_grad():
            clean_logits = model_fn(x)
    if targets:
        assert clean_logits is not None, "computed above when targets > 0"
        ranked = clean_logits.argsort(dim=-1, descending=True)
        objectives = [make_objective("dlr", model_fn, x, y, target=ranked[..., r]) for r in range(1, targets + 1)]
    else:
        objectives = [make_objective(loss, model_fn, x, y)]
    out = x.clone()
    done = torch.zeros(x.shape[:-3], dtype=torch.bool, device=x.device)
    top = torch.full(x.shape[:-3], float("-inf"), dtype=x.dtype, device=x.device)
    for _ in range(n_restarts):
        for objective in objectives:
            x_run, loss_run, fooled = apgd_run(model_fn, x, y, objective, ball, norm, eps, steps, random_start, generator)
            take = (fooled & ~done) | (~done & ~fooled & (loss_run > top))
            out = torch.where(_x(take), x_run, out)
            top = torch.where(take & ~fooled, loss_run, top)
            done |= fooled
    return out
