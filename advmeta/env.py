"""The runtime environment: devices, threads and the versions recorded in every result row."""

from __future__ import annotations

import importlib.metadata
import os
import platform

import torch

from advmeta.errors import ResourceError


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device for ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises:
        ResourceError: a CUDA device was asked for and none exists.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ResourceError(f"device {device!r} was requested but this machine has no CUDA GPU")
        dev = torch.device(device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ResourceError(f"device {device!r} does not exist ({torch.cuda.device_count()} GPUs)")
        return dev
    if device == "cpu":
        return torch.device("cpu")
    raise ResourceError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def set_threads(n: int | None = None) -> int:
    """Match torch's intra-op threads to the CPUs this process was given (``OMP_NUM_THREADS``)."""
    if n is None:
        n = int(os.environ.get("OMP_NUM_THREADS", "0")) or (os.cpu_count() or 1)
    n = max(1, n)
    torch.set_num_threads(n)
    return n


def versions() -> dict[str, str]:
    """Versions of Python and the packages that determine a result."""
    out = {"python": platform.python_version()}
    for pkg in ("advmeta", "torch", "torchvision", "numpy", "ray"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def provenance(device: str | None = None) -> dict[str, str]:
    """The provenance columns of a result row (``advmeta_version`` … ``created_at``, and ``device``
    when given): the versions that determine it and the time of writing (UTC)."""
    import datetime as _dt

    import torch

    ver = versions()
    out = {"advmeta_version": ver["advmeta"], "advmeta_source": source_hash(), "torch_version": ver["torch"],
           "ray_version": ver["ray"], "python_version": ver["python"], "torch_threads": str(torch.get_num_threads())}
    if device is not None:
        out["device"] = device
    return {**out, "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


_SOURCE: list[str] = []


def source_hash() -> str:
    """SHA-256 (first 12 hex digits) of advmeta's own source files — the package, its Ray layer and
    its command line, as installed: the code that wrote a row (the version string stays 0.1.0
    across commits; a change of one line of an attack changes this)."""
    if not _SOURCE:
        import hashlib
        from importlib import util
        from pathlib import Path

        h = hashlib.sha256()
        roots = [Path(__file__).resolve().parent]
        for name in ("advmeta.tune", "advmeta.cli"):
            spec = util.find_spec(name)
            if spec is not None and spec.submodule_search_locations:
                roots.append(Path(list(spec.submodule_search_locations)[0]).resolve())
        for root in dict.fromkeys(roots):
            for path in sorted(root.rglob("*.py")):
                h.update(str(path.relative_to(root.parent)).encode())
                h.update(path.read_bytes())
        _SOURCE.append(h.hexdigest()[:12])
    return _SOURCE[0]


_ALLOCATOR_CONFIGURED = False


def configure_allocator() -> bool:
    """Keep freed memory in the process instead of returning it to the OS (glibc only).

    Episode batches, activations and attack buffers are large (MBs) and short-lived. glibc
    serves such blocks with fresh ``mmap`` pages and unmaps them on free, so every batch pays
    first-touch page faults: measured here, converting one meta-batch of uint8 images to float
    took 19 ms instead of 4.7 ms, the same effect tcmalloc had (docs/performance.md#allocator). Raising the
    mmap and trim thresholds lets the heap reuse those pages. Idempotent; a no-op (returning
    False) where glibc's ``mallopt`` is unavailable.
    """
    global _ALLOCATOR_CONFIGURED
    if _ALLOCATOR_CONFIGURED:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 31))
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_CONFIGURED = ok
    return ok
