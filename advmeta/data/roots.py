"""Where datasets and their array caches live.

Data roots are searched in a fixed order: the explicit ``data_root`` (``--data-root``), then
``$ADVMETA_DATA``, then the per-user cache directory (``$XDG_CACHE_HOME/advmeta`` or
``~/.cache/advmeta``), which is also where downloads go when no earlier root is writable.
Decoded array caches go next to the data (``<dataset>/.advmeta_cache``) when that folder is
writable, otherwise in the per-user cache directory; ``$ADVMETA_CACHE`` overrides both.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

CACHE_DIRNAME = ".advmeta_cache"


@dataclass(frozen=True)
class Root:
    """One place searched for data, with where its path came from (for error messages)."""

    path: Path
    origin: str  # "--data-root", "$ADVMETA_DATA" or "user cache"

    def __str__(self) -> str:
        return f"{self.path} ({self.origin})"


def user_cache_dir() -> Path:
    """The per-user directory for downloads and caches (``$XDG_CACHE_HOME/advmeta``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "advmeta"


def data_roots(data_root: str | os.PathLike[str] | None = None) -> list[Root]:
    """The data roots to search, in precedence order, without duplicates.

    Args:
        data_root: an explicit root (the ``--data-root`` option); searched first.

    Returns:
        Roots in order: explicit, ``$ADVMETA_DATA``, per-user cache. Paths need not exist.
    """
    out: list[Root] = []
    if data_root is not None and str(data_root) != "":
        out.append(Root(Path(data_root).expanduser().resolve(), "--data-root"))
    env = os.environ.get("ADVMETA_DATA")
    if env:
        out.append(Root(Path(env).expanduser().resolve(), "$ADVMETA_DATA"))
    out.append(Root(user_cache_dir().resolve(), "user cache"))
    seen: set[Path] = set()
    unique = []
    for r in out:
        if r.path not in seen:
            seen.add(r.path)
            unique.append(r)
    return unique


def is_writable_dir(path: Path) -> bool:
    """Whether ``path`` (or its nearest existing parent) may be written to.

    Honours the permission bits even for root: root bypasses them, but a folder published
    read-only (``r-x``, like a shared data folder) is meant to stay untouched.
    """
    p = path
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    if not p.is_dir() or not os.access(p, os.W_OK):
        return False
    st = p.stat()
    if st.st_mode & stat.S_IWOTH:
        return True
    if st.st_uid == os.geteuid():
        return bool(st.st_mode & stat.S_IWUSR)
    if st.st_gid in os.getgroups() or st.st_gid == os.getegid():
        return bool(st.st_mode & stat.S_IWGRP)
    return os.geteuid() != 0  # os.access already said yes for a non-root user


_OVERRIDE: ContextVar[Path | None] = ContextVar("advmeta_cache_override", default=None)


def _override() -> Path | None:
    forced = _OVERRIDE.get()
    if forced is not None:
        return forced
    env = os.environ.get("ADVMETA_CACHE")
    return Path(env).expanduser().resolve() if env else None


@contextmanager
def cache_override(path: Path) -> Iterator[Path]:
    """Within the block, array caches are read from and written to ``path`` only.

    ``advmeta data check`` uses it with an empty folder to force a full decode.
    """
    token = _OVERRIDE.set(Path(path))
    try:
        yield Path(path)
    finally:
        _OVERRIDE.reset(token)


def cache_dirs(dataset_dir: Path) -> list[Path]:
    """Folders an array cache of ``dataset_dir`` is read from, in order (first is preferred).

    ``$ADVMETA_CACHE`` (or :func:`cache_override`), when set, is the only one.
    """
    forced = _override()
    if forced is not None:
        return [forced]
    return [dataset_dir / CACHE_DIRNAME, user_cache_dir() / "arrays"]


def writable_cache_dir(dataset_dir: Path) -> tuple[Path, str]:
    """The folder a new array cache of ``dataset_dir`` is written to, and why it was chosen."""
    forced = _override()
    if forced is not None:
        return forced, "$ADVMETA_CACHE"
    local = dataset_dir / CACHE_DIRNAME
    if is_writable_dir(local):
        return local, "next to the data"
    return user_cache_dir() / "arrays", f"per-user cache ({dataset_dir} is not writable)"
