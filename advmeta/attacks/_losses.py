"""Per-sample attack objectives (maximised by every attack).

``ce`` and ``ce-sum`` name the same objective: attacks ascend the *sum* of per-sample losses,
and every step is scale-free (sign or normalised gradient), so a mean and a sum give the same
adversarial examples; both names exist because the papers' code uses both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from advmeta.attacks._core import ModelFn, Objective
from advmeta.errors import ConfigError

LOSSES = ("ce", "ce-sum", "margin", "kl", "dlr")


def _flat(logits: Tensor) -> Tensor:
    return logits.reshape(-1, logits.shape[-1])


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """CE per sample, shape (...)."""
    return F.cross_entropy(_flat(logits), y.reshape(-1), reduction="none").view(y.shape)


def other_max(logits: Tensor, y: Tensor) -> Tensor:
    """max_{j≠y} z_j per sample."""
    true_mask = F.one_hot(y, logits.shape[-1]).bool()
    return logits.masked_fill(true_mask, float("-inf")).amax(-1)


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """C&W margin max_{j≠y} z_j − z_y (> 0 iff misclassified), unclamped."""
    return other_max(logits, y) - logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)


def dlr(logits: Tensor, y: Tensor) -> Tensor:
    """Difference of logits ratio, −(z_y − max_{j≠y} z_j) / (z_π1 − z_π3); needs ≥ 3 classes.

    References: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble
    of diverse parameter-free attacks", ICML 2020, eq. (6).
    """
    z = logits.sort(dim=-1, descending=True).values
    return margin(logits, y) / (z[..., 0] - z[..., 2] + 1e-12)


def dlr_targeted(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR, −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2); needs ≥ 4 classes (ibid., eq. 7)."""
    z = logits.sort(dim=-1, descending=True).values
    zy = logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    zt = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return (zt - zy) / (z[..., 0] - 0.5 * (z[..., 2] + z[..., 3]) + 1e-12)


def kl_to_clean(logits: Tensor, clean_log_probs: Tensor) -> Tensor:
    """KL(p_clean ‖ p_adv) per sample — TRADES's inner objective (labels unused)."""
    return F.kl_div(F.log_softmax(logits, -1), clean_log_probs, reduction="none", log_target=True).sum(-1)


def make_objective(loss: str, model_fn: ModelFn, x: Tensor, y: Tensor | None, target: Tensor | None = None) -> Objective:
    """The per-sample objective ``(logits, x_adv) -> (...)`` named ``loss``.

    ``kl`` evaluates ``model_fn(x)`` once for the clean predictions; ``dlr`` becomes the
    targeted DLR when ``target`` is given. An optional third argument ``idx`` (a task index)
    evaluates the objective of one task's slice, for :func:`advmeta.attacks._core.input_grad`.
    """
    if loss not in LOSSES:
        raise ConfigError(f"unknown attack loss {loss!r}; known: {', '.join(LOSSES)}")
    if loss == "kl":
        with torch.no_grad():
            clean = F.log_softmax(model_fn(x), -1)
        return lambda logits, _x, idx=...: kl_to_clean(logits, clean[idx])
    if y is None:
        raise ConfigError(f"attack loss {loss!r} needs labels y")
    fn: Callable[[Tensor, Tensor], Tensor]
    if loss in ("ce", "ce-sum"):
        fn = cross_entropy
    elif loss == "margin":
        fn = margin
    elif target is not None:
        return lambda logits, _x, idx=...: dlr_targeted(logits, y[idx], target[idx])
    else:
        fn = dlr
    return lambda logits, _x, idx=...: fn(logits, y[idx])
