"""Finding, loading and checking datasets by name: the entry points the rest of advmeta uses."""

from __future__ import annotations

import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from advmeta.data._registry import CLASSIFICATION, FEWSHOT
from advmeta.data.base import ClassificationData, FewShotDataset
from advmeta.data.cache import file_md5
from advmeta.data.download import KNOWN_MD5
from advmeta.data.roots import cache_override, data_roots
from advmeta.errors import CorruptDataError

#: Where each real dataset's files sit under a data root, in the order the default is chosen.
LAYOUTS: dict[str, tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]] = {
    "omniglot": (("omniglot",), (("images_background.zip", "images_evaluation.zip"),)),
    "miniimagenet": (("miniimagenet", "mini-imagenet", "mini_imagenet"),
                     (("images", "train.csv", "val.csv", "test.csv"),
                      tuple(f"mini-imagenet-cache-{s}.pkl" for s in ("train", "val", "test")))),
    "cifar-fs": (("cifar-100-python",), (("train", "test", "meta"),)),
    "fc100": (("cifar-100-python",), (("train", "test", "meta"),)),
    "cifar10": (("cifar-10-batches-py",), ((*(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                                            "batches.meta"),)),
}
DEFAULT_ORDER = ("omniglot", "miniimagenet", "cifar-fs")


def dataset_names() -> list[str]:
    """Names accepted by :func:`load_fewshot`."""
    return FEWSHOT.names()


def classification_names() -> list[str]:
    """Names accepted by :func:`load_classification`."""
    return CLASSIFICATION.names()


def load_fewshot(name: str, data_root: str | Path | None = None, image_size: int | None = None,
                 split_scheme: str | None = None, download: bool = True) -> FewShotDataset:
    """Load a few-shot dataset, decoding it into the array cache on first use.

    Args:
        name: one of :func:`dataset_names` (omniglot, miniimagenet, cifar-fs, fc100, glyphs).
        data_root: explicit data root, searched before ``$ADVMETA_DATA`` and the user cache.
        image_size: side of the square images (None: the dataset's standard size).
        split_scheme: class split (None: the standard one; omniglot also has "original").
        download: fetch missing files from the official source when possible.

    Raises:
        ConfigError: unknown name or option. DataNotFoundError: files missing.
        CorruptDataError: a file failed its checksum or could not be decoded.
    """
    loader = FEWSHOT.get(name)
    return loader(data_root=data_root, image_size=image_size, split_scheme=split_scheme, download=download)


def load_classification(name: str, data_root: str | Path | None = None, image_size: int | None = None,
                        download: bool = True) -> ClassificationData:
    """Load a plain classification set: cifar10, cifar100, miniimagenet-64 or omniglot-cls."""
    loader = CLASSIFICATION.get(name)
    return loader(data_root=data_root, image_size=image_size, download=download)


def find(name: str, data_root: str | Path | None = None) -> Path | None:
    """The folder holding real dataset ``name`` under the data roots, or None (never downloads)."""
    subdirs, alternatives = LAYOUTS[name]
    for root in data_roots(data_root):
        for cand in [root.path / s for s in subdirs] + [root.path]:
            for required in alternatives:
                if all((cand / r).exists() for r in required):
                    return cand
    return None


def resolve_default_dataset(data_root: str | Path | None = None) -> tuple[str, str | None]:
    """The dataset a run uses when none is named: the first real one found, else glyphs.

    Returns:
        (name, announcement): the announcement is None for a real dataset, and for glyphs a
        sentence the caller must show (the fallback is never silent).
    """
    for name in DEFAULT_ORDER:
        if find(name, data_root) is not None:
            return name, None
    looked = ", ".join(str(r) for r in data_roots(data_root))
    return "glyphs", (f"no real dataset (omniglot, miniimagenet, cifar-100-python) found under {looked}; "
                      "using the built-in procedural 'glyphs' dataset instead: its numbers say nothing about "
                      "real images (set --data-root or ADVMETA_DATA to use real data)")


def status(data_root: str | Path | None = None) -> list[dict[str, Any]]:
    """Which datasets are found where, with their size on disk (for ``advmeta data list``)."""
    rows = []
    for name in [*LAYOUTS, "glyphs"]:
        if name == "glyphs":
            rows.append({"dataset": name, "found": True, "path": "(built in)", "bytes": 0})
            continue
        path = find(name, data_root)
        size = 0
        if path is not None:
            subdirs, alternatives = LAYOUTS[name]
            for required in alternatives:
                if all((path / r).exists() for r in required):
                    size = sum(_size(path / r) for r in required)
                    break
        rows.append({"dataset": name, "found": path is not None, "path": str(path) if path else None, "bytes": size})
    return rows


def _size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.iterdir() if f.is_file())


def check(name: str, data_root: str | Path | None = None) -> list[str]:
    """Verify a dataset's files: checksums where known, zip CRCs, and a full decode.

    Returns:
        One line per finding (md5 values, whether they match the official files).

    Raises:
        DataNotFoundError / CorruptDataError: as the loaders do.
    """
    lines = []
    path = find(name, data_root) if name in LAYOUTS else None
    if path is not None:
        subdirs, alternatives = LAYOUTS[name]
        for required in alternatives:
            for r in required:
                f = path / r
                if not f.is_file():
                    continue
                md5 = file_md5(f)
                key = f"{path.name}/{r}" if f"{path.name}/{r}" in KNOWN_MD5 else r
                known = KNOWN_MD5.get(key)
                verdict = "" if known is None else " (official)" if known == md5 else " (not the official file)"
                lines.append(f"{f}: md5 {md5}{verdict}")
                if f.suffix == ".zip":
                    try:
                        with zipfile.ZipFile(f) as zf:
                            bad = zf.testzip()
                    except zipfile.BadZipFile as err:
                        raise CorruptDataError(f"{f} is not a valid zip: {err}") from None
                    if bad is not None:
                        raise CorruptDataError(f"{f}: member {bad} fails its CRC check")
    if name == "glyphs":
        from advmeta.data.glyphs import render

        n = load_fewshot("glyphs").info()["num_classes"]
        for c in range(n):  # one drawing per class, twice: rendering must be a pure function
            if not (render(c, [0]) == render(c, [0])).all():
                raise CorruptDataError(f"glyph class {c} renders differently twice (non-deterministic maths?)")
        return [f"glyphs: {n} classes render deterministically"]
    if path is not None and (path / "MD5SUMS").is_file():
        lines.append(f"{path / 'MD5SUMS'}: every listed image is verified while decoding")
    with tempfile.TemporaryDirectory(prefix="advmeta-check-") as tmp, cache_override(Path(tmp)):
        # an empty private cache forces every file to be read, checksummed and decoded again
        t = time.perf_counter()
        if name in CLASSIFICATION:
            cd = load_classification(name, data_root, download=False)
            what = f"{len(cd.train_x)} train / {len(cd.test_x)} test images, {cd.num_classes} classes"
        else:
            ds = load_fewshot(name, data_root, download=False)
            what = "classes " + ", ".join(f"{s} {ds.split(s).num_classes}" for s in ds.split_names)
        lines.append(f"{name}: every image decoded in {time.perf_counter() - t:.1f} s; {what}")
    return lines
