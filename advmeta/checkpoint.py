"""Checkpoints: atomic writes and the state that makes a resumed run identical to an unbroken one.

A checkpoint is a ``torch.save`` dict with the training configuration, the learner's
hyper-parameters, the network and optimiser states, the iteration, the RNG states and the
metrics so far. Writes go through a temporary file and an atomic rename, so a crash never
leaves a half-written checkpoint behind.

Every file is read with ``torch.load(..., weights_only=True)`` (:func:`load_tensors`): tensors,
numbers, strings, lists, tuples, dicts and NumPy arrays of plain dtypes, never an arbitrary
Python object. A checkpoint or cache received from someone else therefore cannot run code when
advmeta reads it: a file that names another callable is refused (:class:`UnsafeFileError`)
without being unpickled. The configurations are plain values inside the file (JSON-able dicts).
"""

from __future__ import annotations

import os
import pickle
import pickletools
import random
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advmeta.atomic import atomic_path
from advmeta.errors import CorruptDataError

FORMAT = 1


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``path`` through a temporary file in the same folder and a rename."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


class UnsafeFileError(CorruptDataError):
    """A file that would call Python code when unpickled (it is not tensors and plain values only)."""


def _numpy_globals() -> list[Any]:
    """What a NumPy array of a plain dtype unpickles through: array reconstruction, no user code
    (the global RNG state holds one; the GAIL expert cache holds trajectories as arrays)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return [_reconstruct, np.ndarray, np.dtype, *(getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType"))]


def _named_globals(path: str | os.PathLike[str]) -> list[str]:
    """The ``module.name`` callables a pickle (or a torch zip file's ``data.pkl``) names, read
    with :mod:`pickletools` (which never executes anything); empty when unreadable."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                data = zf.read(member) if member is not None else b""
        else:
            data = Path(path).read_bytes()
        names: list[str] = []
        strings: list[str] = []
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                names.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
        return list(dict.fromkeys(names))
    except Exception:  # noqa: BLE001 - only a better message is lost
        return []


def load_tensors(path: str | os.PathLike[str], map_location: str | torch.device = "cpu",
                 what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain values, never code.

    Args:
        path: the file.
        map_location: device the tensors load to.
        what: the kind of file, for messages ("checkpoint", "weights file", ...).

    Raises:
        FileNotFoundError: no file at ``path``.
        UnsafeFileError: the file names Python callables beyond tensors and plain values:
            unpickling it could run code, so it is refused without being unpickled.
        CorruptDataError: a truncated or foreign file.
    """
    try:
        with torch.serialization.safe_globals(_numpy_globals()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # a foreign file's noise
            return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError:
        # torch's weights-only unpickler stopped at a global (or an opcode) it does not allow:
        # nothing of the file ran. Name what it would have called.
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in _numpy_globals()}
        names = [n for n in _named_globals(path) if n not in allowed and not n.startswith(("torch.", "collections."))]
        if not names:
            raise CorruptDataError(f"{what} {path} could not be read: it is not a torch file of tensors and plain "
                                   "values") from None
        raise UnsafeFileError(f"refused to load {what} {path}: it is not tensors and plain values only (it names "
                              f"{', '.join(names[:3])}), so unpickling it could run code; advmeta loads files with "
                              "weights_only=True") from None
    except Exception as err:  # a truncated or foreign file
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CorruptDataError(f"{what} {path} could not be read ({type(err).__name__}: {first})") from None


def load(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint dict, read as tensors and plain values only (:func:`load_tensors`).

    Raises:
        UnsafeFileError: the file would run code when unpickled.
        CorruptDataError: the file is not one of ours.
    """
    state = load_tensors(path, map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CorruptDataError(f"{path} is not an advmeta checkpoint (format {FORMAT})")
    return state


def rng_state() -> dict[str, Any]:
    """The global RNG states (Python, NumPy, torch CPU and CUDA)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
