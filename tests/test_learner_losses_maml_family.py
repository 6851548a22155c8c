"""Float64 hand computations of the meta-losses of the adversarial MAML-family learners.

Each test writes the learner's objective from scratch, from METHODS.md, with
``torch.func.functional_call`` and ``torch.autograd.grad`` (one task at a time), and compares the
learner's ``meta_loss`` and its meta-gradient w.r.t. every parameter of the net. Nothing of the
reference goes through the learner's own loss, inner loop or logits code; the only thing taken
from the learner (or, where it has no helper for it, from :mod:`advmeta.attacks` with the same
generator) is the adversarial example itself — attacks have their own contract and strength tests.
Every test also checks that the reference differs from a naive alternative (MAML's loss, the
clean-query loss, another weight...), so a wrong implementation could not coincide with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from _learner_fixtures import episodes, fake_surrogate, make
from advmeta.attacks import get_attack

pytestmark = pytest.mark.usefixtures("one_thread")

RTOL, ATOL, GRAD_ATOL = 1e-10, 1e-12, 1e-10
SEED = 7
EPS = 16 / 255  # large enough that every adversarial term moves the loss by ≫ the tolerances

Params = dict[str, Tensor]


# -- the independent reference machinery ------------------------------------------------------------
def f(net: nn.Module, params: Params, x: Tensor) -> Tensor:
    """Logits of one task's images (B, C, H, W) at the given weights."""
    out: Tensor = functional_call(net, params, (x,))
    return out


def sgd(net: nn.Module, start: Params, x: Tensor, y: Tensor, lr: float, steps: int, first_order: bool) -> Params:
    """``steps`` inner SGD steps θ ← θ − lr·∇CE(θ; x, y) of one task (METHODS §2), second order
    unless ``first_order`` (then the inner gradients are constants of the outer update)."""
    fast = dict(start)
    for _ in range(steps):
        loss = F.cross_entropy(f(net, fast, x), y)
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
        fast = {k: v - lr * g for (k, v), g in zip(fast.items(), grads)}
    return fast


def stacked(per_task: list[Params]) -> Params:
    """Per-task fast weights as the learner's (T, ...) dict (only to ask it for its attack)."""
    return {k: torch.stack([p[k] for p in per_task]) for k in per_task[0]}


def logits_fn(net: nn.Module, per_task: list[Params]) -> Callable[[Tensor], Tensor]:
    """A (T, B, C, H, W) → (T, B, N) logits function at detached per-task weights, for the attacks."""
    frozen = [{k: v.detach() for k, v in p.items()} for p in per_task]
    return lambda x: torch.stack([f(net, frozen[t], x[t]) for t in range(len(frozen))])


def mean_ce(net: nn.Module, per_task: list[Params], x: Tensor, y: Tensor) -> Tensor:
    """Mean over tasks of the mean query CE of each task at its own weights."""
    return torch.stack([F.cross_entropy(f(net, per_task[t], x[t]), y[t]) for t in range(len(per_task))]).mean()


def sharpen(learner: Any, scale: float = 3.0) -> Any:
    """Scale the classifier's weights up (the attacker's, if any, untouched) in place: at the
    fixture's initialisation TinyNet is nearly constant, and ε-sized perturbations would move
    the losses by less than the margins of the "differs from the naive alternative" checks."""
    with torch.no_grad():
        for name, p in learner.net.named_parameters():
            if not name.startswith("attacker."):
                p.mul_(scale)
    return learner


def grads_of(loss: Tensor, net: nn.Module) -> tuple[Tensor, ...]:
    return torch.autograd.grad(loss, list(net.parameters()), retain_graph=True)


def assert_same(loss: Tensor, ref: Tensor, net: nn.Module) -> None:
    """The learner's loss equals the reference, and so do their meta-gradients w.r.t. the net."""
    assert loss.dtype == torch.float64 and ref.dtype == torch.float64
    assert torch.allclose(loss, ref, rtol=RTOL, atol=ATOL), (loss.item(), ref.item())
    for (name, _), a, b in zip(net.named_parameters(), grads_of(loss, net), grads_of(ref, net)):
        assert torch.allclose(a, b, atol=GRAD_ATOL), (name, float((a - b).abs().max()))


def differs(a: Tensor, b: Tensor, by: float = 1e-4) -> bool:
    """|a − b| > by: a margin ≥ 10⁶ times the tolerances of the equality checks."""
    return abs(float(a.detach()) - float(b.detach())) > by


