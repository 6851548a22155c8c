"""Finding, loading and checking datasets by name: the entry points the rest of advmeta uses."""

from __future__ import annotations

import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from advmeta.data._registry import CLASSIFICATION, DATASET_INFO, FEWSHOT, DatasetInfo
from advmeta.data.base import ClassificationData, FewShotDataset
from advmeta.data.cache import file_md5
from advmeta.data.roots import cache_override, data_roots
from advmeta.errors import CorruptDataError


def records() -> list[DatasetInfo]:
    """Every dataset's :class:`DatasetInfo`, by rank (the order of ``advmeta data list``)."""
    return sorted((DATASET_INFO.get(n) for n in DATASET_INFO.names()), key=lambda r: r.rank)


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
    """The folder holding real dataset ``name`` under the data roots, or None (never downloads).

    Raises:
        ConfigError: ``name`` has no :class:`DatasetInfo`.
    """
    info = DATASET_INFO.get(name)
    for root in data_roots(data_root):
        for cand in [root.path / s for s in info.folders] + [root.path]:
            for required in info.alternatives:
                if all((cand / r).exists() for r in required):
                    return cand
    return None


def classification_dataset(fewshot: str | None) -> str:
    """The plain classification set an L2L trainer uses alongside a few-shot dataset.

    CIFAR-10 (the L2L paper's) when its files are found; else the classification view its
    dataset record names (Omniglot → ``omniglot-cls``, mini-ImageNet → ``miniimagenet-64``).
    """
    if fewshot is not None and fewshot in classification_names():
        return fewshot
    if find("cifar10") is not None:
        return "cifar10"
    views = {r.name: r.classification for r in records() if r.classification is not None}
    return views.get(str(fewshot), "cifar10")


def resolve_default_dataset(data_root: str | Path | None = None) -> tuple[str, str | None]:
    """The dataset a run uses when none is named: the first real few-shot one found by rank, else glyphs.

    Returns:
        (name, announcement): the announcement is None for a real dataset, and for the built-in
        fallback (glyphs) a sentence the caller must show (the fallback is never silent).
    """
    fewshot = [r for r in records() if r.name in FEWSHOT]
    real = [r for r in fewshot if not r.built_in]
    for info in real:
        if find(info.name, data_root) is not None:
            return info.name, None
    fallback = next(r.name for r in fewshot if r.built_in)
    folders = ", ".join(dict.fromkeys(r.folders[0] for r in real))
    looked = ", ".join(str(r) for r in data_roots(data_root))
    return fallback, (f"no real dataset ({folders}) found under {looked}; using the built-in procedural "
                      f"{fallback!r} dataset instead: its numbers say nothing about real images (set "
                      "--data-root or ADVMETA_DATA to use real data)")


def status(data_root: str | Path | None = None) -> list[dict[str, Any]]:
    """Which datasets are found where, with their size on disk (for ``advmeta data list``)."""
    rows = []
    for info in records():
        if info.built_in:
            rows.append({"dataset": info.name, "found": True, "path": "(built in)", "bytes": 0})
            continue
        path = find(info.name, data_root)
        size = 0
        if path is not None:
            for required in info.alternatives:
                if all((path / r).exists() for r in required):
                    size = sum(_size(path / r) for r in required)
                    break
        rows.append({"dataset": info.name, "found": path is not None, "path": str(path) if path else None,
                     "bytes": size})
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
    info = DATASET_INFO.get(name) if name in DATASET_INFO else None
    if info is not None and info.check is not None:
        return info.check()
    path = find(name, data_root) if info is not None else None
    if info is not None and path is not None:
        for required in info.alternatives:
            for r in required:
                f = path / r
                if not f.is_file():
                    continue
                md5 = file_md5(f)
                known = info.known_md5.get(f"{path.name}/{r}", info.known_md5.get(r))
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
