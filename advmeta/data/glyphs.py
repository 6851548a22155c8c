"""glyphs: a built-in procedural few-shot dataset of stroke characters (no files needed).

Each class is a "character" of 2–4 random cubic Bézier strokes; each image of it is a fresh
rendering with jittered control points, a random affine map (rotation, anisotropic scale, shear,
shift), a random stroke width and pixel noise. Every image is a pure function of
(class id, image index) through :class:`numpy.random.SeedSequence`, so it is identical on every
machine and never stored on disk. It is the fallback when no real dataset is installed; results
on it say nothing about real images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from advmeta.data._registry import CLASSIFICATION, FEWSHOT, DatasetInfo, register_info
from advmeta.data.base import ClassificationData, ClassSplit, FewShotDataset, check_size
from advmeta.data.cache import load_or_build
from advmeta.data.roots import user_cache_dir
from advmeta.errors import ConfigError, CorruptDataError

_SALT = 0x676C797068  # "glyph"
_POINTS_PER_STROKE = 32
_T = np.linspace(0.0, 1.0, _POINTS_PER_STROKE)
# Bernstein basis of a cubic Bézier curve, (P, 4)
_BEZIER = np.stack([(1 - _T) ** 3, 3 * _T * (1 - _T) ** 2, 3 * _T**2 * (1 - _T), _T**3], axis=1)


def _prototype(class_id: int) -> tuple[np.ndarray, float]:
    """Control points (S, 4, 2) in [0.15, 0.85]² and base stroke half-width of one class."""
    rng = np.random.default_rng(np.random.SeedSequence([_SALT, class_id]))
    n_strokes = int(rng.integers(2, 5))
    ctrl = 0.15 + 0.7 * rng.random((n_strokes, 4, 2))
    return ctrl, float(0.035 + 0.025 * rng.random())


def render(class_id: int, idx: Sequence[int] | np.ndarray, size: int = 28) -> np.ndarray:
    """Images ``idx`` of glyph class ``class_id``, rendered in one vectorised pass.

    Shape: returns (len(idx), 1, size, size) uint8.
    """
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    ctrl, width = _prototype(class_id)
    b = len(idx)
    pts = np.empty((b, ctrl.shape[0] * _POINTS_PER_STROKE, 2))
    widths = np.empty(b)
    noise = np.empty((b, size * size))
    for j, i in enumerate(idx):  # per-image randomness: one small generator per image
        rng = np.random.default_rng(np.random.SeedSequence([_SALT, class_id, int(i) + 1]))
        c = ctrl + 0.025 * rng.standard_normal(ctrl.shape)
        p = np.einsum("pk,skd->spd", _BEZIER, c).reshape(-1, 2) - 0.5
        angle, shear = 0.25 * (rng.random() - 0.5) * 2, 0.15 * (rng.random() - 0.5) * 2
        sx, sy = 0.85 + 0.3 * rng.random(2)
        cos, sin = math.cos(angle), math.sin(angle)  # scalar libm, not NumPy's SIMD paths
        rot = np.array([[cos, -sin], [sin, cos]])
        affine = rot @ np.array([[sx, shear], [0.0, sy]])
        pts[j] = p @ affine.T + 0.5 + 0.06 * (rng.random(2) - 0.5) * 2
        widths[j] = width * (0.8 + 0.4 * rng.random())
        noise[j] = 0.06 * rng.standard_normal(size * size)
    pts = pts.astype(np.float32)
    grid = ((np.arange(size) + 0.5) / size).astype(np.float32)
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    pix = np.stack([gx.ravel(), gy.ravel()], axis=1)  # (HW, 2)
    # squared distance of every pixel to every curve point: (B, HW, P) -> nearest point per pixel
    d2 = (pix[None, :, None, 0] - pts[:, None, :, 0]) ** 2 + (pix[None, :, None, 1] - pts[:, None, :, 1]) ** 2
    dist = np.sqrt(d2.min(axis=2))
    ink = np.clip((widths[:, None] - dist) * size + 0.5, 0.0, 1.0) + noise  # 1-pixel anti-aliased edge
    images: np.ndarray = np.round(np.clip(ink, 0.0, 1.0) * 255).astype(np.uint8).reshape(b, 1, size, size)
    return images


class GlyphSplit(ClassSplit):
    """A split of glyph classes, rendered on first use and kept in memory."""

    def __init__(self, name: str, class_ids: np.ndarray, images_per_class: int, size: int) -> None:
        self._ids = np.asarray(class_ids, dtype=np.int64)
        self._size = size
        self._memo: dict[int, np.ndarray] = {}
        n = len(self._ids)
        super().__init__(name, [f"glyph{i:05d}" for i in self._ids], np.zeros((1, 1, size, size), np.uint8),
                         np.zeros(n, np.int64), np.full(n, images_per_class, np.int64))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return 1, self._size, self._size

    def _class_images(self, c: int) -> np.ndarray:
        imgs = self._memo.get(c)
        if imgs is None:
            imgs = render(int(self._ids[c]), np.arange(self.num_images(c)), self._size)
            self._memo[c] = imgs
        return imgs

    def gather(self, classes: np.ndarray, idx: np.ndarray) -> np.ndarray:
        classes = np.asarray(classes, dtype=np.int64)
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (np.any(idx < 0) or np.any(idx >= self._counts[classes][:, None])):
            raise IndexError("image index out of range for its class")
        return np.stack([self._class_images(int(c))[i] for c, i in zip(classes, idx, strict=True)])


@FEWSHOT.register("glyphs")
def load_glyphs(data_root: str | Path | None = None, image_size: int | None = None,
                split_scheme: str | None = None, download: bool = True, num_classes: int = 1200,
                images_per_class: int = 20) -> FewShotDataset:
    """The procedural glyphs dataset.

    Args:
        data_root: ignored (nothing is read).
        image_size: side of the square images (default 28).
        split_scheme: only ``"default"``: classes split 70 / 10 / 20 % in id order.
        download: ignored.
        num_classes: number of classes (default 1,200: 840 / 120 / 240).
        images_per_class: drawings per class (default 20, as Omniglot).
    """
    if split_scheme not in (None, "default"):
        raise ConfigError(f"unknown glyphs split_scheme {split_scheme!r}; only 'default'")
    if num_classes < 10 or images_per_class < 1:
        raise ConfigError("glyphs needs num_classes >= 10 and images_per_class >= 1")
    size = check_size(image_size, 28)
    n_train, n_val = int(num_classes * 0.7), int(num_classes * 0.1)
    ids = np.arange(num_classes)
    parts = {"train": ids[:n_train], "val": ids[n_train:n_train + n_val], "test": ids[n_train + n_val:]}
    splits: dict[str, ClassSplit] = {s: GlyphSplit(s, v, images_per_class, size) for s, v in parts.items()}
    info: dict[str, Any] = {"root": None, "files": [], "checksums": {}, "cache": None,
            "cache_note": "procedural: rendered in memory on first use", "num_classes": num_classes}
    return FewShotDataset("glyphs", splits, "default", info)


def check_rendering() -> list[str]:
    """``advmeta data check glyphs``: every class drawn twice must come out the same (a pure function)."""
    n = load_glyphs().info()["num_classes"]
    for c in range(n):  # one drawing per class, twice: rendering must be a pure function
        if not (render(c, [0]) == render(c, [0])).all():
            raise CorruptDataError(f"glyph class {c} renders differently twice (non-deterministic maths?)")
    return [f"glyphs: {n} classes render deterministically"]


INFO = register_info(DatasetInfo("glyphs", rank=100, classification="glyphs-cls", built_in=True,
                                 check=check_rendering))


@CLASSIFICATION.register("glyphs-cls")
def load_glyphs_cls(data_root: str | Path | None = None, image_size: int | None = None, download: bool = True,
                    num_classes: int = 100, images_per_class: int = 50,
                    test_fraction: float = 0.2) -> ClassificationData:
    """The first ``num_classes`` glyph classes as a classification set (the no-real-data fallback).

    Rendered once into the per-user array cache. The last ``test_fraction`` of each class's
    drawings are held out for testing [choice].
    """
    size = check_size(image_size, 28)
    n_test = max(1, int(round(images_per_class * test_fraction)))
    params = {"size": size, "classes": num_classes, "per_class": images_per_class}

    def build() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        imgs = np.stack([render(c, np.arange(images_per_class), size) for c in range(num_classes)])
        return {"images": imgs}, {}

    entry = load_or_build(user_cache_dir() / "glyphs", "glyphs-cls", params, [], build)
    imgs = entry.arrays["images"]  # (classes, per_class, 1, H, W)
    y = np.repeat(np.arange(num_classes, dtype=np.int64), images_per_class).reshape(num_classes, -1)
    cut = images_per_class - n_test
    return ClassificationData("glyphs-cls", imgs[:, :cut].reshape(-1, 1, size, size), y[:, :cut].ravel(),
                              imgs[:, cut:].reshape(-1, 1, size, size), y[:, cut:].ravel(), num_classes,
                              [f"glyph{i:05d}" for i in range(num_classes)],
                              {"root": None, "cache": str(entry.path), "cache_note": entry.note})