# -- AQ (METHODS §5) ---------------------------------------------------------------------------------
@pytest.mark.parametrize("first_order", [False, True])
def test_aq_loss_against_a_hand_computation(first_order: bool) -> None:
    """AQ: clean inner loop on the support; meta-loss = CE of the query attacked at the adapted
    weights θ′ (PGD, random start), at θ′. Also checks that the learner's training attack is the
    configured PGD of §5 (two steps of 8/255 at ε = 16/255 here)."""
    ep = episodes()
    alpha, steps = 0.4, 2
    aq = sharpen(make("aq", inner_lr=alpha, inner_steps=steps, first_order=first_order, train_eps="16/255",
                      train_attack_steps=2, train_step_size="8/255"))
    net = aq.net
    loss, _ = aq.meta_loss(ep, torch.Generator().manual_seed(SEED))

    theta = dict(net.named_parameters())
    fast = [sgd(net, theta, ep.support_x[t], ep.support_y[t], alpha, steps, first_order) for t in range(len(ep))]
    x_adv = aq.adversarial_query(stacked(fast), ep, torch.Generator().manual_seed(SEED))
    pgd = get_attack("pgd")(logits_fn(net, fast), ep.query_x, ep.query_y, eps=EPS, steps=2, step_size=8 / 255,
                            random_start=True, generator=torch.Generator().manual_seed(SEED))
    assert torch.allclose(x_adv, pgd, rtol=0, atol=1e-12)  # the learner's attack is §5's PGD at θ′
    ref = mean_ce(net, fast, x_adv, ep.query_y)
    assert_same(loss, ref, net)
    assert differs(ref, mean_ce(net, fast, ep.query_x, ep.query_y))  # not MAML's clean-query loss


# -- MAML-AD (METHODS §3) ----------------------------------------------------------------------------
def test_maml_ad_loss_against_a_hand_computation() -> None:
    """MAML-AD: plain (second-order) MAML whose support and query are each half clean, half
    surrogate FGSM of *other* images (per class: 1 clean + the FGSM of the other image)."""
    ep = episodes(k=2, q=2)  # doubled episode: the first image of each class stays clean
    alpha, steps = 0.4, 2
    learner = sharpen(make("maml-ad", surrogate=fake_surrogate, inner_lr=alpha, inner_steps=steps, train_eps="16/255"))
    net = learner.net
    loss, _ = learner.meta_loss(ep, torch.Generator().manual_seed(SEED))

    def mixed(x: Tensor) -> Tensor:  # images ordered class-major, two per class
        out = x.clone()
        out[:, 1::2] = fake_surrogate(x[:, 1::2], None, EPS)
        return out

    theta = dict(net.named_parameters())
    sx, qx = mixed(ep.support_x), mixed(ep.query_x)

    def maml(s: Tensor, q: Tensor) -> Tensor:
        fast = [sgd(net, theta, s[t], ep.support_y[t], alpha, steps, False) for t in range(len(ep))]
        return mean_ce(net, fast, q, ep.query_y)

    ref = maml(sx, qx)
    assert_same(loss, ref, net)
    assert differs(ref, maml(ep.support_x, ep.query_x))  # not MAML on the clean episode
    everything_adv = fake_surrogate(ep.support_x, None, EPS), fake_surrogate(ep.query_x, None, EPS)
    assert differs(ref, maml(*everything_adv))  # nor on an all-adversarial one: the 50/50 mix
    assert differs(ref, maml(ep.support_x, qx))  # and the inner set is mixed too


