"""Logits functions over batches of tasks, and per-task random generators.

An attack sees ``x`` of shape (T, B, C, H, W) and a ``model_fn`` mapping it to (T, B, K);
these helpers build such a function from per-task fast weights, either by a loop over tasks
(fastest on CPU, docs/performance.md#loop-or-vmap) or by :func:`torch.func.vmap` (usually faster on a GPU).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from advmeta.attacks._core import ModelFn
from advmeta.errors import ConfigError

Params = Mapping[str, Tensor]


def per_task(fn: Callable[[int, Tensor], Tensor]) -> ModelFn:
    """A (T, B, …) logits function from ``fn(t, x_t)``, the logits of task t on x_t (B, …).

    Shape:
        x: (T, B, C, H, W) -> (T, B, K).
    """

    def model_fn(x: Tensor) -> Tensor:
        # unbind, not x[t]: its backward stacks the T gradients once instead of scattering each
        # into a zero tensor of the full (T, B, …) size (O(T²) memory traffic per step).
        return torch.stack([fn(t, xt) for t, xt in enumerate(x.unbind(0))])

    # Lets the attacks' gradient helper run task by task (one graph alive at a time).
    model_fn.task_fn = fn  # type: ignore[attr-defined]
    return model_fn


def task_model_fn(
    net: nn.Module,
    params: Params | Sequence[Params],
    buffers: Params | None = None,
    *,
    use_vmap: bool = False,
) -> ModelFn:
    """Logits of ``net`` under per-task fast weights, for x of shape (T, B, C, H, W).

    Args:
        net: the module whose ``forward`` is called functionally.
        params: either T dicts of per-task tensors, or one dict of tensors stacked along a
            leading task dimension T (what a vmapped inner loop returns).
        buffers: tensors shared by all tasks (e.g. running statistics); defaults to none,
            i.e. the module's own buffers.
        use_vmap: run the tasks with :func:`torch.func.vmap` (needs stacked ``params``) instead
            of a Python loop. Batch norm in ``"running"`` mode must be in ``eval()`` then.

    Returns:
        ``model_fn(x) -> (T, B, K)``. Task t alone is attacked with
        ``lambda xt: functional_call(net, {k: v[t] for k, v in params.items()}, (xt,))``.
    """
    shared = dict(buffers or {})
    if isinstance(params, Mapping):
        stacked = dict(params)
        if use_vmap:
            def one(p: Params, xt: Tensor) -> Tensor:
                out: Tensor = functional_call(net, {**p, **shared}, (xt,))
                return out

            batched = torch.func.vmap(one)
            return lambda x: batched(stacked, x)
        n_tasks = len(next(iter(stacked.values())))
        per = [{**{k: v[t] for k, v in stacked.items()}, **shared} for t in range(n_tasks)]
    elif use_vmap:
        raise ConfigError("use_vmap needs params stacked along a leading task dimension (one dict)")
    else:
        per = [{**p, **shared} for p in params]
    return per_task(lambda t, xt: functional_call(net, per[t], (xt,)))


def flatten_tasks(fn: ModelFn) -> ModelFn:
    """Apply a per-sample (B, C, H, W) -> (B, K) function to any leading dims (…, C, H, W).

    Only for models without batch coupling (no batch-statistics batch norm), e.g. a fixed
    surrogate in eval mode used by ``transfer``.
    """

    def model_fn(x: Tensor) -> Tensor:
        out = fn(x.reshape(-1, *x.shape[-3:]))
        return out.reshape(*x.shape[:-3], out.shape[-1])

    return model_fn


def task_generator(seed: int, task: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator of task ``task`` under ``seed`` (a SeedSequence hash of both).

    ``task_generators(seed, T)[t]`` is in the same state as ``task_generator(seed, t)``, so an
    attack on a (T, B, …) batch with ``generator=task_generators(seed, T)`` equals attacking
    each task alone with ``generator=task_generator(seed, t)``.
    """
    state = np.random.SeedSequence([int(seed), int(task)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) & ((1 << 63) - 1))


def task_generators(seed: int, n_tasks: int, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per task, see :func:`task_generator`."""
    return [task_generator(seed, t, device) for t in range(n_tasks)]
