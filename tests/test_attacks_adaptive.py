"""Attacks through adaptation: the support attack's contract and its gradient's path.

The gradient test is the one that fails when the support's perturbation is differentiated
through the wrong weights: with the fine-tuning cut from the graph (first order, or θ instead
of the fine-tuned weights) the query's loss does not depend on the support images at all.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from advmeta.attacks import task_generator, task_generators
from advmeta.attacks.episode import episode_pgd
from advmeta.errors import ConfigError
from tests._learner_fixtures import episodes, make

EPS = 8 / 255


@pytest.fixture(scope="module")
def ep():  # noqa: ANN201
    return episodes(t=3, n=3, k=2, q=2, size=6, seed=3)


@pytest.mark.parametrize("method", ["maml", "protonet"])
@pytest.mark.parametrize("scope", [(True, False), (True, True), (False, True)])
def test_episode_pgd_contract(method: str, scope: tuple[bool, bool], ep) -> None:  # noqa: ANN001
    learner = make(method)
    fn = learner.episode_fn(ep.support_y, 2)
    sx0, qx0 = ep.support_x.clone(), ep.query_x.clone()
    sx, qx = episode_pgd(fn, ep.support_x, ep.query_x, ep.query_y, eps=EPS, steps=3, support=scope[0],
                         query=scope[1], generator=task_generators(1, 3))
    assert torch.equal(ep.support_x, sx0) and torch.equal(ep.query_x, qx0), "inputs modified"
    for adv, clean, on in ((sx, sx0, scope[0]), (qx, qx0, scope[1])):
        assert not adv.requires_grad and adv.min() >= 0 and adv.max() <= 1
        assert (adv - clean).abs().max() <= EPS + 1e-12
        assert ((adv - clean).abs().max() > 0) == on, "exactly the attacked images move"
    # a batch of tasks equals each task alone (one generator per task)
    for t in range(3):
        fn_t = learner.episode_fn(ep.support_y[t:t + 1], 2)
        st, qt = episode_pgd(fn_t, ep.support_x[t:t + 1], ep.query_x[t:t + 1], ep.query_y[t:t + 1], eps=EPS, steps=3,
                             support=scope[0], query=scope[1], generator=[task_generator(1, t)])
        torch.testing.assert_close(sx[t:t + 1], st, atol=1e-12, rtol=0)
        torch.testing.assert_close(qx[t:t + 1], qt, atol=1e-12, rtol=0)


def test_episode_pgd_eps_zero_and_bad_input(ep) -> None:  # noqa: ANN001
    fn = make("maml").episode_fn(ep.support_y, 1)
    sx, qx = episode_pgd(fn, ep.support_x, ep.query_x, ep.query_y, eps=0, steps=2)
    assert torch.equal(sx, ep.support_x) and sx.data_ptr() != ep.support_x.data_ptr()
    with pytest.raises(ConfigError, match="support, the query or both"):
        episode_pgd(fn, ep.support_x, ep.query_x, ep.query_y, eps=EPS, support=False, query=False)
    with pytest.raises(ConfigError, match="steps"):
        episode_pgd(fn, ep.support_x, ep.query_x, ep.query_y, eps=EPS, steps=0)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        episode_pgd(fn, ep.support_x * 3, ep.query_x, ep.query_y, eps=EPS)


def _manual_maml_query_loss(learner, sx, sy, qx, qy, steps: int, lr: float) -> torch.Tensor:  # noqa: ANN001
    """An independent second-order fine-tuning: plain SGD on the support, per task, by hand."""
    total = sx.new_zeros(())
    theta = {k: v.detach().requires_grad_(True) for k, v in learner.net.named_parameters()}
    for t in range(sx.shape[0]):
        p = dict(theta)
        for _ in range(steps):
            loss = F.cross_entropy(functional_call(learner.net, p, (sx[t],)), sy[t])
            grads = torch.autograd.grad(loss, list(p.values()), create_graph=True)
            p = {k: v - lr * g for (k, v), g in zip(p.items(), grads)}
        total = total + F.cross_entropy(functional_call(learner.net, p, (qx[t],)), qy[t], reduction="sum")
    return total


def test_support_gradient_goes_through_the_fine_tuning(ep) -> None:  # noqa: ANN001
    learner = make("maml", inner_lr=0.5)
    steps = 2
    sx = ep.support_x.clone().requires_grad_(True)
    ours = F.cross_entropy(learner.episode_fn(ep.support_y, steps)(sx, ep.query_x).flatten(0, 1),
                           ep.query_y.flatten(), reduction="sum")
    (g_ours,) = torch.autograd.grad(ours, sx)
    sx2 = ep.support_x.clone().requires_grad_(True)
    ref = _manual_maml_query_loss(learner, sx2, ep.support_y, ep.query_x, ep.query_y, steps, 0.5)
    (g_ref,) = torch.autograd.grad(ref, sx2)
    torch.testing.assert_close(ours.detach(), ref.detach(), atol=1e-10, rtol=0)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-10, rtol=1e-8)
    assert g_ref.abs().max() > 1e-4, "the query's loss must depend on the support images"
    # no fine-tuning: the support cannot matter
    sx3 = ep.support_x.clone().requires_grad_(True)
    zero = learner.episode_fn(ep.support_y, 0)(sx3, ep.query_x).sum()
    assert zero.requires_grad is False or torch.autograd.grad(zero, sx3, allow_unused=True)[0] is None


def test_support_gradient_goes_through_the_prototypes(ep) -> None:  # noqa: ANN001
    learner = make("protonet")
    sx = ep.support_x.clone().requires_grad_(True)
    logits = learner.episode_fn(ep.support_y, 0)(sx, ep.query_x)
    (g,) = torch.autograd.grad(F.cross_entropy(logits.flatten(0, 1), ep.query_y.flatten(), reduction="sum"), sx)
    assert g.abs().max() > 1e-6
    # independent: prototypes = class means of the embedding; logits = -squared distance (× the head's scale)
    with torch.no_grad():
        ref = learner.episode_logits(ep.support_x, ep.support_y, ep.query_x)
    torch.testing.assert_close(logits.detach(), ref, atol=1e-12, rtol=0)


def test_support_attack_lowers_query_accuracy_more_than_noise(ep) -> None:  # noqa: ANN001
    """On a learner fine-tuned with a large step, the support attack raises the query loss."""
    learner = make("maml", inner_lr=0.5)
    fn = learner.episode_fn(ep.support_y, 2)
    loss = lambda s, q: float(F.cross_entropy(fn(s, q).flatten(0, 1), ep.query_y.flatten()))  # noqa: E731
    sx, _ = episode_pgd(fn, ep.support_x, ep.query_x, ep.query_y, eps=16 / 255, steps=10, random_start=False)
    noise = (ep.support_x + (16 / 255) * torch.sign(torch.randn_like(ep.support_x))).clamp(0, 1)
    with torch.no_grad():
        clean, attacked, noisy = loss(ep.support_x, ep.query_x), loss(sx, ep.query_x), loss(noise, ep.query_x)
    assert attacked > clean and attacked > noisy, (clean, noisy, attacked)


@pytest.mark.parametrize("method", ["maml", "protonet"])
def test_adapted_models_answer_task_by_task(method: str, ep) -> None:  # noqa: ANN001
    """The adapted logits carry ``task_fn``: task t alone equals the batch's row t, so attacks
    that work task by task (autoattack, the gradient helper) pay one task's forward, not T."""
    learner = make(method)
    steps = 2 if learner.maml_family else 0
    fn = learner.adapted(ep.support_x, ep.support_y, steps)[-1]
    with torch.no_grad():
        full = fn(ep.query_x)
        for t in range(ep.query_x.shape[0]):
            torch.testing.assert_close(fn.task_fn(t, ep.query_x[t]), full[t], rtol=0, atol=1e-12)
