"""CIFAR-FS, FC100 (few-shot) and CIFAR-10 / CIFAR-100 (classification) from the official pickles.

The few-shot sets pool CIFAR-100's train and test images (600 per fine class) and split the
*classes*: CIFAR-FS by fine class names (64 / 16 / 20), FC100 by superclass (12 / 4 / 4
superclasses = 60 / 20 / 20 fine classes). The class lists ship with the package.

References:
    Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009. Bertinetto et al.,
    "Meta-learning with differentiable closed-form solvers", ICLR 2019 (CIFAR-FS). Oreshkin et
    al., "TADAM: Task dependent adaptive metric for improved few-shot learning", NeurIPS 2018 (FC100).
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from advmeta.data._cifar_splits import CIFAR_FS, FC100
from advmeta.data._registry import CLASSIFICATION, FEWSHOT, DatasetInfo, register_info
from advmeta.data.base import (
    SPLITS,
    ClassificationData,
    ClassSplit,
    FewShotDataset,
    check_size,
    contiguous_classes,
    locate,
)
from advmeta.data.cache import load_or_build
from advmeta.data.download import Remote
from advmeta.errors import ConfigError, CorruptDataError

C100_DIRS = ("cifar-100-python",)
C100_FILES = ("train", "test", "meta")
C10_DIRS = ("cifar-10-batches-py",)
C10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
_TORONTO = ("https://www.cs.toronto.edu/~kriz/", "https://cave.cs.toronto.edu/kriz/")
_C100_REMOTE = Remote("cifar-100-python.tar.gz", tuple(u + "cifar-100-python.tar.gz" for u in _TORONTO),
                      "eb9058c3a382ffc7106e4002c42a8d85", extract=True)
_C10_REMOTE = Remote("cifar-10-python.tar.gz", tuple(u + "cifar-10-python.tar.gz" for u in _TORONTO),
                     "c58f30108f718f92721af3b95e74349a", extract=True)
_C100_MD5 = {"cifar-100-python/train": "16019d7e3df5f24257cddd939b257f8d",
             "cifar-100-python/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
             "cifar-100-python/meta": "7973b15100ade9c7d40fb424638fde48"}
_C10_MD5 = {"cifar-10-batches-py/data_batch_1": "c99cafc152244af753f735de768cd75f",
            "cifar-10-batches-py/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "cifar-10-batches-py/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "cifar-10-batches-py/data_batch_4": "634d18415352ddfa80567beed471001a",
            "cifar-10-batches-py/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "cifar-10-batches-py/test_batch": "40351d587109b95175f43aff81a1287e",
            "cifar-10-batches-py/batches.meta": "5ff9c542aee3614f3951f8cda6e48888"}


def read_pickle(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """One official CIFAR pickle as a dict with ``str`` keys; checks the keys are present."""
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")  # noqa: S301 - the user's own dataset file
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError, IndexError) as err:
        raise CorruptDataError(f"{path} is not a readable CIFAR pickle ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise CorruptDataError(f"{path} must hold a dict, got {type(obj).__name__}")
    out = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}
    missing = [k for k in keys if k not in out]
    if missing:
        raise CorruptDataError(f"{path} lacks the keys {', '.join(missing)}")
    return out


def _images(path: Path, obj: dict[str, Any], label_keys: tuple[str, ...], n_labels: tuple[int, ...],
            size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    data = np.asarray(obj["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise CorruptDataError(f"{path}: data must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    labels = []
    for key, n in zip(label_keys, n_labels, strict=True):
        y = np.asarray(obj[key], dtype=np.int64)
        if y.shape != (len(data),) or (len(y) and (y.min() < 0 or y.max() >= n)):
            raise CorruptDataError(f"{path}: {key} must be {len(data)} labels in [0, {n})")
        labels.append(y)
    x = data.reshape(-1, 3, 32, 32)  # rows are 1024 R, 1024 G, 1024 B values, row-major
    return _resize(x, size), labels


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    if x.shape[-1] == size:
        return x
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im.transpose(1, 2, 0)).resize((size, size), Image.Resampling.BILINEAR))
                     .transpose(2, 0, 1) for im in x])


def _names(obj: dict[str, Any], key: str) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in obj[key]]


def _build_c100(folder: Path, size: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    meta = read_pickle(folder / "meta", ("fine_label_names", "coarse_label_names"))
    fine_names, coarse_names = _names(meta, "fine_label_names"), _names(meta, "coarse_label_names")
    xs, fines, coarses, tests = [], [], [], []
    for part in ("train", "test"):
        obj = read_pickle(folder / part, ("data", "fine_labels", "coarse_labels"))
        x, (f, c) = _images(folder / part, obj, ("fine_labels", "coarse_labels"),
                            (len(fine_names), len(coarse_names)), size)
        xs.append(x)
        fines.append(f)
        coarses.append(c)
        tests.append(np.full(len(x), part == "test"))
    fine, coarse = np.concatenate(fines), np.concatenate(coarses)
    order, _, _ = contiguous_classes(fine, len(fine_names))  # images grouped by fine class
    fine_to_coarse = np.full(len(fine_names), -1, dtype=np.int64)
    fine_to_coarse[fine] = coarse
    arrays = {"images": np.concatenate(xs)[order], "fine": fine[order], "is_test": np.concatenate(tests)[order]}
    return arrays, {"fine_names": fine_names, "coarse_names": coarse_names, "fine_to_coarse": fine_to_coarse.tolist()}


def _c100(data_root: str | Path | None, image_size: int | None, download: bool) -> tuple[Any, Path]:
    size = check_size(image_size, 32)
    folder = locate("CIFAR-100", C100_DIRS, C100_FILES, data_root, download=download,
                    remotes=(_C100_REMOTE.filename,))
    entry = load_or_build(folder, "cifar100", {"size": size}, [folder / f for f in C100_FILES],
                          lambda: _build_c100(folder, size))
    return entry, folder


def _fewshot(name: str, data_root: str | Path | None, image_size: int | None, download: bool) -> FewShotDataset:
    entry, folder = _c100(data_root, image_size, download)
    fine_names = entry.meta["fine_names"]
    counts = np.bincount(np.asarray(entry.arrays["fine"]), minlength=len(fine_names))
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    splits = {}
    for s in SPLITS:
        if name == "cifar-fs":
            index = {n: i for i, n in enumerate(fine_names)}
            unknown = [n for n in CIFAR_FS[s] if n not in index]
            if unknown:
                raise CorruptDataError(f"{folder / 'meta'} lacks the CIFAR-FS classes {', '.join(unknown[:3])}")
            ids = np.array([index[n] for n in CIFAR_FS[s]], dtype=np.int64)
        else:
            f2c = np.asarray(entry.meta["fine_to_coarse"])
            ids = np.nonzero(np.isin(f2c, FC100[s]))[0]
        splits[s] = ClassSplit(s, [fine_names[i] for i in ids], entry.arrays["images"], offsets[ids], counts[ids])
    info = {"root": str(folder), "files": [str(folder / f) for f in C100_FILES], "checksums": entry.checksums,
            "cache": str(entry.path), "cache_note": entry.note, "decode_seconds": entry.meta.get("build_seconds")}
    return FewShotDataset(name, splits, "bertinetto" if name == "cifar-fs" else "oreshkin", info)


CIFAR_FS_INFO = register_info(DatasetInfo("cifar-fs", rank=30, folders=C100_DIRS,
                                          alternatives=(C100_FILES,), classification="cifar100",
                                          remotes=(_C100_REMOTE,), known_md5=_C100_MD5))
FC100_INFO = register_info(replace(CIFAR_FS_INFO, name="fc100", rank=40))


@FEWSHOT.register("cifar-fs")
def load_cifar_fs(data_root: str | Path | None = None, image_size: int | None = None,
                  split_scheme: str | None = None, download: bool = True) -> FewShotDataset:
    """CIFAR-FS: CIFAR-100's fine classes split 64 / 16 / 20 (600 images each, (3, 32, 32))."""
    if split_scheme not in (None, "bertinetto"):
        raise ConfigError(f"unknown cifar-fs split_scheme {split_scheme!r}; only 'bertinetto'")
    return _fewshot("cifar-fs", data_root, image_size, download)


