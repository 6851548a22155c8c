"""Episode banks: few-shot episodes (clean and surrogate-attacked) stored once, read by everyone.

ADML's protocol (docs/protocols.md#the-adml-tables) places the images of a *fixed surrogate* attack in the support
and/or query sets. Computing that attack once and storing it means every method meets the
identical adversarial episodes, and no method pays for the attack again. A bank is a folder:

- ``_bank.json`` — the manifest (:class:`BankSpec`): dataset, split, episode shape, seed, ε list,
  attack and surrogate, and the byte size and SHA-256 of every Parquet file (written last and
  atomically; :func:`find_bank` checks them on every read, so a bank two runs wrote at once, or
  one cut short or edited, is never served — it is regenerated);
- ``*.parquet`` — one row per (episode index, ε) with the standard Arrow fixed-shape tensor type
  for the image and label columns, so plain pyarrow/pandas read them back shaped.

This module needs only pyarrow and numpy: the Ray layer (``advmeta.tune.banks``) writes banks
in parallel with Ray Data; :func:`write_bank` writes the same format from a single process, and
:class:`EpisodeBank` reads either without Ray.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from advmeta.errors import ConfigError, CorruptDataError, DataNotFoundError
from advmeta.surrogate import DEFAULT_ARCH

MANIFEST = "_bank.json"  # a leading underscore: pyarrow and pandas skip it when reading the folder
IMAGE_COLUMNS = ("support_x", "query_x", "support_adv_x", "query_adv_x")
LABEL_COLUMNS = ("support_y", "query_y", "classes")
TENSOR_COLUMNS = IMAGE_COLUMNS + LABEL_COLUMNS
"""Per row: support/query images (N·K or N·Q, C, H, W) float32 in [0, 1]; their attacked
versions at the row's ε; labels (int64) and the episode's split-level class ids."""


@dataclass(frozen=True)
class BankSpec:
    """What a bank holds; stored as ``_bank.json`` next to its Parquet files.

    Attributes:
        dataset: dataset name (``omniglot``, ``glyphs``, …).
        split: split the episodes are drawn from (``train``, ``val``, ``test``).
        n_way: classes per episode.
        k_shot: support images per class.
        q_query: query images per class.
        seed: seed of the episode sampler (episodes are a pure function of it and the index).
        n_episodes: number of episodes (indices ``0 … n_episodes-1``).
        eps: ε values of the attacked columns, as ``k/255`` strings; one row per (episode, ε).
        attack: the surrogate attack's name (``fgsm`` in ADML).
        attack_params: the attack's settings (JSON-able).
        surrogate: identity of the surrogate classifier (checkpoint hash or description).
        image_shape: (C, H, W).
        image_size: side length the dataset was loaded at (``None``: native).
    """

    dataset: str
    split: str
    n_way: int
    k_shot: int
    q_query: int
    seed: int
    n_episodes: int
    eps: tuple[Any, ...]
    attack: str = "fgsm"
    attack_params: Mapping[str, Any] = field(default_factory=dict)
    surrogate: str = ""
    image_shape: tuple[int, int, int] = (1, 28, 28)
    image_size: int | None = None

    def __post_init__(self) -> None:
        from advmeta.eps import format_eps

        # a bank names its ε by their canonical k/255 (its rows' key; an Epsilon given is written as its text)
        object.__setattr__(self, "eps", tuple(format_eps(e) for e in self.eps))

    def to_json(self) -> str:
        """The manifest text."""
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> BankSpec:
        """Parse a manifest; tuples come back as tuples (the file checksums are read by :func:`verify_bank`)."""
        data = json.loads(text)
        data.pop("files", None)
        data["eps"] = tuple(data["eps"])
        data["image_shape"] = tuple(data["image_shape"])
        return cls(**data)


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and inner path of a local path or a URI (``s3://…``, ``file://…``)."""
    if "://" in path:
        try:
            found: tuple[pafs.FileSystem, str] = pafs.FileSystem.from_uri(path)  # pyarrow is untyped
            return found
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as err:
            raise ConfigError(f"cannot open storage {path!r}: {err}") from None
    import os

    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def tensor_column(array: np.ndarray) -> pa.Array:
    """A numpy array (rows, *shape) as an Arrow fixed-shape tensor column."""
    array = np.ascontiguousarray(array)
    return pa.FixedShapeTensorArray.from_numpy_ndarray(array)


