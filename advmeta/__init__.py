"""advmeta: adversarially robust few-shot meta-learning — the plain-PyTorch core.

This package never imports Ray or Typer; those live in :mod:`advmeta.tune` and
:mod:`advmeta.cli`, which are thin shells over it.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from advmeta.eps import format_eps, parse_eps
from advmeta.errors import AdvmetaError, ConfigError, CorruptDataError, DataNotFoundError

__all__ = [
    "AdvmetaError",
    "ConfigError",
    "CorruptDataError",
    "DataNotFoundError",
    "__version__",
    "evaluate_checkpoint",
    "evaluate_model",
    "format_eps",
    "parse_eps",
]


_LAZY = {"evaluate_model": "advmeta.model_eval", "evaluate_checkpoint": "advmeta.model_eval"}


def __getattr__(name: str) -> Any:
    # PEP 562: ``advmeta.evaluate_model`` is imported on first use, so ``import advmeta`` stays light
    # (no torch) and the root package, which the modules below import, never imports them back.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'advmeta' has no attribute {name!r}")
