"""R-MAML's auxiliary contrastive task: NT-Xent on two augmented views of the query images.

Not in the public R-MAML code; ours [choice]: SimCLR's NT-Xent (temperature 0.5) on the
features entering the classifier head at the adapted weights θ′, views made by a random
translation of up to 10% and a random horizontal flip.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advmeta.learners.inner_loop import Params, forward, head_names, map_tasks


def augment(x: Tensor, generator: torch.Generator | None, max_shift: float = 0.1) -> Tensor:
    """A random translation (±``max_shift`` of the side) and horizontal flip of each image.

    Shape: x (B, C, H, W) → same.
    """
    b = x.shape[0]
    gen_dev = generator.device if generator is not None else x.device
    shift = (torch.rand(b, 2, generator=generator, device=gen_dev).to(x.device) * 2 - 1) * 2 * max_shift
    flip = (torch.rand(b, generator=generator, device=gen_dev).to(x.device) < 0.5).to(x.dtype) * -2 + 1
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1] = flip, 1.0
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def nt_xent(z1: Tensor, z2: Tensor, tau: float) -> Tensor:
    """SimCLR's normalised-temperature cross-entropy between paired views. Shape: (B, D) each."""
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    sim = z @ z.T / tau
    n = z1.shape[0]
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def _head_module(net: nn.Module) -> nn.Module:
    name = head_names(net)[0].rsplit(".", 1)[0]
    return net.get_submodule(name) if "." in head_names(net)[0] else net


def contrastive_loss(learner: Any, fast: Params, query_x: Tensor, tau: float,
                     generator: torch.Generator | None) -> Tensor:
    """Mean over tasks of NT-Xent between two views of each task's query, at the fast weights.

    Shape: query_x (T, B, C, H, W); fast: per-task weights (T, ...).
    """
    net, buffers = learner.net, learner.buffers()
    head = _head_module(net)
    t, b = query_x.shape[:2]
    flat = query_x.flatten(0, 1)
    v1 = augment(flat, generator).view_as(query_x)
    v2 = augment(flat, generator).view_as(query_x)

    def task(p: Params, a: Tensor, c: Tensor) -> Tensor:
        captured: list[Tensor] = []
        handle = head.register_forward_pre_hook(lambda _m, inp: captured.append(inp[0]))
        try:
            forward(net, p, buffers, torch.cat([a, c]))
        finally:
            handle.remove()
        z = captured[0]
        return nt_xent(z[:b], z[b:], tau)

    out: Tensor = map_tasks(task, (fast, v1, v2), vectorize=False).mean()
    return out
