"""A dataset of one's own: one folder of PNG images per class ("image-folders").

Layout, under a data root (``--data-root``, ``$ADVMETA_DATA`` or the user cache)::

    image-folders/
        splits.json          {"train": ["a", "b", ...], "val": [...], "test": [...]}
        a/0.png a/1.png ...  any number of images per class, any size (read as grey, resized)

Every image is decoded on each load (fine for a few thousand images; a large set would cache the
array, as the built-in loaders do). An episode of it is, like every dataset's, a pure function of
(dataset, split, seed, index).

Use: ``ADVMETA_PLUGINS=docs/examples/plugins/folder_dataset.py advmeta tune maml --dataset image-folders``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from advmeta.data import FEWSHOT, ClassSplit, DatasetInfo, FewShotDataset, data_roots, register_info
from advmeta.errors import ConfigError, DataNotFoundError

FOLDER = "image-folders"

# Where its files are (`advmeta data list` shows it); rank 900: never the default dataset.
register_info(DatasetInfo(FOLDER, rank=900, folders=(FOLDER,), alternatives=(("splits.json",),)))


def _find(data_root: str | Path | None) -> Path:
    for root in data_roots(data_root):
        if (root.path / FOLDER / "splits.json").is_file():
            return root.path / FOLDER
    raise DataNotFoundError(f"{FOLDER}: splits.json not found under any data root "
                            f"({', '.join(str(r.path) for r in data_roots(data_root))})")


def _split(folder: Path, name: str, classes: list[str], size: int) -> ClassSplit:
    images, counts = [], []
    for c in classes:
        files = sorted((folder / c).glob("*.png"))
        if not files:
            raise ConfigError(f"{FOLDER}: class {c!r} of the {name} split has no .png files in {folder / c}")
        images += [np.asarray(Image.open(f).convert("L").resize((size, size), Image.BILINEAR))[None] for f in files]
        counts.append(len(files))
    base = np.stack(images).astype(np.uint8)  # (N, C, H, W)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return ClassSplit(name, classes, base, offsets, np.asarray(counts))


@FEWSHOT.register(FOLDER)
def load_image_folders(data_root: str | Path | None = None, image_size: int | None = None,
                       split_scheme: str | None = None, download: bool = True) -> FewShotDataset:
    """The class folders named by ``splits.json``, as grey images (28 × 28 by default).

    Args:
        data_root: searched before ``$ADVMETA_DATA`` and the user cache.
        image_size: side of the square images (default 28).
        split_scheme: only the one of ``splits.json`` (None or ``"splits.json"``).
        download: ignored (there is nothing to download).
    """
    if split_scheme not in (None, "splits.json"):
        raise ConfigError(f"{FOLDER}: unknown split_scheme {split_scheme!r}; its split is splits.json")
    folder = _find(data_root)
    splits = json.loads((folder / "splits.json").read_text())
    size = image_size or 28
    parts = {s: _split(folder, s, list(splits[s]), size) for s in ("train", "val", "test")}
    return FewShotDataset(FOLDER, parts, "splits.json", {"root": str(folder), "files": [], "checksums": {},
                                                         "cache": None})
