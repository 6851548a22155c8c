"""Training GAIL and L2L-GAIL: iterations of sampling, the discriminator's update and a TRPO step.

One iteration (Ho & Ermon's Algorithm 1; the L2L paper's Algorithm 3 for ``gail-l2l``):

1. sample whole episodes of π totalling ≥ ``batch_steps`` pairs; their true returns are the
   iteration's ``reward`` (the policy's true performance, measured before it changes);
2. ``disc_steps`` times, update θ_D to minimise L_D = −E_π[log D] − E_E[log(1 − D)] on the batch
   and the expert's pairs — with its optimiser (``gail``), or as θ_D ← θ_D + U(θ_D, ∇θ_D L_D),
   after which θ_U takes one Adam step on L_D(θ_D + U(θ_D, ∇θ_D L_D)) (``gail-l2l``);
3. one TRPO step on π with reward −log D (``reward_form``), then the value baseline refits.

``train_gail`` mirrors :func:`advmeta.train.train`: ``(cfg, out_dir, resume, progress, report)``;
it returns the checkpoint, one row per iteration and the final metrics, and calls
``report(metrics, checkpoint_or_None)`` after every iteration. A checkpoint holds every network,
optimiser, the sampling generator and the episode counter, so a resumed run is identical.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from advmeta import loop
from advmeta.errors import NonFiniteLossError
from advmeta.loop import Report

from .config import GAILConfig
from .expert import ExpertData, ExpertSettings, expert_data
from .networks import Discriminator, LearnedUpdater, Policy, Value, flat, unflat
from .rollout import Sampler, mean_return
from .trpo import policy_step

CHECKPOINT_NAME = loop.CHECKPOINT_NAME


def disc_loss(logits_policy: Tensor, logits_expert: Tensor) -> Tensor:
    """L_D = −mean log D(policy pairs) − mean log(1 − D(expert pairs)), D = σ(logit)."""
    return (F.binary_cross_entropy_with_logits(logits_policy, torch.ones_like(logits_policy))
            + F.binary_cross_entropy_with_logits(logits_expert, torch.zeros_like(logits_expert)))


def disc_accuracy(disc: Discriminator, x_policy: Tensor, x_expert: Tensor) -> float:
    """Balanced accuracy of D telling the policy's pairs (D > ½) from the expert's (D < ½), 0–100."""
    with torch.no_grad():
        return 50.0 * (float((disc(x_policy) > 0).double().mean()) + float((disc(x_expert) < 0).double().mean()))


def policy_rewards(disc: Discriminator, x_policy: Tensor, form: str) -> Tensor:
    """The policy's per-step reward: −log D (``ho-ermon``) or log(1 − D) (``log-d``)."""
    with torch.no_grad():
        z = disc(x_policy)
        return F.softplus(-z) if form == "ho-ermon" else -F.softplus(z)


def optimiser_update(disc: Discriminator, opt: torch.optim.Optimizer, x_policy: Tensor, x_expert: Tensor) -> float:
    """``gail``: one step of θ_D's own optimiser on L_D; returns L_D before the step."""
    loss = disc_loss(disc(x_policy), disc(x_expert))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def learned_step(disc: Discriminator, updater: LearnedUpdater, x_policy: Tensor, x_expert: Tensor) -> tuple[Tensor, float]:
    """θ_D + U(θ_D, ∇θ_D L_D) as one flat vector, still attached to θ_U (∇θ_D enters as data, the
    learned-optimiser convention); and L_D before the step. Changes nothing."""
    params = list(disc.parameters())
    loss = disc_loss(disc(x_policy), disc(x_expert))
    grad = flat(torch.autograd.grad(loss, params)).detach()
    theta = flat([p.detach() for p in params])
    return theta + updater(theta, grad), loss.item()


def set_disc(disc: Discriminator, theta: Tensor) -> None:
    """θ_D ← ``theta`` (the discriminator's parameters only)."""
    with torch.no_grad():
        for p, v in zip(disc.parameters(), unflat(theta.detach(), list(disc.parameters()))):
            p.copy_(v)


def updater_loss(disc: Discriminator, new_theta: Tensor, x_policy: Tensor, x_expert: Tensor) -> Tensor:
    """L_D at ``new_theta`` (a function of θ_U through it)."""
    names = [n for n, _ in disc.named_parameters()]
    params = dict(zip(names, unflat(new_theta, [p for _, p in disc.named_parameters()])))
    return disc_loss(functional_call(disc, params, (x_policy,)), functional_call(disc, params, (x_expert,)))


