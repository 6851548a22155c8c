"""mini-ImageNet (Vinyals et al., 2016) with the Ravi & Larochelle class split.

Two on-disk forms are read: an ``images/`` folder of 84×84 JPEGs plus ``train.csv``,
``val.csv``, ``test.csv`` (header ``filename,label``), and the widely shared pickle caches
``mini-imagenet-cache-{train,val,test}.pkl`` (``image_data`` uint8 (N, 84, 84, 3) and
``class_dict`` name → indices). Both give the same class order (sorted wnids) and image order,
so an episode index names the same images whichever form is installed.

References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016; Ravi & Larochelle,
    "Optimization as a Model for Few-Shot Learning", ICLR 2017 (the 64/16/20 split).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from advmeta.data._registry import CLASSIFICATION, FEWSHOT, DatasetInfo, register_info
from advmeta.data.base import SPLITS, ClassificationData, ClassSplit, FewShotDataset, check_size, locate
from advmeta.data.cache import load_or_build
from advmeta.errors import ConfigError, CorruptDataError, DataNotFoundError

CSVS = tuple(f"{s}.csv" for s in SPLITS)
PKLS = tuple(f"mini-imagenet-cache-{s}.pkl" for s in SPLITS)
SUBDIRS = ("miniimagenet", "mini-imagenet", "mini_imagenet")


def _read_csv(path: Path) -> list[tuple[str, str]]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise CorruptDataError(f"cannot read {path}: {err}") from None
    if not rows or [c.strip() for c in rows[0]] != ["filename", "label"]:
        raise CorruptDataError(f"{path} must start with the header 'filename,label'")
    bad = [i for i, r in enumerate(rows[1:], 2) if len(r) != 2]
    if bad:
        raise CorruptDataError(f"{path}:{bad[0]}: expected two columns filename,label")
    return [(r[0].strip(), r[1].strip()) for r in rows[1:]]


def _ordered(rows: list[tuple[str, str]]) -> tuple[list[str], list[list[str]]]:
    by_class: dict[str, list[str]] = {}
    for fname, label in rows:
        by_class.setdefault(label, []).append(fname)
    names = sorted(by_class)
    return names, [by_class[n] for n in names]


def _md5sums(folder: Path) -> dict[str, str]:
    path = folder / "MD5SUMS"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            out[os.path.basename(parts[1].strip().lstrip("*"))] = parts[0]
    return out


def _decode_one(path: Path, size: int, md5: str | None) -> np.ndarray:
    from PIL import Image

    try:
        data = path.read_bytes()
        if md5 is not None and hashlib.md5(data).hexdigest() != md5:
            raise CorruptDataError(f"{path} fails its MD5SUMS checksum")
        with Image.open(io.BytesIO(data)) as src:
            im = src.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except CorruptDataError:
        raise
    except FileNotFoundError:
        raise DataNotFoundError(f"mini-ImageNet image {path} listed in the CSV files is missing") from None
    except (OSError, ValueError, SyntaxError) as err:  # PIL raises all three on bad bytes
        raise CorruptDataError(f"cannot decode {path}: {err}") from None


def _build_from_images(folder: Path, splits: dict[str, tuple[list[str], list[list[str]]]],
                       size: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    sums = _md5sums(folder)
    files = [f for s in SPLITS for per_class in splits[s][1] for f in per_class]
    # PIL releases the GIL while decoding, so threads use every core without pickling arrays
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        images = list(pool.map(lambda f: _decode_one(folder / "images" / f, size, sums.get(f)), files,
                               chunksize=64))
    return {"images": np.stack(images)}, _meta(splits)


def _meta(splits: dict[str, tuple[list[str], list[list[str]]]]) -> dict[str, Any]:
    return {s: {"classes": splits[s][0], "counts": [len(v) for v in splits[s][1]]} for s in SPLITS}


def _load_pickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f)  # noqa: S301 - the user's own dataset file
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError, IndexError) as err:
        raise CorruptDataError(f"{path} is not a readable pickle ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict) or "image_data" not in obj or "class_dict" not in obj:
        raise CorruptDataError(f"{path} must hold a dict with 'image_data' and 'class_dict'")
    data = np.asarray(obj["image_data"])
    if data.dtype != np.uint8 or data.ndim != 4 or data.shape[-1] != 3:
        raise CorruptDataError(f"{path}: image_data must be uint8 (N, H, W, 3), got {data.dtype} {data.shape}")
    return {"image_data": data, "class_dict": obj["class_dict"]}


def _build_from_pickles(folder: Path, size: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from PIL import Image

    parts, splits = [], {}
    for s, name in zip(SPLITS, PKLS, strict=True):
        obj = _load_pickle(folder / name)
        names = sorted(obj["class_dict"])
        idx = [np.asarray(obj["class_dict"][n], dtype=np.int64) for n in names]
        if any(len(i) and (i.min() < 0 or i.max() >= len(obj["image_data"])) for i in idx):
            raise CorruptDataError(f"{folder / name}: class_dict indices out of range")
        imgs = obj["image_data"][np.concatenate(idx)]
        if imgs.shape[1:3] != (size, size):
            imgs = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR))
                             for im in imgs])
        parts.append(imgs.transpose(0, 3, 1, 2))
        splits[s] = (names, [[str(j) for j in i] for i in idx])
    return {"images": np.concatenate(parts)}, _meta(splits)


def _load_base(data_root: str | Path | None, image_size: int | None) -> tuple[Any, Path, str]:
    size = check_size(image_size, 84)
    try:
        folder = locate("mini-ImageNet", SUBDIRS, ("images", *CSVS), data_root, download=False)
    except DataNotFoundError as err_csv:
        try:
            folder = locate("mini-ImageNet", SUBDIRS, PKLS, data_root, download=False)
        except DataNotFoundError:
            raise DataNotFoundError(f"{err_csv} (or {', '.join(PKLS)} there)") from None
        entry = load_or_build(folder, "miniimagenet-pkl", {"size": size}, [folder / p for p in PKLS],
                              lambda: _build_from_pickles(folder, size))
        return entry, folder, "pickle"
    splits = {s: _ordered(_read_csv(folder / f"{s}.csv")) for s in SPLITS}
    seen: set[str] = set()
    for s in SPLITS:
        if seen & set(splits[s][0]):
            raise CorruptDataError(f"{folder / (s + '.csv')} repeats classes of an earlier split")
        seen |= set(splits[s][0])
    files = [folder / "images" / f for s in SPLITS for c in splits[s][1] for f in c]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataNotFoundError(f"mini-ImageNet: {len(missing)} images listed in the CSV files are missing "
                                f"from {folder / 'images'} (first: {missing[0].name})")
    entry = load_or_build(folder, "miniimagenet", {"size": size},
                          [folder / c for c in CSVS] + files, lambda: _build_from_images(folder, splits, size))
    return entry, folder, "images+csv"


def _splits(entry: Any) -> dict[str, ClassSplit]:
    base = entry.arrays["images"]
    out, start = {}, 0
    for s in SPLITS:
        counts = np.array(entry.meta[s]["counts"], dtype=np.int64)
        offsets = start + np.concatenate([[0], np.cumsum(counts)[:-1]])
        out[s] = ClassSplit(s, entry.meta[s]["classes"], base, offsets, counts)
        start += int(counts.sum())
    return out


INFO = register_info(DatasetInfo("miniimagenet", rank=20, folders=SUBDIRS, alternatives=(("images", *CSVS), PKLS),
                                 classification="miniimagenet-64"))


@FEWSHOT.register("miniimagenet")
def load_miniimagenet(data_root: str | Path | None = None, image_size: int | None = None,
                      split_scheme: str | None = None, download: bool = True) -> FewShotDataset:
    """mini-ImageNet as a few-shot dataset (64 / 16 / 20 classes, images (3, 84, 84)).

    Args:
        data_root: explicit data root (``<root>/miniimagenet/``).
        image_size: side of the square images (default 84).
        split_scheme: only ``"ravi"`` (the default).
        download: ignored: mini-ImageNet has no official download.
    """
    if split_scheme not in (None, "ravi"):
        raise ConfigError(f"unknown miniimagenet split_scheme {split_scheme!r}; only 'ravi'")
    entry, folder, form = _load_base(data_root, image_size)
    files = [str(folder / p) for p in (("images/", *CSVS) if form == "images+csv" else PKLS)]
    info = {"root": str(folder), "form": form, "files": files,
            "num_files": len(entry.checksums), "checksums": entry.checksums, "cache": str(entry.path),
            "cache_note": entry.note, "decode_seconds": entry.meta.get("build_seconds")}
    return FewShotDataset("miniimagenet", _splits(entry), "ravi", info)


@CLASSIFICATION.register("miniimagenet-64")
def load_miniimagenet_64(data_root: str | Path | None = None, image_size: int | None = None,
                         download: bool = True, test_fraction: float = 0.2) -> ClassificationData:
    """The 64 training classes of mini-ImageNet as a classification set.

    The last ``test_fraction`` of each class's images are held out for testing [choice].
    """
    entry, folder, _ = _load_base(data_root, image_size)
    split = _splits(entry)["train"]
    base = entry.arrays["images"]
    tr, te, ytr, yte = [], [], [], []
    for c in range(split.num_classes):
        o, n = int(split._offsets[c]), split.num_images(c)
        n_test = max(1, int(round(n * test_fraction)))
        tr.append(np.arange(o, o + n - n_test))
        te.append(np.arange(o + n - n_test, o + n))
        ytr += [c] * (n - n_test)
        yte += [c] * n_test
    return ClassificationData("miniimagenet-64", base[np.concatenate(tr)], np.array(ytr, dtype=np.int64),
                              base[np.concatenate(te)], np.array(yte, dtype=np.int64), split.num_classes,
                              split.class_names, {"root": str(folder), "cache": str(entry.path)})
