"""ResNet-12: the standard backbone of robust few-shot learning (MetaOptNet, AQ).

Four residual blocks of three 3×3 convs (BN, LeakyReLU 0.1), a 1×1 conv shortcut, then a
max-pool 2 per block.

References:
    Lee et al., "Meta-Learning with Differentiable Convex Optimization", CVPR 2019;
    Oreshkin et al., "TADAM", NeurIPS 2018. Unlike MetaOptNet we omit DropBlock [choice].
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from advmeta.errors import ConfigError
from advmeta.models._registry import MODELS
from advmeta.models.layers import BatchNorm2d, image_hw, maybe_normalize


class ResBlock12(nn.Module):
    """Three conv3×3–BN layers with LeakyReLU(0.1), 1×1 conv–BN shortcut, add, activate, pool."""

    def __init__(self, cin: int, cout: int, bn_mode: str, bn_impl: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = BatchNorm2d(cout, bn_mode, bn_impl)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(cout, bn_mode, bn_impl)
        self.conv3 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn3 = BatchNorm2d(cout, bn_mode, bn_impl)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), BatchNorm2d(cout, bn_mode, bn_impl))
        self.act = nn.LeakyReLU(0.1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        result: Tensor = self.pool(self.act(out + self.shortcut(x)))
        return result


class ResNet12(nn.Module):
    """ResNet-12 embedding with an optional linear head.

    Args:
        in_channels: image channels.
        n_classes: head outputs; ``None`` for an embedding.
        widths: channels of the four blocks (64, 160, 320, 640 as in MetaOptNet).
        image_size: input H (=W) or (H, W).
        pool: ``"avg"`` (global average, D = widths[-1]) or ``"flatten"`` (MetaOptNet).
        bn_mode, bn_impl: see :class:`advmeta.models.layers.BatchNorm2d`; default ``"running"``.
        mean, std: optional input normalisation inside ``forward``.

    Shape:
        x: (B, C, H, W) -> (B, n_classes) or (B, D).
    """

    def __init__(
        self,
        in_channels: int = 3,
        n_classes: int | None = None,
        widths: Sequence[int] = (64, 160, 320, 640),
        image_size: int | Sequence[int] = 84,
        pool: str = "avg",
        bn_mode: str = "running",
        bn_impl: str = "torch",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if pool not in ("avg", "flatten"):
            raise ConfigError(f"unknown resnet12 pool {pool!r}; known: avg, flatten")
        self.normalize = maybe_normalize(mean, std)
        blocks, cin = [], in_channels
        h, w = image_hw(image_size)
        for cout in widths:
            blocks.append(ResBlock12(cin, cout, bn_mode, bn_impl))
            cin, h, w = cout, h // 2, w // 2
        if h < 1 or w < 1:
            raise ConfigError(f"image_size {image_size} is too small for resnet12")
        self.encoder = nn.Sequential(*blocks)
        self.pool = pool
        self.feature_dim = cin if pool == "avg" else cin * h * w
        self.head = nn.Linear(self.feature_dim, n_classes) if n_classes else None

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, feature_dim)."""
        z = self.encoder(self.normalize(x))
        out: Tensor = z.mean(dim=(2, 3)) if self.pool == "avg" else z.flatten(1)
        return out

    def forward(self, x: Tensor) -> Tensor:
        z = self.features(x)
        return self.head(z) if self.head is not None else z


@MODELS.register("resnet12")
def resnet12(**kwargs: object) -> ResNet12:
    """ResNet-12; keyword arguments of :class:`ResNet12`."""
    return ResNet12(**kwargs)  # type: ignore[arg-type]
