"""The adaptations of an external module (advmeta.external), on tiny random episodes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from advmeta.errors import ConfigError
from advmeta.external import count_forwards, external_learner, parse_normalize
from tests.plain_fewshot_model import EpisodeNet, features, logits3


def _episode(t: int = 2, n: int = 3, k: int = 2, q: int = 4) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    sx, qx = torch.rand(t, n * k, 1, 28, 28, generator=g), torch.rand(t, n * q, 1, 28, 28, generator=g)
    return sx, torch.arange(n).repeat_interleave(k).repeat(t, 1), qx, torch.arange(n).repeat_interleave(q).repeat(t, 1)


def test_protonet_is_minus_squared_distance_to_class_means() -> None:
    sx, sy, qx, _ = _episode()
    net = features().eval()
    (fn,) = external_learner(net, "protonet").adapted(sx, sy, 0)
    with torch.no_grad():
        fs, fq = net(sx[1]), net(qx[1])
        protos = torch.stack([fs[sy[1] == c].mean(0) for c in range(3)])
        want = -torch.cdist(fq, protos) ** 2
        assert torch.allclose(fn(qx)[1], want, rtol=1e-4, atol=1e-3)
        assert torch.allclose(fn.task_fn(1, qx[1]), want, rtol=1e-4, atol=1e-3)  # type: ignore[attr-defined]


def test_finetune_head_starts_at_the_prototype_classifier_and_lowers_the_support_loss() -> None:
    sx, sy, qx, _ = _episode()
    learner = external_learner(features(), "finetune-head", steps=5, lr=0.01)
    proto = external_learner(features(), "protonet").adapted(sx, sy, 0)[0]
    fns = learner.adapted(sx, sy, 5)
    assert len(fns) == 6
    with torch.no_grad():
        assert torch.equal(fns[0](qx).argmax(-1), proto(qx).argmax(-1))
        losses = [F.cross_entropy(f(sx).flatten(0, 1), sy.flatten()).item() for f in fns]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("adapt", ["finetune-head", "finetune", "protonet", "none"])
def test_attacks_on_the_support_reach_the_query_logits(adapt: str) -> None:
    """``episode_fn`` is differentiable in the support images through the adaptation."""
    sx, sy, qx, qy = _episode()
    module = {"finetune": logits3, "none": EpisodeNet}.get(adapt, features)()
    fn = external_learner(module, adapt, steps=2).episode_fn(sy, 2)
    sx = sx.clone().requires_grad_(True)
    loss = F.cross_entropy(fn(sx, qx).flatten(0, 1), qy.flatten())
    (grad,) = torch.autograd.grad(loss, sx)
    assert grad.abs().sum() > 0 and all(p.grad is None for p in module.parameters())


def test_normalize_feeds_the_module_normalised_images_and_attacks_stay_in_pixels() -> None:
    sx, sy, qx, _ = _episode()
    net = EpisodeNet().eval()
    (fn,) = external_learner(net, "none", normalize="0.5,0.25", channels=1).adapted(sx, sy, 0)
    with torch.no_grad():
        assert torch.allclose(fn(qx)[0], net((sx[0] - 0.5) / 0.25, sy[0], (qx[0] - 0.5) / 0.25), atol=1e-4)
    mean, std = parse_normalize("0.1,0.2,0.3,1,2,3", 3)  # type: ignore[misc]
    assert mean.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3]) and std.flatten().tolist() == [1, 2, 3]
    for bad in ("1", "0.5,0", "a,b", "1,2,3"):
        with pytest.raises(ConfigError, match="--normalize"):
            parse_normalize(bad, 3)


def test_forward_passes_are_counted_and_the_hook_removed() -> None:
    sx, sy, qx, _ = _episode()
    net = features()
    read, remove = count_forwards(net)
    external_learner(net, "protonet").adapted(sx, sy, 0)[0](qx)
    assert read() == {"calls": 2, "images": sx.shape[0] * sx.shape[1] + qx.shape[0] * qx.shape[1]}
    remove()
    net(sx[0])
    assert read()["calls"] == 2
