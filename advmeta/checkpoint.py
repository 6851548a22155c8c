"""Checkpoints: atomic writes and the state that makes a resumed run identical to an unbroken one.

A checkpoint is a ``torch.save`` dict with the training configuration, the learner's
hyper-parameters, the network and optimiser states, the iteration, the RNG states and the
metrics so far. Writes go through a temporary file and an atomic rename, so a crash never
leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import os
import random
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


def load(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint dict; :class:`CorruptDataError` when the file is not one of ours."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as err:  # a truncated or foreign file
        raise CorruptDataError(f"checkpoint {path} could not be read: {err}") from None
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
