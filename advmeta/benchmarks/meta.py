"""Meta-training throughput: advmeta's learners against the public code's loop and ``higher``.

``python -m advmeta.benchmarks.meta [--device cpu|cuda] [--reps 5]`` prints tasks/s of one
meta-iteration (Conv4-64, 1×28×28, 5-way 1-shot, 15 queries/class, 4 tasks) for MAML (first
and second order, 1 and 5 inner steps) and AQ, and the ratio to

- a reference loop written the way the public AQ / R-MAML code does it: a per-task loop over
  cloned fast weights in which the query loss is computed — and, for AQ, the query attacked —
  after every inner step, all but the last thrown away;
- ``higher`` (plain MAML only), when it is installed.

Ratios > 1 mean advmeta is faster. Variants are timed in rotation; medians of ``--reps``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call

from advmeta.env import configure_allocator, resolve_device, set_threads
from advmeta.learners import AttackSpec, get_learner
from advmeta.models import build_model

N_WAY, K_SHOT, Q_QUERY, TASKS, LR = 5, 1, 15, 4, 0.4


def make_batch(device: torch.device, seed: int = 0):  # noqa: ANN201
    from advmeta.data import Episodes

    g = torch.Generator().manual_seed(seed)
    lab = lambda per: torch.arange(N_WAY).repeat_interleave(per).repeat(TASKS, 1)  # noqa: E731
    return Episodes(torch.rand(TASKS, N_WAY * K_SHOT, 1, 28, 28, generator=g), lab(K_SHOT),
                    torch.rand(TASKS, N_WAY * Q_QUERY, 1, 28, 28, generator=g), lab(Q_QUERY),
                    torch.zeros(TASKS, N_WAY, dtype=torch.long), torch.arange(TASKS)).to(device)


def net_for(device: torch.device, vmap: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("conv4", in_channels=1, n_classes=N_WAY, width=64, image_size=28, bn_mode="batch",
                       bn_impl="manual" if vmap else "torch").to(device)


def ours(method: str, steps: int, first_order: bool, device: torch.device, vmap: bool = False) -> Callable[[], None]:
    hp = {"inner_lr": LR, "inner_steps": steps, "first_order": first_order}
    if method == "aq":
        hp.update(train_eps="8/255", train_step_size="8/255")
    cls = get_learner(method)
    learner = cls(cls.Config(**hp), net_for(device, vmap), vectorize=vmap)
    opts, ep = learner.optimizers(1e-3), make_batch(device)
    g = torch.Generator(device=device).manual_seed(0)
    return lambda: learner.update(opts, ep, g)


def reference(adversarial: bool, steps: int, first_order: bool, device: torch.device) -> Callable[[], None]:
    """The public code's shape: per-task loop, query loss (and attack) after every inner step."""
    net, ep = net_for(device), make_batch(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    attack = AttackSpec("pgd", "8/255", {"steps": 1, "step_size": "8/255", "random_start": True})
    g = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        opt.zero_grad()
        total = 0.0
        for t in range(TASKS):
            fast = {k: v.clone() for k, v in net.named_parameters()}
            losses_q = []
            for _ in range(steps):
                loss = F.cross_entropy(functional_call(net, fast, (ep.support_x[t],)), ep.support_y[t])
                grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
                fast = {k: w - LR * gr for (k, w), gr in zip(fast.items(), grads)}
                qx = ep.query_x[t]
                if adversarial:
                    frozen = {k: w.detach() for k, w in fast.items()}
                    qx = attack(lambda x, p=frozen: functional_call(net, p, (x,)), qx, ep.query_y[t], g)
                losses_q.append(F.cross_entropy(functional_call(net, fast, (qx,)), ep.query_y[t]))
            total = total + losses_q[-1]
        (total / TASKS).backward()
        opt.step()

    return step


def with_higher(steps: int, first_order: bool, device: torch.device) -> Callable[[], None] | None:
    try:
        import higher
    except ImportError:
        return None
    net, ep = net_for(device), make_batch(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    inner = torch.optim.SGD(net.parameters(), lr=LR)

    def step() -> None:
        opt.zero_grad()
        for t in range(TASKS):
            with higher.innerloop_ctx(net, inner, copy_initial_weights=False,
                                      track_higher_grads=not first_order) as (fnet, diffopt):
                for _ in range(steps):
                    diffopt.step(F.cross_entropy(fnet(ep.support_x[t]), ep.support_y[t]))
                (F.cross_entropy(fnet(ep.query_x[t]), ep.query_y[t]) / TASKS).backward()
        opt.step()

    return step


def timeit(fns: dict[str, Callable[[], None]], reps: int, device: torch.device) -> dict[str, float]:
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


def main() -> None:
    ap = argparse.ArgumentParser(description="meta-training tasks/s against the public code's loop and higher")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    configure_allocator()
    device = resolve_device(args.device)
    threads = set_threads(args.threads)
    print(f"device {device}, {threads} threads, Conv4-64 1×28×28, {N_WAY}-way {K_SHOT}-shot, {Q_QUERY} queries/class, "
          f"{TASKS} tasks; median of {args.reps}")
    vmap_too = device.type == "cuda"
    print(f"{'setting':<28} {'ours tasks/s':>12} {'ref tasks/s':>12} {'ours/ref':>9} {'higher':>9} {'ours/higher':>11}"
          + (f" {'vmap/loop':>9}" if vmap_too else ""))
    for method, steps, fo in (("maml", 1, True), ("maml", 1, False), ("maml", 5, True), ("maml", 5, False),
                              ("aq", 1, True), ("aq", 1, False), ("aq", 5, True)):
        fns = {"ours": ours(method, steps, fo, device), "ref": reference(method == "aq", steps, fo, device)}
        h = with_higher(steps, fo, device) if method == "maml" else None
        if h is not None:
            fns["higher"] = h
        if vmap_too:
            fns["vmap"] = ours(method, steps, fo, device, vmap=True)
        t = timeit(fns, args.reps, device)
        rate = {k: TASKS / v for k, v in t.items()}
        label = f"{method} {steps} step{'s' if steps > 1 else ''} {'1st' if fo else '2nd'} order"
        line = (f"{label:<28} {rate['ours']:12.2f} {rate['ref']:12.2f} {t['ref'] / t['ours']:9.2f}"
                + (f" {rate['higher']:9.2f} {t['higher'] / t['ours']:11.2f}" if "higher" in t else f" {'-':>9} {'-':>11}"))
        if vmap_too:
            line += f" {t['ours'] / t['vmap']:9.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
