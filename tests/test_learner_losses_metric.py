"""The meta-losses of the metric learners (ProtoNet, AQ-ProtoNet, Matching and Relation Networks)
against independent float64 hand computations written from METHODS.md and the papers it cites.

Each reference reads the learner's network only through its (sub)modules' forward — the
embedding, Relation's relation module and MLP, ProtoNet's ``scale`` — and computes prototypes,
distances, attention, relation scores and losses itself, never through ``advmeta.learners``.
The one thing not written here is an adversarial example: AQ-ProtoNet draws its query attack
inside ``meta_loss`` (no method returns it), so the test re-runs ``advmeta.attacks.pgd`` with the
METHODS.md §5 settings and the same generator seed, on the reference's own episode logits.
Every test also checks that its reference differs from a plausible wrong variant, so that a
learner with that mistake could not pass.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _learner_fixtures import episodes, make
from advmeta.attacks.pgd import pgd
from advmeta.models.matching import MatchingNet
from advmeta.models.relation import RelationNet

pytestmark = pytest.mark.usefixtures("one_thread")

RTOL, ATOL, GRAD_ATOL = 1e-10, 1e-12, 1e-10


def assert_same_loss_and_grads(loss: Tensor, ref: Tensor, net: nn.Module) -> None:
    """Equal values (rtol 1e-10, atol 1e-12) and equal gradients w.r.t. every parameter (atol 1e-10)."""
    assert loss.dtype == torch.float64 and ref.dtype == torch.float64
    assert torch.allclose(loss, ref, rtol=RTOL, atol=ATOL), (float(loss.detach()), float(ref.detach()))
    names, params = zip(*net.named_parameters())
    g_loss = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    g_ref = torch.autograd.grad(ref, params, retain_graph=True, allow_unused=True)
    for name, a, b in zip(names, g_loss, g_ref):
        assert a is not None and b is not None, f"{name}: no gradient"
        assert float(b.abs().sum()) > 0, f"{name}: the reference gives it no gradient"
        assert torch.allclose(a, b, rtol=0, atol=GRAD_ATOL), (name, float((a - b).abs().max()))


# --------------------------------------------------------------------------------------------
# ProtoNet (Snell et al.; METHODS.md §5 for AQ's head)
# --------------------------------------------------------------------------------------------
def proto_logits(net: nn.Module, sx: Tensor, sy: Tensor, qx: Tensor, n_way: int, by_dim: bool,
                 scale: Tensor | float, euclid: bool = False) -> Tensor:
    """One task: prototypes c_k = mean of the class-k support embeddings; logits −‖f(x) − c_k‖²
    (÷ D when ``by_dim``) × scale. ``euclid=True`` is the naive, unsquared distance."""
    zs, zq = net.encoder(sx).flatten(1), net.encoder(qx).flatten(1)  # TinyEmbed: no batch norm
    protos = [zs[sy == k].mean(0) for k in range(n_way)]
    d = torch.stack([((zq - c) ** 2).sum(1) for c in protos], dim=1)
    if euclid:
        d = d.sqrt()
    if by_dim:
        d = d / zq.shape[1]
    return -d * scale


def proto_episode_logits(net: nn.Module, ep, qx: Tensor, by_dim: bool, scale,  # noqa: ANN001
                         euclid: bool = False) -> Tensor:
    n_way = int(ep.support_y.max()) + 1
    return torch.stack([proto_logits(net, ep.support_x[t], ep.support_y[t], qx[t], n_way, by_dim, scale, euclid)
                        for t in range(len(ep))])


def sharpen(net: nn.Module, conv_gain: float, scale: float | None) -> None:
    """Spread TinyEmbed's embeddings (a larger conv gain) and set the head's scale away from 1, so
    the episodes are not all near-uniform softmaxes where wrong variants nearly coincide."""
    with torch.no_grad():
        net.encoder.conv.weight.mul_(conv_gain)
        if scale is not None:
            net.scale.fill_(scale)


def mean_task_ce(logits: Tensor, y: Tensor) -> Tensor:
    """Mean over tasks of each task's mean query cross-entropy."""
    return torch.stack([F.cross_entropy(logits[t], y[t]) for t in range(len(y))]).mean()


