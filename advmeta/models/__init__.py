"""Networks of the papers, all usable through :func:`torch.func.functional_call`.

Every model is a plain :class:`torch.nn.Module` taking images in [0, 1] (any mean/std
normalisation happens inside ``forward``). Build one by name::

    net = build_model("conv4", in_channels=1, n_classes=5, width=64, image_size=28)

Registered names: ``conv4``, ``protonet``, ``resnet12``, ``wrn``, ``matching``, ``relation``,
``l2l-attacker``. A new model is one file with ``@MODELS.register("name")``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from advmeta.models._registry import MODELS


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Construct the registered model ``name`` with keyword arguments ``kwargs``.

    Raises:
        ConfigError: ``name`` is not a registered model (the message lists the known ones).
    """
    return MODELS.get(name)(**kwargs)


def model_names() -> list[str]:
    """Sorted names of every registered model."""
    return MODELS.names()


__all__ = ["MODELS", "build_model", "model_names"]
