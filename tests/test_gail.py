"""GAIL and L2L-GAIL (advmeta.gail): TRPO learns, each update touches only its own parameters, the
learned updater starts as exactly GAIL's SGD step (float64), resume is exact, the expert cache, the
curve claims and the grid."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("gymnasium")

from advmeta.errors import ConfigError  # noqa: E402
from advmeta.gail import GAILConfig, train_gail  # noqa: E402
from advmeta.gail.expert import ExpertData, ExpertSettings, expert_data  # noqa: E402
from advmeta.gail.networks import LearnedUpdater, Policy, Value  # noqa: E402
from advmeta.gail.rollout import Sampler  # noqa: E402
from advmeta.gail.train import build_state, disc_loss, iteration, learned_step, set_disc, updater_update  # noqa: E402
from advmeta.gail.trpo import conjugate_gradient, policy_step  # noqa: E402


class _Balancer(Policy):
    """A hand-written CartPole controller (push towards where the pole falls): a near-expert."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        push_right = (obs[:, 2] + 0.5 * obs[:, 3] > 0).long()
        logp = torch.full((obs.shape[0], 2), -20.0, dtype=obs.dtype)
        logp[torch.arange(obs.shape[0]), push_right] = 0.0
        return logp


def _expert(n_traj: int = 2) -> ExpertData:
    sampler = Sampler("CartPole-v1", 2, seed=123, dtype=torch.float64)
    batch = sampler.sample(_Balancer(4, 2, (1,)), 0, torch.Generator().manual_seed(0), greedy=True,
                           max_episodes=n_traj)
    return ExpertData(raw_obs=batch.raw_obs, actions=batch.actions.numpy(), returns=batch.returns,
                      random_return=22.0, iterations=0, seconds=0.0, path=Path("synthetic"))


def _small(**kw: object) -> GAILConfig:
    base = dict(env="CartPole-v1", iterations=2, batch_steps=200, n_envs=2, policy_hidden=(16,), value_hidden=(16,),
                disc_hidden=(8, 4), value_epochs=1, checkpoint_every=1)
    return GAILConfig(**{**base, **kw})  # type: ignore[arg-type]


