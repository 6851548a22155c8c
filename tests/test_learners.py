"""Float64 checks of the meta-learners: gradients, orders, attacks, TAFL weights, ADML's updates."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from _learner_fixtures import episodes, fake_surrogate, make
from advmeta.errors import NonFiniteLossError
from advmeta.learners import learner_names, get_learner
from advmeta.learners.tafl import task_weights

MAML_FAMILY = [n for n in learner_names() if get_learner(n).maml_family]


def meta_grad(learner, ep, gen_seed=0):  # noqa: ANN001, ANN201
    loss, _ = learner.meta_loss(ep, torch.Generator().manual_seed(gen_seed))
    params = list(learner.net.parameters())
    return loss, torch.autograd.grad(loss, params, allow_unused=True)


def reference_maml_loss(net, ep, lr, steps, first_order):  # noqa: ANN001, ANN201
    """A per-task loop written independently with torch.autograd.grad(create_graph=True)."""
    theta = dict(net.named_parameters())
    losses = []
    for t in range(len(ep)):
        fast = dict(theta)
        for _ in range(steps):
            loss = F.cross_entropy(functional_call(net, fast, (ep.support_x[t],)), ep.support_y[t])
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
            fast = {k: v - lr * g for (k, v), g in zip(fast.items(), grads)}
        losses.append(F.cross_entropy(functional_call(net, fast, (ep.query_x[t],)), ep.query_y[t]))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("first_order", [False, True])
def test_vmap_and_loop_match_reference(first_order: bool) -> None:
    ep = episodes()
    loop = make("maml", inner_lr=0.3, inner_steps=2, first_order=first_order)
    vec = make("maml", net=loop.net, vectorize=True, inner_lr=0.3, inner_steps=2, first_order=first_order)
    l1, g_loop = meta_grad(loop, ep)
    l2, g_vec = meta_grad(vec, ep)
    ref = reference_maml_loss(loop.net, ep, 0.3, 2, first_order)
    g_ref = torch.autograd.grad(ref, list(loop.net.parameters()))
    assert torch.allclose(l1, ref) and torch.allclose(l2, ref)
    for a, b, c in zip(g_loop, g_vec, g_ref):
        assert torch.allclose(a, c, atol=1e-10), (a - c).abs().max()
        assert torch.allclose(b, c, atol=1e-10), (b - c).abs().max()


def test_second_order_differs_from_first_order() -> None:
    ep = episodes()
    so = make("maml", inner_lr=0.5, inner_steps=1, first_order=False)
    fo = make("maml", net=so.net, inner_lr=0.5, inner_steps=1, first_order=True)
    diff = max(float((a - b).abs().max()) for a, b in zip(meta_grad(so, ep)[1], meta_grad(fo, ep)[1]))
    assert diff > 1e-4


def test_maml_meta_gradient_matches_finite_differences() -> None:
    ep = episodes(t=2)
    learner = make("maml", inner_lr=0.4, inner_steps=2, first_order=False)
    _, grads = meta_grad(learner, ep)
    params = list(learner.net.parameters())
    g = torch.Generator().manual_seed(1)
    direction = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
    analytic = sum(float((gr * d).sum()) for gr, d in zip(grads, direction))
    h = 1e-5

    def loss_at(sign: float) -> float:
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.add_(sign * h * d)
        value = float(learner.meta_loss(ep)[0].detach())
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.sub_(sign * h * d)
        return value

    numeric = (loss_at(1.0) - loss_at(-1.0)) / (2 * h)
    assert abs(analytic - numeric) < 1e-6 * max(1.0, abs(numeric))


def test_no_gradient_leaks_through_the_attack() -> None:
    """AQ's meta-gradient equals MAML's meta-gradient on the adversarial query held constant."""
    ep = episodes()
    aq = make("aq", inner_lr=0.3, inner_steps=1, first_order=False, train_eps="16/255",
              train_attack_steps=3, train_step_size="8/255")
    _, g_aq = meta_grad(aq, ep, gen_seed=5)
    fast = aq.adapt(aq.params(), ep.support_x, ep.support_y)
    x_adv = aq.adversarial_query(fast, ep, torch.Generator().manual_seed(5))
    assert not x_adv.requires_grad and (x_adv - ep.query_x).abs().max() > 0
    fixed = dataclasses.replace(ep, query_x=x_adv)
    maml = make("maml", net=aq.net, inner_lr=0.3, inner_steps=1, first_order=False)
    _, g_ref = meta_grad(maml, fixed)
    for a, b in zip(g_aq, g_ref):
        assert torch.allclose(a, b, atol=1e-12)
    assert all(p.grad is None for p in aq.net.parameters())


def test_tafl_weights_are_detached_and_average_one() -> None:
    lar = torch.tensor([0.01, 0.5, 2.0, 7.0], dtype=torch.float64, requires_grad=True)
    w = task_weights(lar, gamma=2.0, k=1.0)
    assert not w.requires_grad
    assert torch.isclose(w.mean(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.all(w[1:] > w[:-1])  # harder tasks (larger L_AR) weigh more
    assert torch.allclose(task_weights(lar, gamma=0.0, k=1.0), torch.ones(4, dtype=torch.float64))


def test_tafl_loss_against_a_hand_computation() -> None:
    """TAFL's meta-loss from scratch in float64: each task's inner step, the logits, L_AR and the
    focal weights by hand (torch.func), none of it through the learner's code. Only the
    adversarial query is the learner's own (the attack has its own contract and strength tests)."""
    ep = episodes(t=4)
    alpha, gamma, k = 0.3, 2.0, 1.0
    tafl = make("tafl", inner_lr=alpha, inner_steps=1, train_eps="16/255", gamma=gamma, k=k)
    loss, _ = tafl.meta_loss(ep, torch.Generator().manual_seed(3))
    theta = dict(tafl.net.named_parameters())

    def f(params: dict, x: torch.Tensor) -> torch.Tensor:  # type: ignore[type-arg]
        return functional_call(tafl.net, params, (x,))

    per_task = []
    for t in range(4):
        inner = F.cross_entropy(f(theta, ep.support_x[t]), ep.support_y[t])
        grads = torch.autograd.grad(inner, list(theta.values()))
        per_task.append({name: v - alpha * g for (name, v), g in zip(theta.items(), grads)})
    fast = {name: torch.stack([p[name] for p in per_task]) for name in theta}
    x_adv = tafl.adversarial_query(fast, ep, torch.Generator().manual_seed(3))
    ce_adv = torch.stack([F.cross_entropy(f(per_task[t], x_adv[t]), ep.query_y[t], reduction="none") for t in range(4)])
    ce_clean = torch.stack([F.cross_entropy(f(per_task[t], ep.query_x[t]), ep.query_y[t], reduction="none")
                            for t in range(4)])
    lar = torch.clamp(ce_adv.sum(1) - ce_clean.sum(1), min=1e-3).detach()
    m = (1 - torch.exp(-k * lar)) ** gamma
    ref = (m / m.mean() * ce_adv.mean(1)).mean()
    assert loss.dtype == torch.float64 and torch.allclose(loss, ref, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(ref, ce_adv.mean())  # the weights matter on these tasks


@pytest.mark.parametrize("recompute", [True, False])
def test_adml_two_updates_follow_algorithm_1(recompute: bool) -> None:
    ep = episodes(k=2, q=2)  # K = 1 clean + 1 adversarial per class, likewise the query
    a1, a2, b1, b2, eps = 0.3, 0.2, 0.05, 0.07, 8 / 255
    adml = make("adml", surrogate=fake_surrogate, inner_lr=a2, inner_lr_adv=a1, inner_steps=1,
                train_eps="8/255", recompute_second=recompute)
    net = adml.net
    theta0 = {k: v.detach().clone() for k, v in net.named_parameters()}
    # the hand-written reference: images ordered class-major, first image of each class clean
    sx, qx = ep.support_x, ep.query_x
    sc, sa = sx[:, 0::2], fake_surrogate(sx[:, 1::2], None, eps)
    qc, qa = qx[:, 0::2], fake_surrogate(qx[:, 1::2], None, eps)
    y = ep.support_y[:, 0::2]

    def branch(theta, s_x, lr, q_x):  # noqa: ANN001, ANN202
        losses = []
        for t in range(len(ep)):
            inner = F.cross_entropy(functional_call(net, theta, (s_x[t],)), y[t])
            grads = torch.autograd.grad(inner, list(theta.values()), create_graph=True)
            fast = {k: v - lr * g for (k, v), g in zip(theta.items(), grads)}
            losses.append(F.cross_entropy(functional_call(net, fast, (q_x[t],)), y[t]))
        return torch.stack(losses).mean()

    th = {k: v.clone().requires_grad_(True) for k, v in theta0.items()}
    g1 = torch.autograd.grad(branch(th, sa, a1, qc), list(th.values()))
    th1 = {k: (v - b1 * g).detach().requires_grad_(True) for (k, v), g in zip(th.items(), g1)}
    at = th1 if recompute else th
    g2 = torch.autograd.grad(branch(at, sc, a2, qa), list(at.values()))
    expected = {k: v - b2 * g for (k, v), g in zip(th1.items(), g2)}
    opts = [torch.optim.SGD(net.parameters(), lr=b1), torch.optim.SGD(net.parameters(), lr=b2)]
    adml.update(opts, ep)
    for k, p in net.named_parameters():
        assert torch.allclose(p, expected[k], atol=1e-12), k


@pytest.mark.parametrize("name", learner_names())
def test_every_meta_parameter_gets_a_gradient(name: str) -> None:
    learner = make(name, surrogate=fake_surrogate) if name not in ("matching", "relation") else None
    if learner is None:
        pytest.skip("matching/relation use their own episode networks; covered by test_train")
    ep = episodes(k=2, q=2)
    loss, _ = learner.meta_loss(ep, torch.Generator().manual_seed(0))
    grads = torch.autograd.grad(loss, list(learner.net.parameters()), allow_unused=True)
    for (pname, _), g in zip(learner.net.named_parameters(), grads):
        assert g is not None and float(g.abs().sum()) > 0, f"{name}: {pname} gets no gradient"


def test_one_inner_step_lowers_the_support_loss() -> None:
    ep = episodes()
    learner = make("maml", inner_lr=0.1)
    theta = learner.params()
    before = F.cross_entropy(learner.logits(theta, ep.support_x, shared=True).flatten(0, 1), ep.support_y.flatten())
    fast = learner.adapt(theta, ep.support_x, ep.support_y, steps=1)
    after = F.cross_entropy(learner.logits(fast, ep.support_x).flatten(0, 1), ep.support_y.flatten())
    assert float(after.detach()) < float(before.detach())


def test_nan_loss_raises() -> None:
    ep = episodes()
    learner = make("maml", inner_steps=1)
    with torch.no_grad():
        next(learner.net.parameters()).fill_(float("nan"))
    opt = learner.optimizers(1e-3)
    with pytest.raises(NonFiniteLossError):
        learner.update(opt, ep)


@pytest.mark.parametrize("name", learner_names())
def test_config_fields_are_documented(name: str) -> None:
    cls = get_learner(name)
    fields = dataclasses.fields(cls.Config)
    assert fields, name
    for f in fields:
        assert f.metadata.get("doc"), f"{name}.{f.name} has no doc"
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cls.Config(), fields[0].name, fields[0].default)


