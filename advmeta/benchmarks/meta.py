"""Meta-training throughput: advmeta's learners against the public code's loop and ``higher``.

``python -m advmeta.benchmarks.meta [--device cpu|cuda] [--reps 5] [--image-size 28 84]
[--k-shot 1 5] [--tasks 4 32]`` prints tasks/s of one meta-iteration (default: Conv4-64,
1×28×28, 5-way 1-shot, 15 queries/class, 4 tasks; at 84 px 3 channels and Conv4-32, as MAML on
mini-ImageNet) for MAML (first and second order, 1 and 5 inner steps) and AQ, and the ratio to

- a reference loop written the way the public AQ / R-MAML code does it: a per-task loop over
  cloned fast weights in which the query loss is computed — and, for AQ, the query attacked —
  after every inner step, all but the last thrown away;
- ``higher`` (plain MAML only), when it is installed.

On CUDA (or with ``--vmap``) the batched-task path is timed too (``vmap`` over the tasks with the
exact batch norm, ``bn_impl="manual"``): the ``vmap/loop`` and ``vmap/higher`` columns.

Ratios > 1 mean advmeta is faster. Variants are timed in rotation; medians of ``--reps``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from advmeta.env import configure_allocator, resolve_device, set_threads
from advmeta.learners import AttackSpec, get_learner
from advmeta.models import build_model

if TYPE_CHECKING:
    from advmeta.data import Episodes

LR = 0.4


class Shape(NamedTuple):
    """A meta-batch: ``tasks`` episodes of ``n_way``-way ``k_shot``-shot, ``q_query`` queries a class,
    ``channels``×``size``×``size`` images, a Conv4 of ``width`` filters."""

    n_way: int = 5
    k_shot: int = 1
    q_query: int = 15
    tasks: int = 4
    size: int = 28
    channels: int = 1
    width: int = 64

    @classmethod
    def at(cls, size: int, k_shot: int, tasks: int) -> Shape:
        """MAML's settings at that image size: 1×28×28 with Conv4-64, 3×84×84 with Conv4-32."""
        return cls(k_shot=k_shot, tasks=tasks, size=size, channels=1 if size <= 32 else 3, width=64 if size <= 32 else 32)

    def label(self) -> str:
        return (f"Conv4-{self.width} {self.channels}×{self.size}×{self.size}, {self.n_way}-way {self.k_shot}-shot, "
                f"{self.q_query} queries/class, {self.tasks} tasks")


def make_batch(device: torch.device, shape: Shape = Shape(), seed: int = 0) -> Episodes:
    from advmeta.data import Episodes

    n, t = shape.n_way, shape.tasks
    g = torch.Generator().manual_seed(seed)

    def lab(per: int) -> Tensor:
        return torch.arange(n).repeat_interleave(per).repeat(t, 1)

    img = (shape.channels, shape.size, shape.size)
    return Episodes(torch.rand(t, n * shape.k_shot, *img, generator=g), lab(shape.k_shot),
                    torch.rand(t, n * shape.q_query, *img, generator=g), lab(shape.q_query),
                    torch.zeros(t, n, dtype=torch.long), torch.arange(t)).to(device)


def net_for(device: torch.device, vmap: bool = False, shape: Shape = Shape()) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("conv4", in_channels=shape.channels, n_classes=shape.n_way, width=shape.width,
                       image_size=shape.size, bn_mode="batch", bn_impl="manual" if vmap else "torch").to(device)


def ours(method: str, steps: int, first_order: bool, device: torch.device, vmap: bool = False,
         shape: Shape = Shape()) -> Callable[[], object]:
    hp: dict[str, Any] = {"inner_lr": LR, "inner_steps": steps, "first_order": first_order}
    if method == "aq":
        hp.update(train_eps="8/255", train_step_size="8/255")
    cls = get_learner(method)
    learner = cls(cls.Config(**hp), net_for(device, vmap, shape), vectorize=vmap)
    opts, ep = learner.optimizers(1e-3), make_batch(device, shape)
    g = torch.Generator(device=device).manual_seed(0)
    return lambda: learner.update(opts, ep, g)