def updater_update(disc: Discriminator, updater_opt: torch.optim.Optimizer, new_theta: Tensor, x_policy: Tensor,
                   x_expert: Tensor) -> float:
    """``gail-l2l``: one Adam step of θ_U on L_D(θ_D + U(…)); returns that loss before the step."""
    loss = updater_loss(disc, new_theta, x_policy, x_expert)
    updater_opt.zero_grad(set_to_none=True)
    loss.backward()
    updater_opt.step()
    return loss.item()


@dataclasses.dataclass
class GAILState:
    """Everything a GAIL run changes (what a checkpoint saves)."""

    policy: Policy
    value: Value
    disc: Discriminator
    value_opt: torch.optim.Optimizer
    disc_opt: torch.optim.Optimizer | None
    updater: LearnedUpdater | None
    updater_opt: torch.optim.Optimizer | None
    generator: torch.Generator
    sampler: Sampler

    def discriminator_update(self, x_policy: Tensor, x_expert: Tensor) -> tuple[float, float]:
        """One update of θ_D (and, for ``gail-l2l``, of θ_U after it): (L_D before, U's loss or nan)."""
        if self.updater is None:
            assert self.disc_opt is not None
            return optimiser_update(self.disc, self.disc_opt, x_policy, x_expert), math.nan
        assert self.updater_opt is not None
        new_theta, before = learned_step(self.disc, self.updater, x_policy, x_expert)
        set_disc(self.disc, new_theta)
        return before, updater_update(self.disc, self.updater_opt, new_theta, x_policy, x_expert)

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy": self.policy.state_dict(), "value": self.value.state_dict(),
                               "disc": self.disc.state_dict(), "value_opt": self.value_opt.state_dict(),
                               "generator": self.generator.get_state(),
                               "episodes_started": self.sampler.episodes_started}
        if self.disc_opt is not None:
            out["disc_opt"] = self.disc_opt.state_dict()
        if self.updater is not None and self.updater_opt is not None:
            out["updater"] = self.updater.state_dict()
            out["updater_opt"] = self.updater_opt.state_dict()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.value.load_state_dict(state["value"])
        self.disc.load_state_dict(state["disc"])
        self.value_opt.load_state_dict(state["value_opt"])
        self.generator.set_state(state["generator"])
        self.sampler.episodes_started = int(state["episodes_started"])
        if self.disc_opt is not None:
            self.disc_opt.load_state_dict(state["disc_opt"])
        if self.updater is not None and self.updater_opt is not None:
            self.updater.load_state_dict(state["updater"])
            self.updater_opt.load_state_dict(state["updater_opt"])


def build_state(cfg: GAILConfig) -> GAILState:
    """Fresh networks, optimisers, generator and sampler of ``cfg`` (seeded by ``cfg.seed``)."""
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    torch.manual_seed(cfg.seed)
    sampler = Sampler(cfg.env, cfg.n_envs, cfg.seed, dtype)
    obs_dim, n_act = sampler.obs_dim, sampler.n_actions
    policy = Policy(obs_dim, n_act, cfg.policy_hidden, dtype)
    value = Value(obs_dim, cfg.value_hidden, dtype)
    disc = Discriminator(obs_dim, n_act, cfg.disc_hidden, dtype)
    value_opt = torch.optim.Adam(value.parameters(), lr=cfg.value_lr)
    updater: LearnedUpdater | None = None
    updater_opt: torch.optim.Optimizer | None = None
    disc_opt: torch.optim.Optimizer | None = None
    if cfg.learned_updater:
        updater = LearnedUpdater(cfg.updater_hidden, cfg.updater_sgd_lr, dtype)
        updater_opt = torch.optim.Adam(updater.parameters(), lr=cfg.disc_lr)
    elif cfg.disc_optimizer == "adam":
        disc_opt = torch.optim.Adam(disc.parameters(), lr=cfg.disc_lr)
    else:
        disc_opt = torch.optim.SGD(disc.parameters(), lr=cfg.disc_lr)
    return GAILState(policy, value, disc, value_opt, disc_opt, updater, updater_opt,
                     torch.Generator().manual_seed(cfg.seed), sampler)