@pytest.mark.parametrize("config", ["L2LConfig", "GAILConfig"])
def test_trainer_config_fields_are_documented(config: str) -> None:
    """L2LConfig and GAILConfig declare every field with ``hp``, as the learners' Configs do."""
    from advmeta.gail import GAILConfig
    from advmeta.l2l import L2LConfig

    cls = {"L2LConfig": L2LConfig, "GAILConfig": GAILConfig}[config]
    fields = dataclasses.fields(cls)
    assert fields, config
    for f in fields:
        doc = f.metadata.get("doc")
        assert isinstance(doc, str) and doc.strip(), f"{config}.{f.name} has no doc"
        assert set(f.metadata) == {"doc", "low", "high", "log", "choices"}, f"{config}.{f.name}: not declared with hp"


def test_hp_factory_and_reexport() -> None:
    """``hp`` lives in advmeta.hparams (the learners' registry re-exports it); ``factory=`` gives
    each instance its own mutable default."""
    from advmeta import hparams, learners
    from advmeta.learners import _registry

    assert learners.hp is _registry.hp is hparams.hp

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        kwargs: dict[str, int] = hparams.hp(doc="extra arguments", factory=lambda: {"depth": 4})
        width: int = hparams.hp(8, "width", low=1, high=64)

    a, b = Cfg(), Cfg()
    assert a.kwargs == {"depth": 4} and a.kwargs is not b.kwargs and dataclasses.asdict(a) == {"kwargs": {"depth": 4},
                                                                                             "width": 8}
    kwargs, width = dataclasses.fields(Cfg)
    assert kwargs.default is dataclasses.MISSING and kwargs.metadata["doc"] == "extra arguments"
    assert (width.metadata["low"], width.metadata["high"]) == (1, 64)
    with pytest.raises(TypeError):
        hparams.hp(1, "doc", factory=dict)
    with pytest.raises(TypeError):
        hparams.hp(doc="neither a default nor a factory")
    with pytest.raises(TypeError):
        hparams.hp(1)