def reference(adversarial: bool, steps: int, first_order: bool, device: torch.device,
              shape: Shape = Shape()) -> Callable[[], None]:
    """The public code's shape: per-task loop, query loss (and attack) after every inner step."""
    net, ep = net_for(device, shape=shape), make_batch(device, shape)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    attack = AttackSpec("pgd", "8/255", {"steps": 1, "step_size": "8/255", "random_start": True})
    g = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        opt.zero_grad()
        total: Tensor | float = 0.0
        for t in range(shape.tasks):
            fast = {k: v.clone() for k, v in net.named_parameters()}
            losses_q = []
            for _ in range(steps):
                loss = F.cross_entropy(functional_call(net, fast, (ep.support_x[t],)), ep.support_y[t])
                grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
                fast = {k: w - LR * gr for (k, w), gr in zip(fast.items(), grads)}
                qx = ep.query_x[t]
                if adversarial:
                    frozen = {k: w.detach() for k, w in fast.items()}

                    def model_fn(x: Tensor, p: dict[str, Tensor] = frozen) -> Tensor:
                        out: Tensor = functional_call(net, p, (x,))
                        return out

                    qx = attack(model_fn, qx, ep.query_y[t], g)
                losses_q.append(F.cross_entropy(functional_call(net, fast, (qx,)), ep.query_y[t]))
            total = total + losses_q[-1]
        assert isinstance(total, Tensor), "a query loss was added per task (shape.tasks >= 1)"
        (total / shape.tasks).backward()
        opt.step()

    return step


def with_higher(steps: int, first_order: bool, device: torch.device, shape: Shape = Shape()) -> Callable[[], None] | None:
    try:
        import higher
    except ImportError:
        return None
    net, ep = net_for(device, shape=shape), make_batch(device, shape)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    inner = torch.optim.SGD(net.parameters(), lr=LR)

    def step() -> None:
        opt.zero_grad()
        for t in range(shape.tasks):
            with higher.innerloop_ctx(net, inner, copy_initial_weights=False,
                                      track_higher_grads=not first_order) as (fnet, diffopt):
                for _ in range(steps):
                    diffopt.step(F.cross_entropy(fnet(ep.support_x[t]), ep.support_y[t]))
                (F.cross_entropy(fnet(ep.query_x[t]), ep.query_y[t]) / shape.tasks).backward()
        opt.step()

    return step


def timeit(fns: dict[str, Callable[[], object]], reps: int, device: torch.device) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(reps):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def table(device: torch.device, shape: Shape, reps: int, vmap: bool,
          settings: tuple[tuple[str, int, bool], ...] = (("maml", 1, True), ("maml", 1, False), ("maml", 5, True),
                                                         ("maml", 5, False), ("aq", 1, True), ("aq", 1, False),
                                                         ("aq", 5, True))) -> None:
    """Print one line per (method, inner steps, order) at ``shape``."""
    print(f"{shape.label()}; median of {reps}")
    print(f"{'setting':<28} {'ours tasks/s':>12} {'ref tasks/s':>12} {'ours/ref':>9} {'higher':>9} {'ours/higher':>11}"
          + (f" {'vmap/loop':>9} {'vmap/higher':>11}" if vmap else ""))
    for method, steps, fo in settings:
        fns = {"ours": ours(method, steps, fo, device, shape=shape),
               "ref": reference(method == "aq", steps, fo, device, shape)}
        h = with_higher(steps, fo, device, shape) if method == "maml" else None
        if h is not None:
            fns["higher"] = h
        if vmap:
            fns["vmap"] = ours(method, steps, fo, device, vmap=True, shape=shape)
        t = timeit(fns, reps, device)
        rate = {k: shape.tasks / v for k, v in t.items()}
        label = f"{method} {steps} step{'s' if steps > 1 else ''} {'1st' if fo else '2nd'} order"
        line = (f"{label:<28} {rate['ours']:12.2f} {rate['ref']:12.2f} {t['ref'] / t['ours']:9.2f}"
                + (f" {rate['higher']:9.2f} {t['higher'] / t['ours']:11.2f}" if "higher" in t else f" {'-':>9} {'-':>11}"))
        if vmap:
            line += f" {t['ours'] / t['vmap']:9.2f}" + (f" {t['higher'] / t['vmap']:11.2f}" if "higher" in t else f" {'-':>11}")
        print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description="meta-training tasks/s against the public code's loop and higher")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--image-size", type=int, nargs="+", default=[28], help="28 (1 channel, Conv4-64) or 84 (3, Conv4-32)")
    ap.add_argument("--k-shot", type=int, nargs="+", default=[1])
    ap.add_argument("--tasks", type=int, nargs="+", default=[4], help="meta-batch sizes")
    ap.add_argument("--vmap", action=argparse.BooleanOptionalAction, default=None,
                    help="also time the batched-task path (default: on CUDA)")
    args = ap.parse_args()
    configure_allocator()
    device = resolve_device(args.device)
    threads = set_threads(args.threads)
    vmap = device.type == "cuda" if args.vmap is None else args.vmap
    print(f"device {device}, {threads} threads, torch {torch.__version__}")
    for size in args.image_size:
        for k in args.k_shot:
            for tasks in args.tasks:
                table(device, Shape.at(size, k, tasks), args.reps, vmap)


if __name__ == "__main__":
    main()
