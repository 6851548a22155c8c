"""Plain classification data for the L2L trainers: subsets, minibatches and CIFAR-style augmentation.

Images stay uint8 in memory and become float [0, 1] one minibatch at a time, so a full
mini-ImageNet or CIFAR training set costs its byte size, not four times it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from advmeta.errors import ConfigError


@dataclass(frozen=True)
class L2LData:
    """What an L2L run trains and tests on: a train / held-out-test pair of uint8 image tensors with
    int64 labels in [0, num_classes), cut from a loader's :class:`advmeta.data.ClassificationData`
    (NumPy arrays, every class and image) by :func:`load_l2l_data`."""

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)


def _subset(x: np.ndarray, y: np.ndarray, keep: int | None, per_class: int | None) -> tuple[Tensor, Tensor]:
    y = np.asarray(y, dtype=np.int64)
    mask = np.ones(len(y), dtype=bool) if keep is None else y < keep
    idx = np.flatnonzero(mask)
    if per_class is not None:
        # the first `per_class` of each class, in file order, so the subset is deterministic
        idx = np.concatenate([np.flatnonzero(mask & (y == c))[:per_class] for c in np.unique(y[mask])])
        idx.sort()
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x)[idx])), torch.from_numpy(y[idx])


def load_l2l_data(
    dataset: str,
    data_root: str | None = None,
    image_size: int | None = None,
    num_classes: int | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
) -> L2LData:
    """A classification set from :func:`advmeta.data.load_classification`, optionally cut down.

    Args:
        dataset: cifar10, cifar100, miniimagenet-64 (the 64 training classes, held-out images
            for testing) or omniglot-cls.
        data_root: data folder (None → $ADVMETA_DATA → per-user cache).
        image_size: resize to this side.
        num_classes: keep the first this-many classes.
        train_per_class: at most this many training images per class.
        test_per_class: at most this many test images per class.

    Raises:
        DataNotFoundError: the dataset's files are missing.
        ConfigError: ``num_classes`` exceeds the dataset's.
    """
    from advmeta.data import load_classification

    cd = load_classification(dataset, data_root=data_root, image_size=image_size)
    total = int(cd.num_classes)
    if num_classes is not None and not 1 < num_classes <= total:
        raise ConfigError(f"num_classes must be in [2, {total}] for {dataset}, got {num_classes}")
    train_x, train_y = _subset(cd.train_x, cd.train_y, num_classes, train_per_class)
    test_x, test_y = _subset(cd.test_x, cd.test_y, num_classes, test_per_class)
    if image_size is not None and train_x.shape[-1] != image_size:
        # a loader that ignored the size (or a cache built at another size): resize here
        train_x, test_x = resize_uint8(train_x, image_size), resize_uint8(test_x, image_size)
    return L2LData(str(cd.name), train_x, train_y, test_x, test_y, num_classes or total)


def resize_uint8(x: Tensor, size: int) -> Tensor:
    """Antialiased bilinear resize of uint8 images to ``size``×``size``.

    Shape:
        x: (N, C, H, W) uint8; returns (N, C, size, size) uint8.
    """
    out = [F.interpolate(x[i : i + 512].float(), size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False).round_().clamp_(0, 255).to(torch.uint8) for i in range(0, len(x), 512)]
    return torch.cat(out) if out else x.new_zeros((0, x.shape[1], size, size))


def to_float(x: Tensor, device: torch.device | str | None = None) -> Tensor:
    """uint8 (B, C, H, W) → float32 in [0, 1] on ``device``."""
    return x.to(device=device, non_blocking=True).float().div_(255.0)


def augment(x: Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> Tensor:
    """Random crop after zero padding by ``pad`` pixels, and a random horizontal flip, per image.

    Shape:
        x: (B, C, H, W) float; returns the same shape.
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    out = padded[torch.arange(b, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    if flip:
        mask = (torch.rand(b, generator=generator) < 0.5).to(x.device)[:, None, None, None]
        out = torch.where(mask, out.flip(3), out)
    return out


def minibatches(
    x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False
) -> Iterator[tuple[Tensor, Tensor]]:
    """(x, y) minibatches, shuffled when a generator is given.

    Shape:
        yields x: (≤ batch_size, C, H, W) in x's dtype, y: (≤ batch_size,).
    """
    n = len(y)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx]