def _params(*modules: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for m in modules for p in m.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_expert_balancer_is_an_expert() -> None:
    assert _expert().mean_return >= 475  # the synthetic expert the other tests imitate


def test_trpo_improves_cartpole_reward_in_a_short_run() -> None:
    torch.manual_seed(0)
    sampler = Sampler("CartPole-v1", 4, seed=0)
    policy, value = Policy(4, 2, (32, 32)), Value(4, (32, 32))
    opt = torch.optim.Adam(value.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    returns = []
    for _ in range(12):
        batch = sampler.sample(policy, 1000, gen)
        returns.append(float(batch.returns.mean()))
        policy_step(policy, value, opt, batch.obs, batch.actions, batch.rewards, batch.last_obs, batch.episode_starts,
                    batch.lengths, batch.terminated, gamma=0.99, lam=0.97, max_kl=0.02, damping=0.1, cg_iters=10,
                    entropy_coef=0.0, value_epochs=3, value_minibatch=128, generator=gen)
    assert np.mean(returns[-3:]) > 2 * np.mean(returns[:3]), returns


def test_conjugate_gradient_solves_a_spd_system() -> None:
    g = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = m @ m.T + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=20)
    assert torch.allclose(x, torch.linalg.solve(a, b), atol=1e-10)


def _batch_inputs(state, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    dtype = next(state.disc.parameters()).dtype
    exp = _expert(1)
    x_exp = state.disc.inputs(torch.as_tensor(state.sampler.scale(exp.raw_obs), dtype=dtype),
                              torch.as_tensor(exp.actions))
    batch = state.sampler.sample(state.policy, 100, torch.Generator().manual_seed(seed))
    return state.disc.inputs(batch.obs, batch.actions), x_exp


def test_discriminator_update_changes_only_the_discriminator() -> None:
    state = build_state(_small(method="gail"))
    x_pol, x_exp = _batch_inputs(state)
    others = _params(state.policy, state.value)
    disc = _params(state.disc)
    state.discriminator_update(x_pol, x_exp)
    assert _same(others, _params(state.policy, state.value))
    assert not _same(disc, _params(state.disc))


def test_learned_update_and_updater_step_each_change_only_their_own_parameters() -> None:
    state = build_state(_small(method="gail-l2l"))
    assert state.updater is not None and state.updater_opt is not None
    x_pol, x_exp = _batch_inputs(state)
    others = _params(state.policy, state.value)
    disc, upd = _params(state.disc), _params(state.updater)
    new_theta, _ = learned_step(state.disc, state.updater, x_pol, x_exp)
    assert _same(disc, _params(state.disc)) and _same(upd, _params(state.updater))  # computing Δ changes nothing
    set_disc(state.disc, new_theta)  # θ_D's update
    assert not _same(disc, _params(state.disc)) and _same(upd, _params(state.updater))
    disc_after = _params(state.disc)
    updater_update(state.disc, state.updater_opt, new_theta, x_pol, x_exp)  # θ_U's Adam step
    assert _same(disc_after, _params(state.disc)) and not _same(upd, _params(state.updater))
    assert _same(others, _params(state.policy, state.value))


def test_new_updater_is_exactly_the_sgd_step() -> None:
    u = LearnedUpdater(hidden=5, sgd_lr=0.3, dtype=torch.float64)
    theta, grad = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    assert torch.equal(u(theta, grad), -0.3 * grad)


def test_learned_updater_at_init_reproduces_gails_sgd_iteration_in_float64() -> None:
    """One whole iteration: L2L-GAIL with a new U and GAIL with SGD at U's η give the same θ_D
    (and so the same rewards and TRPO step) to 1e-12 in float64."""
    common = dict(dtype="float64", disc_steps=1, iterations=1)
    gail = build_state(_small(method="gail", disc_optimizer="sgd", disc_lr=0.05, **common))
    l2l = build_state(_small(method="gail-l2l", updater_sgd_lr=0.05, **common))
    assert _same(_params(gail.disc), _params(l2l.disc)) and _same(_params(gail.policy), _params(l2l.policy))
    exp = _expert(1)
    x_exp = gail.disc.inputs(torch.as_tensor(gail.sampler.scale(exp.raw_obs)), torch.as_tensor(exp.actions))
    # An independent float64 SGD step on θ_D: θ − η ∇L_D on the same batch.
    batch = Sampler("CartPole-v1", 2, seed=0, dtype=torch.float64).sample(gail.policy, 200, torch.Generator().manual_seed(0))
    x_pol = gail.disc.inputs(batch.obs, batch.actions)
    params = list(gail.disc.parameters())
    grads = torch.autograd.grad(disc_loss(gail.disc(x_pol), gail.disc(x_exp)), params)
    expected = [p.detach() - 0.05 * g for p, g in zip(params, grads)]
    m_gail = iteration(_small(method="gail", disc_optimizer="sgd", disc_lr=0.05, **common), gail, x_exp)
    m_l2l = iteration(_small(method="gail-l2l", updater_sgd_lr=0.05, **common), l2l, x_exp)
    for a, b, e in zip(gail.disc.parameters(), l2l.disc.parameters(), expected):
        assert torch.allclose(a, b, rtol=0, atol=1e-12) and torch.allclose(a, e, rtol=0, atol=1e-12)
    for a, b in zip(gail.policy.parameters(), l2l.policy.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    for key in ("reward", "disc_loss", "gail_reward", "kl"):
        assert m_gail[key] == pytest.approx(m_l2l[key], abs=1e-12), key


def test_resume_gives_identical_rewards(tmp_path: Path) -> None:
    cfg = _small(method="gail-l2l", iterations=4, checkpoint_every=2)
    exp = _expert(1)
    _, full, _ = train_gail(cfg, tmp_path / "a", expert=exp)

    class Stop(Exception):
        pass

    def crash(metrics: dict, path: Path | None) -> None:  # type: ignore[type-arg]
        if metrics["iteration"] == 3:
            raise Stop

    with pytest.raises(Stop):
        train_gail(cfg, tmp_path / "b", expert=exp, report=crash)  # killed after the checkpoint of iteration 2
    _, resumed, _ = train_gail(cfg, tmp_path / "b", expert=exp)
    keys = [k for k in full[0] if k != "train_seconds"]
    assert [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in full]
    with pytest.raises(ConfigError, match="another configuration"):
        train_gail(dataclasses.replace(cfg, disc_lr=0.5), tmp_path / "b", expert=exp)


def test_rows_are_finite_and_complete(tmp_path: Path) -> None:
    _, rows, final = train_gail(_small(iterations=2), tmp_path, expert=_expert(1))
    assert [r["iteration"] for r in rows] == [1, 2]
    assert all(math.isfinite(r[k]) for r in rows for k in ("reward", "disc_acc", "disc_loss", "gail_reward"))
    assert rows[0]["env_steps"] >= 200 and rows[1]["env_steps"] >= 400
    assert final["train_iterations"] == 2


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown GAIL environment"):
        GAILConfig(env="Pong")
    with pytest.raises(ConfigError, match="reward_form"):
        GAILConfig(reward_form="other")
    assert GAILConfig(env="mountaincar").env == "MountainCar-v0"
    assert GAILConfig(env="mountaincar").reward == "log-d" and GAILConfig().reward == "ho-ermon"


def test_expert_is_trained_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import advmeta.gail.expert as ex

    calls = []
    exp = _expert(1)

    def fake(settings: ExpertSettings, progress: bool = False) -> dict:  # type: ignore[type-arg]
        calls.append(settings)
        return {"format": ex.FORMAT, "settings": dataclasses.asdict(settings), "raw_obs": exp.raw_obs,
                "actions": exp.actions, "returns": exp.returns, "random_return": 22.0, "iterations": 3, "seconds": 1.0}

    monkeypatch.setattr(ex, "train_expert", fake)
    a = expert_data(ExpertSettings(env="CartPole-v1"), tmp_path)
    b = expert_data(ExpertSettings(env="CartPole-v1"), tmp_path)
    assert len(calls) == 1 and a.path == b.path and np.array_equal(a.actions, b.actions)
    expert_data(ExpertSettings(env="CartPole-v1", seed=1), tmp_path)
    assert len(calls) == 2  # another expert is another file


# -- claims on learning curves ------------------------------------------------------------------

def _curve(tid: str, method: str, rewards: list[float], env: str = "CartPole-v1") -> list[dict]:  # type: ignore[type-arg]
    return [{"trial_id": tid, "method": method, "env": env, "iteration": i + 1, "reward": r, "expert_reward": 500.0,
             "random_reward": 0.0} for i, r in enumerate(rewards)]


def _curves(gail_final: float, l2l_final: float, noise: float = 0.0) -> pd.DataFrame:
    rows = []
    for s in range(5):
        rise = list(np.linspace(0, 500, 20))
        rows += _curve(f"g{s}", "gail", rise + [500.0] * 60 + [gail_final + noise * (s - 2)] * 20)
        rows += _curve(f"l{s}", "gail-l2l", rise + [500.0] * 60 + [l2l_final + noise * (s - 2)] * 20)
    return pd.DataFrame(rows)


def _verdicts(curves: pd.DataFrame) -> dict[str, str]:
    from advmeta.claims import claims_dir, evaluate_claims

    frame = evaluate_claims(pd.DataFrame(), curves=curves, claim_files=[claims_dir() / "gail.toml"])
    return dict(zip(frame["claim_id"], frame["verdict"]))


def test_curve_statistics_of_a_known_curve() -> None:
    from advmeta.claims import curve_statistics

    c = pd.DataFrame(_curve("t", "gail", [0.0] * 10 + [500.0] * 80 + [250.0] * 10))
    stats = curve_statistics(c)
    assert stats["final"] == pytest.approx(0.5) and stats["peak"] == pytest.approx(1.0)
    assert stats["late_drop"] == pytest.approx(0.5)


def test_curve_claims_hold_fail_and_are_inconclusive_at_the_ci_edges() -> None:
    v = _verdicts(_curves(gail_final=200.0, l2l_final=500.0))  # GAIL falls to 0.4, L2L stays at 1
    assert v == {"gail-drops-late": "holds", "l2l-gail-no-late-drop": "holds", "l2l-gail-more-stable": "holds"}
    v = _verdicts(_curves(gail_final=500.0, l2l_final=500.0))  # nobody drops
    assert v["gail-drops-late"] == "fails" and v["l2l-gail-more-stable"] == "fails"
    # GAIL's drop 0.1 on average with a spread across seeds: the interval straddles 0.1.
    v = _verdicts(_curves(gail_final=450.0, l2l_final=500.0, noise=20.0))
    assert v["gail-drops-late"] == "inconclusive"


def test_curve_claims_are_left_out_of_accuracy_sweeps_and_vice_versa() -> None:
    from advmeta.claims import evaluate_claims

    frame = evaluate_claims(pd.DataFrame(), curves=_curves(200.0, 500.0))
    assert set(frame["paper"]) == {"L2L-GAIL"}


# -- the grid and the family ---------------------------------------------------------------------

def test_gail_grid_expands_to_both_methods_both_envs_five_seeds() -> None:
    from advmeta.plan.budgets import get_budget
    from advmeta.plan.grids import expand, load_grid, uses_data

    name, data = load_grid("gail")
    specs = expand(name, data, get_budget("quick"), dataset="none", seed=7)
    assert len(specs) == 20 and not uses_data(data)
    assert {(s.method, s.hparams["env"]) for s in specs} == {(m, e) for m in ("gail", "gail-l2l")
                                                             for e in ("CartPole-v1", "MountainCar-v0")}
    assert sorted({s.train["seed"] for s in specs}) == [7, 8, 9, 10, 11]
    assert all("dataset" not in s.train and s.train["iterations"] == 300 for s in specs)
    bad = {**data, "tables": [{**data["tables"][0], "seeds": 0}]}
    with pytest.raises(ConfigError, match="seeds"):
        expand(name, bad, get_budget("quick"), dataset="none", seed=0)


def test_family_config_is_the_trials_settings() -> None:
    from advmeta.families.gail import gail_config
    from advmeta.plan.trial import TrialSpec

    spec = TrialSpec("s", "gail", "gail-l2l", {"env": "mountaincar", "disc_lr": 0.01, "disc_hidden": [8, 4]},
                     {"iterations": 7, "batch_steps": 300, "seed": 3})
    cfg = gail_config(spec)
    assert (cfg.method, cfg.env, cfg.iterations, cfg.batch_steps, cfg.seed, cfg.disc_hidden) == (
        "gail-l2l", "MountainCar-v0", 7, 300, 3, (8, 4))
