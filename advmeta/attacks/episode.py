"""Attacks through adaptation: PGD on an episode's support (and query) images.

A few-shot learner's support set is an input too: the adversary who can touch it perturbs the
images the model fine-tunes on (MAML family) or builds its prototypes or attention from
(metric learners), to make the *clean* query misclassified afterwards. The objective is the
query's cross-entropy after adaptation, differentiated through the adaptation
(:meth:`advmeta.learners.Learner.episode_fn`); ``support+query`` perturbs both jointly.

Unlike the registered attacks (one input, per-sample labels), the loss here belongs to the query
while the perturbation sits on the support, so this is its own function; it keeps their
contract otherwise: outputs detached, in [0, 1], within ε; inputs untouched; ε = 0 returns
copies; one generator per task makes a batch of tasks equal the per-task calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from advmeta.attacks._core import Ball, Gen, Norm, check_inputs, check_step_size, check_steps, random_delta
from advmeta.eps import parse_eps
from advmeta.errors import ConfigError, NonFiniteLossError

EpisodeFn = Callable[[Tensor, Tensor], Tensor]  # (support_x, query_x) -> query logits (T, B, N)


def episode_pgd(
    episode_fn: EpisodeFn,
    support_x: Tensor,
    query_x: Tensor,
    query_y: Tensor,
    *,
    eps: float | str,
    steps: int = 20,
    step_size: float | str | None = None,
    support: bool = True,
    query: bool = False,
    random_start: bool = True,
    generator: Gen = None,
) -> tuple[Tensor, Tensor]:
    """ℓ∞ PGD maximising the query's summed cross-entropy after adaptation.

    Args:
        episode_fn: ``(support_x, query_x) → query logits``, differentiable in both.
        support_x: (T, S, C, H, W) support images in [0, 1]; query_x: (T, B, C, H, W);
            query_y: (T, B) query labels.
        eps: ℓ∞ budget of every perturbed image.
        steps: ascent steps.
        step_size: per step (None: max(2/255, ε/4), as the white-box attacks).
        support, query: which images are perturbed (at least one).
        random_start: start from a uniform point of the ε-ball.
        generator: randomness (one per task for per-task streams; the support's noise is drawn
            before the query's).

    Returns:
        ``(support_adv, query_adv)``; an image set that is not attacked comes back as a copy.
    """
    check_inputs(support_x, None)
    check_inputs(query_x, query_y)
    if not (support or query):
        raise ConfigError("episode_pgd: attack the support, the query or both")
    if support_x.shape[0] != query_x.shape[0]:
        raise ConfigError(f"support and query have {support_x.shape[0]} and {query_x.shape[0]} tasks")
    e = parse_eps(eps)
    steps = check_steps(steps)
    size = check_step_size(step_size, max(2 / 255, e / 4))
    sx, qx = support_x.detach(), query_x.detach()
    if e == 0:
        return sx.clone(), qx.clone()
    clean = [sx, qx]
    which = [i for i, on in enumerate((support, query)) if on]
    balls = {i: Ball(clean[i], e, Norm.LINF) for i in which}
    adv = [x.clone() for x in clean]
    if random_start:
        for i in which:
            adv[i].add_(random_delta(clean[i], e, Norm.LINF, generator))
            balls[i].project_(adv[i])
    for _ in range(steps):
        with torch.enable_grad():
            leaves = {i: adv[i].detach().requires_grad_(True) for i in which}
            inputs = [leaves.get(i, adv[i]) for i in range(2)]
            logits = episode_fn(inputs[0], inputs[1])
            loss = F.cross_entropy(logits.flatten(0, -2), query_y.flatten(), reduction="sum")
            grads = torch.autograd.grad(loss, [leaves[i] for i in which])
        if not math.isfinite(float(loss.detach())) or not all(bool(torch.isfinite(g).all()) for g in grads):
            raise NonFiniteLossError(f"episode-pgd: non-finite query loss ({float(loss.detach())}) or gradient at a perturbed "
                                     "episode; the fine-tuning overflowed — lower the inner learning rate")
        for i, g in zip(which, grads):
            adv[i].add_(g.sign(), alpha=size)
            balls[i].project_(adv[i])
    return adv[0].detach(), adv[1].detach()
