"""The registries of dataset loaders (kept in a ``_`` module so discovery does not import it twice)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from advmeta.registry import Registry

#: Few-shot datasets: ``name -> loader(root_candidates, image_size, split_scheme, download) -> FewShotDataset``.
FEWSHOT: Registry[Callable[..., Any]] = Registry("dataset", "advmeta.data")

#: Plain classification sets: ``name -> loader(...) -> ClassificationData``.
CLASSIFICATION: Registry[Callable[..., Any]] = Registry("classification dataset", "advmeta.data")
