"""One minibatch of L2L-family training: the alternating classifier / attacker update.

The loop of Jiang et al. (docs/methods.md#l2l), per minibatch:

1. δ ← the method's perturbation of the current classifier f_θ (learned methods: g_φ's output);
2. classifier half: one SGD step on CE(f_θ(x + δ), y) with δ a constant, f in train mode;
3. attacker half (learned methods only): one Adam step *maximising* the same CE, now through δ
   into g_φ, with f in eval mode and θ not updated (its gradient is never even computed).

Reusing the attacker's forward pass from step 1 in step 3 is exact: g_φ's parameters do not
change in between, and its input (x and a detached input gradient) does not depend on θ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advmeta.errors import NonFiniteLossError
from advmeta.l2l.config import Method
from advmeta.l2l.perturb import eval_mode, learned_perturbation, pgd_perturbation


@dataclass(frozen=True)
class StepResult:
    """What one alternating step measured (all on the perturbed batch)."""

    classifier_loss: float
    """CE of f on x + δ before the classifier's update."""
    correct: int
    """Correct predictions of f on x + δ before the update."""
    attacker_loss: float
    """CE that g_φ maximised, after the classifier's update (nan without an attacker)."""


def make_perturbation(
    method: Method,
    classifier: nn.Module,
    attacker: nn.Module | None,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    pgd_steps: int = 10,
    pgd_step_size: float = 2 / 255,
    eval_mode_perturb: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The training perturbation of ``method`` (zeros for Plain Net).

    Returns:
        δ, ‖δ‖∞ ≤ ε, x + δ ∈ [0, 1]; differentiable through g_φ for the learned methods.

    Shape:
        x: (B, C, H, W); y: (B,); returns (B, C, H, W).
    """
    if method is Method.PLAIN or eps == 0:
        return torch.zeros_like(x)
    with eval_mode(classifier, eval_mode_perturb):
        if method is Method.PGM:
            return pgd_perturbation(classifier, x, y, eps, pgd_steps, pgd_step_size, generator)
        if attacker is None:
            raise ValueError(f"{method.value} needs an attacker network")
        return learned_perturbation(method, attacker, classifier, x, y, eps)


def _check_finite(value: float, what: str) -> None:
    if not math.isfinite(value):
        raise NonFiniteLossError(f"{what} became {value}; lower the learning rate or check the data")


def attacker_step(
    classifier: nn.Module, attacker: nn.Module, attacker_opt: torch.optim.Optimizer, x: Tensor, y: Tensor, delta: Tensor
) -> float:
    """The attacker half: one optimiser step *maximising* CE(f(x + δ), y) over φ only.

    The classifier runs in eval mode and its parameters receive no gradient (the gradient is
    taken w.r.t. φ alone), so neither θ, its ``.grad`` nor its batch-norm statistics change.

    Args:
        classifier: f_θ.
        attacker: g_φ (only used through ``delta``'s graph).
        attacker_opt: optimiser over φ.
        x: clean images.
        y: labels.
        delta: δ = g_φ(...) with its graph.

    Returns:
        The CE before the step (the attacker's objective).
    """
    params = [p for p in attacker.parameters() if p.requires_grad]
    with eval_mode(classifier):
        adv_loss = F.cross_entropy(classifier(x + delta), y)
    value = adv_loss.item()
    _check_finite(value, "attacker loss")
    grads = torch.autograd.grad(-adv_loss, params, allow_unused=True)
    attacker_opt.zero_grad(set_to_none=True)
    for p, g in zip(params, grads):
        p.grad = g  # None for a parameter the output does not depend on: Adam skips it
    attacker_opt.step()
    return value


def alternating_step(
    method: Method,
    classifier: nn.Module,
    attacker: nn.Module | None,
    classifier_opt: torch.optim.Optimizer,
    attacker_opt: torch.optim.Optimizer | None,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    pgd_steps: int = 10,
    pgd_step_size: float = 2 / 255,
    eval_mode_perturb: bool = True,
    generator: torch.Generator | None = None,
) -> StepResult:
    """One minibatch: the classifier's SGD step on the attacked batch, then the attacker's Adam step.

    Args:
        method: the trainer.
        classifier: f_θ (left in train mode on return).
        attacker: g_φ, or None for plain / pgm.
        classifier_opt: optimiser over θ only.
        attacker_opt: optimiser over φ only (None for plain / pgm).
        x: clean images in [0, 1].
        y: labels.
        eps: ℓ∞ budget.
        pgd_steps: PGM Net's PGD steps.
        pgd_step_size: PGM Net's PGD step size.
        eval_mode_perturb: build δ with f in eval mode.
        generator: randomness of PGD's start.

    Returns:
        The losses and accuracy measured on the way.

    Raises:
        NonFiniteLossError: a loss became NaN or infinite.

    Shape:
        x: (B, C, H, W); y: (B,).
    """
    learned = method.learned and eps > 0
    if learned and (attacker is None or attacker_opt is None):
        raise ValueError(f"{method.value} needs an attacker and its optimiser")
    if learned:
        assert attacker is not None, "checked above"
        attacker.train()
    delta = make_perturbation(
        method, classifier, attacker, x, y, eps, pgd_steps=pgd_steps, pgd_step_size=pgd_step_size,
        eval_mode_perturb=eval_mode_perturb, generator=generator,
    )

    # classifier half: δ is a constant, so no gradient reaches φ
    classifier.train()
    logits = classifier(x + delta.detach())
    loss = F.cross_entropy(logits, y)
    _check_finite(loss.item(), "classifier loss")
    classifier_opt.zero_grad(set_to_none=True)
    loss.backward()
    classifier_opt.step()
    correct = int((logits.argmax(1) == y).sum())

    if learned:
        assert attacker is not None and attacker_opt is not None, "checked above"
        attacker_loss = attacker_step(classifier, attacker, attacker_opt, x, y, delta)
    else:
        attacker_loss = math.nan
    return StepResult(classifier_loss=loss.item(), correct=correct, attacker_loss=attacker_loss)
