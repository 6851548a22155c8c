"""Conv4: the MAML backbone (4 × [conv3×3 → BN → ReLU → max-pool 2]) and the ProtoNet embedding.

References:
    Finn et al., "Model-Agnostic Meta-Learning", ICML 2017 (32 filters at 84×84, 64 at 28×28);
    Snell et al., "Prototypical Networks", NeurIPS 2017 (Conv4-64 embedding).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from advmeta.errors import ConfigError
from advmeta.models._registry import MODELS
from advmeta.models.layers import ConvBlock, image_hw, maybe_normalize, out_size


class Conv4(nn.Module):
    """Four conv blocks and, when ``n_classes`` is set, a linear head.

    Args:
        in_channels: image channels (1 for Omniglot, 3 for mini-ImageNet).
        n_classes: outputs of the linear head; ``None`` makes the model an embedding
            (``forward`` returns the flattened features).
        width: filters per conv layer (32 at 84×84, 64 at 28×28 in MAML).
        image_size: input H (=W) or (H, W); sets the head's in-features.
        bn_mode: ``"batch"`` (batch statistics always; transductive, the MAML reference code) or
            ``"running"``.
        bn_impl: ``"torch"`` or ``"manual"`` (exact under vmap; use on the vmap path).
        leaky: LeakyReLU slope (0.1 in some ProtoNet code); 0 means ReLU.
        depth: number of conv blocks (4).
        mean, std: optional per-channel input normalisation applied inside ``forward``.

    Shape:
        x: (B, C, H, W) in [0, 1] -> (B, n_classes), or (B, D) with ``n_classes=None``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        n_classes: int | None = 5,
        width: int = 32,
        image_size: int | Sequence[int] = 84,
        bn_mode: str = "batch",
        bn_impl: str = "torch",
        leaky: float = 0.0,
        depth: int = 4,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        h, w = image_hw(image_size)
        if depth < 1 or width < 1 or in_channels < 1:
            raise ConfigError(f"conv4 needs depth, width, in_channels >= 1, got {depth}, {width}, {in_channels}")
        self.normalize = maybe_normalize(mean, std)
        blocks = []
        cin = in_channels
        for _ in range(depth):
            blocks.append(ConvBlock(cin, width, leaky=leaky, bn_mode=bn_mode, bn_impl=bn_impl))
            cin = width
            h, w = out_size(h, 1, True), out_size(w, 1, True)
        if h < 1 or w < 1:
            raise ConfigError(f"image_size {image_size} is too small for {depth} pooling blocks")
        self.encoder = nn.Sequential(*blocks)
        self.feature_dim = width * h * w
        self.head = nn.Linear(self.feature_dim, n_classes) if n_classes else None

    def features(self, x: Tensor) -> Tensor:
        """Flattened features, (B, C, H, W) -> (B, feature_dim)."""
        out: Tensor = self.encoder(self.normalize(x)).flatten(1)
        return out

    def forward(self, x: Tensor) -> Tensor:
        z = self.features(x)
        return self.head(z) if self.head is not None else z


@MODELS.register("conv4")
def conv4(**kwargs: object) -> Conv4:
    """Conv4 classifier (MAML backbone); keyword arguments of :class:`Conv4`."""
    return Conv4(**kwargs)  # type: ignore[arg-type]


@MODELS.register("protonet")
def protonet(
    in_channels: int = 3,
    width: int = 64,
    image_size: int | Sequence[int] = 84,
    leaky: bool = False,
    bn_mode: str = "running",
    bn_impl: str = "torch",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Conv4:
    """ProtoNet embedding: Conv4-64 without a head; ``leaky=True`` uses LeakyReLU(0.1).

    ``bn_mode`` defaults to ``"running"`` [choice]: ProtoNet code trains in ``train()`` mode
    and evaluates in ``eval()`` mode, unlike the MAML family.
    """
    return Conv4(
        in_channels=in_channels, n_classes=None, width=width, image_size=image_size,
        bn_mode=bn_mode, bn_impl=bn_impl, leaky=0.1 if leaky else 0.0, mean=mean, std=std,
    )


