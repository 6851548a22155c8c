"""Omniglot (Lake et al., 2015) from the official zips, with the Vinyals and the original splits.

Images are stored once per character at the requested size (28×28 by default), inverted so
strokes are bright on a black background (as in Snell et al.'s code); rotated classes of the
Vinyals split are the same images turned at sampling time, so they cost no storage.

References:
    Lake, Salakhutdinov & Tenenbaum, "Human-level concept learning through probabilistic
    program induction", Science 2015. Vinyals et al., "Matching Networks for One Shot
    Learning", NeurIPS 2016 (the character × rotation class split, as distributed with Snell
    et al.'s Prototypical Networks code).
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from advmeta.data._registry import CLASSIFICATION, FEWSHOT, DatasetInfo, register_info
from advmeta.data.base import ClassificationData, ClassSplit, FewShotDataset, check_size, locate
from advmeta.data.cache import load_or_build
from advmeta.data.download import Remote, downloads_enabled, fetch_all
from advmeta.data.roots import data_roots, is_writable_dir
from advmeta.errors import ConfigError, CorruptDataError, DataNotFoundError

DIRS = ("omniglot",)
ZIPS = ("images_background.zip", "images_evaluation.zip")
SCHEMES = ("vinyals", "original")
_MEMBER = re.compile(r"^(images_background|images_evaluation)/([^/]+)/(character\d+)/([^/]+\.png)$")
_LINE = re.compile(r"^([^/]+/character\d+)/rot(\d{3})$")
_OFFICIAL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
_SPLITS = "https://raw.githubusercontent.com/jakesnell/prototypical-networks/master/data/omniglot/splits/vinyals/"
_ZIP_MD5 = {"images_background.zip": "68d2efa1b9178cc56df9314c21c6e718",
            "images_evaluation.zip": "6b91aef0f799c5bb55b94e3f2daec811"}
_REMOTES = (
    *(Remote(z, (_OFFICIAL + z,), md5) for z, md5 in _ZIP_MD5.items()),
    # The Vinyals split as distributed with Snell et al.'s Prototypical Networks code.
    *(Remote(f"splits/vinyals/{s}.txt", (_SPLITS + f"{s}.txt",), md5)
      for s, md5 in (("train", "433d1fcc2b20dcee2983ceb524586f7f"), ("val", "78c535fa427b12b6596908376a0b3f34"),
                     ("test", "43534e6d5f9e74acbb7de1b4874abad8"))),
)


def _decode_png(blob: bytes, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as im:
        g = im.convert("L").resize((size, size), Image.Resampling.LANCZOS)
    return 255 - np.asarray(g, dtype=np.uint8)  # strokes bright on black


def _decode_zips(folder: Path, size: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from PIL import UnidentifiedImageError

    chars: list[str] = []
    sets: list[str] = []
    counts: list[int] = []
    images: list[np.ndarray] = []
    for zname in ZIPS:
        path = folder / zname
        try:
            with zipfile.ZipFile(path) as zf:
                groups: dict[str, list[str]] = {}
                for name in zf.namelist():
                    m = _MEMBER.match(name)
                    if m:
                        groups.setdefault(f"{m.group(2)}/{m.group(3)}", []).append(name)
                if not groups:
                    raise CorruptDataError(f"{path} holds no images_*/<Alphabet>/characterNN/*.png files")
                members = []
                for char in sorted(groups):
                    members += sorted(groups[char])
                    chars.append(char)
                    sets.append(zname.split("_")[1].split(".")[0])
                    counts.append(len(groups[char]))
                blobs = [zf.read(m) for m in members]  # reading checks every member's CRC
            with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
                # PIL releases the GIL while decoding and resizing: threads use every core
                images += pool.map(lambda b: _decode_png(b, size), blobs, chunksize=256)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, UnidentifiedImageError, OSError, SyntaxError,
                ValueError) as err:  # PIL raises the last three on bad image bytes
            if isinstance(err, FileNotFoundError):
                raise
            raise CorruptDataError(f"{path} is corrupt or truncated: {err}") from None
    arr = np.stack(images)[:, None]
    return {"images": arr}, {"characters": chars, "sets": sets, "counts": counts}


def _split_file(folder: Path, split: str, data_root: str | Path | None, download: bool) -> Path:
    rel = f"splits/vinyals/{split}.txt"
    places = [folder] + [r.path / "omniglot" for r in data_roots(data_root)]
    places = list(dict.fromkeys(places))
    for p in places:
        if (p / rel).is_file():
            return p / rel
    if downloads_enabled(download):
        dest = next((p for p in places if is_writable_dir(p)), places[-1])
        fetch_all([rel], dest, f"omniglot split file {rel}", [str(p) for p in places])
        return dest / rel
    raise DataNotFoundError(f"omniglot split file {rel} not found in any of: {'; '.join(map(str, places))} "
                            "(the official zips do not contain it; or use split_scheme='original')")


def _parse_split(path: Path, index: dict[str, int]) -> tuple[list[str], np.ndarray, np.ndarray]:
    names, chars, rots = [], [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        m = _LINE.match(line)
        if not m or int(m.group(2)) % 90 or m.group(1) not in index:
            raise CorruptDataError(f"{path}:{n}: {line!r} is not Alphabet/characterNN/rotDDD of a known character")
        names.append(line)
        chars.append(index[m.group(1)])
        rots.append(int(m.group(2)) // 90)
    return names, np.array(chars, dtype=np.int64), np.array(rots, dtype=np.int64)


def _load_base(data_root: str | Path | None, image_size: int | None, download: bool) -> tuple[Any, Path, int]:
    size = check_size(image_size, 28)
    folder = locate("omniglot", DIRS, ZIPS, data_root, download=download, remotes=ZIPS)
    entry = load_or_build(folder, "omniglot", {"size": size}, [folder / z for z in ZIPS],
                          lambda: _decode_zips(folder, size))
    return entry, folder, size


INFO = register_info(DatasetInfo("omniglot", rank=10, folders=DIRS, alternatives=(ZIPS,),
                                 classification="omniglot-cls", remotes=_REMOTES, known_md5=_ZIP_MD5))


@FEWSHOT.register("omniglot")
def load_omniglot(data_root: str | Path | None = None, image_size: int | None = None,
                  split_scheme: str | None = None, download: bool = True) -> FewShotDataset:
    """Omniglot as a few-shot dataset.

    Args:
        data_root: explicit data root (``<root>/omniglot/images_*.zip``).
        image_size: side of the square images (default 28).
        split_scheme: ``"vinyals"`` (default: 4,112 / 688 / 1,692 character×rotation classes from
            ``splits/vinyals/*.txt``) or ``"original"`` (background characters for train,
            evaluation characters for test, no rotations and no validation split).
        download: fetch missing zips / split files when the network allows.

    Returns:
        The dataset; images (1, size, size).
    """
    scheme = split_scheme or "vinyals"
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown omniglot split_scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    entry, folder, size = _load_base(data_root, image_size, download)
    base = entry.arrays["images"]
    counts = np.array(entry.meta["counts"], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    chars = entry.meta["characters"]
    splits: dict[str, ClassSplit] = {}
    files = [str(folder / z) for z in ZIPS]
    if scheme == "vinyals":
        index = {c: i for i, c in enumerate(chars)}
        for s in ("train", "val", "test"):
            path = _split_file(folder, s, data_root, download)
            files.append(str(path))
            names, ci, rot = _parse_split(path, index)
            splits[s] = ClassSplit(s, names, base, offsets[ci], counts[ci], rot)
    else:
        for s, which in (("train", "background"), ("test", "evaluation")):
            ci = np.array([i for i, w in enumerate(entry.meta["sets"]) if w == which], dtype=np.int64)
            splits[s] = ClassSplit(s, [chars[i] for i in ci], base, offsets[ci], counts[ci])
    info = {"root": str(folder), "files": files, "checksums": entry.checksums, "cache": str(entry.path),
            "cache_note": entry.note, "decode_seconds": entry.meta.get("build_seconds")}
    return FewShotDataset("omniglot", splits, scheme, info)


@CLASSIFICATION.register("omniglot-cls")
def load_omniglot_cls(data_root: str | Path | None = None, image_size: int | None = None,
                      download: bool = True, test_fraction: float = 0.2) -> ClassificationData:
    """Omniglot's 964 background characters as a classification set.

    The last ``test_fraction`` of each character's drawings (4 of 20 by default) are held out
    for testing [choice].
    """
    entry, folder, _ = _load_base(data_root, image_size, download)
    base = entry.arrays["images"]
    counts = np.array(entry.meta["counts"])
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    tr, te, ytr, yte = [], [], [], []
    names: list[str] = []
    for c, (o, n, w) in enumerate(zip(offsets, counts, entry.meta["sets"], strict=True)):
        if w != "background":
            continue
        label = len(names)
        names.append(entry.meta["characters"][c])
        n_test = max(1, int(round(n * test_fraction)))
        tr.append(np.arange(o, o + n - n_test))
        te.append(np.arange(o + n - n_test, o + n))
        ytr += [label] * (n - n_test)
        yte += [label] * n_test
    return ClassificationData("omniglot-cls", base[np.concatenate(tr)], np.array(ytr, dtype=np.int64),
                              base[np.concatenate(te)], np.array(yte, dtype=np.int64), len(names), names,
                              {"root": str(folder), "cache": str(entry.path), "cache_note": entry.note})
