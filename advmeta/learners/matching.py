"""Matching Networks (a baseline in ADML's tables, docs/methods.md#metric-learners)."""

from __future__ import annotations

from typing import Any

from advmeta.learners._metric import MetricBase
from advmeta.learners._registry import hp, hparams, register_learner


@hparams
class MatchingConfig:
    """Matching Networks' hyper-parameters."""

    fce: bool = hp(False, "full-context embeddings (bi-LSTM support, attention-LSTM query)", choices=(False, True))
    fce_steps: int = hp(5, "processing steps of the query attention LSTM", low=1, high=10)


@register_learner("matching")
class Matching(MetricBase):
    """Cosine attention over the support embeddings; trained with CE on the log-probabilities.

    References:
        Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016.
    """

    Config = MatchingConfig
    default_backbone = "matching"

    @classmethod
    def model_kwargs(cls, config: Any) -> dict[str, Any]:
        return {"fce": config.fce, "fce_steps": config.fce_steps}
