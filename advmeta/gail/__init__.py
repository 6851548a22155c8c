"""GAIL and GAIL with a learned discriminator updater (the L2L paper's §4) on gymnasium's classic control.

- :class:`GAILConfig`: every setting of a run (``method`` gail | gail-l2l, ``env``, TRPO's and the
  discriminator's hyper-parameters, the expert's).
- :func:`train_gail`: train one run with checkpoints and resume; one row per iteration.
- :func:`expert_data`: the environment's TRPO expert and its trajectories, trained once and cached.
"""

from .config import ENV_ALIASES, EXPERT_LEVEL, METHOD_NAMES, GAILConfig, env_id
from .expert import ExpertData, ExpertError, ExpertSettings, expert_data
from .train import CHECKPOINT_NAME, train_gail

__all__ = ["CHECKPOINT_NAME", "ENV_ALIASES", "EXPERT_LEVEL", "METHOD_NAMES", "ExpertData", "ExpertError",
           "ExpertSettings", "GAILConfig", "env_id", "expert_data", "train_gail"]