# -- white-box ADML (METHODS §4, last bullet) ----------------------------------------------------------
@pytest.mark.parametrize("first_order", [False, True])
def test_adml_white_box_loss_against_a_hand_computation(first_order: bool) -> None:
    """White-box ADML (AQ's "ADML"): PGD on the support at θ, the same support images adapted
    clean (θ′_nat) and attacked (θ′_rob); the query attacked at θ′_nat;
    meta-loss = ½[CE(θ′_rob, clean query) + CE(θ′_nat, adversarial query)], one Adam step.

    The learner has no helper returning its adversarial images, so they are rebuilt with
    advmeta.attacks' PGD (the training attack of §5: random start, 2 × 8/255 at ε = 16/255 here)
    and one generator seeded as the learner's, drawn support first, then query."""
    ep = episodes()
    alpha, steps = 0.4, 1
    learner = sharpen(make("adml-wb", inner_lr=alpha, inner_steps=steps, first_order=first_order, train_eps="16/255",
                           train_attack_steps=2, train_step_size="8/255"))
    net = learner.net
    loss, _ = learner.meta_loss(ep, torch.Generator().manual_seed(SEED))

    T = len(ep)
    theta = dict(net.named_parameters())
    pgd = get_attack("pgd")
    gen = torch.Generator().manual_seed(SEED)
    sx_adv = pgd(logits_fn(net, [theta] * T), ep.support_x, ep.support_y, eps=EPS, steps=2, step_size=8 / 255,
                 random_start=True, generator=gen)
    rob = [sgd(net, theta, sx_adv[t], ep.support_y[t], alpha, steps, first_order) for t in range(T)]
    nat = [sgd(net, theta, ep.support_x[t], ep.support_y[t], alpha, steps, first_order) for t in range(T)]
    qx_adv = pgd(logits_fn(net, nat), ep.query_x, ep.query_y, eps=EPS, steps=2, step_size=8 / 255,
                 random_start=True, generator=gen)
    rob_clean, nat_adv = mean_ce(net, rob, ep.query_x, ep.query_y), mean_ce(net, nat, qx_adv, ep.query_y)
    ref = 0.5 * (rob_clean + nat_adv)
    assert_same(loss, ref, net)
    nat_clean = mean_ce(net, nat, ep.query_x, ep.query_y)
    assert differs(ref, nat_clean)  # not MAML's loss
    assert differs(ref, nat_adv)  # not AQ's loss: the robust branch counts
    assert differs(ref, 0.5 * (nat_clean + nat_adv))  # the robust branch adapts on the attacked support


# -- R-MAML-out (METHODS §6) ---------------------------------------------------------------------------
@pytest.mark.parametrize("first_order", [False, True])
def test_rmaml_out_loss_against_a_hand_computation(first_order: bool) -> None:
    """R-MAML-out: clean inner loop; FGSM-RS on the query at θ′;
    meta-loss = CE(clean query, θ′) + λ·CE(adversarial query, θ′).

    R-MAML has no helper returning its adversarial query: it is rebuilt with advmeta.attacks'
    FGSM-RS (§1: δ₀ ~ U(−ε, ε), one step of 1.25ε, project) from a generator seeded as the learner's."""
    ep = episodes()
    alpha, steps, lam = 0.4, 2, 0.7
    learner = sharpen(make("rmaml-out", inner_lr=alpha, inner_steps=steps, first_order=first_order, train_eps="16/255",
                           adv_weight=lam))
    net = learner.net
    loss, _ = learner.meta_loss(ep, torch.Generator().manual_seed(SEED))

    theta = dict(net.named_parameters())
    fast = [sgd(net, theta, ep.support_x[t], ep.support_y[t], alpha, steps, first_order) for t in range(len(ep))]
    x_adv = get_attack("fgsm-rs")(logits_fn(net, fast), ep.query_x, ep.query_y, eps=EPS,
                                  generator=torch.Generator().manual_seed(SEED))
    clean, adv = mean_ce(net, fast, ep.query_x, ep.query_y), mean_ce(net, fast, x_adv, ep.query_y)
    ref = clean + lam * adv
    assert_same(loss, ref, net)
    assert differs(ref, (1 + lam) * clean)  # the adversarial query matters
    assert differs(ref, clean + 0.2 * adv)  # λ is the configured one, not the default 0.2