@pytest.mark.parametrize("head", ["plain", "aq-head"])
def test_protonet_loss_against_a_hand_computation(head: str) -> None:
    """ProtoNet: CE of the negative squared Euclidean distances to the class means of the clean
    support; with ``learnable_scale`` and ``normalize_by_dim`` the AQ head −‖f(x) − c‖²/D × s."""
    aq_head = head == "aq-head"
    ep = episodes(t=3, n=3, k=3, q=2)
    learner = make("protonet", learnable_scale=aq_head, normalize_by_dim=aq_head)
    net = learner.net
    sharpen(net, 5.0, 1.7 if aq_head else None)  # scale ≠ 1: a head that ignores it is caught
    loss, _ = learner.meta_loss(ep, torch.Generator().manual_seed(5))
    scale = net.scale if aq_head else 1.0
    ref = mean_task_ce(proto_episode_logits(net, ep, ep.query_x, aq_head, scale), ep.query_y)
    assert_same_loss_and_grads(loss, ref, net)
    naive = mean_task_ce(proto_episode_logits(net, ep, ep.query_x, aq_head, scale, euclid=True), ep.query_y)
    assert not torch.allclose(ref, naive, rtol=1e-6)  # squared vs plain distance
    if aq_head:
        unscaled = mean_task_ce(proto_episode_logits(net, ep, ep.query_x, False, 1.0), ep.query_y)
        assert not torch.allclose(ref, unscaled, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# AQ-ProtoNet (METHODS.md §5)
# --------------------------------------------------------------------------------------------
def test_aq_protonet_loss_against_a_hand_computation() -> None:
    """AQ-ProtoNet: prototypes from the clean support, the query attacked by PGD (7 × 2/255,
    ε = 8/255, random start) through the whole episode, CE of the AQ head on the attacked query.

    The learner's API does not expose its adversarial query (it is drawn inside ``meta_loss``), so
    it is reconstructed with ``advmeta.attacks.pgd`` and the same generator seed — attacking the
    reference's logits, not the learner's."""
    ep = episodes(t=3, n=3, k=2, q=2)
    seed, eps = 11, 8 / 255
    learner = make("aq-protonet")  # defaults: learnable scale, ÷ D, PGD-7 × 2/255 at 8/255
    net = learner.net
    sharpen(net, 5.0, 1.7)
    loss, _ = learner.meta_loss(ep, torch.Generator().manual_seed(seed))

    def ref_fn(x: Tensor) -> Tensor:
        return proto_episode_logits(net, ep, x, True, net.scale)

    x_adv = pgd(ref_fn, ep.query_x, ep.query_y, eps=eps, steps=7, step_size=2 / 255, random_start=True,
                generator=torch.Generator().manual_seed(seed))
    assert float((x_adv - ep.query_x).abs().max()) <= eps + 1e-12 and not torch.equal(x_adv, ep.query_x)
    ref = mean_task_ce(ref_fn(x_adv), ep.query_y)
    assert_same_loss_and_grads(loss, ref, net)
    clean = mean_task_ce(ref_fn(ep.query_x), ep.query_y)
    assert float(ref.detach()) > float(clean.detach()) + 1e-4  # attacked query: a clean-query learner fails
    euclid = mean_task_ce(proto_episode_logits(net, ep, x_adv, True, net.scale, euclid=True), ep.query_y)
    assert not torch.allclose(ref, euclid, rtol=1e-6)


def test_aq_protonet_trades_loss_against_a_hand_computation() -> None:
    """AQ-ProtoNet's TRADES option, METHODS.md §5: CE(clean query) + β·KL, the KL as TRADES
    computes it (``KLDivLoss(log p_adv, p_clean)`` = Σ_k p_clean,k (log p_clean,k − log p_adv,k),
    mean over queries; §5 and §6 write the call's arguments, "KL(adv ‖ clean)"). The attack (PGD
    on the KL objective, ``loss="kl"``) is reconstructed with ``advmeta.attacks.pgd`` and the same seed."""
    ep = episodes(t=2, n=3, k=2, q=2)
    seed, eps, beta = 4, 8 / 255, 6.0
    learner = make("aq-protonet", loss="trades", trades_beta=beta)
    net = learner.net
    # Near-equal clean and adversarial distributions make KL almost symmetric (the two directions
    # differ at third order); a sharper embedding and a large scale keep them ~1e-4 apart.
    sharpen(net, 5.0, 50.0)
    loss, _ = learner.meta_loss(ep, torch.Generator().manual_seed(seed))

    def ref_fn(x: Tensor) -> Tensor:
        return proto_episode_logits(net, ep, x, True, net.scale)

    x_adv = pgd(ref_fn, ep.query_x, ep.query_y, eps=eps, steps=7, step_size=2 / 255, random_start=True,
                loss="kl", generator=torch.Generator().manual_seed(seed))
    clean_logits, adv_logits = ref_fn(ep.query_x), ref_fn(x_adv)
    lp_clean, lp_adv = F.log_softmax(clean_logits, -1), F.log_softmax(adv_logits, -1)
    kl_adv_clean = (lp_adv.exp() * (lp_adv - lp_clean)).sum(-1).mean()
    kl_clean_adv = (lp_clean.exp() * (lp_clean - lp_adv)).sum(-1).mean()
    assert float((beta * (kl_adv_clean - kl_clean_adv)).abs().detach()) > 1e-5  # the direction is visible here
    ref = mean_task_ce(clean_logits, ep.query_y) + beta * kl_clean_adv
    assert_same_loss_and_grads(loss, ref, net)


# --------------------------------------------------------------------------------------------
# Matching Networks (Vinyals et al.; METHODS.md §9), without full-context embeddings
# --------------------------------------------------------------------------------------------
def test_matching_loss_against_a_hand_computation() -> None:
    """Matching Networks: a(x̂, x_i) = softmax_i cos(f(x̂), g(x_i)) over the support, ŷ = Σ_i a·y_i,
    loss = CE on log ŷ (the mean over queries of −log ŷ_y)."""
    ep = episodes(t=2, n=3, k=2, q=2, size=16)
    torch.manual_seed(0)
    net = MatchingNet(in_channels=1, width=6, image_size=16)  # Conv4 embedding, batch norm in train mode
    learner = make("matching", net=net)
    net = learner.net
    loss, _ = learner.meta_loss(ep, torch.Generator().manual_seed(2))
    n_way = int(ep.support_y.max()) + 1

    def task_loss(t: int, similarity: str) -> Tensor:
        sx, sy, qx, qy = ep.support_x[t], ep.support_y[t], ep.query_x[t], ep.query_y[t]
        # One pass over the episode: training-mode batch norm takes its statistics over support and
        # query together (as the learner's network does); a per-image embedding would differ.
        z = net.embedding(torch.cat([sx, qx]))
        g, f = z[: len(sx)], z[len(sx):]
        assert float(z.detach().norm(dim=1).min()) > 1e-3  # cosine is defined
        if similarity == "cosine":
            sim = (f / f.norm(dim=1, keepdim=True)) @ (g / g.norm(dim=1, keepdim=True)).T
        else:  # naive: the dot product
            sim = f @ g.T
        att = torch.exp(sim - sim.max(1, keepdim=True).values)
        att = att / att.sum(1, keepdim=True)
        probs = torch.stack([att[:, sy == k].sum(1) for k in range(n_way)], dim=1)
        return F.cross_entropy(torch.log(probs), qy)

    ref = torch.stack([task_loss(t, "cosine") for t in range(len(ep))]).mean()
    assert_same_loss_and_grads(loss, ref, net)
    naive = torch.stack([task_loss(t, "dot") for t in range(len(ep))]).mean()
    assert not torch.allclose(ref, naive, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Relation Networks (Sung et al.; METHODS.md §9)
# --------------------------------------------------------------------------------------------
def test_relation_loss_against_a_hand_computation() -> None:
    """Relation Networks: class feature maps = the **sum** of the support feature maps over the
    shots; each (class, query) pair is the channel concatenation [class, query] (Sung et al.'s
    code); relation score r = sigmoid(fc2(ReLU(fc1(relation module(pair))))); loss = MSE of r to
    the one-hot label, mean over queries × classes."""
    ep = episodes(t=2, n=3, k=2, q=2, size=22)
    torch.manual_seed(0)
    net = RelationNet(in_channels=1, width=4, hidden=5, image_size=22)
    learner = make("relation", net=net)
    net = learner.net
    loss, _ = learner.meta_loss(ep, torch.Generator().manual_seed(8))
    n_way = int(ep.support_y.max()) + 1

    def task_loss(t: int, pool: str = "sum", query_first: bool = False) -> Tensor:
        sx, sy, qx, qy = ep.support_x[t], ep.support_y[t], ep.query_x[t], ep.query_y[t]
        z = net.encoder(net.normalize(torch.cat([sx, qx])))  # one pass: batch statistics of the episode
        zs, zq = z[: len(sx)], z[len(sx):]
        classes = [zs[sy == k].sum(0) if pool == "sum" else zs[sy == k].mean(0) for k in range(n_way)]
        # All pairs in one batch (the relation module's batch norm sees every pair), query-major.
        pairs = torch.stack([torch.cat([q, c] if query_first else [c, q]) for q in zq for c in classes])
        hidden = net.relation(pairs).flatten(1)
        scores = torch.sigmoid(net.fc2(torch.relu(net.fc1(hidden)))).view(len(qx), n_way)
        onehot = torch.stack([(qy == k).to(scores.dtype) for k in range(n_way)], dim=1)
        return ((scores - onehot) ** 2).mean()

    ref = torch.stack([task_loss(t) for t in range(len(ep))]).mean()
    assert_same_loss_and_grads(loss, ref, net)
    mean_pool = torch.stack([task_loss(t, pool="mean") for t in range(len(ep))]).mean()
    swapped = torch.stack([task_loss(t, query_first=True) for t in range(len(ep))]).mean()
    assert not torch.allclose(ref, mean_pool, rtol=1e-6)  # sum over shots, not the mean (K = 2)
    assert not torch.allclose(ref, swapped, rtol=1e-6)
