"""L2L attacker networks g_φ (docs/methods.md#l2l): image (and normalised gradient) → ε·tanh(·).

References:
    Jiang et al., "Learning to Defend by Learning to Attack", AISTATS 2021. Wide attacker:
    conv 6→64 + BN + ReLU → residual blocks 64→128→256→128→64 (BN without affine, PReLU) →
    BN → conv → 3 → tanh·ε. The slim attacker's widths (16→32→64→32→16) are our choice.
"""

from __future__ import annotations

from torch import Tensor, nn
import torch

from advmeta.eps import Eps, parse_eps
from advmeta.errors import ConfigError
from advmeta.models._registry import MODELS

WIDTHS = {"wide": (64, 128, 256), "slim": (16, 32, 64)}


def normalize_grad(grad: Tensor) -> Tensor:
    """∇ / max|∇| over the whole batch (docs/methods.md#l2l), so gradients of any scale look alike."""
    return grad / grad.abs().amax().clamp_min(1e-12)


class AttackerBlock(nn.Module):
    """conv–BN(no affine)–PReLU–conv–BN(no affine), a 1×1 shortcut when widths differ, PReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, affine=False), nn.PReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, affine=False),
        )
        self.shortcut = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1, bias=False)
        self.act = nn.PReLU()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.act(self.body(x) + self.shortcut(x))
        return out


class L2LAttacker(nn.Module):
    """The learned attacker: δ = ε·tanh(g([x, ∇ / max|∇|])).

    Args:
        kind: ``"wide"`` or ``"slim"``.
        eps: the budget ε (``"8/255"`` or a float); the output lies in (−ε, ε).
        image_channels: channels C of the images (3).
        use_grad: take the normalised input gradient as C extra channels (Grad/2-step L2L);
            ``False`` is the naive attacker (C input channels).

    Shape:
        x (B, C, H, W), grad (B, C, H, W) or None -> δ (B, C, H, W).
    """

    def __init__(self, kind: str = "wide", eps: Eps = "8/255", image_channels: int = 3, use_grad: bool = True) -> None:
        super().__init__()
        if kind not in WIDTHS:
            raise ConfigError(f"unknown L2L attacker kind {kind!r}; known: {', '.join(WIDTHS)}")
        self.eps = parse_eps(eps)
        self.use_grad = use_grad
        c0, c1, c2 = WIDTHS[kind]
        cin = 2 * image_channels if use_grad else image_channels
        self.net = nn.Sequential(
            nn.Conv2d(cin, c0, 3, padding=1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(),
            AttackerBlock(c0, c1), AttackerBlock(c1, c2), AttackerBlock(c2, c1), AttackerBlock(c1, c0),
            nn.BatchNorm2d(c0), nn.Conv2d(c0, image_channels, 3, padding=1),
        )

    def forward(self, x: Tensor, grad: Tensor | None = None) -> Tensor:
        if self.use_grad:
            if grad is None:
                raise ConfigError("this L2L attacker takes the input gradient: call it as net(x, grad)")
            x = torch.cat([x, normalize_grad(grad)], dim=1)
        return self.eps * torch.tanh(self.net(x))


@MODELS.register("l2l-attacker")
def l2l_attacker(**kwargs: object) -> L2LAttacker:
    """L2L attacker; keyword arguments of :class:`L2LAttacker`."""
    return L2LAttacker(**kwargs)  # type: ignore[arg-type]