# -- R-MAML-both (METHODS §6) --------------------------------------------------------------------------
@pytest.mark.parametrize("first_order", [False, True])
def test_rmaml_both_loss_against_a_hand_computation(first_order: bool) -> None:
    """R-MAML-both: clean inner loop to θ′; FGSM-RS on the support at θ′; one adversarial inner
    step θ″ = θ′ − lr_adv·∇CE(θ′; attacked support) *from the fast weights* (not from θ, the
    authors' bug); then R-MAML-out's meta-loss at θ″ with the query attacked at θ″.

    Adversarial images rebuilt with advmeta.attacks' FGSM-RS from one generator seeded as the
    learner's, drawn support first, then query (the learner has no helper returning them)."""
    ep = episodes()
    alpha, steps, lam, lr_adv = 0.4, 1, 0.7, 0.5
    learner = sharpen(make("rmaml-both", inner_lr=alpha, inner_steps=steps, first_order=first_order, train_eps="16/255",
                           adv_weight=lam, adv_inner_lr=lr_adv))
    net = learner.net
    loss, _ = learner.meta_loss(ep, torch.Generator().manual_seed(SEED))

    T = len(ep)
    theta = dict(net.named_parameters())
    fgsm_rs = get_attack("fgsm-rs")
    gen = torch.Generator().manual_seed(SEED)
    fast = [sgd(net, theta, ep.support_x[t], ep.support_y[t], alpha, steps, first_order) for t in range(T)]
    sx_adv = fgsm_rs(logits_fn(net, fast), ep.support_x, ep.support_y, eps=EPS, generator=gen)
    fast2 = [sgd(net, fast[t], sx_adv[t], ep.support_y[t], lr_adv, 1, first_order) for t in range(T)]
    qx_adv = fgsm_rs(logits_fn(net, fast2), ep.query_x, ep.query_y, eps=EPS, generator=gen)
    ref = mean_ce(net, fast2, ep.query_x, ep.query_y) + lam * mean_ce(net, fast2, qx_adv, ep.query_y)
    assert_same(loss, ref, net)
    # not R-MAML-out (no adversarial inner step)...
    assert differs(ref, mean_ce(net, fast, ep.query_x, ep.query_y) + lam * mean_ce(net, fast, qx_adv, ep.query_y))
    # ...nor the authors' code, whose adversarial step starts from θ and discards the clean adaptation
    bug = [sgd(net, theta, sx_adv[t], ep.support_y[t], lr_adv, 1, first_order) for t in range(T)]
    assert differs(ref, mean_ce(net, bug, ep.query_x, ep.query_y) + lam * mean_ce(net, bug, qx_adv, ep.query_y))


# -- R-MAML-TRADES (METHODS §6) ------------------------------------------------------------------------
TRADES_EPS = 32 / 255  # with a sharper net: R ≈ 0.1, and the two KL directions differ by ≈ 4e-3


def _trades_setup(first_order: bool, unlabeled: bool, beta: float) -> tuple[Any, ...]:
    ep = episodes()
    if unlabeled:  # one unlabeled image per class of the task
        g = torch.Generator().manual_seed(11)
        ep = dataclasses.replace(ep, unlabeled_x=torch.rand(len(ep), 3, 1, 6, 6, generator=g, dtype=torch.float64))
    alpha, steps = 0.4, 2
    learner = sharpen(make("rmaml-trades", inner_lr=alpha, inner_steps=steps, first_order=first_order,
                           train_eps="32/255", beta=beta, n_unlabeled=1 if unlabeled else 0), scale=5.0)
    net = learner.net
    theta = dict(net.named_parameters())
    fast = [sgd(net, theta, ep.support_x[t], ep.support_y[t], alpha, steps, first_order) for t in range(len(ep))]
    # R-MAML has no helper returning its adversarial images: rebuilt with advmeta.attacks' FGSM-RS on the
    # KL objective, at θ′, on support + query (+ unlabeled) images concatenated in that order (the
    # order fixes which random start each image draws from the generator seeded as the learner's)
    parts = [ep.support_x, ep.query_x]
    if unlabeled:
        assert ep.unlabeled_x is not None
        parts.append(ep.unlabeled_x)
    x_all = torch.cat(parts, 1)
    x_adv = get_attack("fgsm-rs")(logits_fn(net, fast), x_all, None, eps=TRADES_EPS, loss="kl",
                                  generator=torch.Generator().manual_seed(SEED))
    return ep, learner, net, fast, x_all, x_adv


def _kl(p_log: Tensor, q_log: Tensor) -> Tensor:
    """KL(p ‖ q) = Σ p (log p − log q) per sample, from log-probabilities."""
    return (p_log.exp() * (p_log - q_log)).sum(-1)


