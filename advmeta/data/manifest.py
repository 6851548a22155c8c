"""Standard test episodes: a manifest names every class and image of every episode, with a hash.

Two labs that evaluate on the same manifest evaluate on the same episodes, whatever their seeds,
their advmeta version or the order their dataset copy lists files in. A manifest is JSON (gzip-
compressed when its name ends in ``.gz``)::

    {"format": "advmeta-episodes/1", "dataset": "omniglot", "split": "test", "split_scheme": "vinyals",
     "n_way": 5, "k_shot": 1, "q_query": 15, "n_episodes": 600, "hash": "<sha256 hex>",
     "source": {how it was made: not hashed},
     "episodes": [{"classes": [N class names, in label order],
                   "support": [N lists of K image names], "query": [N lists of Q image names]}, ...]}

Identities are dataset-relative names: Omniglot classes ``Alphabet/characterNN/rotDDD`` (the
Vinyals split) and images ``Alphabet/characterNN/<file>.png`` (a rotated class shows the same files
turned); mini-ImageNet classes are wnids and images the file names of the Ravi & Larochelle CSVs
(``n0153282900000005.jpg``); other datasets' images are ``<class>#<j>``, the j-th image of the class
in the loader's order. The hash is SHA-256 of the canonical encoding (:meth:`Manifest.canonical`:
compact JSON with sorted keys of everything above but ``hash`` and ``source``); a file whose
content does not match its hash is refused.

Manifests for the test split of Omniglot and mini-ImageNet, 5-way 1- and 5-shot, 15 queries per
class, 600 episodes, ship with advmeta (:func:`builtin_manifests`; the commands that made them are
in each file's ``source``). The mini-ImageNet ones name images of the full dataset (600 per class).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from advmeta.data.base import ClassSplit, FewShotDataset
from advmeta.data.episodes import EpisodeSampler, EpisodeSpec
from advmeta.errors import ConfigError, CorruptDataError, DataNotFoundError

FORMAT = "advmeta-episodes/1"
BUILTIN_DIR = Path(__file__).resolve().parent / "manifests"

Names = tuple[tuple[str, ...], ...]  # per class of an episode, its image names


@dataclass(frozen=True)
class Manifest:
    """The episodes of a manifest, by identity.

    Attributes:
        dataset, split, split_scheme: where the episodes come from.
        n_way, k_shot, q_query: their shape (no unlabeled images).
        classes: per episode, the N class names in label order.
        support, query: per episode, per class, the K (Q) image names.
        source: how the manifest was made (command, seed, input files); not part of the hash.
        origin: where it was read from (a path or a built-in name), for messages.
    """

    dataset: str
    split: str
    split_scheme: str
    n_way: int
    k_shot: int
    q_query: int
    classes: tuple[tuple[str, ...], ...]
    support: tuple[Names, ...]
    query: tuple[Names, ...]
    source: Mapping[str, Any] = field(default_factory=dict)
    origin: str = ""

    def __len__(self) -> int:
        return len(self.classes)

    def content(self) -> dict[str, Any]:
        """Everything the hash covers."""
        return {"format": FORMAT, "dataset": self.dataset, "split": self.split, "split_scheme": self.split_scheme,
                "n_way": self.n_way, "k_shot": self.k_shot, "q_query": self.q_query, "n_episodes": len(self),
                "episodes": [{"classes": list(c), "support": [list(s) for s in sup], "query": [list(q) for q in qry]}
                             for c, sup, qry in zip(self.classes, self.support, self.query, strict=True)]}

    def canonical(self) -> bytes:
        """The canonical encoding: compact UTF-8 JSON with sorted keys of :meth:`content`."""
        return json.dumps(self.content(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @cached_property
    def hash(self) -> str:
        """SHA-256 (hex) of :meth:`canonical`: the ``episodes_hash`` of every row evaluated on it."""
        return hashlib.sha256(self.canonical()).hexdigest()

    @property
    def spec(self) -> EpisodeSpec:
        """The episode shape."""
        return EpisodeSpec(n_way=self.n_way, k_shot=self.k_shot, q_query=self.q_query)

    def indices(self, dataset: FewShotDataset, split: str, spec: EpisodeSpec) -> tuple[np.ndarray, np.ndarray]:
        """The episodes as :class:`EpisodeSampler` draws them in ``dataset`` (:func:`resolve`), after
        checking that they are of this dataset, split and shape (no unlabeled images).

        Raises:
            ConfigError: another dataset, split or shape. DataNotFoundError: an image it lacks.
        """
        check_compatible(self, dataset.name, split, spec.n_way, spec.k_shot)
        if (spec.q_query, spec.n_unlabeled) != (self.q_query, 0):
            raise ConfigError(f"episodes manifest {self.origin} has {self.q_query} queries per class and no "
                              f"unlabeled images; asked for {spec.q_query} and {spec.n_unlabeled}")
        return resolve(self, dataset)

    def describe(self) -> str:
        """``omniglot/test 5-way 1-shot 15-query, 600 episodes``."""
        return (f"{self.dataset}/{self.split} {self.n_way}-way {self.k_shot}-shot {self.q_query}-query, "
                f"{len(self)} episodes")

    def write(self, path: str | Path) -> Path:
        """Write the manifest (gzip when ``path`` ends in ``.gz``, reproducibly), atomically."""
        from advmeta.atomic import atomic_path

        doc = {**self.content(), "hash": self.hash, "source": dict(self.source)}
        text = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        with atomic_path(path) as tmp:
            tmp.write_bytes(gzip.compress(text, mtime=0) if str(path).endswith(".gz") else text)
        return Path(path)


def builtin_manifests() -> dict[str, Path]:
    """The manifests shipped with advmeta, by name (``omniglot-test-5way-1shot``, ...)."""
    return {p.name.split(".")[0]: p for p in sorted(BUILTIN_DIR.glob("*.json*"))}


def read_manifest(source: str | Path) -> Manifest:
    """A manifest from a file, or a built-in one by name (:func:`builtin_manifests`).

    Raises:
        DataNotFoundError: no such file or built-in name.
        CorruptDataError: not a manifest, malformed, or its content does not match its hash.
    """
    path = Path(source)
    builtins = builtin_manifests()
    if not path.is_file():
        if str(source) not in builtins:
            raise DataNotFoundError(f"episodes manifest {source}: no such file or built-in manifest (built-in: "
                                    f"{', '.join(builtins) or 'none'})")
        path = builtins[str(source)]
    try:
        raw = path.read_bytes()
        doc = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    except (OSError, EOFError, ValueError) as err:
        raise CorruptDataError(f"episodes manifest {source} is not readable JSON ({type(err).__name__})") from None
    m = _parse(doc, str(source))
    if doc.get("hash") != m.hash:
        raise CorruptDataError(f"episodes manifest {source}: its content does not match its hash "
                               f"({str(doc.get('hash'))[:16]}… recorded, {m.hash[:16]}… computed): edited or damaged")
    return m


def _parse(doc: Any, origin: str) -> Manifest:
    def bad(why: str) -> CorruptDataError:
        return CorruptDataError(f"episodes manifest {origin} is malformed: {why}")

    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise bad(f"no \"format\": \"{FORMAT}\"")
    try:
        shape = {k: int(doc[k]) for k in ("n_way", "k_shot", "q_query", "n_episodes")}
        head = {k: str(doc[k]) for k in ("dataset", "split", "split_scheme")}
        eps = doc["episodes"]
        classes = tuple(tuple(str(c) for c in e["classes"]) for e in eps)
        support = tuple(tuple(tuple(str(i) for i in s) for s in e["support"]) for e in eps)
        query = tuple(tuple(tuple(str(i) for i in q) for q in e["query"]) for e in eps)
    except (KeyError, TypeError, ValueError) as err:
        raise bad(f"{type(err).__name__}: {err}") from None
    n, k, q = shape["n_way"], shape["k_shot"], shape["q_query"]
    if n < 1 or k < 1 or q < 0 or len(classes) != shape["n_episodes"] or not classes:
        raise bad("bad shape or episode count")
    for e, (c, s, qq) in enumerate(zip(classes, support, query, strict=True)):
        if len(c) != n or len(set(c)) != n or len(s) != n or len(qq) != n:
            raise bad(f"episode {e} does not have {n} distinct classes")
        for j in range(n):
            if len(s[j]) != k or len(qq[j]) != q or len(set(s[j]) | set(qq[j])) != k + q:
                raise bad(f"episode {e}, class {c[j]}: not {k} + {q} distinct images")
    source: dict[str, Any] = doc["source"] if isinstance(doc.get("source"), dict) else {}
    return Manifest(head["dataset"], head["split"], head["split_scheme"], n, k, q, classes, support, query,
                    source, origin)


# -- image identities ------------------------------------------------------------------------------

def _omniglot_names(ds: FewShotDataset, split: ClassSplit) -> list[list[str]]:
    """Each class's files in the loader's order (sorted within the character, as decoded)."""
    from advmeta.data.omniglot import _MEMBER, ZIPS

    root = Path(ds.info()["root"])
    files: dict[str, list[str]] = {}
    for z in ZIPS:
        with zipfile.ZipFile(root / z) as zf:
            for name in zf.namelist():
                m = _MEMBER.match(name)
                if m:
                    files.setdefault(f"{m.group(2)}/{m.group(3)}", []).append(m.group(4))
    out = []
    for c in split.class_names:
        char = re.sub(r"/rot\d{3}$", "", c)
        out.append([f"{char}/{f}" for f in sorted(files.get(char, []))])
    return out


def _miniimagenet_names(ds: FewShotDataset, split: ClassSplit) -> list[list[str]]:
    """Each class's files in the CSV's order (what the loader decodes)."""
    info = ds.info()
    if info.get("form") != "images+csv":
        raise ConfigError("mini-ImageNet's pickle form does not name its images: an episodes manifest needs the "
                          "images/ folder with train.csv, val.csv and test.csv")
    classes, files = names_from_csv(Path(info["root"]) / f"{split.name}.csv")
    by_class = dict(zip(classes, files, strict=True))
    return [by_class[c] for c in split.class_names]


_NAMERS = {"omniglot": _omniglot_names, "miniimagenet": _miniimagenet_names}


def image_names(ds: FewShotDataset, split: str) -> list[list[str]]:
    """Per class of ``split`` (in the split's order), the names of its images in the loader's order."""
    cs = ds.split(split)
    namer = _NAMERS.get(ds.name)
    if namer is not None:
        names = namer(ds, cs)
        if [len(n) for n in names] != [cs.num_images(c) for c in range(cs.num_classes)]:
            raise CorruptDataError(f"{ds.name}/{split}: the image names found do not match the decoded images "
                                   "(the dataset's cache is stale; delete it)")
        return names
    return [[f"{name}#{j}" for j in range(cs.num_images(c))] for c, name in enumerate(cs.class_names)]


def names_from_csv(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """Sorted class names and each class's files in file order, from a ``filename,label`` CSV (the
    mini-ImageNet split files; the full dataset's ``test.csv`` names 600 images per class)."""
    from advmeta.data.miniimagenet import _ordered, _read_csv

    if not Path(path).is_file():
        raise DataNotFoundError(f"image-name CSV {path} not found")
    return _ordered(_read_csv(Path(path)))


def _names_only(dataset: str, split: str, class_names: Sequence[str], counts: Sequence[int]) -> FewShotDataset:
    """A dataset of names without images: episodes drawn from it are those of a copy with these
    classes and image counts (the draw reads only the counts)."""
    base = np.zeros((1, 1, 1, 1), dtype=np.uint8)
    cs = ClassSplit(split, list(class_names), base, np.zeros(len(counts), dtype=np.int64),
                    np.asarray(counts, dtype=np.int64))
    return FewShotDataset(dataset, {split: cs}, "", {})


# -- making and resolving -------------------------------------------------------------------------

def export_manifest(dataset: str, split: str, spec: EpisodeSpec, n_episodes: int, seed: int,
                    class_names: Sequence[str], names: Sequence[Sequence[str]], split_scheme: str,
                    source: Mapping[str, Any] | None = None) -> Manifest:
    """Episodes ``0 … n_episodes − 1`` of advmeta's seeded sampler, by identity.

    Args:
        dataset, split, split_scheme: what they are episodes of.
        spec: the shape (``n_unlabeled`` must be 0).
        n_episodes: how many.
        seed: the sampler's episode seed (the same episodes :class:`EpisodeSampler` draws on a copy
            of the dataset with these classes and images).
        class_names: the split's classes in the loader's order; names: each one's image names.
        source: how it was made (recorded, not hashed).
    """
    if spec.n_unlabeled:
        raise ConfigError("an episodes manifest has no unlabeled images")
    if n_episodes < 1:
        raise ConfigError("a manifest needs at least one episode")
    sampler = EpisodeSampler(_names_only(dataset, split, class_names, [len(n) for n in names]), split, spec, seed)
    classes, support, query = [], [], []
    k = spec.k_shot
    for i in range(n_episodes):
        cls, idx = sampler.draw(i)
        classes.append(tuple(class_names[c] for c in cls))
        support.append(tuple(tuple(names[c][j] for j in idx[r, :k]) for r, c in enumerate(cls)))
        query.append(tuple(tuple(names[c][j] for j in idx[r, k:]) for r, c in enumerate(cls)))
    return Manifest(dataset, split, split_scheme, spec.n_way, spec.k_shot, spec.q_query, tuple(classes),
                    tuple(support), tuple(query), dict(source or {}))


def check_compatible(m: Manifest, dataset: str, split: str | None = None, n_way: int | None = None,
                     k_shot: int | None = None) -> None:
    """Raise :class:`ConfigError` naming the difference when ``m`` is not of this dataset / split / shape."""
    wanted = {"dataset": dataset, "split": split, "n_way": n_way, "k_shot": k_shot}
    diff = [f"{k} {getattr(m, k)} (not {v})" for k, v in wanted.items() if v is not None and getattr(m, k) != v]
    if diff:
        raise ConfigError(f"episodes manifest {m.origin or m.hash[:12]} ({m.describe()}) does not fit this "
                          f"evaluation: {', '.join(diff)}")


def resolve(m: Manifest, ds: FewShotDataset) -> tuple[np.ndarray, np.ndarray]:
    """The manifest's episodes as the sampler's indices into ``ds``.

    Returns:
        classes (E, N) split-level class ids in label order and image indices (E, N, K + Q)
        within each class (support first), as :meth:`EpisodeSampler.draw` returns per episode.

    Raises:
        ConfigError: another dataset or split scheme.
        DataNotFoundError: a class or image of the manifest is not in this copy of the dataset
            (e.g. the 100-image mini-ImageNet subset and a manifest of the full dataset).
    """
    check_compatible(m, ds.name)
    if m.split_scheme and ds.split_scheme != m.split_scheme:
        raise ConfigError(f"episodes manifest {m.origin} is of the {m.split_scheme} split of {m.dataset}; "
                          f"the dataset is loaded with the {ds.split_scheme} split")
    cs = ds.split(m.split)
    names = image_names(ds, m.split)
    class_index = {c: i for i, c in enumerate(cs.class_names)}
    image_index: dict[int, dict[str, int]] = {}
    classes = np.empty((len(m), m.n_way), dtype=np.int64)
    idx = np.empty((len(m), m.n_way, m.k_shot + m.q_query), dtype=np.int64)
    for e in range(len(m)):
        for j, c in enumerate(m.classes[e]):
            ci = class_index.get(c)
            if ci is None:
                raise DataNotFoundError(f"episodes manifest {m.origin}: class {c} (episode {e}) is not in this copy "
                                        f"of {ds.name}/{m.split}")
            where = image_index.setdefault(ci, {n: i for i, n in enumerate(names[ci])})
            classes[e, j] = ci
            for r, img in enumerate(m.support[e][j] + m.query[e][j]):
                i = where.get(img)
                if i is None:
                    raise DataNotFoundError(
                        f"episodes manifest {m.origin}: image {img} of class {c} (episode {e}) is not in this copy of "
                        f"{ds.name}/{m.split}, which has {len(names[ci])} images of the class (a manifest of the full "
                        "dataset needs the full dataset)")
                idx[e, j, r] = i
    return classes, idx


@lru_cache(maxsize=16)
def _read_cached(source: str) -> Manifest:
    return read_manifest(source)


def select(sources: Sequence[str], dataset: str, split: str, n_way: int, k_shot: int) -> Manifest | None:
    """The manifest among ``sources`` (files or built-in names) of this dataset, split and shape.

    Returns:
        ``None`` when ``sources`` is empty or holds no manifest of ``split`` (episodes drawn from
        the seed: the manifests are the test split's, validation stays seeded).

    Raises:
        ConfigError: manifests were given but none fits (naming what each one is).
    """
    if not sources:
        return None
    found = [_read_cached(str(s)) for s in sources]
    if not any(m.split == split for m in found):
        return None  # manifests of other splits (the test split's) leave this one to the seed
    for m in found:
        if (m.dataset, m.split, m.n_way, m.k_shot) == (dataset, split, n_way, k_shot):
            return m
    have = "; ".join(f"{m.origin}: {m.describe()}" for m in found)
    raise ConfigError(f"no episodes manifest for {dataset}/{split} {n_way}-way {k_shot}-shot among --episodes ({have})")
