"""N-way K-shot episodes that are a pure function of (dataset, split, seed, episode index).

Each episode draws its own generator from ``SeedSequence([seed, index, H])`` where ``H`` is a
stable hash (SHA-256, never Python's salted ``hash()``) of the dataset and split names, so
episode 17 is the same on every machine and in every worker: generation can be sharded by index
and every method is scored on identical episodes. Sampling reads uint8 images from the
(memory-mapped) array cache; it never decodes an image file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from advmeta.data.base import ClassSplit, FewShotDataset
from advmeta.errors import ConfigError


@dataclass(frozen=True)
class EpisodeSpec:
    """The shape of an episode.

    Attributes:
        n_way: classes per episode (N).
        k_shot: labelled support images per class (K).
        q_query: query images per class (Q).
        n_unlabeled: extra unlabeled images per class (U), for R-MAML's augmentation.
    """

    n_way: int = 5
    k_shot: int = 1
    q_query: int = 15
    n_unlabeled: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int | np.integer) or isinstance(v, bool):
                raise ConfigError(f"EpisodeSpec.{f.name} must be an integer, got {v!r}")
        if self.n_way < 1 or self.k_shot < 1 or self.q_query < 0 or self.n_unlabeled < 0:
            raise ConfigError(f"invalid episode shape {self}: need n_way >= 1, k_shot >= 1, q_query >= 0, "
                              "n_unlabeled >= 0")

    @property
    def per_class(self) -> int:
        """Images drawn per class: K + Q + U."""
        return self.k_shot + self.q_query + self.n_unlabeled


@dataclass(frozen=True)
class Episodes:
    """A batch of T episodes (tasks).

    Shape:
        support_x (T, N*K, C, H, W) float in [0, 1] (or uint8 in [0, 255]); support_y (T, N*K) int64
        in [0, N); query_x (T, N*Q, C, H, W); query_y (T, N*Q); classes (T, N): label j of task t
        is split-level class ``classes[t, j]``; index (T,); unlabeled_x (T, N*U, C, H, W) or None.
        Within a task images are ordered class-major: label 0's K images, then label 1's, ...
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    classes: Tensor
    index: Tensor
    unlabeled_x: Tensor | None = None

    def to(self, device: torch.device | str) -> Episodes:
        """The same episodes on ``device``."""
        moved: dict[str, Any] = {f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                                 for f in fields(self)}  # each field's own type (Tensor, or None for unlabeled_x)
        return Episodes(**moved)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def task(self, t: int) -> Episodes:
        """Task ``t`` alone, as a batch of one (T = 1)."""
        sliced: dict[str, Any] = {f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[t:t + 1]
                                  for f in fields(self)}  # each field's own type (Tensor, or None for unlabeled_x)
        return Episodes(**sliced)


def stable_hash(*parts: str) -> int:
    """A 64-bit hash of strings that is the same in every process and on every machine."""
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "little")


class FixedEpisodes(Protocol):
    """Episodes fixed in advance (:class:`advmeta.data.manifest.Manifest`)."""

    @property
    def origin(self) -> str:
        """Where they were read from (for messages)."""
        ...

    def indices(self, dataset: FewShotDataset, split: str, spec: EpisodeSpec) -> tuple[np.ndarray, np.ndarray]:
        """Per episode, the split-level classes (E, N) and image indices (E, N, K + Q) in ``dataset``;
        :class:`ConfigError` when they are not episodes of this dataset, split and shape."""
        ...