@pytest.mark.parametrize("unlabeled", [False, True])
@pytest.mark.parametrize("first_order", [False, True])
def test_rmaml_trades_loss_against_a_hand_computation(first_order: bool, unlabeled: bool) -> None:
    """R-MAML-TRADES: meta-loss = CE(clean query, θ′) + β·R, R = mean over support + query
    (+ unlabeled: they enter R only) of the per-image KL between the clean and the FGSM-RS
    outputs at θ′.

    Direction: KL(p_clean ‖ p_adv) = Σ p_clean·log(p_clean / p_adv), what TRADES' and R-MAML's
    code compute (``kl_div(log_softmax(adv), softmax(clean))``), which §6 tags [code] and
    writes "KL(f(x_adv) ‖ f(x))" in that code's argument order (``kl_div``'s input, then target)."""
    beta = 2.5
    ep, learner, net, fast, x_all, x_adv = _trades_setup(first_order, unlabeled, beta)
    loss, stats = learner.meta_loss(ep, torch.Generator().manual_seed(SEED))

    n_s, n_q = ep.support_x.shape[1], ep.query_x.shape[1]
    ce_q, kl, kl_rev = [], [], []
    for t in range(len(ep)):
        lc = F.log_softmax(f(net, fast[t], x_all[t]), -1)
        la = F.log_softmax(f(net, fast[t], x_adv[t]), -1)
        ce_q.append(F.nll_loss(lc[n_s:n_s + n_q], ep.query_y[t]))
        kl.append(_kl(lc, la).mean())
        kl_rev.append(_kl(la, lc).mean())
    ce_clean, r, r_rev = torch.stack(ce_q).mean(), torch.stack(kl).mean(), torch.stack(kl_rev).mean()
    ref = ce_clean + beta * r
    assert_same(loss, ref, net)
    assert abs(stats["kl"] - float(r.detach())) < 1e-12
    assert differs(ref, ce_clean, 1e-2)  # the KL term matters
    assert differs(ref, ce_clean + 3.0 * r, 1e-2)  # β is the configured one, not the default 3
    assert differs(ref, ce_clean + beta * r_rev, 1e-3)  # and the direction of the KL is pinned
    if unlabeled:  # the unlabeled images count in R
        r_labeled = torch.stack([_kl(F.log_softmax(f(net, fast[t], x_all[t, :n_s + n_q]), -1),
                                     F.log_softmax(f(net, fast[t], x_adv[t, :n_s + n_q]), -1)).mean()
                                 for t in range(len(ep))]).mean()
        assert differs(ref, ce_clean + beta * r_labeled, 1e-3)


# -- AQ-L2L (our extension of §5 with §8's learned attacker) -------------------------------------------
@pytest.mark.parametrize("first_order", [False, True])
def test_aq_l2l_loss_and_both_gradients_against_a_hand_computation(first_order: bool) -> None:
    """AQ-L2L: clean inner loop to θ′; δ = g_φ(query, ∇ at θ′) (the learner's learned attack);
    the value is CE(f_θ′(query + δ)); θ gets the AQ meta-gradient with δ a constant, and φ gets
    −∇_φ CE(f_{sg θ′}(query + δ)), so a descent step of φ's optimiser is the attacker's ascent on
    the same loss at the same, detached θ′ (§8: the attacker maximises the classifier's CE)."""
    ep = episodes()
    alpha, steps = 0.4, 2
    learner = sharpen(make("aq-l2l", inner_lr=alpha, inner_steps=steps, first_order=first_order, train_eps="16/255",
                           l2l_method="grad-l2l", attacker_kind="slim"))
    net = learner.net
    loss, _ = learner.meta_loss(ep, torch.Generator().manual_seed(SEED))

    names = [k for k, _ in net.named_parameters()]
    theta = {k: v for k, v in net.named_parameters() if k.startswith("backbone.")}
    phi = [v for k, v in net.named_parameters() if k.startswith("attacker.")]
    assert len(theta) + len(phi) == len(names) and phi
    fast = [sgd(net, theta, ep.support_x[t], ep.support_y[t], alpha, steps, first_order) for t in range(len(ep))]
    delta = learner.query_perturbation(stacked(fast), ep)  # the learned attack, differentiable in φ
    assert delta.requires_grad and float(delta.detach().abs().max()) <= EPS + 1e-12
    ref = mean_ce(net, fast, ep.query_x + delta.detach(), ep.query_y)
    attacker_obj = mean_ce(net, [{k: v.detach() for k, v in p.items()} for p in fast], ep.query_x + delta, ep.query_y)

    assert loss.dtype == torch.float64 and torch.allclose(loss, ref, rtol=RTOL, atol=ATOL), (loss.item(), ref.item())
    g_loss = dict(zip(names, grads_of(loss, net)))
    g_theta = dict(zip(theta, torch.autograd.grad(ref, list(theta.values()))))
    g_phi = torch.autograd.grad(attacker_obj, phi)
    for k in theta:
        assert torch.allclose(g_loss[k], g_theta[k], atol=GRAD_ATOL), (k, float((g_loss[k] - g_theta[k]).abs().max()))
    phi_names = [k for k in names if k.startswith("attacker.")]
    for k, g in zip(phi_names, g_phi):
        assert torch.allclose(g_loss[k], -g, atol=GRAD_ATOL), (k, float((g_loss[k] + g).abs().max()))
    assert sum(float(g.abs().sum()) for g in g_phi) > 1e-6  # the sign test above is not 0 = −0
    assert differs(ref, mean_ce(net, fast, ep.query_x, ep.query_y), 1e-4)  # not MAML's clean-query loss
