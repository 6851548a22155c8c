"""The containers every loader returns: class splits, few-shot datasets and classification sets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advmeta.data.download import REMOTES, downloads_enabled, fetch_all
from advmeta.data.roots import data_roots, is_writable_dir
from advmeta.errors import ConfigError, DataNotFoundError

SPLITS = ("train", "val", "test")


class ClassSplit:
    """The classes of one split and their images, backed by one uint8 array (usually memory-mapped).

    Class ``c`` owns images ``base[offsets[c] : offsets[c] + counts[c]]``, shown rotated by
    ``90° · rotations[c]`` counter-clockwise, so a character and its rotations share storage.

    Args:
        name: the split ("train", "val", "test").
        class_names: one name per class.
        base: all images of the dataset, shape (N, C, H, W), uint8.
        offsets: first image of each class in ``base``.
        counts: number of images of each class.
        rotations: quarter turns per class (None: no rotation).
    """

    def __init__(self, name: str, class_names: Sequence[str], base: np.ndarray, offsets: np.ndarray,
                 counts: np.ndarray, rotations: np.ndarray | None = None) -> None:
        self.name = name
        self.class_names = list(class_names)
        self._base = base
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._counts = np.asarray(counts, dtype=np.int64)
        self._rot = None if rotations is None or not np.any(rotations) else np.asarray(rotations, dtype=np.int64) % 4
        if not (len(self.class_names) == len(self._offsets) == len(self._counts)):
            raise ValueError("class_names, offsets and counts must have the same length")

    @property
    def num_classes(self) -> int:
        """Number of classes in the split."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        c, h, w = self._base.shape[1:]
        return int(c), int(h), int(w)

    def num_images(self, c: int) -> int:
        """Number of images of class ``c``."""
        return int(self._counts[c])

    def counts(self) -> np.ndarray:
        """Images per class, shape (num_classes,)."""
        return self._counts.copy()

    def images(self, c: int, idx: np.ndarray | Sequence[int]) -> np.ndarray:
        """Images ``idx`` of class ``c``.

        Shape: returns (len(idx), C, H, W) uint8.
        """
        idx = np.asarray(idx, dtype=np.int64)
        out: np.ndarray = self.gather(np.array([c]), idx[None])[0]
        return out

    def gather(self, classes: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Images ``idx[i]`` of class ``classes[i]`` for every i, in one vectorised read.

        Shape: classes (M,), idx (M, m) -> (M, m, C, H, W) uint8.
        """
        classes = np.asarray(classes, dtype=np.int64)
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (np.any(idx < 0) or np.any(idx >= self._counts[classes][:, None])):
            raise IndexError("image index out of range for its class")
        out: np.ndarray = self._base[(self._offsets[classes][:, None] + idx).ravel()]
        out = out.reshape(idx.shape + out.shape[1:])
        if self._rot is not None:
            k = self._rot[classes]
            for q in (1, 2, 3):  # at most three grouped rotations per call
                rows = np.nonzero(k == q)[0]
                if len(rows):
                    out[rows] = np.rot90(out[rows], q, axes=(-2, -1))
        return out


class FewShotDataset:
    """A few-shot dataset: class splits plus where it came from.

    Attributes:
        name: registry name ("omniglot", ...).
        image_shape: (C, H, W).
        split_scheme: which class split ("vinyals", "original", "ravi", ...).
    """

    def __init__(self, name: str, splits: dict[str, ClassSplit], split_scheme: str, info: dict[str, Any]) -> None:
        self.name = name
        self.split_scheme = split_scheme
        self._splits = splits
        first = next(iter(splits.values()))
        self.image_shape: tuple[int, int, int] = first.image_shape
        self._info = dict(info, name=name, split_scheme=split_scheme, image_shape=list(self.image_shape),
                          classes={k: v.num_classes for k, v in splits.items()})

    @property
    def split_names(self) -> tuple[str, ...]:
        """The available splits."""
        return tuple(self._splits)

    def split(self, name: str) -> ClassSplit:
        """The classes of split ``name`` ("train", "val" or "test")."""
        try:
            return self._splits[name]
        except KeyError:
            raise ConfigError(f"{self.name} ({self.split_scheme} split) has no split {name!r}; "
                              f"choose from {', '.join(self._splits)}") from None

    def info(self) -> dict[str, Any]:
        """Where the data came from: root, files, checksums, cache location."""
        return dict(self._info)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v.num_classes}" for k, v in self._splits.items())
        return f"FewShotDataset({self.name!r}, image_shape={self.image_shape}, classes: {sizes})"


@dataclass
class ClassificationData:
    """A plain classification set (for the L2L defence): uint8 images, int64 labels.

    Shape: train_x (N, C, H, W) uint8, train_y (N,) int64; test_x, test_y likewise.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)


def locate(dataset: str, subdirs: Sequence[str], required: Sequence[str],
           data_root: str | Path | None, *, download: bool = True,
           remotes: Sequence[str] = ()) -> Path:
    """The folder holding every file in ``required``, searched under each data root.

    Args:
        dataset: name for messages.
        subdirs: folder names tried under each root (the root itself is tried last).
        required: relative paths that must all exist.
        data_root: the explicit root, if any.
        download: whether a missing dataset may be fetched (``remotes``).
        remotes: keys of :data:`advmeta.data.download.REMOTES` that produce ``required``.

    Raises:
        DataNotFoundError: one line naming the files expected and every place looked.
    """
    roots = data_roots(data_root)
    looked = []
    for root in roots:
        for cand in [root.path / s for s in subdirs] + [root.path]:
            if all((cand / r).exists() for r in required):
                return cand
        looked.append(f"{root.path}/{{{','.join(subdirs)}}} ({root.origin})")
    expected = f"{dataset}: {', '.join(required)}"
    if remotes and downloads_enabled(download):
        dest_root = next((r for r in roots if is_writable_dir(r.path)), roots[-1])
        dest = dest_root.path / subdirs[0]
        # archives (CIFAR's tarballs) unpack into their own folder, so they go to the root
        archive = all(REMOTES[n].extract for n in remotes)
        fetch_all(remotes, dest_root.path if archive else dest, expected, looked)
        if all((dest / r).exists() for r in required):
            return dest
    hint = "" if remotes else " (no public download; place the files there)"
    raise DataNotFoundError(f"{expected} not found in any of: {'; '.join(looked)}{hint}")


def check_size(image_size: int | None, default: int) -> int:
    """Validate an image size (None: the dataset's default)."""
    if image_size is None:
        return default
    if not isinstance(image_size, int) or image_size < 4 or image_size > 1024:
        raise ConfigError(f"image_size must be an integer in [4, 1024], got {image_size!r}")
    return image_size


def contiguous_classes(labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order that groups images by class (stable), plus per-class offsets and counts."""
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=n_classes).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return order, offsets, counts
