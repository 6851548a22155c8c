"""AQ-L2L: AQ whose query perturbation comes from a learned attacker, as a registered learner."""

from __future__ import annotations

import pytest
import torch

from advmeta.data import Episodes
from advmeta.learners import get_learner, learner_names
from advmeta.models import build_model

EPS = 8 / 255


def _episodes(t: int = 2, n: int = 3, k: int = 1, q: int = 4, size: int = 16, seed: int = 0) -> Episodes:
    g = torch.Generator().manual_seed(seed)
    sy = torch.arange(n).repeat_interleave(k).expand(t, -1)
    qy = torch.arange(n).repeat_interleave(q).expand(t, -1)
    sx = torch.rand(t, n * k, 1, size, size, generator=g)
    qx = torch.rand(t, n * q, 1, size, size, generator=g)
    qx[..., 0, 0], qx[..., 0, 1] = 0.0, 1.0
    return Episodes(support_x=sx, support_y=sy.contiguous(), query_x=qx, query_y=qy.contiguous(),
                    classes=torch.arange(n).expand(t, -1).contiguous(), index=torch.arange(t))


def _learner(method: str = "grad-l2l"):
    cls = get_learner("aq-l2l")
    cfg = cls.Config(inner_steps=1, l2l_method=method, attacker_kind="slim")
    torch.manual_seed(0)
    backbone = build_model("conv4", in_channels=1, n_classes=3, width=8, image_size=16)
    return cls(cfg, cls.wrap_model(cfg, backbone))


def test_registered_with_documented_hparams() -> None:
    assert "aq-l2l" in learner_names()
    cls = get_learner("aq-l2l")
    cfg = cls.Config()
    assert (cfg.train_eps, cfg.l2l_method, cfg.attacker_lr, cfg.first_order) == ("8/255", "grad-l2l", 1e-3, True)
    assert "attacker_lr" in (cls.Config.__doc__ or "")


@pytest.mark.parametrize("method", ["naive-l2l", "grad-l2l", "2step-l2l"])
def test_query_perturbation_bounded(method: str) -> None:
    learner = _learner(method)
    ep = _episodes()
    fast = learner.adapt(learner.params(), ep.support_x, ep.support_y)
    delta = learner.query_perturbation(fast, ep)
    assert delta.shape == ep.query_x.shape and delta.abs().max() <= EPS + 1e-6
    adv = ep.query_x + delta
    assert adv.min() >= 0 and adv.max() <= 1


def test_update_moves_theta_and_phi_with_separate_optimisers() -> None:
    learner = _learner()
    opts = learner.optimizers(1e-3)
    theta0 = {k: v.detach().clone() for k, v in learner.params().items()}
    phi0 = {k: v.detach().clone() for k, v in learner.net.attacker.named_parameters()}
    assert not any(k.startswith("attacker.") for k in learner.params())
    seen = {}
    step_phi = opts[1].step

    def spy(*a, **k):  # the attacker half sees θ already updated and never changes it
        seen["theta_at_phi_step"] = {k: v.detach().clone() for k, v in learner.params().items()}
        return step_phi(*a, **k)

    opts[1].step = spy
    stats = learner.update(opts, _episodes())
    assert {"loss", "acc_adv", "attacker_loss"} <= set(stats)
    theta1 = learner.params()
    assert any(not torch.equal(theta0[k], theta1[k]) for k in theta0)
    assert all(torch.equal(seen["theta_at_phi_step"][k], theta1[k]) for k in theta1)
    phi1 = dict(learner.net.attacker.named_parameters())
    assert any(not torch.equal(phi0[k], phi1[k]) for k in phi0)
    fns = learner.adapted(_episodes().support_x, _episodes().support_y, steps=1)
    assert fns[-1](_episodes().query_x).shape == (2, 12, 3)


def test_attacker_steps_raise_the_query_loss() -> None:
    learner = _learner()
    cls = type(learner)
    learner.cfg = cls.Config(inner_steps=1, l2l_method="grad-l2l", attacker_kind="slim", attacker_lr=1e-2)
    opts = learner.optimizers(0.0)  # θ frozen: only the attacker learns
    ep = _episodes(q=6)
    losses = [learner.update(opts, ep)["attacker_loss"] for _ in range(12)]
    assert sum(losses[-3:]) / 3 > sum(losses[:3]) / 3 + 0.05, losses
