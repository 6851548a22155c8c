"""Decode once: uint8 array caches keyed by the source files' content, memory-mapped on reuse.

A cache entry is a folder ``<kind>-<key>/`` holding one ``.npy`` per array and ``meta.json``.
``key`` hashes the *content* (md5) of every source file plus the build parameters (image size,
format version), so a copied or re-downloaded dataset reuses its cache. Hashing thousands of
JPEGs on every run would dominate start-up, so a small pointer file keyed by the sources'
(name, size, mtime) fingerprint maps straight to the content key: the checksums are computed
once per version of the files, and a warm start costs one ``stat`` per source file.
Entries and pointers are written to a temporary name and moved into place with
``os.replace``, so concurrent workers never see half a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advmeta.data.roots import cache_dirs, writable_cache_dir

FORMAT_VERSION = 1

Builder = Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]]


@dataclass
class CacheEntry:
    """A loaded cache entry: memory-mapped arrays plus their metadata."""

    path: Path
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    built: bool = False  # True when this call decoded the sources
    note: str = ""  # where the cache lives and why
    seconds: float = 0.0  # time spent decoding (0 on reuse)
    checksums: dict[str, str] = field(default_factory=dict)


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    """The md5 hex digest of a file, read in chunks."""
    h = hashlib.md5()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except IsADirectoryError:
        from advmeta.errors import CorruptDataError

        raise CorruptDataError(f"{path} is a folder, not the file (a zip archive) expected there; remove it or "
                               "put the downloaded file in its place") from None
    return h.hexdigest()


def _stat_fingerprint(base: Path, sources: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in sources:
        st = p.stat()
        h.update(f"{p.relative_to(base) if p.is_relative_to(base) else p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _content_key(kind: str, params: dict[str, Any], checksums: dict[str, str]) -> str:
    blob = json.dumps({"v": FORMAT_VERSION, "kind": kind, "params": params, "sources": checksums}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    from advmeta.atomic import write_text_atomic

    write_text_atomic(path, text)


def _open_entry(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Memory-map an entry; ``None`` when it is absent or damaged (then it is rebuilt)."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}
    except (OSError, ValueError, KeyError):
        return None
    return arrays, meta


def _write_entry(dest: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".tmp-"))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; caches may be shared by a group
    try:
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        try:
            os.replace(tmp, dest)
        except OSError:
            if not (dest / "meta.json").exists():  # not a concurrent writer that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_or_build(
    dataset_dir: Path,
    kind: str,
    params: dict[str, Any],
    sources: Sequence[Path],
    build: Builder,
    checksum: Callable[[Path], str] = file_md5,
) -> CacheEntry:
    """The cached arrays of ``kind`` built from ``sources``; decoded by ``build`` only once.

    Args:
        dataset_dir: the folder of the source data (the cache goes next to it when writable).
        kind: a short name of what is cached, e.g. ``"omniglot"``.
        params: build parameters that change the arrays (image size, ...); part of the key.
        sources: every file the arrays are built from.
        build: decodes the sources; returns (arrays, metadata). Called only on a cache miss.
        checksum: content checksum of one source file (md5 by default).

    Returns:
        The entry, its arrays memory-mapped read-only.
    """
    stat_fp = _stat_fingerprint(dataset_dir, sources)
    # the pointer names (files, build parameters); the entry it points to is keyed by content
    ptr_key = hashlib.sha256(json.dumps([FORMAT_VERSION, stat_fp, params], sort_keys=True).encode()).hexdigest()
    pointer_name = f"{kind}-stat-{ptr_key[:20]}.key"
    dirs = cache_dirs(dataset_dir)
    for d in dirs:  # warm start: no hashing at all
        ptr = d / pointer_name
        if ptr.is_file():
            key = ptr.read_text().strip()
            opened = _open_entry(d / f"{kind}-{key[:20]}")
            if opened is not None:
                arrays, meta = opened
                return CacheEntry(d / f"{kind}-{key[:20]}", arrays, meta, note=f"cache {d}",
                                  checksums=meta.get("checksums", {}))
    checksums = {str(p.relative_to(dataset_dir) if p.is_relative_to(dataset_dir) else p): checksum(p)
                 for p in sources}
    key = _content_key(kind, params, checksums)
    out_dir, why = writable_cache_dir(dataset_dir)
    for d in dirs:
        opened = _open_entry(d / f"{kind}-{key[:20]}")
        if opened is not None:
            _try_pointer(out_dir / pointer_name, key)
            arrays, meta = opened
            return CacheEntry(d / f"{kind}-{key[:20]}", arrays, meta, note=f"cache {d}", checksums=checksums)
    dest = out_dir / f"{kind}-{key[:20]}"
    with _build_lock(out_dir / f"{kind}-{key[:20]}.lock"):
        # several workers (e.g. Ray trials) starting together: one decodes, the rest wait for it
        opened = _open_entry(dest)
        if opened is not None:
            _try_pointer(out_dir / pointer_name, key)
            return CacheEntry(dest, opened[0], opened[1], note=f"cache {out_dir}", checksums=checksums)
        t0 = time.perf_counter()
        arrays, meta = build()
        seconds = time.perf_counter() - t0
        meta = dict(meta, arrays=sorted(arrays), kind=kind, params=params, checksums=checksums,
                    build_seconds=round(seconds, 3), format_version=FORMAT_VERSION)
        _write_entry(dest, arrays, meta)
        _try_pointer(out_dir / pointer_name, key)
    opened = _open_entry(dest)
    assert opened is not None, f"cache entry {dest} unreadable right after writing it"
    return CacheEntry(dest, opened[0], opened[1], built=True, note=f"cache {out_dir}, {why}",
                      seconds=seconds, checksums=checksums)


@contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (a no-op where ``fcntl`` does not exist)."""
    try:
        import fcntl
    except ImportError:  # Windows: concurrent builders just race; os.replace keeps it safe
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


exclusive_lock = _build_lock
"""An exclusive advisory lock on a file, for any cache built once by whichever process needs it first."""


def _try_pointer(path: Path, key: str) -> None:
    try:
        _atomic_write_text(path, key + "\n")
    except OSError:  # a read-only cache folder only costs re-hashing next time
        pass