def episode_table(batch: Mapping[str, np.ndarray]) -> pa.Table:
    """One Arrow table of bank rows from numpy columns (``episode_index``, ``eps``, tensors)."""
    cols: dict[str, pa.Array] = {
        "episode_index": pa.array(np.asarray(batch["episode_index"], dtype=np.int64)),
        "eps": pa.array(np.asarray(batch["eps"]).astype(str)),
    }
    for name in TENSOR_COLUMNS:
        dtype = np.float32 if name in IMAGE_COLUMNS else np.int64
        cols[name] = tensor_column(np.asarray(batch[name], dtype=dtype))
    return pa.table(cols)


def _parquet_files(fs: pafs.FileSystem, root: str) -> dict[str, int]:
    """The bank's Parquet files as {path relative to the bank: bytes}."""
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return {i.path[len(root):].lstrip("/"): int(i.size) for i in infos
            if i.type == pafs.FileType.File and i.path.endswith(".parquet")}


def _sha256(fs: pafs.FileSystem, path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with fs.open_input_stream(path) as inp:
        while chunk := inp.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(path: str, spec: BankSpec) -> None:
    """Write ``_bank.json`` with every Parquet file's size and SHA-256 (last, and atomically: a
    bank without one is known to be incomplete)."""
    fs, root = filesystem(path)
    fs.create_dir(root, recursive=True)
    files = {name: {"bytes": size, "sha256": _sha256(fs, f"{root}/{name}")}
             for name, size in sorted(_parquet_files(fs, root).items())}
    text = json.dumps({**json.loads(spec.to_json()), "files": files}, indent=2, sort_keys=True)
    tmp = f"{root}/{MANIFEST}.tmp"
    with fs.open_output_stream(tmp) as out:
        out.write(text.encode())
    fs.move(tmp, f"{root}/{MANIFEST}")


def verify_bank(path: str) -> str | None:
    """Why the bank at ``path`` must not be used (None: its files are the manifest's, byte for byte).

    Checks that the manifest parses and lists checksums, that the folder holds exactly the
    Parquet files it lists, and that each has the recorded size and SHA-256.
    """
    fs, root = filesystem(path)
    try:
        with fs.open_input_stream(f"{root}/{MANIFEST}") as inp:
            data = json.loads(inp.read().decode())
        BankSpec.from_json(json.dumps(data))
    except (FileNotFoundError, OSError, ValueError, TypeError, KeyError) as err:
        return f"unreadable manifest ({err})"
    listed = data.get("files")
    if not isinstance(listed, dict) or not listed:
        return "the manifest lists no file checksums (written by an older version)"
    present = _parquet_files(fs, root)
    if set(present) != set(listed):
        extra, missing = sorted(set(present) - set(listed)), sorted(set(listed) - set(present))
        return f"its files are not the manifest's (extra {extra[:3]}, missing {missing[:3]})"
    for name, meta in listed.items():
        if present[name] != meta.get("bytes") or _sha256(fs, f"{root}/{name}") != meta.get("sha256"):
            return f"{name} differs from the manifest (size or SHA-256)"
    return None


def write_bank(path: str, spec: BankSpec, batches: Iterable[Mapping[str, np.ndarray]]) -> str:
    """Write a bank from a single process: one Parquet file per batch, then the manifest.

    Args:
        path: the bank's folder (local path or URI).
        spec: the manifest.
        batches: dicts of numpy columns as produced per batch of episodes (see
            :func:`episode_table`).

    Returns:
        The bank's path.
    """
    fs, root = filesystem(path)
    fs.create_dir(root, recursive=True)
    for i, batch in enumerate(batches):
        pq.write_table(episode_table(batch), f"{root}/part-{i:05d}.parquet", filesystem=fs)
    write_manifest(path, spec)
    return path


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    chunks = [c.to_numpy_ndarray() if isinstance(c.type, pa.FixedShapeTensorType) else c.to_numpy(False)
              for c in column.chunks]
    if not chunks:
        return np.empty((0,))
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


class EpisodeBank:
    """Read access to a bank by episode index and ε.

    Args:
        path: the bank's folder (local path or URI).

    Raises:
        DataNotFoundError: no bank (no ``_bank.json``) at ``path``.
        CorruptDataError: the Parquet files do not hold every (episode, ε) of the manifest.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fs, self._root = filesystem(path)
        try:
            with self._fs.open_input_stream(f"{self._root}/{MANIFEST}") as inp:
                self.spec = BankSpec.from_json(inp.read().decode())
        except (FileNotFoundError, OSError):
            raise DataNotFoundError(f"no episode bank at {path} ({MANIFEST} missing)") from None
        files = [
            info.path
            for info in self._fs.get_file_info(pafs.FileSelector(self._root, recursive=True))
            if info.type == pafs.FileType.File and info.path.endswith(".parquet")
        ]
        if not files:
            raise CorruptDataError(f"episode bank {path} has a manifest but no Parquet files")
        self._dataset = pads.dataset(files, filesystem=self._fs, format="parquet")
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.spec.n_episodes

    def _load(self, eps: str) -> dict[str, np.ndarray]:
        if eps not in self._cache:
            table = self._dataset.to_table(filter=pads.field("eps") == eps)
            order = np.argsort(table.column("episode_index").to_numpy())
            arrays = {name: _to_numpy(table.column(name))[order] for name in ("episode_index",) + TENSOR_COLUMNS}
            expected = np.arange(self.spec.n_episodes)
            if arrays["episode_index"].shape != expected.shape or (arrays["episode_index"] != expected).any():
                raise CorruptDataError(
                    f"episode bank {self.path}: ε={eps} holds {len(arrays['episode_index'])} of "
                    f"{self.spec.n_episodes} episodes (interrupted write? regenerate it)"
                )
            self._cache[eps] = arrays
        return self._cache[eps]

    def arrays(self, indices: Sequence[int] | np.ndarray, eps: str) -> dict[str, np.ndarray]:
        """Numpy columns of the episodes ``indices`` at ``eps`` (a ``k/255`` string of the manifest).

        Shape:
            ``support_x``/``support_adv_x``: (T, N·K, C, H, W); ``query_x``/``query_adv_x``:
            (T, N·Q, C, H, W); ``support_y``: (T, N·K); ``query_y``: (T, N·Q); ``classes``: (T, N).
        """
        from advmeta.eps import format_eps

        key = format_eps(eps)
        if key not in self.spec.eps:
            raise ConfigError(f"episode bank {self.path} has ε {list(self.spec.eps)}, not {key}")
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.spec.n_episodes):
            raise ConfigError(f"episode index out of range 0..{self.spec.n_episodes - 1} in bank {self.path}")
        data = self._load(key)
        return {name: data[name][idx] for name in data}

    def __call__(self, indices: Sequence[int], eps: Any) -> tuple[Any, Any]:
        """The bank as a :data:`advmeta.protocol.Bank`: :func:`episodes_pair` of ``indices``."""
        return episodes_pair(self, indices, eps)


def find_bank(root: str, *, dataset: str, split: str, n_way: int, k_shot: int, q_query: int, seed: int,
              eps: Sequence[Any], n_episodes: int, surrogate: str) -> EpisodeBank | None:
    """The bank under ``root`` (the folder itself or one of its subfolders) that can serve an evaluation.

    A bank serves when its dataset, split, episode shape, seed and surrogate are the evaluation's,
    it holds every ε asked for, and at least ``n_episodes`` episodes. ``None`` when none does.
    """
    from advmeta.eps import format_eps

    fs, base = filesystem(root)
    candidates = [base] + [i.path for i in fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
                           if i.type == pafs.FileType.Directory]
    wanted = {format_eps(e) for e in eps}
    for folder in candidates:
        if fs.get_file_info(f"{folder}/{MANIFEST}").type != pafs.FileType.File:
            continue
        prefix = root.split("://", 1)[0] + "://" if "://" in root else ""
        try:
            bank = EpisodeBank(prefix + folder)
        except (CorruptDataError, DataNotFoundError, ValueError, TypeError, KeyError):
            continue
        s = bank.spec
        if (s.dataset, s.split, s.n_way, s.k_shot, s.q_query, s.seed, s.surrogate) == (
                dataset, split, n_way, k_shot, q_query, seed, surrogate) and wanted <= set(s.eps) \
                and s.n_episodes >= n_episodes:
            reason = verify_bank(prefix + folder)
            if reason is None:
                return bank
            import sys

            print(f"note: episode bank {prefix + folder} is not used: {reason}; it is regenerated", file=sys.stderr)
    return None


def episodes_pair(bank: EpisodeBank, indices: Sequence[int], eps: Any) -> tuple[Any, Any]:
    """The clean and surrogate-attacked :class:`advmeta.data.Episodes` of ``indices`` at ``eps``.

    This is the ``bank`` hook of :func:`advmeta.evaluate.evaluate`.
    """
    import torch

    from advmeta.data import Episodes

    a = bank.arrays(indices, eps)
    common = {"support_y": torch.from_numpy(a["support_y"]), "query_y": torch.from_numpy(a["query_y"]),
              "classes": torch.from_numpy(a["classes"]), "index": torch.from_numpy(a["episode_index"])}
    clean = Episodes(support_x=torch.from_numpy(a["support_x"]), query_x=torch.from_numpy(a["query_x"]), **common)
    adv = Episodes(support_x=torch.from_numpy(a["support_adv_x"]), query_x=torch.from_numpy(a["query_adv_x"]), **common)
    return clean, adv


class EpisodeMaker:
    """Makes bank rows for a batch of episode indices: sample, then attack with the surrogate.

    The same callable serves the single-process writer and Ray Data's ``map_batches`` actors
    (it is built once per actor: the dataset and the surrogate load in ``__init__``).

    Args:
        spec: the bank's manifest (what to make).
        data_root: data folder.
        surrogate_steps: training steps of the surrogate (it is trained once and cached on disk;
            make sure it exists before starting many makers, see :func:`prepare_surrogate`).
        surrogate_arch: the surrogate's architecture.
        device: torch device of the attack.
    """

    def __init__(self, spec: BankSpec, data_root: str | None = None, surrogate_steps: int = 1500,
                 surrogate_arch: str = DEFAULT_ARCH, device: str = "cpu", surrogate_classes: str = "all") -> None:
        from advmeta.data import EpisodeSampler, EpisodeSpec, load_fewshot
        from advmeta.env import resolve_device
        from advmeta.surrogate import SurrogateConfig, get_surrogate

        self.spec = spec
        self.device = resolve_device(device)
        ds = load_fewshot(spec.dataset, data_root=data_root, image_size=spec.image_size)
        self.sampler = EpisodeSampler(ds, spec.split, EpisodeSpec(n_way=spec.n_way, k_shot=spec.k_shot,
                                                                  q_query=spec.q_query), seed=spec.seed)
        self.surrogate = get_surrogate(ds, SurrogateConfig(arch=surrogate_arch, steps=surrogate_steps, seed=spec.seed,
                                                           classes=surrogate_classes),
                                       device=self.device)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Rows for the indices in ``batch["id"]`` (or ``batch["episode_index"]``), one per (index, ε)."""
        import torch

        from advmeta.eps import parse_eps

        ids = np.asarray(batch["id"] if "id" in batch else batch["episode_index"], dtype=np.int64)
        ep = self.sampler.sample(ids.tolist(), device=self.device)
        out: dict[str, list[np.ndarray]] = {k: [] for k in ("episode_index", "eps") + TENSOR_COLUMNS}
        for eps in self.spec.eps:
            with torch.enable_grad():
                adv = self.surrogate.attack_episodes(ep, parse_eps(eps), self.spec.split)
            cols = {"episode_index": ids, "eps": np.array([eps] * len(ids)),
                    "support_x": ep.support_x, "query_x": ep.query_x, "support_adv_x": adv.support_x,
                    "query_adv_x": adv.query_x, "support_y": ep.support_y, "query_y": ep.query_y,
                    "classes": ep.classes}
            for k, v in cols.items():
                out[k].append(v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v))
        return {k: np.concatenate(v) for k, v in out.items()}


