"""Atomic file writes: write a temporary file beside the target, then rename it over the target.

A reader sees the old file or the new one, never half of one, and a crash leaves at most a
hidden ``.<name>.*.tmp`` file. The result gets the permissions a plain ``open(path, "w")``
would give (0666 less the umask): ``mkstemp`` creates its files private (0600), which would
hide results from the other users of a shared cluster folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on a clean exit it replaces ``path`` (parents created).

    Example::

        with atomic_path("results/summary.parquet") as tmp:
            frame.to_parquet(tmp)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """``Path(path).write_text(text)``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
