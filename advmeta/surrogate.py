"""The fixed surrogate classifier whose FGSM images ADML and MAML-AD train on (docs/methods.md#adml).

ADML's adversarial images come from a pretrained network that never changes (the paper: VGG16
pretrained on ImageNet for mini-ImageNet, so it knows every class, the meta-test classes
included, and its FGSM uses the true label). Ours, by default, is that threat: a classifier
trained on **every** class of the dataset (meta-train, -val and -test), attacked with true
labels. ``classes="train"`` keeps the weaker variant (meta-training classes only; unseen
classes attacked with the surrogate's own prediction) as an option. The surrogate is cached on
disk keyed by (dataset, image size, arch, width, steps, classes, seed) and reused by every
method and every evaluation. :meth:`Surrogate.attack_episodes` turns a batch of episodes into their
surrogate-adversarial version; the Ray layer calls it in parallel to precompute banks.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advmeta import checkpoint as ckpt_io

if TYPE_CHECKING:
    from advmeta.data import Episodes


DEFAULT_ARCH = "conv4"
"""The surrogate's architecture unless a run says otherwise (every default in the package reads this)."""

@dataclass(frozen=True)
class SurrogateConfig:
    """Training settings of the surrogate.

    Attributes:
        arch: registered model name (a classifier with ``n_classes``).
        width: conv filters.
        steps: Adam steps of training.
        batch_size: images per step.
        lr: Adam learning rate.
        seed: seed of the initialisation and the minibatches.
        classes: ``all`` (every split's classes, true labels everywhere: the paper's threat,
            docs/methods.md#adml) or ``train`` (meta-training classes only; other classes are attacked
            with the surrogate's predicted label) [choice: ``all``].
    """

    arch: str = DEFAULT_ARCH
    width: int = 64
    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    classes: str = "all"

    def __post_init__(self) -> None:
        if self.classes not in SURROGATE_CLASSES:
            from advmeta.errors import ConfigError

            raise ConfigError(f"surrogate classes must be one of {', '.join(SURROGATE_CLASSES)}, got {self.classes!r}")