def surrogate_key(arch: str, steps: int, seed: int, image_size: int | None, classes: str = "all") -> str:
    """Identity of a surrogate (what a bank records and an evaluation must match)."""
    return json.dumps({"arch": arch, "steps": int(steps), "seed": int(seed), "image_size": image_size,
                       "classes": classes}, sort_keys=True)


# -- which banks a sweep needs ------------------------------------------------------------------------
# A training bank stores every (clean and attacked) image of iterations × meta_batch episodes:
# at smoke and small quick budgets a few MB; at paper budgets terabytes, so those trials attack
# their episodes themselves (the same images, computed per episode either way).
TRAIN_BANK_MAX_BYTES = 256 * 2**20


def bank_bytes(req: dict[str, Any], image_shape: Sequence[int]) -> int:
    """Bytes of a bank's images (float32, clean and attacked, every ε)."""
    c, h, w = image_shape
    per_episode = req["n_way"] * (req["k_shot"] + req["q_query"]) * c * h * w * 4 * 2
    return int(req["n_episodes"]) * int(per_episode) * len(req["eps"])


def requirements(specs: Sequence[Any]) -> list[dict[str, Any]]:
    """The distinct banks the trials read (each family says which, :meth:`Family.bank_requirements`),
    merged: one bank per episode shape, with every ε and the most episodes any trial asks for."""
    from advmeta.families import get_family

    needs: dict[str, dict[str, Any]] = {}
    for spec in specs:
        for req in get_family(spec.family).bank_requirements(spec):
            key = json.dumps({k: v for k, v in req.items() if k not in ("eps", "n_episodes")}, sort_keys=True)
            entry = needs.setdefault(key, {**req, "eps": [], "n_episodes": 0})
            entry["eps"] += [e for e in req["eps"] if e not in entry["eps"]]
            entry["n_episodes"] = max(entry["n_episodes"], int(req["n_episodes"]))
    return list(needs.values())
