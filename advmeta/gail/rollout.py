"""Sampling whole episodes from a policy in gymnasium's classic-control environments.

``n_envs`` environments step side by side so that the policy runs one batched forward per step.
A new episode starts in a free environment only while the steps already taken (finished and
running episodes) are below the batch size, so a batch is whole episodes and at least
``min_steps`` pairs. Every reset is seeded from ``(seed, episode number)`` and every action is
drawn from a :class:`torch.Generator`, so the counter and the generator's state are all a
resumed run needs to sample the same episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import torch
from torch import Tensor

from advmeta.errors import ConfigError

from .networks import Policy

if TYPE_CHECKING:
    import gymnasium


def make_env(env_id: str) -> gymnasium.Env[Any, Any]:
    """A gymnasium environment (its registered time limit kept: 500 steps on CartPole, 200 on MountainCar)."""
    try:
        import gymnasium as gym
    except ImportError:  # pragma: no cover - gymnasium is a dependency
        raise ConfigError("GAIL needs gymnasium: pip install gymnasium") from None
    return gym.make(env_id)


@dataclass(frozen=True)
class ObsScale:
    """A fixed affine map of raw observations to about [−1, 1]: the observation space's bounds
    where they are finite (MountainCar's velocity spans ±0.07, its position −1.2…0.6), identity
    where they are not (CartPole's velocities). [choice] Policy, value and discriminator all see it."""

    center: np.ndarray
    half_width: np.ndarray

    @classmethod
    def of(cls, env: gymnasium.Env[Any, Any]) -> ObsScale:
        from gymnasium.spaces import Box

        space = env.observation_space
        assert isinstance(space, Box), "classic-control observations are a Box"
        low = np.asarray(space.low, dtype=np.float64)
        high = np.asarray(space.high, dtype=np.float64)
        finite = np.isfinite(low) & np.isfinite(high)
        finite[finite] &= high[finite] - low[finite] < 1e6
        center, half = np.zeros_like(low), np.ones_like(low)
        center[finite] = (low[finite] + high[finite]) / 2
        half[finite] = (high[finite] - low[finite]) / 2
        return cls(center, half)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        scaled: np.ndarray = (np.asarray(raw, dtype=np.float64) - self.center) / self.half_width
        return scaled


@dataclass
class Batch:
    """Whole episodes, flattened in episode order.

    Attributes:
        obs: scaled observations s_t, ``[N, obs_dim]``.
        raw_obs: the environment's own observations s_t (the shaping reads them), ``[N, obs_dim]``.
        raw_next: the observations after each step, ``[N, obs_dim]``.
        actions: a_t, ``[N]`` (int64).
        rewards: the environment's true rewards r_t, ``[N]``.
        episode_starts: index of each episode's first step, ``[E]``.
        lengths: steps of each episode, ``[E]``.
        terminated: whether each episode ended in a terminal state (else the time limit cut it).
        last_obs: scaled observation after each episode's final step, ``[E, obs_dim]``.
        returns: the true undiscounted return of each episode, ``[E]``.
    """

    obs: Tensor
    raw_obs: np.ndarray
    raw_next: np.ndarray
    actions: Tensor
    rewards: Tensor
    episode_starts: np.ndarray
    lengths: np.ndarray
    terminated: np.ndarray
    last_obs: Tensor
    returns: np.ndarray

    @property
    def steps(self) -> int:
        return int(self.lengths.sum())


class _Trajectory(TypedDict):
    """One running episode's steps: raw observations, next observations, actions, rewards."""

    raw: list[np.ndarray]
    next: list[np.ndarray]
    a: list[int]
    r: list[float]


class Sampler:
    """Episodes of a policy in ``n_envs`` copies of one environment (the state: ``episodes_started``)."""

    def __init__(self, env_id: str, n_envs: int, seed: int, dtype: torch.dtype = torch.float32) -> None:
        self.env_id = env_id
        self.envs = [make_env(env_id) for _ in range(n_envs)]
        self.scale = ObsScale.of(self.envs[0])
        from gymnasium.spaces import Box, Discrete

        observations, actions = self.envs[0].observation_space, self.envs[0].action_space
        assert isinstance(observations, Box), "classic-control observations are a Box"
        assert isinstance(actions, Discrete), "the policies are categorical: a Discrete action space"
        self.obs_dim = int(np.prod(observations.shape))
        self.n_actions = int(actions.n)
        self.seed = int(seed)
        self.dtype = dtype
        self.episodes_started = 0

    def _reset_seed(self) -> int:
        # Distinct, reproducible seeds per (sampler seed, episode number).
        self.episodes_started += 1
        return (self.seed * 1_000_003 + self.episodes_started) % (2**31 - 1)

    def sample(self, policy: Policy, min_steps: int, generator: torch.Generator, greedy: bool = False,
               max_episodes: int | None = None) -> Batch:
        """Whole episodes of ``policy`` totalling at least ``min_steps`` pairs (or ``max_episodes`` episodes)."""
        n = len(self.envs)
        traj: list[_Trajectory | None] = [None] * n
        current: list[Any] = [None] * n  # the latest raw observation of each running environment
        done_eps: list[tuple[int, _Trajectory, bool, np.ndarray]] = []  # (start order, data, terminated, last)
        started = 0
        taken = 0

        def want_more() -> bool:
            if max_episodes is not None:
                return started < max_episodes
            return taken < min_steps

        order = [0] * n
        for i in range(n):
            if want_more():
                current[i], _ = self.envs[i].reset(seed=self._reset_seed())
                traj[i] = {"raw": [], "next": [], "a": [], "r": []}
                order[i] = started
                started += 1
        while any(t is not None for t in traj):
            live = [i for i in range(n) if traj[i] is not None]
            raw = np.stack([current[i] for i in live])
            obs = torch.as_tensor(self.scale(raw), dtype=self.dtype)
            with torch.no_grad():
                acts = policy.act(obs, generator, greedy=greedy).tolist()
            for i, a in zip(live, acts):
                nxt, r, term, trunc, _ = self.envs[i].step(int(a))
                t = traj[i]
                assert t is not None
                t["raw"].append(np.asarray(current[i], dtype=np.float64))
                t["next"].append(np.asarray(nxt, dtype=np.float64))
                t["a"].append(int(a))
                t["r"].append(float(r))
                taken += 1
                current[i] = nxt
                if term or trunc:
                    done_eps.append((order[i], t, bool(term), np.asarray(nxt, dtype=np.float64)))
                    traj[i] = None
                    if want_more():
                        current[i], _ = self.envs[i].reset(seed=self._reset_seed())
                        traj[i] = {"raw": [], "next": [], "a": [], "r": []}
                        order[i] = started
                        started += 1
        done_eps.sort(key=lambda e: e[0])
        raw_obs = np.concatenate([np.stack(e[1]["raw"]) for e in done_eps])
        raw_next = np.concatenate([np.stack(e[1]["next"]) for e in done_eps])
        lengths = np.array([len(e[1]["a"]) for e in done_eps], dtype=np.int64)
        rewards = np.concatenate([np.asarray(e[1]["r"]) for e in done_eps])
        return Batch(
            obs=torch.as_tensor(self.scale(raw_obs), dtype=self.dtype),
            raw_obs=raw_obs, raw_next=raw_next,
            actions=torch.as_tensor(np.concatenate([np.asarray(e[1]["a"]) for e in done_eps]), dtype=torch.int64),
            rewards=torch.as_tensor(rewards, dtype=self.dtype),
            episode_starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
            lengths=lengths,
            terminated=np.array([e[2] for e in done_eps], dtype=bool),
            last_obs=torch.as_tensor(self.scale(np.stack([e[3] for e in done_eps])), dtype=self.dtype),
            returns=np.array([float(np.sum(e[1]["r"])) for e in done_eps]),
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()


def mountaincar_potential(raw_obs: np.ndarray, scale: float) -> np.ndarray:
    """Φ(s) = scale × the cart's mechanical energy per unit mass in MountainCar's units:
    v²/2 + g·sin(3x)/3 with g = 0.0025 (the environment's gravity; its slope is sin(3x)·0.45)."""
    x, v = raw_obs[..., 0], raw_obs[..., 1]
    phi: np.ndarray = scale * (0.5 * v * v + 0.0025 * np.sin(3 * x) / 3)
    return phi


def shaped_rewards(batch: Batch, env_id: str, gamma: float, scale: float) -> Tensor:
    """The true rewards plus potential-based shaping γΦ(s′) − Φ(s) (Φ = 0 after a terminal step);
    only MountainCar is shaped, other environments' rewards come back unchanged."""
    if env_id != "MountainCar-v0" or scale == 0:
        return batch.rewards
    phi = mountaincar_potential(batch.raw_obs, scale)
    phi_next = mountaincar_potential(batch.raw_next, scale)
    ends = batch.episode_starts + batch.lengths - 1
    phi_next[ends[batch.terminated]] = 0.0
    return batch.rewards + torch.as_tensor(gamma * phi_next - phi, dtype=batch.rewards.dtype)


def mean_return(returns: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation of episode returns (sd 0 for one episode)."""
    r = np.asarray(returns, dtype=np.float64)
    return float(r.mean()), float(r.std(ddof=1)) if len(r) > 1 else 0.0
