"""TRPO (Schulman et al., 2015) for a categorical policy, with GAE and a fitted value baseline.

One step maximises the surrogate L(θ) = E[π_θ(a|s)/π_old(a|s) · Â] + λ·H(π_θ) subject to
E[KL(π_old ‖ π_θ)] ≤ δ: the natural-gradient direction from conjugate gradient on Fisher-vector
products, scaled to the KL radius, then a backtracking line search that accepts the first
fraction improving L with the KL within 1.5 δ (the step is undone when none does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .networks import Policy, Value, flat


def gae(rewards: Tensor, values: Tensor, last_values: Tensor, episode_starts: np.ndarray, lengths: np.ndarray,
        terminated: np.ndarray, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimates and λ-returns of whole episodes.

    Args:
        rewards: r_t of every step, ``[N]``.
        values: V(s_t), ``[N]``.
        last_values: V of the observation after each episode's last step, ``[E]`` (used only
            when the time limit cut the episode; a terminal state is worth 0).
        episode_starts, lengths, terminated: the episodes' layout (:class:`~.rollout.Batch`).

    Returns:
        (advantages, returns): Â_t and the value targets Â_t + V(s_t), ``[N]`` each.
    """
    r = rewards.detach().cpu().numpy().astype(np.float64)
    v = values.detach().cpu().numpy().astype(np.float64)
    lv = last_values.detach().cpu().numpy().astype(np.float64)
    adv = np.zeros_like(r)
    for e, (start, n) in enumerate(zip(episode_starts, lengths)):
        nxt = 0.0 if terminated[e] else lv[e]
        acc = 0.0
        for t in range(start + n - 1, start - 1, -1):
            delta = r[t] + gamma * nxt - v[t]
            acc = delta + gamma * lam * acc
            adv[t] = acc
            nxt = v[t]
    out = torch.as_tensor(adv, dtype=rewards.dtype)
    return out, out + values.detach()


def conjugate_gradient(avp: Callable[[Tensor], Tensor], b: Tensor, iters: int, tol: float = 1e-10) -> Tensor:
    """An approximate solution x of A x = b from ``iters`` conjugate-gradient steps (A given as x ↦ A x)."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr <= tol:
            break
        ap = avp(p)
        alpha = rr / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


@dataclass(frozen=True)
class StepInfo:
    """What one TRPO step did: KL(π_old ‖ π_new), the new policy's entropy, the surrogate's gain,
    and the accepted fraction of the full step (0: rejected, the policy unchanged)."""

    kl: float
    entropy: float
    improvement: float
    step_fraction: float


def _set_params(policy: Policy, vector: Tensor) -> None:
    pos = 0
    for p in policy.parameters():
        p.data.copy_(vector[pos: pos + p.numel()].view_as(p))
        pos += p.numel()


def trpo_step(policy: Policy, obs: Tensor, actions: Tensor, advantages: Tensor, *, max_kl: float, damping: float,
              cg_iters: int, entropy_coef: float = 0.0, backtracks: int = 10, accept_ratio: float = 0.1) -> StepInfo:
    """One TRPO update of ``policy`` in place (advantages are standardised here)."""
    params = [p for p in policy.parameters()]
    adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8) if len(advantages) > 1 else advantages
    with torch.no_grad():
        old_logp_all = policy(obs)
        old_p = old_logp_all.exp()
        old_logp = old_logp_all.gather(1, actions[:, None]).squeeze(1)

    def surrogate() -> tuple[Tensor, Tensor]:
        logp_all = policy(obs)
        ratio = torch.exp(logp_all.gather(1, actions[:, None]).squeeze(1) - old_logp)
        entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
        return (ratio * adv).mean() + entropy_coef * entropy, entropy

    def kl() -> Tensor:
        out: Tensor = (old_p * (old_logp_all - policy(obs))).sum(-1).mean()
        return out

    loss, entropy = surrogate()
    grad = flat(torch.autograd.grad(loss, params))
    if not torch.isfinite(grad).all():
        raise FloatingPointError("TRPO: the policy gradient is not finite")
    if grad.abs().max() == 0:
        return StepInfo(0.0, float(entropy), 0.0, 0.0)
    grad_kl = flat(torch.autograd.grad(kl(), params, create_graph=True))

    def fvp(v: Tensor) -> Tensor:
        return flat(torch.autograd.grad(grad_kl @ v, params, retain_graph=True)) + damping * v

    direction = conjugate_gradient(fvp, grad, cg_iters)
    shs = direction @ fvp(direction)
    if not shs > 0:
        return StepInfo(0.0, float(entropy), 0.0, 0.0)
    full = direction * torch.sqrt(2 * max_kl / shs)
    expected = float(grad @ full)
    old = flat([p.detach() for p in params]).clone()
    with torch.no_grad():
        base = float(loss)
        for k in range(backtracks):
            frac = 0.5**k
            _set_params(policy, old + frac * full)
            new_loss, new_entropy = surrogate()
            new_kl = float(kl())
            gain = float(new_loss) - base
            if new_kl <= 1.5 * max_kl and gain > 0 and gain / (expected * frac) > accept_ratio:
                return StepInfo(new_kl, float(new_entropy), gain, frac)
        _set_params(policy, old)
    return StepInfo(0.0, float(entropy), 0.0, 0.0)


def fit_value(value: Value, optimizer: torch.optim.Optimizer, obs: Tensor, targets: Tensor, *, epochs: int,
              minibatch: int, generator: torch.Generator) -> float:
    """Fit V to ``targets`` (standardised with this batch's mean and σ); the last epoch's mean squared error."""
    targets = targets.detach()
    with torch.no_grad():
        value.mu.copy_(targets.mean())
        value.sigma.copy_(targets.std().clamp_min(1e-6) if len(targets) > 1 else torch.ones_like(value.sigma))
    z = (targets - value.mu) / value.sigma
    n = len(obs)
    last = 0.0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator)
        total = 0.0
        for i in range(0, n, minibatch):
            idx = perm[i: i + minibatch]
            loss = (value.net(obs[idx]).squeeze(-1) - z[idx]).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        last = total / n
    return last


def policy_step(policy: Policy, value: Value, value_opt: torch.optim.Optimizer, batch_obs: Tensor, actions: Tensor,
                rewards: Tensor, last_obs: Tensor, episode_starts: np.ndarray, lengths: np.ndarray,
                terminated: np.ndarray, *, gamma: float, lam: float, max_kl: float, damping: float, cg_iters: int,
                entropy_coef: float, value_epochs: int, value_minibatch: int,
                generator: torch.Generator) -> StepInfo:
    """Advantages from the current V, one TRPO step, then V refitted to the λ-returns."""
    with torch.no_grad():
        values, last_values = value(batch_obs), value(last_obs)
    adv, returns = gae(rewards, values, last_values, episode_starts, lengths, terminated, gamma, lam)
    info = trpo_step(policy, batch_obs, actions, adv, max_kl=max_kl, damping=damping, cg_iters=cg_iters,
                     entropy_coef=entropy_coef)
    fit_value(value, value_opt, batch_obs, returns, epochs=value_epochs, minibatch=value_minibatch,
              generator=generator)
    return info
