"""Running one per-task function over the tasks of a meta-batch: a loop or ``torch.func.vmap``.

The inner loop of every MAML-family learner is a pure function of (parameters, one task), so the
same function runs task by task (fastest on CPU, docs/performance.md#loop-or-vmap) or vectorised over the tasks
(expected to win on a GPU). Results come back stacked on a leading task dimension either way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

Params = dict[str, Tensor]


def _stack(outs: Sequence[Any]) -> Any:
    leaves = [tree_flatten(o) for o in outs]
    spec = leaves[0][1]
    cols = zip(*(lv for lv, _ in leaves))
    return tree_unflatten([torch.stack(c) for c in cols], spec)


def num_tasks(batched: Any) -> int:
    """The size of the leading (task) dimension of a pytree of tensors."""
    return int(tree_flatten(batched)[0][0].shape[0])


def map_tasks(fn: Callable[..., Any], batched: Sequence[Any], shared: Sequence[Any] = (),
              vectorize: bool = False) -> Any:
    """Apply ``fn(*shared, *batched_t)`` to every task ``t`` and stack the outputs.

    Args:
        fn: a pure function of one task's data; it may return a tensor or a pytree of tensors.
        batched: pytrees of tensors with a leading task dimension T (sliced per task).
        shared: arguments passed unchanged to every task (e.g. the meta-parameters θ).
        vectorize: run with ``torch.func.vmap`` instead of a Python loop.

    Returns:
        ``fn``'s output with a leading dimension T.
    """
    if vectorize:
        in_dims = (None,) * len(shared) + (0,) * len(batched)
        return torch.func.vmap(fn, in_dims=in_dims, randomness="different")(*shared, *batched)
    outs = [fn(*shared, *(tree_map(lambda v, t=t: v[t], b) for b in batched))
            for t in range(num_tasks(batched[0]))]
    return _stack(outs)


def forward(net: nn.Module, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """``net(x)`` with the given parameters (fast weights) and buffers.

    Shape:
        x: (B, C, H, W) → logits (B, n_classes).
    """
    out: Tensor = functional_call(net, {**buffers, **params}, (x,))
    return out


def ce(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy over any leading dimensions. Shape: logits (..., N), y (...)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def inner_loop(loss_fn: Callable[[Params], Tensor], params: Params, steps: int, lr: float,
               first_order: bool, trainable: Sequence[str] | None = None,
               functional: bool = False, keep_all: bool = False) -> Params | list[Params]:
    """MAML's inner SGD loop, θ′ = θ − α∇L_S(θ), as a pure function of (params, one task).

    Args:
        loss_fn: the support loss of one task as a function of a parameter dict.
        params: starting parameters (θ, or fast weights).
        steps: number of SGD steps.
        lr: inner learning rate α.
        first_order: drop second derivatives (the gradient is a constant for the outer update).
        trainable: names of the parameters that are adapted (all when None; the head only for
            light fine-tuning).
        functional: use ``torch.func.grad`` (required inside ``vmap``) instead of
            ``torch.autograd.grad``; both give the same result.
        keep_all: return the parameters after every step (index 0 = the start) instead of the last.

    Returns:
        The adapted parameters (or the list of ``steps + 1`` parameter dicts).

    References:
        Finn et al., "Model-Agnostic Meta-Learning", ICML 2017 (Algorithm 2).
    """
    names = list(trainable) if trainable is not None else list(params)
    traj = [params]
    for _ in range(steps):
        if functional:
            rest = {k: v for k, v in params.items() if k not in names}
            grads = torch.func.grad(lambda sub, rest=rest: loss_fn({**rest, **sub}))({k: params[k] for k in names})
            if first_order:
                grads = {k: g.detach() for k, g in grads.items()}
        else:
            loss = loss_fn(params)
            gl = torch.autograd.grad(loss, [params[k] for k in names], create_graph=not first_order)
            grads = dict(zip(names, gl))
        params = {**params, **{k: params[k] - lr * grads[k] for k in names}}
        traj.append(params)
    return traj if keep_all else params


def head_names(net: nn.Module) -> list[str]:
    """Names of the parameters of the last ``nn.Linear`` (the classifier head) of ``net``."""
    last = None
    for name, mod in net.named_modules():
        if isinstance(mod, nn.Linear):
            last = name
    if last is None:
        return [n for n, _ in net.named_parameters()][-2:]
    prefix = f"{last}." if last else ""
    return [n for n, _ in net.named_parameters() if n.startswith(prefix) and n.count(".") == prefix.count(".")]


def split_per_class(x: Tensor, y: Tensor, n_first: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Split every class of every task into its first ``n_first`` images and the rest.

    Shape:
        x: (T, N*K, ...), y: (T, N*K) → (T, N*n_first, ...), (T, N*n_first), (T, N*(K-n_first), ...), ...
    """
    order = torch.sort(y * y.shape[1] + torch.arange(y.shape[1], device=y.device), dim=1).indices
    n_way = int(y.max()) + 1
    k = y.shape[1] // n_way
    order = order.view(y.shape[0], n_way, k)
    first, rest = order[:, :, :n_first].flatten(1), order[:, :, n_first:].flatten(1)

    def take(v: Tensor, idx: Tensor) -> Tensor:
        return torch.gather(v, 1, idx.view(*idx.shape, *([1] * (v.dim() - 2))).expand(*idx.shape, *v.shape[2:]))

    return take(x, first), take(y, first), take(x, rest), take(y, rest)
