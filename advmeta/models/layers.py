"""Building blocks shared by the networks: batch norm with a selectable statistics mode and
implementation, input normalisation, and the 3×3 conv block of Conv4-style backbones."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advmeta.errors import ConfigError


class BNMode(str, Enum):
    """Which statistics batch norm normalises with.

    ``BATCH``: the current batch's statistics always, in training and at test (transductive; what
    the MAML-family reference code does); no running statistics are kept.
    ``RUNNING``: the standard behaviour: batch statistics in ``train()`` mode (running averages
    updated), running averages in ``eval()`` mode.
    """

    BATCH = "batch"
    RUNNING = "running"


class BNImpl(str, Enum):
    """``TORCH``: :func:`torch.nn.functional.batch_norm`. ``MANUAL``: mean/variance written in
    plain tensor ops — exact under :func:`torch.func.vmap` for second-order gradients, where the
    built-in kernel is not (docs/performance.md#batch-norm-under-vmap), but 25–45 % slower in a per-task loop."""

    TORCH = "torch"
    MANUAL = "manual"


def _enum(cls: type[Enum], value: object, what: str) -> Enum:
    try:
        return cls(value)
    except ValueError:
        known = ", ".join(m.value for m in cls)
        raise ConfigError(f"unknown {what} {value!r}; known: {known}") from None


class BatchNorm2d(nn.Module):
    """Batch norm over (N, C, H, W) with a selectable mode and implementation.

    Args:
        num_features: channels C.
        mode: ``"batch"`` (transductive, default) or ``"running"``, see :class:`BNMode`.
        impl: ``"torch"`` or ``"manual"``, see :class:`BNImpl`.
        affine: learn a per-channel scale and shift.
        momentum: running-average momentum (``"running"`` mode only).
        eps: added to the variance.

    Shape:
        x: (N, C, H, W) -> (N, C, H, W).
    """

    running_mean: Tensor | None  # registered buffers in "running" mode, else None
    running_var: Tensor | None

    def __init__(
        self,
        num_features: int,
        mode: str = "batch",
        impl: str = "torch",
        affine: bool = True,
        momentum: float = 0.1,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.mode = _enum(BNMode, mode, "bn_mode")
        self.impl = _enum(BNImpl, impl, "bn_impl")
        self.momentum = momentum
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None
        if self.mode is BNMode.RUNNING:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
        else:
            self.running_mean = None
            self.running_var = None

    def forward(self, x: Tensor) -> Tensor:
        batch_stats = self.mode is BNMode.BATCH or self.training
        if self.impl is BNImpl.TORCH:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias,
                batch_stats, self.momentum, self.eps,
            )
        if batch_stats:
            mean = x.mean(dim=(0, 2, 3))
            var = (x - mean[:, None, None]).square().mean(dim=(0, 2, 3))
            if self.running_mean is not None:
                assert self.running_var is not None, "running_mean and running_var are registered together"
                n = x.numel() / x.shape[1]
                with torch.no_grad():  # same update rule as torch: unbiased variance
                    self.running_mean.lerp_(mean.detach(), self.momentum)
                    self.running_var.lerp_(var.detach() * n / max(n - 1, 1), self.momentum)
        else:
            assert self.running_mean is not None and self.running_var is not None, \
                "no batch statistics only in 'running' mode, which registers the running buffers"
            mean, var = self.running_mean, self.running_var
        out = (x - mean[:, None, None]) * torch.rsqrt(var + self.eps)[:, None, None]
        if self.weight is not None:
            assert self.bias is not None, "affine creates weight and bias together"
            out = out * self.weight[:, None, None] + self.bias[:, None, None]
        return out

    def extra_repr(self) -> str:
        return f"mode={self.mode.value}, impl={self.impl.value}"


class Normalize(nn.Module):
    """(x − mean) / std per channel, so models take images in [0, 1] (docs/protocols.md#conventions).

    Args:
        mean: per-channel means.
        std: per-channel standard deviations.
    """

    mean: Tensor  # registered buffers, (C, 1, 1)
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ConfigError(f"normalisation needs equal-length mean/std with std > 0, got {mean}, {std}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32)[:, None, None])
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32)[:, None, None])

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def maybe_normalize(mean: Sequence[float] | None, std: Sequence[float] | None) -> nn.Module:
    """A :class:`Normalize` when both are given, else the identity."""
    if mean is None and std is None:
        return nn.Identity()
    if mean is None or std is None:
        raise ConfigError("give both mean and std for input normalisation, or neither")
    return Normalize(mean, std)


