"""Conv4 on the CPU: advmeta's channels-last :class:`~advmeta.models.layers.Conv2d` against
torch's ``nn.Conv2d`` (the same weights), for one attack step and one second-order MAML step.

    python -m advmeta.benchmarks.layout              # Omniglot's shape: 1 channel, 28×28, width 64
    python -m advmeta.benchmarks.layout --channels 3 --image-size 84 --width 32

Prints the median time of each (runs interleaved, one thread) and the ratio measured in this run,
and the largest difference between the two layouts' outputs and input gradients in float64.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from advmeta.models.conv4 import Conv4
from advmeta.models.layers import Conv2d


def torch_layout(net: nn.Module) -> nn.Module:
    """A copy of ``net`` whose advmeta ``Conv2d`` layers are torch's own (same weights)."""
    twin = copy.deepcopy(net)
    for module in twin.modules():
        if isinstance(module, Conv2d):
            module.__class__ = nn.Conv2d  # type: ignore[assignment]
    return twin


def attack_step(net: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """One PGD step's work: the loss's gradient in the input (weights fixed)."""
    xx = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(F.cross_entropy(net(xx), y), xx)
    return grad


def maml_step(net: nn.Module, x: Tensor, y: Tensor, lr: float = 0.4, support: int = 5) -> Tensor:
    """One second-order MAML step on one task (its support: the first ``support`` images, one per
    class of a 5-way 1-shot task; its query: all of them): the meta-gradient's norm."""
    params: dict[str, Tensor] = dict(net.named_parameters())
    loss = F.cross_entropy(functional_call(net, params, (x[:support],)), y[:support])
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    fast = {k: v - lr * g for (k, v), g in zip(params.items(), grads)}
    meta = torch.autograd.grad(F.cross_entropy(functional_call(net, fast, (x,)), y), list(params.values()))
    norm: Tensor = torch.stack([g.norm() for g in meta]).norm()
    return norm


def _median_ms(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=75, help="images per forward (an episode's queries)")
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = Conv4(in_channels=args.channels, n_classes=5, width=args.width, image_size=args.image_size)
    twin = torch_layout(net)
    x = torch.rand(args.batch, args.channels, args.image_size, args.image_size)
    y = torch.randint(0, 5, (args.batch,))

    net64, twin64 = copy.deepcopy(net).double(), copy.deepcopy(twin).double()
    with torch.no_grad():
        out_diff = float((net64(x.double()) - twin64(x.double())).abs().max())
    grad_diff = float((attack_step(net64, x.double(), y) - attack_step(twin64, x.double(), y)).abs().max())
    print(f"float64, advmeta vs torch layout: outputs differ by {out_diff:.1e}, input gradients by {grad_diff:.1e}")

    for name, step in (("attack step (input gradient)", attack_step),
                       ("second-order MAML step (5 support images)", maml_step)):
        ours, theirs = [], []
        for _ in range(args.reps):  # interleaved, so a busy moment hits both
            theirs.append(_median_ms(lambda: step(twin, x, y), 1))
            ours.append(_median_ms(lambda: step(net, x, y), 1))
        a, b = statistics.median(theirs), statistics.median(ours)
        print(f"{name}, {args.batch} images {args.channels}×{args.image_size}², width {args.width}: "
              f"torch layout {a:.1f} ms, channels-last {b:.1f} ms, ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