def iteration(cfg: GAILConfig, state: GAILState, x_expert: Tensor) -> dict[str, float]:
    """One GAIL iteration on ``state``; its measurements."""
    batch = state.sampler.sample(state.policy, cfg.batch_steps, state.generator)
    x_policy = state.disc.inputs(batch.obs, batch.actions)
    acc = disc_accuracy(state.disc, x_policy, x_expert)
    losses = [state.discriminator_update(x_policy, x_expert) for _ in range(cfg.disc_steps)]
    first_loss, u_loss = losses[0][0], losses[-1][1]  # D's loss before its first update; U's after the last
    rewards = policy_rewards(state.disc, x_policy, cfg.reward)
    info = policy_step(state.policy, state.value, state.value_opt, batch.obs, batch.actions, rewards,
                       batch.last_obs, batch.episode_starts, batch.lengths, batch.terminated, gamma=cfg.gamma,
                       lam=cfg.gae_lambda, max_kl=cfg.max_kl, damping=cfg.cg_damping, cg_iters=cfg.cg_iters,
                       entropy_coef=cfg.entropy_coef, value_epochs=cfg.value_epochs,
                       value_minibatch=cfg.value_minibatch, generator=state.generator)
    reward, reward_sd = mean_return(batch.returns)
    return {"reward": reward, "reward_sd": reward_sd, "episodes": int(len(batch.returns)), "steps": batch.steps,
            "disc_acc": acc, "disc_loss": first_loss, "updater_loss": u_loss,
            "gail_reward": float(rewards.mean()), "policy_entropy": info.entropy, "kl": info.kl,
            "step_fraction": info.step_fraction}


class _GAILTrainer:
    """GAIL training as a :class:`advmeta.loop.Trainer`: a unit is one iteration, validated (one
    ``curves`` row) every iteration."""

    kind = "gail"

    def __init__(self, cfg: GAILConfig, expert: ExpertData) -> None:
        self.cfg, self.expert = cfg, expert
        self.run = build_state(cfg)
        dtype = next(self.run.disc.parameters()).dtype
        self.x_expert = self.run.disc.inputs(torch.as_tensor(self.run.sampler.scale(expert.raw_obs), dtype=dtype),
                                               torch.as_tensor(expert.actions, dtype=torch.int64))
        self.steps = 0  # environment steps so far

    def unit(self, i: int) -> dict[str, float]:
        m = iteration(self.cfg, self.run, self.x_expert)
        self.steps += int(m.pop("steps"))
        bad = [k for k in ("reward", "disc_loss", "gail_reward", "policy_entropy") if not math.isfinite(m[k])]
        if bad:
            raise NonFiniteLossError(f"GAIL iteration {i + 1}: {', '.join(bad)} not finite")
        return m

    def validate(self, done: int, units: list[dict[str, float]]) -> dict[str, Any]:
        return {"iteration": done, "env_steps": self.steps, **units[-1],  # the loop adds train_seconds
                "expert_reward": self.expert.mean_return, "random_reward": self.expert.random_return}

    def state(self) -> dict[str, Any]:
        return {"run": self.run.state_dict(), "steps": self.steps}

    def load_state(self, state: dict[str, Any]) -> None:
        self.run.load_state_dict(state["run"])
        self.steps = int(state["steps"])


def train_gail(cfg: GAILConfig, out_dir: str | Path, resume: bool = True, progress: bool = False,
               report: Report | None = None, *, expert: ExpertData | None = None,
               cache_dir: str | Path | None = None) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    """Train ``cfg`` in ``out_dir`` (continuing its checkpoint when ``resume``).

    The loop, the checkpoint format and the resume policy are :mod:`advmeta.loop`'s (shared with
    the meta-learners and the L2L trainers); ``report`` is called after every iteration.

    Returns:
        (checkpoint path, one dict per iteration, final metrics).

    Raises:
        NonFiniteLossError: a loss or reward turned NaN or infinite.
        ConfigError: ``out_dir`` holds a checkpoint of another configuration.
    """
    expert = expert if expert is not None else expert_data(ExpertSettings.of(cfg), cache_dir, progress)
    trainer = _GAILTrainer(cfg, expert)
    config = dataclasses.asdict(cfg)

    def describe(stats: dict[str, float], metrics: dict[str, Any]) -> str:
        return f"reward {stats['reward']:.1f} (expert {expert.mean_return:.1f}), D acc {stats['disc_acc']:.1f} %"

    try:
        ckpt, _, rows = loop.run(trainer, out_dir, loop.Identity(config, config, {}),
                                 loop.Schedule(cfg.iterations, 1, cfg.checkpoint_every), resume=resume,
                                 report=report, progress=progress, label=f"{cfg.method} {cfg.env}", describe=describe)
    finally:
        trainer.run.sampler.close()
    return ckpt, rows, final_metrics(rows, cfg)


def final_metrics(rows: list[dict[str, Any]], cfg: GAILConfig) -> dict[str, Any]:
    """The run's summary: the last tenth's mean reward, the best iteration's, and the time."""
    rewards = np.array([r["reward"] for r in rows], dtype=np.float64)
    tail = max(1, len(rewards) // 10)
    return {"reward": float(rewards[-tail:].mean()) if len(rewards) else math.nan,
            "best_reward": float(rewards.max()) if len(rewards) else math.nan,
            "train_iterations": len(rows), "train_seconds": float(rows[-1]["train_seconds"]) if rows else 0.0,
            "env": cfg.env}
