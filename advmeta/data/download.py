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


#: Every downloadable file by file name, as each dataset module registers its record
#: (:func:`advmeta.data._registry.register_info`).
REMOTES: dict[str, Remote] = {}


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
        names: file names of registered remotes (keys of :data:`REMOTES`).
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
