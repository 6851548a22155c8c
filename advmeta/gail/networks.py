"""The networks of GAIL: policy, value baseline, discriminator and the learned updater U."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mlp(n_in: int, hidden: Sequence[int], n_out: int, dtype: torch.dtype) -> nn.Sequential:
    """Linear layers with tanh between them."""
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h, dtype=dtype), nn.Tanh()]
        width = h
    layers.append(nn.Linear(width, n_out, dtype=dtype))
    return nn.Sequential(*layers)


class Policy(nn.Module):
    """A categorical policy π(a | s): an MLP to action logits (the last layer scaled by 0.1 at
    initialisation, so the first policy is near uniform)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int], dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, n_actions, dtype)
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        with torch.no_grad():
            last.weight.mul_(0.1)
            last.bias.zero_()

    def forward(self, obs: Tensor) -> Tensor:
        """Log-probabilities of every action, ``[N, n_actions]``."""
        return F.log_softmax(self.net(obs), dim=-1)

    def act(self, obs: Tensor, generator: torch.Generator, greedy: bool = False) -> Tensor:
        """An action per row: sampled with ``generator`` (or the most likely one when ``greedy``)."""
        logp = self(obs)
        if greedy:
            out: Tensor = logp.argmax(dim=-1)
            return out
        return torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)


class Value(nn.Module):
    """The state-value baseline V(s) = μ + σ·net(s): the network fits standardised targets and
    (μ, σ) are the last fitted batch's (buffers, saved with the weights)."""

    mu: Tensor  # registered buffers, shape ()
    sigma: Tensor

    def __init__(self, obs_dim: int, hidden: Sequence[int], dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1, dtype)
        self.register_buffer("mu", torch.zeros((), dtype=dtype))
        self.register_buffer("sigma", torch.ones((), dtype=dtype))

    def forward(self, obs: Tensor) -> Tensor:
        out: Tensor = self.mu + self.sigma * self.net(obs).squeeze(-1)
        return out


class Discriminator(nn.Module):
    """D(s, a): the logit of "this pair came from the policy" (Ho & Ermon's convention); the input
    is the scaled state and the one-hot action; (s, a) → 64 → 32 → 1 with tanh (the L2L paper)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int], dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.net = mlp(obs_dim + n_actions, hidden, 1, dtype)

    def inputs(self, obs: Tensor, actions: Tensor) -> Tensor:
        """The network's input rows ``[s, one_hot(a)]``."""
        return torch.cat([obs, F.one_hot(actions, self.n_actions).to(obs.dtype)], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(x).squeeze(-1)
        return out


class LearnedUpdater(nn.Module):
    """U(θ_D, ∇θ_D; θ_U): the update of the discriminator's parameters, coordinate by coordinate.

    For every coordinate i, U sees (θ_i, g_i / rms(g)) and returns

        Δ_i = −η·g_i + η·rms(g)·net(θ_i, g_i / rms(g)),

    with ``net`` a small tanh MLP shared by all coordinates and η ``sgd_lr``. The last layer of
    ``net`` starts at zero, so a new U is exactly the SGD step −η·g; training θ_U moves it away.
    [choice] The L2L paper's U "takes θ_D and ∇θ_D" (Algorithm 3) without saying how; a
    coordinatewise network is the learned-optimiser form that does not grow with θ_D.
    """

    def __init__(self, hidden: int = 20, sgd_lr: float = 0.05, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.sgd_lr = float(sgd_lr)
        self.net = nn.Sequential(nn.Linear(2, hidden, dtype=dtype), nn.Tanh(), nn.Linear(hidden, 1, dtype=dtype))
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, theta: Tensor, grad: Tensor) -> Tensor:
        """The step Δ (same shape as the flat ``theta`` and ``grad``)."""
        rms = grad.pow(2).mean().sqrt().clamp_min(torch.finfo(grad.dtype).tiny)
        feats = torch.stack([theta, grad / rms], dim=-1)
        out: Tensor = -self.sgd_lr * grad + self.sgd_lr * rms * self.net(feats).squeeze(-1)
        return out


def flat(tensors: Sequence[Tensor]) -> Tensor:
    """The tensors concatenated into one vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """A vector cut into tensors shaped like ``like``."""
    out, pos = [], 0
    for t in like:
        out.append(vector[pos: pos + t.numel()].view_as(t))
        pos += t.numel()
    return out