SURROGATE_CLASSES = ("all", "train")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/advmeta/surrogates`` (or ``~/.cache/advmeta/surrogates``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "advmeta" / "surrogates"


def cache_path(ds: Any, cfg: SurrogateConfig, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the surrogate of ``ds`` with ``cfg`` is cached."""
    _, h, _ = ds.image_shape
    tag = "" if cfg.classes == "train" else f"-{cfg.classes}"
    name = f"{ds.name}-{h}px-{cfg.arch}-w{cfg.width}-s{cfg.steps}-b{cfg.batch_size}{tag}-seed{cfg.seed}.pt"
    return (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / name


def class_offsets(ds: Any, classes: str) -> dict[str, int]:
    """Where each known split's classes start among the surrogate's outputs.

    ``classes="all"``: every split of ``ds`` in its order (train, val, test), one block each;
    ``"train"``: the meta-training split only.
    """
    names = ds.split_names if classes == "all" else ("train",)
    out, start = {}, 0
    for name in names:
        out[name] = start
        start += ds.split(name).num_classes
    return out


class Surrogate:
    """A trained classifier used only to craft FGSM images.

    Args:
        net: the classifier (kept in ``eval()`` mode: running batch-norm statistics).
        offsets: split name → index of its first class among the outputs, for every split
            the classifier was trained on (see :func:`class_offsets`).
    """

    def __init__(self, net: nn.Module, offsets: dict[str, int] | None = None) -> None:
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.offsets = dict(offsets) if offsets is not None else {"train": 0}

    def logits(self, x: Tensor) -> Tensor:
        """Logits over the training classes. Shape: (..., C, H, W) → (..., n_classes)."""
        flat = x.reshape(-1, *x.shape[-3:])
        out = self.net(flat)
        result: Tensor = out.view(*x.shape[:-3], out.shape[-1])
        return result

    def __call__(self, x: Tensor, labels: Tensor | None, eps: float) -> Tensor:
        """FGSM of ``x`` on the surrogate at ``eps``.

        Args:
            x: images (..., C, H, W) in [0, 1].
            labels: split-level class ids of the surrogate's classes (...), or None for images
                of classes it never saw: then its own prediction is the label [choice: FGSM
                needs a label, and test classes are not among the surrogate's outputs].
            eps: ε on the [0, 1] scale.

        Returns:
            Detached adversarial images, same shape.
        """
        from advmeta.attacks import get_attack

        if eps == 0:
            return x.detach()
        x = x.detach().to(next(self.net.parameters()).dtype)
        if labels is None:
            with torch.no_grad():
                labels = self.logits(x).argmax(-1)
        return get_attack("fgsm")(self.logits, x, labels, eps=eps).detach()

    def attack_episodes(self, episodes: Episodes, eps: float, split: str) -> Any:
        """The episodes with support and query replaced by their surrogate FGSM at ``eps``.

        Labels are the true classes when the surrogate was trained on ``split``'s classes, else
        its predictions. Computed by :func:`attack_per_episode`, so the images do not depend on
        how many episodes were attacked together. Shape: as the input :class:`~advmeta.data.Episodes`.
        """
        known = split in self.offsets
        return attack_per_episode(self, episodes, eps, known=known, offset=self.offsets.get(split, 0))


def attack_per_episode(attack: Any, episodes: Episodes, eps: float, known: bool, offset: int = 0) -> Any:
    """Episodes with support and query replaced by ``attack(x, labels, eps)``, one episode at a time.

    Each call sees the support (or the query) of a single episode, shaped (1, N·K, C, H, W):
    the batch size can change which convolution kernel runs and so the rounding of the
    gradient's sign, and per-episode calls make a bank written in chunks of any size, an
    evaluation and a trainer's meta-batch meet bit-identical adversarial images.

    Args:
        attack: a surrogate attack ``(images, split-level labels or None, eps) -> images``
            (a :class:`Surrogate`, or a stand-in in tests).
        episodes: the clean :class:`~advmeta.data.Episodes`.
        eps: ε on the [0, 1] scale.
        known: the episodes' classes are the surrogate's (labels = true classes), else None.
        offset: index of the episodes' split's first class among the surrogate's outputs.
    """
    out = {}
    for name in ("support", "query"):
        x, y = getattr(episodes, f"{name}_x"), getattr(episodes, f"{name}_y")
        labels = torch.gather(episodes.classes.to(y.device), 1, y) + offset if known else None
        parts = [attack(x[t:t + 1], None if labels is None else labels[t:t + 1], eps).to(x.dtype)
                 for t in range(x.shape[0])]
        out[f"{name}_x"] = torch.cat(parts) if parts else x
    return dataclasses.replace(episodes, **out)


def _training_images(ds: Any, offsets: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for split, start in offsets.items():
        sp = ds.split(split)
        for c in range(sp.num_classes):
            n = sp.num_images(c)
            xs.append(sp.images(c, np.arange(n)))
            ys.append(np.full(n, start + c, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def train_surrogate(ds: Any, cfg: SurrogateConfig, device: torch.device, progress: bool = False) -> nn.Module:
    """Train the surrogate classifier on every image of its classes (``cfg.classes``)."""
    from advmeta.models import build_model

    x, y = _training_images(ds, class_offsets(ds, cfg.classes))
    c, h, _ = ds.image_shape
    torch.manual_seed(cfg.seed)
    net = build_model(cfg.arch, in_channels=c, n_classes=int(y.max()) + 1, width=cfg.width, image_size=h,
                      bn_mode="running").to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    net.train()
    for step in range(cfg.steps):
        idx = rng.integers(0, len(y), cfg.batch_size)
        xb = torch.from_numpy(x[idx]).to(device, torch.float32) / 255.0
        loss = F.cross_entropy(net(xb), torch.from_numpy(y[idx]).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress and (step + 1) % 50 == 0:
            sys.stderr.write(f"\rsurrogate {step + 1}/{cfg.steps} loss {float(loss.detach()):.3f}   ")
    if progress:
        sys.stderr.write("\n")
    return net.eval()


def get_surrogate(ds: Any, cfg: SurrogateConfig | None = None, device: torch.device | str = "cpu",
                  cache_dir: str | os.PathLike[str] | None = None, progress: bool = False) -> Surrogate:
    """The cached surrogate of ``ds`` (trained and cached on first use)."""
    from advmeta.models import build_model

    cfg = cfg or SurrogateConfig()
    device = torch.device(device)
    path = cache_path(ds, cfg, cache_dir)
    c, h, _ = ds.image_shape
    if path.exists():
        state = ckpt_io.load(path, map_location=device)
        net = build_model(cfg.arch, in_channels=c, n_classes=state["n_classes"], width=cfg.width, image_size=h,
                          bn_mode="running").to(device)
        net.load_state_dict(state["model"])
        return Surrogate(net, class_offsets(ds, cfg.classes))
    net = train_surrogate(ds, cfg, device, progress)
    n_classes = None
    if hasattr(net, "head"):
        head = net.head
        assert isinstance(head, nn.Linear), "the surrogate classifier's head is a Linear layer"
        n_classes = head.out_features
    ckpt_io.save_atomic({"format": ckpt_io.FORMAT, "config": dataclasses.asdict(cfg), "n_classes": n_classes,
                         "dataset": ds.name, "image_shape": tuple(ds.image_shape), "model": net.state_dict()}, path)
    return Surrogate(net, class_offsets(ds, cfg.classes))
