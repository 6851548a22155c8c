"""The model registry: ``@MODELS.register("name")`` on a constructor, discovered by module import."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from advmeta.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model", "advmeta.models")