def test_light_finetune_adapts_only_the_head() -> None:
    ep = episodes()
    learner = make("rmaml-out", light_finetune=True, test_inner_steps=2)
    fns = learner.adapted(ep.support_x, ep.support_y, 2)
    assert len(fns) == 3
    theta = learner.params()
    with torch.enable_grad():
        traj = learner.adapt({k: v.detach().requires_grad_(True) for k, v in theta.items()}, ep.support_x,
                             ep.support_y, steps=2, first_order=True, keep_all=True,
                             trainable=learner.eval_trainable())
    assert torch.equal(traj[-1]["conv.weight"][0], theta["conv.weight"].detach())
    assert not torch.equal(traj[-1]["head.weight"][0], theta["head.weight"].detach())


def test_task_by_task_backward_equals_one_backward() -> None:
    ep = episodes(t=3)
    learner = make("maml", inner_lr=0.3, inner_steps=2)
    _, ref = meta_grad(learner, ep)
    learner.update([torch.optim.SGD(learner.net.parameters(), lr=0.0)], ep)
    for p, g in zip(learner.net.parameters(), ref):
        assert torch.allclose(p.grad, g, atol=1e-12)


def _bn_net(layer: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), layer, torch.nn.Tanh(),
                               torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 3)).double()


def test_vmap_second_order_switches_torch_batch_norm_to_the_exact_one_loudly() -> None:
    from advmeta.models.layers import BatchNorm2d, BNImpl

    ep = episodes()
    net = _bn_net(BatchNorm2d(4, "batch", "torch"))
    loop = make("maml", net=net, inner_lr=0.3, inner_steps=2, first_order=False)
    _, g_loop = meta_grad(loop, ep)
    with pytest.warns(UserWarning, match="switched"):
        vec = make("maml", net=net, vectorize=True, inner_lr=0.3, inner_steps=2, first_order=False)
    assert net[1].impl is BNImpl.MANUAL
    _, g_vec = meta_grad(vec, ep)
    for a, b in zip(g_loop, g_vec):
        assert torch.allclose(a, b, atol=1e-10), (a - b).abs().max()


def test_vmap_second_order_refuses_torchs_own_batch_norm() -> None:
    from advmeta.errors import ConfigError

    with pytest.raises(ConfigError, match="batch norm"):
        make("maml", net=_bn_net(torch.nn.BatchNorm2d(4)), vectorize=True, first_order=False)
    make("maml", net=_bn_net(torch.nn.BatchNorm2d(4)), vectorize=True, first_order=True)  # first order: exact
