"""Attack throughput on batches of tasks: PGD on Conv4 with per-task fast weights.

Three ways to attack T tasks' query sets, timed in rotation within one run:
  loop     one PGD call per task (functional_call with that task's weights);
  batched  one PGD call on x of shape (T, B, C, H, W) with a per-task loop inside model_fn;
  vmap     one PGD call with torch.func.vmap over the stacked fast weights.
Prints images/s and the ratio to the per-task loop (> 1: faster than the loop).

    python -m advmeta.benchmarks.attacks                      # T=16 × 75 queries, PGD-20, 28 and 84 px
    python -m advmeta.benchmarks.attacks --tasks 4 --steps 5  # quick CPU check
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch.func import functional_call

from advmeta.attacks import get_attack, task_generator, task_generators, task_model_fn
from advmeta.env import resolve_device, set_threads
from advmeta.models import build_model

SETTINGS = {28: (1, 64), 84: (3, 32)}  # image size -> (channels, Conv4 width), as in MAML


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[28, 84], choices=sorted(SETTINGS))
    ap.add_argument("--tasks", type=int, default=16)
    ap.add_argument("--queries", type=int, default=75, help="query images per task (5-way × 15)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (median), after one warm-up")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--bn-impl", default="torch", choices=["torch", "manual"])
    args = ap.parse_args()
    device = resolve_device(args.device)
    threads = set_threads(args.threads)
    pgd = get_attack("pgd")
    print(f"device={device} threads={threads} torch={torch.__version__} T={args.tasks} B={args.queries} "
          f"PGD-{args.steps} eps=8/255 step=2/255 bn_impl={args.bn_impl}")
    for size in args.sizes:
        ch, width = SETTINGS[size]
        torch.manual_seed(0)
        net = build_model("conv4", in_channels=ch, n_classes=5, width=width, image_size=size, bn_impl=args.bn_impl)
        net = net.to(device)
        stacked = {k: (v.detach() + 0.01 * torch.randn(args.tasks, *v.shape, device=device))
                   for k, v in net.named_parameters()}
        x = torch.rand(args.tasks, args.queries, ch, size, size, device=device)
        y = torch.randint(0, 5, (args.tasks, args.queries), device=device)
        kw = dict(eps="8/255", steps=args.steps, step_size="2/255")

        def loop() -> None:
            for t in range(args.tasks):
                fast = {k: v[t] for k, v in stacked.items()}
                pgd(lambda xt, fast=fast: functional_call(net, fast, (xt,)), x[t], y[t],
                    generator=task_generator(0, t, device), **kw)

        def batched() -> None:
            pgd(task_model_fn(net, stacked), x, y, generator=task_generators(0, args.tasks, device), **kw)

        def vmapped() -> None:
            pgd(task_model_fn(net, stacked, use_vmap=True), x, y,
                generator=task_generators(0, args.tasks, device), **kw)

        variants: dict[str, Callable[[], None]] = {"loop": loop, "batched": batched, "vmap": vmapped}
        times: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(args.repeats + 1):
            for name, fn in variants.items():
                sync(device)
                t0 = time.perf_counter()
                fn()
                sync(device)
                if r:  # round 0 is the warm-up
                    times[name].append(time.perf_counter() - t0)
        n_images = args.tasks * args.queries
        base = statistics.median(times["loop"])
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"{size}x{size} {name:8s} {med * 1e3:9.1f} ms  {n_images / med:9.1f} images/s  "
                  f"speed-up vs loop {base / med:5.2f}x")


if __name__ == "__main__":
    main()