@FEWSHOT.register("fc100")
def load_fc100(data_root: str | Path | None = None, image_size: int | None = None,
               split_scheme: str | None = None, download: bool = True) -> FewShotDataset:
    """FC100: CIFAR-100 split by superclass, 60 / 20 / 20 fine classes (600 images each)."""
    if split_scheme not in (None, "oreshkin"):
        raise ConfigError(f"unknown fc100 split_scheme {split_scheme!r}; only 'oreshkin'")
    return _fewshot("fc100", data_root, image_size, download)


@CLASSIFICATION.register("cifar100")
def load_cifar100(data_root: str | Path | None = None, image_size: int | None = None,
                  download: bool = True) -> ClassificationData:
    """CIFAR-100 with its official train / test sets and the 100 fine labels."""
    entry, folder = _c100(data_root, image_size, download)
    test = np.asarray(entry.arrays["is_test"])
    x, y = entry.arrays["images"], np.asarray(entry.arrays["fine"])
    return ClassificationData("cifar100", x[~test], y[~test], x[test], y[test], len(entry.meta["fine_names"]),
                              entry.meta["fine_names"], {"root": str(folder), "cache": str(entry.path)})


def _build_c10(folder: Path, size: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    names = _names(read_pickle(folder / "batches.meta", ("label_names",)), "label_names")
    out: dict[str, np.ndarray] = {}
    for part, files in (("train", C10_FILES[:5]), ("test", C10_FILES[5:6])):
        xs, ys = [], []
        for f in files:
            x, (y,) = _images(folder / f, read_pickle(folder / f, ("data", "labels")), ("labels",), (len(names),), size)
            xs.append(x)
            ys.append(y)
        out[f"{part}_x"], out[f"{part}_y"] = np.concatenate(xs), np.concatenate(ys)
    return out, {"label_names": names}


CIFAR10_INFO = register_info(DatasetInfo("cifar10", rank=50, folders=C10_DIRS,
                                         alternatives=(C10_FILES,), remotes=(_C10_REMOTE,), known_md5=_C10_MD5))


@CLASSIFICATION.register("cifar10")
def load_cifar10(data_root: str | Path | None = None, image_size: int | None = None,
                 download: bool = True) -> ClassificationData:
    """CIFAR-10 with its official 50,000 / 10,000 train / test images."""
    size = check_size(image_size, 32)
    folder = locate("CIFAR-10", C10_DIRS, C10_FILES, data_root, download=download,
                    remotes=(_C10_REMOTE.filename,))
    entry = load_or_build(folder, "cifar10", {"size": size}, [folder / f for f in C10_FILES],
                          lambda: _build_c10(folder, size))
    a = entry.arrays
    return ClassificationData("cifar10", a["train_x"], np.asarray(a["train_y"]), a["test_x"], np.asarray(a["test_y"]),
                              len(entry.meta["label_names"]), entry.meta["label_names"],
                              {"root": str(folder), "cache": str(entry.path), "cache_note": entry.note})