def image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    """(H, W) from an int or a pair."""
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def _plain_cpu(x: Tensor) -> bool:
    """A 4-d CPU tensor outside ``torch.func`` transforms (vmap, grad): where :class:`Conv2d`
    takes its channels-last road."""
    return x.device.type == "cpu" and x.dim() == 4 and not torch._C._functorch.is_functorch_wrapped_tensor(x)


class Conv2d(nn.Conv2d):
    """:class:`torch.nn.Conv2d` (the same parameters, state and function) whose output on the CPU
    is channels-last.

    On the CPU torch's batch norm, ReLU and max-pool of a (75, 64, 28, 28) activation are several
    times faster channels-last than in the default layout, and a convolution of a channels-last
    input stays channels-last — but a 1-channel image (Omniglot) is both layouts at once, so torch
    keeps the default layout for the whole network. The first layer (at most 4 input channels,
    stride 1) is therefore computed as a matrix product of the image's 3×3 patches, which yields
    channels-last directly (torch's own kernel for its input gradient is also slow); every other
    layer converts its output (a no-op once its input is channels-last). ``python -m
    advmeta.benchmarks.layout`` measures it (docs/performance.md#channels-last-on-the-cpu). On CUDA
    and inside ``vmap`` it is :class:`torch.nn.Conv2d` unchanged.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not _plain_cpu(x):
            return super().forward(x)
        if (self.in_channels <= 4 and self.groups == 1 and self.stride == (1, 1) and self.dilation == (1, 1)
                and self.padding_mode == "zeros" and not isinstance(self.padding, str)):
            return _patch_conv(x, self.weight, self.bias, self.kernel_size, self.padding)
        return super().forward(x).contiguous(memory_format=torch.channels_last)


def _patch_conv(x: Tensor, weight: Tensor, bias: Tensor | None, kernel: tuple[int, ...],
                padding: tuple[int, ...]) -> Tensor:
    """A stride-1 convolution as (patches × weights): the same function as ``F.conv2d``, the
    output channels-last. Shape: x (N, C, H, W), weight (O, C, kh, kw) -> (N, O, H', W')."""
    n, _, h, w = x.shape
    ph, pw = int(padding[0]), int(padding[1])
    ho, wo = h + 2 * ph - kernel[0] + 1, w + 2 * pw - kernel[1] + 1
    patches = F.unfold(x, tuple(kernel), padding=(ph, pw)).transpose(1, 2)  # (N, H'W', C·kh·kw)
    out = F.linear(patches, weight.flatten(1), bias)  # (N, H'W', O)
    return out.view(n, ho, wo, weight.shape[0]).permute(0, 3, 1, 2)


class ConvBlock(nn.Sequential):
    """conv3×3 → batch norm → ReLU (or LeakyReLU) → optional max-pool 2.

    Args:
        cin: input channels. cout: output channels.
        padding: conv padding (1 keeps the size; 0 as in the Relation Network encoder).
        pool: whether to max-pool by 2.
        leaky: negative slope of a LeakyReLU; 0 means ReLU.
        bn_mode, bn_impl: see :class:`BatchNorm2d`.
    """

    def __init__(
        self, cin: int, cout: int, *, padding: int = 1, pool: bool = True, leaky: float = 0.0,
        bn_mode: str = "batch", bn_impl: str = "torch",
    ) -> None:
        act: nn.Module = nn.LeakyReLU(leaky) if leaky else nn.ReLU()
        layers: list[nn.Module] = [
            Conv2d(cin, cout, 3, padding=padding),
            BatchNorm2d(cout, bn_mode, bn_impl),
            act,
        ]
        if pool:
            layers.append(nn.MaxPool2d(2))
        super().__init__(*layers)


def out_size(size: int, padding: int, pool: bool) -> int:
    """Spatial size after a :class:`ConvBlock` (3×3 conv, stride 1, then floor-halving pool)."""
    size = size + 2 * padding - 2
    return size // 2 if pool else size
