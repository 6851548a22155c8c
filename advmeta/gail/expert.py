"""Experts for GAIL: TRPO on the true reward until expert level, their trajectories saved once.

The expert of an environment depends only on :class:`ExpertSettings` (not on a GAIL trial's seed),
so every trial of a sweep reads the same file: ``<cache>/gail-experts/<env>-<settings hash>.pt``,
built under a file lock by whichever process needs it first and written atomically.

Training stops at the first check (every ``check_every`` iterations) where the greedy policy's
mean true return over ``check_episodes`` episodes reaches :data:`~.config.EXPERT_LEVEL`; the saved
trajectories are then sampled greedily, and their own mean return is recorded. An expert that
does not reach the level within ``max_iterations`` is an error, not a weak expert silently used.
MountainCar's expert trains with potential-based shaping (:func:`~.rollout.shaped_rewards`): its
true reward is −1 per step until the goal, which random exploration does not reach.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advmeta.checkpoint import load_tensors, save_atomic
from advmeta.errors import AdvmetaError

from .config import EXPERT_LEVEL, GAILConfig
from .networks import Policy, Value
from .rollout import Sampler, shaped_rewards
from .trpo import policy_step

FORMAT = 1


class ExpertError(AdvmetaError):
    """The expert did not reach the expert level within its iteration budget."""


@dataclass(frozen=True)
class ExpertSettings:
    """How an environment's expert is trained and sampled (its cache key)."""

    env: str
    seed: int = 0
    trajectories: int = 10
    max_iterations: int = 400
    batch_steps: int = 5000
    n_envs: int = 8
    gamma: float = 0.995
    gae_lambda: float = 0.97
    max_kl: float = 0.01
    hidden: tuple[int, ...] = (100, 100)
    shaping_scale: float = 300.0
    check_every: int = 5
    check_episodes: int = 20

    @classmethod
    def of(cls, cfg: GAILConfig) -> ExpertSettings:
        """The expert a GAIL run imitates (Ho & Ermon's TRPO settings, the run's expert fields)."""
        return cls(env=cfg.env, seed=cfg.expert_seed, trajectories=cfg.expert_trajectories,
                   max_iterations=cfg.expert_max_iterations, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
                   max_kl=cfg.max_kl, hidden=tuple(cfg.policy_hidden), shaping_scale=cfg.shaping_scale)

    @property
    def key(self) -> str:
        text = json.dumps({**dataclasses.asdict(self), "format": FORMAT}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ExpertData:
    """An expert's saved trajectories and how it was obtained.

    Attributes:
        raw_obs: the states of every trajectory, concatenated, ``[N, obs_dim]`` (environment units).
        actions: the expert's actions there, ``[N]``.
        returns: each trajectory's true return.
        random_return: mean true return of the uniformly random policy (the other end of the scale).
        iterations: TRPO iterations the expert trained.
        seconds: wall time of its training.
        path: the cache file.
    """

    raw_obs: np.ndarray
    actions: np.ndarray
    returns: np.ndarray
    random_return: float
    iterations: int
    seconds: float
    path: Path

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/advmeta/gail-experts``."""
    from advmeta.data.roots import user_cache_dir

    return user_cache_dir() / "gail-experts"


class _UniformPolicy(Policy):
    """The uniformly random policy (for the random return)."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        last = self.net[-1]
        assert isinstance(last, torch.nn.Linear), "mlp() ends in a Linear layer"
        n = last.out_features
        return torch.full((obs.shape[0], n), -float(np.log(n)), dtype=obs.dtype)


def _greedy_returns(sampler: Sampler, policy: Policy, episodes: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(0)
    return sampler.sample(policy, 0, gen, greedy=True, max_episodes=episodes).returns


def train_expert(settings: ExpertSettings, progress: bool = False) -> dict[str, Any]:
    """Train the expert and sample its trajectories; the dict that :func:`expert_data` caches."""
    torch.manual_seed(settings.seed)
    sampler = Sampler(settings.env, settings.n_envs, settings.seed, torch.float64)
    check = Sampler(settings.env, settings.n_envs, settings.seed + 10_000, torch.float64)
    policy = Policy(sampler.obs_dim, sampler.n_actions, settings.hidden, torch.float64)
    value = Value(sampler.obs_dim, settings.hidden, torch.float64)
    value_opt = torch.optim.Adam(value.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(settings.seed)
    level = EXPERT_LEVEL[settings.env]
    t0 = time.perf_counter()
    best = -float("inf")
    for it in range(1, settings.max_iterations + 1):
        batch = sampler.sample(policy, settings.batch_steps, gen)
        rewards = shaped_rewards(batch, settings.env, settings.gamma, settings.shaping_scale)
        policy_step(policy, value, value_opt, batch.obs, batch.actions, rewards, batch.last_obs,
                    batch.episode_starts, batch.lengths, batch.terminated, gamma=settings.gamma,
                    lam=settings.gae_lambda, max_kl=settings.max_kl, damping=0.1, cg_iters=10, entropy_coef=0.0,
                    value_epochs=5, value_minibatch=256, generator=gen)
        if it % settings.check_every:
            continue
        score = float(np.mean(_greedy_returns(check, policy, settings.check_episodes)))
        best = max(best, score)
        if progress:
            print(f"  expert {settings.env}: iteration {it}, sampled {batch.returns.mean():.1f}, "
                  f"greedy {score:.1f} (level {level:g})", flush=True)
        if score >= level:
            out = sampler.sample(policy, 0, gen, greedy=True, max_episodes=settings.trajectories)
            if float(out.returns.mean()) >= level:
                rand = _UniformPolicy(sampler.obs_dim, sampler.n_actions, (1,), torch.float64)
                random_returns = check.sample(rand, 0, gen, max_episodes=settings.check_episodes).returns
                return {"format": FORMAT, "settings": dataclasses.asdict(settings), "raw_obs": out.raw_obs,
                        "actions": out.actions.numpy(), "returns": out.returns,
                        "random_return": float(np.mean(random_returns)), "iterations": it,
                        "seconds": time.perf_counter() - t0}
    raise ExpertError(f"the {settings.env} expert did not reach the expert level {level:g} in "
                      f"{settings.max_iterations} TRPO iterations (best greedy mean {best:.1f}); "
                      f"raise expert_max_iterations or change expert_seed")


def expert_data(settings: ExpertSettings, cache_dir: str | Path | None = None, progress: bool = False) -> ExpertData:
    """The expert of ``settings``: read from the cache, or trained (under a lock) and cached."""
    from advmeta.data.cache import exclusive_lock

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{settings.env}-{settings.key}.pt"
    if not path.exists():
        with exclusive_lock(folder / f".{path.name}.lock"):
            if not path.exists():
                if progress:
                    print(f"training the {settings.env} expert (TRPO on the true reward; cached in {path})",
                          flush=True)
                save_atomic(train_expert(settings, progress), path)
    state = load_tensors(path, what="GAIL expert cache")  # tensors, arrays and plain values only: never code
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ExpertError(f"{path} is not an advmeta GAIL expert (format {FORMAT}); delete it to retrain")
    return ExpertData(raw_obs=np.asarray(state["raw_obs"]), actions=np.asarray(state["actions"]),
                      returns=np.asarray(state["returns"]), random_return=float(state["random_return"]),
                      iterations=int(state["iterations"]), seconds=float(state["seconds"]), path=path)
