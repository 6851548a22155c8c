"""Wide ResNet WRN-d-k (pre-activation basic blocks), the L2L paper's CIFAR classifier.

References:
    Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016; WRN-34-10 as in Madry et al.
    and Jiang et al. (L2L). Depth d = 6n + 4 with n blocks per stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from advmeta.errors import ConfigError
from advmeta.models._registry import MODELS
from advmeta.models.layers import BatchNorm2d, maybe_normalize


class WideBlock(nn.Module):
    """BN → ReLU → conv3×3 (stride) → BN → ReLU → (dropout) → conv3×3, plus a shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float, bn_mode: str, bn_impl: str) -> None:
        super().__init__()
        self.bn1 = BatchNorm2d(cin, bn_mode, bn_impl)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = BatchNorm2d(cout, bn_mode, bn_impl)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.dropout = dropout
        self.equal = cin == cout and stride == 1
        self.shortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        a = F.relu(self.bn1(x))
        out = self.conv1(a)
        out = F.relu(self.bn2(out))
        if self.dropout:
            out = F.dropout(out, self.dropout, self.training)
        out = self.conv2(out)
        # The pre-activation is shared with the projection shortcut (as in the WRN code).
        result: Tensor = out + (x if self.shortcut is None else self.shortcut(a))
        return result


class WideResNet(nn.Module):
    """WRN-``depth``-``widen``.

    Args:
        depth: 6n + 4 (e.g. 16, 28, 34).
        widen: width factor k.
        n_classes: outputs (``None`` for an embedding).
        in_channels: image channels.
        dropout: dropout inside blocks.
        bn_mode, bn_impl: batch norm (default ``"running"``).
        mean, std: optional input normalisation inside ``forward``.

    Shape:
        x: (B, C, H, W) -> (B, n_classes); any H, W (global average pooling).
    """

    def __init__(
        self,
        depth: int = 34,
        widen: int = 10,
        n_classes: int | None = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
        bn_mode: str = "running",
        bn_impl: str = "torch",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 or widen < 1:
            raise ConfigError(f"WRN depth must be 6n+4 >= 10 and widen >= 1, got depth={depth}, widen={widen}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.normalize = maybe_normalize(mean, std)
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        layers: list[nn.Module] = []
        cin = widths[0]
        for stage, stride in zip(widths[1:], (1, 2, 2)):
            for i in range(n):
                layers.append(WideBlock(cin, stage, stride if i == 0 else 1, dropout, bn_mode, bn_impl))
                cin = stage
        self.blocks = nn.Sequential(*layers)
        self.bn = BatchNorm2d(cin, bn_mode, bn_impl)
        self.feature_dim = cin
        self.head = nn.Linear(cin, n_classes) if n_classes else None

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, 64·widen)."""
        z = F.relu(self.bn(self.blocks(self.stem(self.normalize(x)))))
        return z.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        z = self.features(x)
        return self.head(z) if self.head is not None else z


@MODELS.register("wrn")
def wrn(**kwargs: object) -> WideResNet:
    """Wide ResNet; keyword arguments of :class:`WideResNet`."""
    return WideResNet(**kwargs)  # type: ignore[arg-type]
