"""advmeta: adversarially robust few-shot meta-learning — the plain-PyTorch core.

This package never imports Ray or Typer; those live in :mod:`advmeta.tune` and
:mod:`advmeta.cli`, which are thin shells over it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from advmeta.eps import format_eps, parse_eps
from advmeta.errors import AdvmetaError, ConfigError, CorruptDataError, DataNotFoundError

__all__ = [
    "AdvmetaError",
    "ConfigError",
    "CorruptDataError",
    "DataNotFoundError",
    "__version__",
    "format_eps",
    "parse_eps",
]
