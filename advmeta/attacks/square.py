"""Square: the score-based black-box ℓ∞ attack (Andriushchenko et al., ECCV 2020).

It never reads a gradient, only the model's scores, so it is the check that a white-box
number is not an artefact of masked gradients: where Square beats PGD, PGD was fooled.

The ℓ∞ version as published: start from vertical stripes of ±ε, then at every query propose
one square window of side s (the fraction p of the image's pixels, halved on the published
schedule) filled with ±ε per channel, and keep it when it lowers the margin loss
f_y − max_{k≠y} f_k. A sample stops being updated once it is misclassified (margin < 0).
Every sample costs at most ``n_queries`` forward passes, the first being the initialisation.

The whole batch is queried together, fooled samples at their best image, so a model whose
forward couples the samples (transductive batch norm) is attacked as it is evaluated.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from advmeta.attacks._core import Gen, ModelFn, _draw, check_inputs, check_steps, parse_norm
from advmeta.attacks._losses import margin as cw_margin
from advmeta.attacks._registry import register_attack
from advmeta.eps import Eps, parse_eps
from advmeta.errors import ConfigError, NonFiniteLossError

# Iterations (out of 10 000) after which p is halved again: the published schedule, rescaled
# to the query budget as the authors' code does.
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(p_init: float, it: int, n_queries: int) -> float:
    """The fraction of pixels the square covers at query ``it`` of ``n_queries``."""
    scaled = int(it / n_queries * 10000)
    p: float = p_init / 2 ** sum(scaled > h for h in _HALVINGS)
    return p


def _signs(u: Tensor, eps: float) -> Tensor:
    return torch.where(u < 0.5, -eps, eps)


def _margin(model_fn: ModelFn, x: Tensor, y: Tensor) -> Tensor:
    """f_y − max_{k≠y} f_k at ``x``; a NaN/inf margin raises instead of being skipped by ``<``."""
    loss = -cw_margin(model_fn(x), y)
    if not bool(torch.isfinite(loss).all()):
        raise NonFiniteLossError(f"square: non-finite margin on {int((~torch.isfinite(loss)).sum())} of "
                                 f"{loss.numel()} samples; the logits overflowed — lower the inner learning rate")
    return loss


def _proposal(x: Tensor, best: Tensor, eps: float, side: int, rows: Tensor, cols: Tensor, generator: Gen) -> Tensor:
    """``best`` with one square of ``side`` pixels, at a random place, set to a random vertex of the
    ε-ball in every channel (clipped to [0, 1]); where that changes nothing, the opposite vertex.
    ``rows``, ``cols``: the pixel indices ``0 … H−1`` and ``0 … W−1``."""
    lead, (c, h, w) = tuple(x.shape[:-3]), tuple(x.shape[-3:])
    u = _draw((*lead, 2 + c), generator, x, normal=False)
    top = (u[..., 0] * (h - side + 1)).long().clamp_(max=h - side)
    left = (u[..., 1] * (w - side + 1)).long().clamp_(max=w - side)
    in_h = (rows >= top.unsqueeze(-1)) & (rows < (top + side).unsqueeze(-1))
    in_w = (cols >= left.unsqueeze(-1)) & (cols < (left + side).unsqueeze(-1))
    window = (in_h.unsqueeze(-1) & in_w.unsqueeze(-2)).unsqueeze(-3)  # (..., 1, H, W)
    colour = _signs(u[..., 2:], eps)[..., None, None]  # (..., C, 1, 1)
    current = best - x
    proposal = (x + torch.where(window, colour, current)).clamp(0.0, 1.0)
    # A square that changes nothing wastes a query: take the opposite colour instead
    # (the authors' code redraws until the window changes).
    same = (proposal == best).flatten(-3).all(-1)
    if bool(same.any()):
        flipped = (x + torch.where(window, -colour, current)).clamp(0.0, 1.0)
        proposal = torch.where(same[..., None, None, None], flipped, proposal)
    return proposal


@register_attack("square", norms=("linf",), stochastic=True, gradient_free=True, test_params=(("n_queries", 1000),))
def square(
    model_fn: ModelFn,
    x: Tensor,
    y: Tensor,
    *,
    eps: Eps,
    n_queries: int = 1000,
    p_init: float = 0.8,
    norm: str = "linf",
    generator: Gen = None,
) -> Tensor:
    """Square attack (ℓ∞, untargeted, margin loss).

    Args:
        model_fn: images (..., C, H, W) → logits (..., K); only its outputs are used.
        x: clean images in [0, 1].
        y: true labels, shape x.shape[:-3].
        eps: ℓ∞ budget.
        n_queries: forward passes per sample, the initialisation included (test default
            1000; AutoAttack's standard run uses 5000).
        p_init: initial fraction of the pixels a square covers [choice: 0.8, AutoAttack's; the
            paper's ImageNet runs use 0.05], halved at 10, 50, 200, 500, 1000, 2000, 4000,
            6000 and 8000 of 10 000 queries (rescaled to ``n_queries``).
        norm: ``linf`` only.
        generator: randomness (one generator, or one per leading index: per-task streams).

    Returns:
        The adversarial images (detached, in [0, 1], within ε of x).
    """
    parse_norm(norm, ("linf",))
    check_inputs(x, y)
    e = parse_eps(eps)
    n_queries = check_steps(n_queries, "n_queries")
    if isinstance(p_init, bool) or not isinstance(p_init, (int, float)) or not 0 < p_init <= 1:
        raise ConfigError(f"p_init must be in (0, 1], got {p_init!r}")
    x = x.detach()
    if e == 0:
        return x.clone()
    lead, (c, h, w) = tuple(x.shape[:-3]), tuple(x.shape[-3:])
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)  # made once, not per query
    with torch.no_grad():
        # Vertical stripes: one sign per (channel, column).
        delta = _signs(_draw((*lead, c, 1, w), generator, x, normal=False), e).expand(*lead, c, h, w)
        best = (x + delta).clamp(0.0, 1.0)
        loss = _margin(model_fn, best, y)  # f_y − max_{k≠y} f_k: negative once misclassified
        for it in range(1, n_queries):
            active = loss > 0
            if not bool(active.any()):
                break
            side = max(int(round(math.sqrt(p_schedule(p_init, it, n_queries) * h * w))), 1)
            side = min(side, max(h - 1, 1), max(w - 1, 1))
            proposal = _proposal(x, best, e, side, rows, cols, generator)
            new_loss = _margin(model_fn, proposal, y)
            take = active & (new_loss < loss)
            best = torch.where(take[..., None, None, None], proposal, best)
            loss = torch.where(take, new_loss, loss)
    return best.detach()
