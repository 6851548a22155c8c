"""Building a learner (network, hyper-parameters, surrogate) from a training configuration.

Shared by :mod:`advmeta.train` and :mod:`advmeta.evaluate`, so a checkpoint is always rebuilt
exactly as it was trained.
"""

from __future__ import annotations

from typing import Any

import torch

from advmeta.errors import ConfigError
from advmeta.learners import Learner, get_learner


def default_width(image_size: int, backbone: str) -> int:
    """Conv4 filters: 64 at 28×28 (Omniglot) and for metric learners, 32 at 84×84 (MAML, §2)."""
    if backbone == "conv4" and image_size > 32:
        return 32
    return 64


def use_vmap(vectorize: str, device: torch.device) -> bool:
    """Whether tasks run under ``vmap``: ``auto`` = on CUDA only (the loop is faster on CPU)."""
    if vectorize not in ("auto", "loop", "vmap"):
        raise ConfigError(f"vectorize must be auto, loop or vmap, got {vectorize!r}")
    return vectorize == "vmap" or (vectorize == "auto" and device.type == "cuda")


def build_learner(cfg: Any, image_shape: tuple[int, int, int], device: torch.device,
                  surrogate: Any = None, bank: Any = None) -> Learner:
    """The learner a :class:`~advmeta.train.TrainConfig` describes, its network on ``device``.

    The network is initialised from the global torch RNG (seed it first for reproducibility).
    On the vmap path Conv4 uses the hand-written batch norm: torch's functional batch norm gives
    wrong second-order gradients under vmap (docs/performance.md#batch-norm-under-vmap).
    """
    from advmeta.models import build_model

    cls = get_learner(cfg.method)
    lcfg = cfg.learner_config
    vec = use_vmap(cfg.vectorize, device) and cls.maml_family
    backbone = cfg.backbone or cls.default_backbone
    c, h, _ = image_shape
    kwargs: dict[str, Any] = {"in_channels": c, "image_size": h,
                              "width": cfg.width or default_width(h, backbone), "bn_mode": cfg.bn_mode,
                              "bn_impl": "manual" if vec else "torch", **cls.model_kwargs(lcfg)}
    if cls.maml_family:
        kwargs["n_classes"] = cfg.n_way
    net = cls.wrap_model(lcfg, build_model(backbone, **kwargs)).to(device)
    return cls(lcfg, net, vectorize=vec, surrogate=surrogate, bank=bank)
