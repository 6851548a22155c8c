"""Building the classifier and the attacker of an L2L run, and reading them back from a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advmeta import loop
from advmeta.errors import DataNotFoundError
from advmeta.l2l.config import L2LConfig

CHECKPOINT_NAME = loop.CHECKPOINT_NAME


def build_classifier(cfg: L2LConfig, image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """f_θ: ``cfg.classifier`` from :func:`advmeta.models.build_model` for these images."""
    from advmeta.models import build_model

    c, h, _ = image_shape
    kwargs: dict[str, Any] = {"in_channels": c, "n_classes": num_classes}
    if cfg.classifier == "conv4":
        kwargs["image_size"] = h
    kwargs.update(cfg.classifier_kwargs)
    return build_model(cfg.classifier, **kwargs)


def build_attacker(cfg: L2LConfig, image_shape: tuple[int, int, int]) -> nn.Module | None:
    """g_φ for the learned methods (None for plain / pgm): input x, or [x, ∇ₓℓ] (2C channels)."""
    if not cfg.method_enum.learned:
        return None
    from advmeta.models import build_model

    kwargs: dict[str, Any] = {"kind": cfg.attacker, "eps": cfg.eps_value, "image_channels": image_shape[0],
                              "use_grad": cfg.method_enum.uses_gradient}
    kwargs.update(cfg.attacker_kwargs)
    return build_model("l2l-attacker", **kwargs)


@dataclass
class L2LCheckpoint:
    """A trained (or partly trained) L2L run, as stored in ``checkpoint.pt``."""

    cfg: L2LConfig
    classifier: nn.Module
    attacker: nn.Module | None
    epoch: int
    """Epochs completed."""
    image_shape: tuple[int, int, int]
    num_classes: int
    dataset: str
    history: list[dict[str, Any]] = field(default_factory=list)
    """One metrics dict per completed epoch."""
    train_seconds: float = 0.0
    raw: dict[str, Any] = field(default_factory=dict)
    """The whole stored dict (optimiser and RNG states for resuming)."""

    @property
    def name(self) -> str:
        """The trainer's display name (``grad-l2l-wide``, ``pgm``, …)."""
        return self.cfg.name


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> L2LCheckpoint:
    """Rebuild the networks of ``path`` (a checkpoint file or the run's folder) on ``device``.

    Raises:
        DataNotFoundError: no checkpoint there.
        CorruptDataError: the file is not an advmeta checkpoint.
        ConfigError: it is another trainer's checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise DataNotFoundError(f"no L2L checkpoint at {path}")
    raw = loop.load_checkpoint(path, "l2l", map_location=device)
    cfg = L2LConfig.from_dict(raw["config"])
    shape = tuple(raw["image_shape"])
    classifier = build_classifier(cfg, shape, raw["num_classes"]).to(device)
    classifier.load_state_dict(raw["state"]["classifier"])
    attacker = build_attacker(cfg, shape)
    if attacker is not None:
        attacker = attacker.to(device)
        attacker.load_state_dict(raw["state"]["attacker"])
    classifier.eval()
    return L2LCheckpoint(
        cfg=cfg, classifier=classifier, attacker=attacker, epoch=int(raw["step"]), image_shape=shape,
        num_classes=int(raw["num_classes"]), dataset=str(raw["dataset"]), history=list(raw.get("history", [])),
        train_seconds=float(raw.get("train_seconds", 0.0)), raw=raw,
    )
