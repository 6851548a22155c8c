"""The registries of dataset loaders (kept in a ``_`` module so discovery does not import it twice)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from advmeta.registry import Registry

if TYPE_CHECKING:
    from advmeta.data.base import ClassificationData, FewShotDataset

#: Few-shot datasets: ``name -> loader(root_candidates, image_size, split_scheme, download) -> FewShotDataset``.
FEWSHOT: Registry[Callable[..., FewShotDataset]] = Registry("dataset", "advmeta.data")

#: Plain classification sets: ``name -> loader(...) -> ClassificationData``.
CLASSIFICATION: Registry[Callable[..., ClassificationData]] = Registry("classification dataset", "advmeta.data")
