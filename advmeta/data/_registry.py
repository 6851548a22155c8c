"""The registries of dataset loaders and of what is known about each dataset's files.

Kept in a ``_`` module so discovery does not import it twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from advmeta.data.download import REMOTES, Remote
from advmeta.registry import Registry

if TYPE_CHECKING:
    from advmeta.data.base import ClassificationData, FewShotDataset

#: Few-shot datasets: ``name -> loader(root_candidates, image_size, split_scheme, download) -> FewShotDataset``.
FEWSHOT: Registry[Callable[..., FewShotDataset]] = Registry("dataset", "advmeta.data")

#: Plain classification sets: ``name -> loader(...) -> ClassificationData``.
CLASSIFICATION: Registry[Callable[..., ClassificationData]] = Registry("classification dataset", "advmeta.data")


@dataclass(frozen=True)
class DatasetInfo:
    """Where one dataset's files sit, how to fetch and verify them, and how it is used.

    A real dataset is found under a data root as ``<root>/<folder>/`` (or the root itself, tried
    last) holding every file of one of ``alternatives``. ``advmeta data list`` shows the records
    by ``rank``; the default dataset is the first real few-shot one found, by rank, else the
    built-in one.

    Attributes:
        name: the registered loader it describes (few-shot or classification).
        rank: place in ``advmeta data list`` and in the choice of the default dataset (lower first).
        folders: folder names tried under each data root.
        alternatives: sets of relative paths; any one set found whole is a complete copy.
        classification: the plain classification set an L2L trainer uses alongside it (None: none).
        remotes: its downloadable files (named by file name to :func:`advmeta.data.download.fetch_all`).
        known_md5: md5 of the official unpacked files, by file name (``folder/file`` where the name
            alone is ambiguous); ``advmeta data check`` reports a mismatch, it is not fatal.
        built_in: needs no files (always found, the fallback default).
        check: for a built-in dataset, what ``advmeta data check`` runs instead of reading files
            (returns the lines to show).
    """

    name: str
    rank: int
    folders: tuple[str, ...] = ()
    alternatives: tuple[tuple[str, ...], ...] = ()
    classification: str | None = None
    remotes: tuple[Remote, ...] = ()
    known_md5: Mapping[str, str] = field(default_factory=dict)
    built_in: bool = False
    check: Callable[[], list[str]] | None = None


#: Every dataset's :class:`DatasetInfo`: ``name -> record``.
DATASET_INFO: Registry[DatasetInfo] = Registry("dataset record", "advmeta.data")


def register_info(info: DatasetInfo) -> DatasetInfo:
    """Register ``info`` under its name, and its remotes where :func:`~advmeta.data.download.fetch_all` finds them.

    Raises:
        ValueError: the name is registered twice, or another dataset downloads a file of the same name differently.
    """
    for remote in info.remotes:
        if REMOTES.setdefault(remote.filename, remote) != remote:
            raise ValueError(f"{info.name}: another dataset downloads {remote.filename!r} differently")
    return DATASET_INFO.register(info.name)(info)