class EpisodeSampler:
    """Draws episodes of one split of a dataset.

    Classes of an episode are distinct; a class's support, query and unlabeled images are
    distinct images; which class gets label j is a uniformly random permutation.

    Args:
        dataset: the few-shot dataset.
        split: "train", "val" or "test".
        spec: the episode shape.
        seed: the experiment's episode seed.
        manifest: standard episodes by identity (a :class:`advmeta.data.manifest.Manifest`):
            episode ``i`` is the manifest's ``i``-th, whatever the seed; ``spec`` and ``split`` must
            be the manifest's.

    References:
        Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016 (episodic
        sampling). Unlike learn2learn / torchmeta, images are read from an in-memory uint8 array
        and the randomness is keyed by episode index, not drawn from a shared stream.
    """

    def __init__(self, dataset: FewShotDataset, split: str, spec: EpisodeSpec, seed: int = 0,
                 manifest: FixedEpisodes | None = None) -> None:
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise ConfigError(f"episode seed must be a non-negative integer, got {seed!r}")
        self.dataset = dataset
        self.split_name = split
        self.split: ClassSplit = dataset.split(split)
        self.spec = spec
        self.seed = int(seed)
        self._salt = stable_hash(dataset.name, split)
        counts = self.split.counts()
        if spec.n_way > self.split.num_classes:
            raise ConfigError(f"{dataset.name}/{split} has {self.split.num_classes} classes; "
                              f"cannot draw a {spec.n_way}-way episode")
        if spec.per_class > counts.min():
            c = int(counts.argmin())
            raise ConfigError(f"{dataset.name}/{split} class {self.split.class_names[c]!r} has {counts[c]} images; "
                              f"an episode needs k_shot + q_query + n_unlabeled = {spec.per_class} per class")
        self._counts = counts
        self._max = int(counts.max())
        self.manifest = manifest
        self._fixed = manifest.indices(dataset, split, spec) if manifest is not None else None

    def rng(self, index: int) -> np.random.Generator:
        """The generator of episode ``index`` (a pure function of dataset, split, seed, index)."""
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, int(index), self._salt])))

    def draw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Which images form episode ``index``, without reading them.

        Returns:
            classes (N,) split-level class ids in label order, and image indices
            (N, K + Q + U) within each class (support first, then query, then unlabeled).
        """
        if int(index) < 0:
            raise ConfigError(f"episode index must be non-negative, got {index}")
        if self._fixed is not None:
            if int(index) >= len(self._fixed[0]):
                raise ConfigError(f"episode {index} is beyond the {len(self._fixed[0])} episodes of the manifest "
                                  f"{self.manifest.origin if self.manifest is not None else ''}")
            return self._fixed[0][int(index)], self._fixed[1][int(index)]
        rng = self.rng(index)
        # argsort of uniform keys: a uniformly random ordered subset (= random label assignment);
        # random() streams are stable across NumPy versions, unlike Generator.choice.
        classes = np.argsort(rng.random(self.split.num_classes), kind="stable")[: self.spec.n_way]
        keys = rng.random((self.spec.n_way, self._max))
        keys[np.arange(self._max)[None, :] >= self._counts[classes][:, None]] = np.inf
        idx = np.argsort(keys, axis=1, kind="stable")[:, : self.spec.per_class]
        return classes, idx

    def sample_numpy(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """Episodes ``indices`` as uint8 / int64 numpy arrays (see :class:`Episodes` for shapes)."""
        spec, t = self.spec, len(indices)
        if t == 0:
            raise ConfigError("sample() needs at least one episode index")
        draws = [self.draw(i) for i in indices]
        classes = np.stack([d[0] for d in draws])  # (T, N)
        idx = np.stack([d[1] for d in draws]).reshape(t * spec.n_way, -1)  # (T*N, K+Q+U)
        flat = classes.reshape(-1)
        k, q, u, n = spec.k_shot, spec.q_query, spec.n_unlabeled, spec.n_way

        def part(lo: int, m: int) -> np.ndarray:
            # gathered straight into (T, N*m, C, H, W) order: no re-copy after the read
            imgs = self.split.gather(flat, idx[:, lo:lo + m])
            return imgs.reshape(t, n * m, *imgs.shape[2:])

        out = {
            "support_x": part(0, k),
            "support_y": np.tile(np.repeat(np.arange(n, dtype=np.int64), k), (t, 1)),
            "query_x": part(k, q),
            "query_y": np.tile(np.repeat(np.arange(n, dtype=np.int64), q), (t, 1)),
            "classes": classes.astype(np.int64),
            "index": np.asarray(indices, dtype=np.int64),
        }
        if u:
            out["unlabeled_x"] = part(k + q, u)
        return out

    def sample(self, indices: Sequence[int], device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> Episodes:
        """Episodes ``indices`` as tensors.

        Args:
            indices: episode indices (any non-negative integers; each is its own episode).
            device: where the tensors go (images are moved as uint8 and converted there).
            dtype: a floating dtype for images in [0, 1], or ``torch.uint8`` for raw values.

        Returns:
            The batch, T = len(indices).
        """
        if dtype != torch.uint8 and not dtype.is_floating_point:
            raise ConfigError(f"image dtype must be floating or torch.uint8, got {dtype}")
        dev = torch.device(device) if device is not None else torch.device("cpu")
        arrs = self.sample_numpy(list(indices))
        out = {}
        for name, a in arrs.items():
            if name.endswith("_x") and dtype == torch.float32 and dev.type == "cpu":
                # NumPy's single-threaded, cache-blocked cast-and-divide: torch's intra-op threads
                # cost more than they save on tensors this small, badly so on a busy machine.
                # Same IEEE float32 x / 255 as the device path below.
                x = torch.from_numpy(np.divide(a, np.float32(255), dtype=np.float32))
            else:
                x = torch.from_numpy(np.ascontiguousarray(a))
                if dev.type != "cpu":
                    x = x.to(dev, non_blocking=True)  # move uint8 (4x fewer bytes), convert there
                if name.endswith("_x") and dtype != torch.uint8:
                    x = x.to(dtype).div_(255)
            out[name] = x
        return Episodes(**out)

    def __getitem__(self, index: int) -> Episodes:
        return self.sample([index])
