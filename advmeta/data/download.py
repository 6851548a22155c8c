"""Fetching missing files from the official sources, verified by md5.

Nothing here is reachable from a machine without internet access: a failed download becomes a
one-line :class:`DataNotFoundError` naming the files expected and every place looked.
Set ``ADVMETA_NO_DOWNLOAD=1`` (or pass ``download=False`` to a loader) to never try.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from advmeta.atomic import atomic_path
from advmeta.errors import CorruptDataError, DataNotFoundError

TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Remote:
    """One downloadable file: mirrors tried in order, its md5 (None: unknown) and what to do with it."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None
    extract: bool = False  # a .tar.gz unpacked into the destination folder


_OMNIGLOT = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
_SPLITS = "https://raw.githubusercontent.com/jakesnell/prototypical-networks/master/data/omniglot/splits/vinyals/"
_TORONTO = ("https://www.cs.toronto.edu/~kriz/", "https://cave.cs.toronto.edu/kriz/")

REMOTES: dict[str, Remote] = {
    "images_background.zip": Remote("images_background.zip", (_OMNIGLOT + "images_background.zip",),
                                    "68d2efa1b9178cc56df9314c21c6e718"),
    "images_evaluation.zip": Remote("images_evaluation.zip", (_OMNIGLOT + "images_evaluation.zip",),
                                    "6b91aef0f799c5bb55b94e3f2daec811"),
    # The Vinyals split as distributed with Snell et al.'s Prototypical Networks code.
    **{f"splits/vinyals/{s}.txt": Remote(f"splits/vinyals/{s}.txt", (_SPLITS + f"{s}.txt",), md5)
       for s, md5 in (("train", "433d1fcc2b20dcee2983ceb524586f7f"), ("val", "78c535fa427b12b6596908376a0b3f34"),
                      ("test", "43534e6d5f9e74acbb7de1b4874abad8"))},
    "cifar-100-python.tar.gz": Remote("cifar-100-python.tar.gz", tuple(u + "cifar-100-python.tar.gz" for u in _TORONTO),
                                      "eb9058c3a382ffc7106e4002c42a8d85", extract=True),
    "cifar-10-python.tar.gz": Remote("cifar-10-python.tar.gz", tuple(u + "cifar-10-python.tar.gz" for u in _TORONTO),
                                     "c58f30108f718f92721af3b95e74349a", extract=True),
}

#: md5 of the official files once unpacked (for ``advmeta data check``); a mismatch is reported,
#: not fatal, because repacked copies are common.
KNOWN_MD5: dict[str, str] = {
    "images_background.zip": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation.zip": "6b91aef0f799c5bb55b94e3f2daec811",
    "cifar-100-python/train": "16019d7e3df5f24257cddd939b257f8d",
    "cifar-100-python/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "cifar-100-python/meta": "7973b15100ade9c7d40fb424638fde48",
    "cifar-10-batches-py/data_batch_1": "c99cafc152244af753f735de768cd75f",
    "cifar-10-batches-py/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "cifar-10-batches-py/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "cifar-10-batches-py/data_batch_4": "634d18415352ddfa80567beed471001a",
    "cifar-10-batches-py/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "cifar-10-batches-py/test_batch": "40351d587109b95175f43aff81a1287e",
    "cifar-10-batches-py/batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}


def downloads_enabled(download: bool = True) -> bool:
    """Whether to try the network (``download`` and not ``$ADVMETA_NO_DOWNLOAD``)."""
    return download and os.environ.get("ADVMETA_NO_DOWNLOAD", "") in ("", "0")


def fetch(remote: Remote, dest_dir: Path) -> Path:
    """Download ``remote`` into ``dest_dir`` (unpacking archives there), verifying its md5.

    Returns:
        The downloaded file (or the archive, already unpacked next to it).

    Raises:
        OSError: every mirror failed (network unreachable, HTTP error).
        CorruptDataError: the bytes arrived but their md5 is wrong.
    """
    target = dest_dir / remote.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in remote.urls:
        try:
            # a failed or corrupt download leaves nothing behind; a good one appears whole
            with atomic_path(target) as tmp:
                h = hashlib.md5()
                with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:  # noqa: S310
                    while block := resp.read(1 << 20):
                        h.update(block)
                        out.write(block)
                if remote.md5 is not None and h.hexdigest() != remote.md5:
                    raise CorruptDataError(f"downloaded {url} has md5 {h.hexdigest()}, expected {remote.md5}")
            break
        except (OSError, urllib.error.URLError, ValueError) as err:
            errors.append(f"{url}: {getattr(err, 'reason', err)}")
    else:
        raise OSError("; ".join(errors))
    if remote.extract:
        _extract(target, dest_dir)
    return target


def _extract(archive: Path, dest_dir: Path) -> None:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(dest_dir, filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise CorruptDataError(f"cannot unpack {archive}: {err}") from err


def fetch_all(names: Sequence[str], dest_dir: Path, expected: str, looked: Sequence[str]) -> None:
    """Fetch every remote in ``names`` into ``dest_dir`` or raise the one-line not-found error.

    Args:
        names: keys of :data:`REMOTES`.
        dest_dir: the dataset folder to fill.
        expected: the files the caller needs, for the message.
        looked: every place searched, for the message.
    """
    try:
        for name in names:
            fetch(REMOTES[name], dest_dir)
    except OSError as err:
        raise DataNotFoundError(
            f"{expected} not found in any of: {'; '.join(looked)}; download to {dest_dir} failed ({err})"
        ) from None
