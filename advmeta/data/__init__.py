"""Few-shot datasets and reproducible episodes.

Real datasets (Omniglot, mini-ImageNet, CIFAR-FS, FC100; CIFAR-10/100 for classification) are
decoded once into a uint8 array cache and memory-mapped afterwards; ``glyphs`` is a built-in
procedural fallback. An episode is a pure function of (dataset, split, seed, episode index).

Example:
    >>> ds = load_fewshot("omniglot")                       # doctest: +SKIP
    >>> sampler = EpisodeSampler(ds, "train", EpisodeSpec(5, 1, 15), seed=0)  # doctest: +SKIP
    >>> ep = sampler.sample(range(4))                         # doctest: +SKIP
"""

from __future__ import annotations

from advmeta.data._registry import CLASSIFICATION, FEWSHOT, DatasetInfo, register_info
from advmeta.data.base import ClassificationData, ClassSplit, FewShotDataset
from advmeta.data.catalog import (
    classification_names,
    dataset_names,
    load_classification,
    load_fewshot,
    resolve_default_dataset,
)
from advmeta.data.episodes import Episodes, EpisodeSampler, EpisodeSpec, stable_hash
from advmeta.data.roots import data_roots, user_cache_dir

__all__ = [
    "CLASSIFICATION",
    "FEWSHOT",
    "DatasetInfo",
    "ClassSplit",
    "ClassificationData",
    "EpisodeSampler",
    "EpisodeSpec",
    "Episodes",
    "FewShotDataset",
    "classification_names",
    "data_roots",
    "dataset_names",
    "load_classification",
    "load_fewshot",
    "register_info",
    "resolve_default_dataset",
    "stable_hash",
    "user_cache_dir",
]
