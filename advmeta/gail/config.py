"""The settings of one GAIL run, with or without the learned discriminator updater.

GAIL (Ho & Ermon, 2016) is a minimax problem over a policy π(a | s; θ_π) and a discriminator
D(s, a; θ_D). Each iteration samples trajectories from π, updates θ_D to tell them from the
expert's, then takes a TRPO step on θ_π with D's cost. L2L-GAIL (Jiang et al., §4 and Algorithm 3)
replaces the discriminator's optimiser with a network U(θ_D, ∇θ_D; θ_U) trained with Adam.

The defaults are Ho & Ermon's classic-control settings where they are known (policy and value
networks of two tanh layers of 100 units, TRPO with a KL radius of 0.01, γ = 0.995, λ_GAE = 0.97,
5000 state-action pairs per iteration) and the L2L paper's discriminator ((s, a) → 64 → 32 → 1,
tanh). Fields marked [choice] are ours where neither paper says; each is a parameter.

References:
    Ho & Ermon, "Generative Adversarial Imitation Learning", NeurIPS 2016.
    Jiang, Chen, Zhao & Wang, "Learning to Defense by Learning to Attack", AISTATS 2021, §4, App. C.
"""

from __future__ import annotations

from dataclasses import dataclass

from advmeta.errors import ConfigError
from advmeta.hparams import hp

METHOD_NAMES: tuple[str, ...] = ("gail", "gail-l2l")
"""``gail``: the discriminator follows its optimiser; ``gail-l2l``: it follows the learned updater U."""

ENV_ALIASES: dict[str, str] = {"cartpole": "CartPole-v1", "mountaincar": "MountainCar-v0"}
"""Short names of the gymnasium environments of the L2L paper's Figure 6."""

EXPERT_LEVEL: dict[str, float] = {"CartPole-v1": 475.0, "MountainCar-v0": -110.0}
"""The mean true return an expert must reach (gymnasium's "solved" thresholds)."""

REWARD_FORMS: tuple[str, ...] = ("auto", "ho-ermon", "log-d")
AUTO_REWARD: dict[str, str] = {"CartPole-v1": "ho-ermon", "MountainCar-v0": "log-d"}
DISC_OPTIMISERS: tuple[str, ...] = ("adam", "sgd")
DTYPES: tuple[str, ...] = ("float32", "float64")


def env_id(name: str) -> str:
    """The gymnasium id of an environment given by id or short name; :class:`ConfigError` otherwise."""
    key = str(name).strip()
    if key.lower() in ENV_ALIASES:
        return ENV_ALIASES[key.lower()]
    if key in EXPERT_LEVEL:
        return key
    known = ", ".join(f"{alias} ({full})" for alias, full in ENV_ALIASES.items())
    raise ConfigError(f"unknown GAIL environment {name!r}; known: {known}")


@dataclass(frozen=True)
class GAILConfig:
    """One GAIL or L2L-GAIL run; every field is recorded with its results."""

    method: str = hp("gail", "gail | gail-l2l.")
    env: str = hp("CartPole-v1", "Gymnasium environment: CartPole-v1 or MountainCar-v0 "
                                 "(or the short names cartpole, mountaincar).",
                  choices=(*ENV_ALIASES.values(), *ENV_ALIASES))
    iterations: int = hp(300, "GAIL iterations "
                              "(each: one batch of trajectories, the discriminator's update, one TRPO step).")
    batch_steps: int = hp(5000, "State-action pairs sampled per iteration "
                                "(whole episodes, at least this many; Ho & Ermon: 5000).")
    n_envs: int = hp(8, "Environments stepped side by side while sampling (one batched policy forward per step).")
    gamma: float = hp(0.995, "Discount of the policy's cost (Ho & Ermon).")
    gae_lambda: float = hp(0.97, "λ of generalised advantage estimation (Ho & Ermon).")
    max_kl: float = hp(0.01, "TRPO's trust region: mean KL(π_old ‖ π_new) of one step (Ho & Ermon).")
    cg_damping: float = hp(0.1, "Damping added to the Fisher-vector product of TRPO's conjugate gradient.")
    cg_iters: int = hp(10, "Conjugate-gradient iterations of one TRPO step.")
    entropy_coef: float = hp(1e-3, "λ of the causal-entropy term λH(π) in the policy's objective. [choice] "
                                   "(Ho & Ermon leave it a parameter; 0 drops the term.)")
    policy_hidden: tuple[int, ...] = hp((100, 100), "Hidden units of the policy network "
                                                    "(tanh; Ho & Ermon: two layers of 100).")
    value_hidden: tuple[int, ...] = hp((100, 100), "Hidden units of the value network (tanh), "
                                                   "the advantage estimator's baseline.")
    value_lr: float = hp(1e-3, "Adam learning rate of the value network. [choice]")
    value_epochs: int = hp(5, "Passes over each batch when fitting the value network. [choice]")
    value_minibatch: int = hp(256, "Minibatch of the value fit. [choice]")
    disc_hidden: tuple[int, ...] = hp((64, 32), "Hidden units of the discriminator "
                                                "(tanh; the L2L paper: (s, a) → 64 → 32 → 1).")
    disc_optimizer: str = hp("adam", "Optimiser of θ_D in ``gail``: adam or sgd (sgd is what U starts from).",
                             choices=DISC_OPTIMISERS)
    disc_lr: float = hp(1e-3, "Learning rate of θ_D's optimiser in ``gail``, and of the Adam that trains θ_U "
                              "in ``gail-l2l`` (the issue: θ_U is trained "
                              "\"at the settings the paper uses for θ_D\"). [choice]")
    disc_steps: int = hp(3, "Discriminator updates per iteration, each on the whole batch and the whole expert set. "
                            "[choice]")
    reward_form: str = hp("auto", "The policy's reward from D, where D(s, a) is the probability that (s, a) came "
                                  "from the policy: ``ho-ermon``: −log D (Ho & Ermon's cost log D; non-negative, so "
                                  "it rewards staying alive); ``log-d``: log(1 − D), the log-probability of "
                                  "\"expert\" (non-positive, so it rewards ending the episode). ``auto`` [choice]: "
                                  "the form whose sign does not fight the task's termination — ho-ermon on CartPole "
                                  "(survive), log-d on MountainCar (reach the goal; under ho-ermon GAIL stayed at "
                                  "−200 for 60 iterations, under log-d it reached −110 in 40, measured).",
                          choices=REWARD_FORMS)
    updater_hidden: int = hp(20, "Hidden units of U, applied to every coordinate of θ_D (tanh). [choice]")
    updater_sgd_lr: float = hp(0.05, "U starts as exactly the SGD step −η·∇θ_D with this η: "
                                     "its learned part starts at zero. [choice]")
    expert_trajectories: int = hp(10, "Expert trajectories the discriminator sees "
                                      "(sampled once, greedily, and cached). [choice]")
    expert_seed: int = hp(0, "Seed of the expert's TRPO training and trajectories (shared by every GAIL trial).")
    expert_max_iterations: int = hp(400, "At most this many TRPO iterations to bring the expert to the expert level.")
    shaping_scale: float = hp(300.0, "MountainCar expert only: potential-based shaping F = γΦ(s′) − Φ(s) "
                                     "with Φ = this × the cart's mechanical energy, added to the true reward while "
                                     "the expert trains (Ng et al., 1999: the optimal policy is unchanged). "
                                     "TRPO on the sparse true reward alone never reaches the goal. [choice]")
    seed: int = hp(0, "Seed of the networks' initialisation, action sampling and the environments' resets.")
    dtype: str = hp("float32", "float32 | float64 of every network and batch.")
    checkpoint_every: int = hp(25, "Write a resumable checkpoint every this many iterations (and after the last).")

    def __post_init__(self) -> None:
        if self.method not in METHOD_NAMES:
            raise ConfigError(f"unknown GAIL method {self.method!r}; known: {', '.join(METHOD_NAMES)}")
        object.__setattr__(self, "env", env_id(self.env))
        for name, known in (("reward_form", REWARD_FORMS), ("disc_optimizer", DISC_OPTIMISERS), ("dtype", DTYPES)):
            if getattr(self, name) not in known:
                raise ConfigError(f"{name} must be one of {', '.join(known)}, got {getattr(self, name)!r}")
        for name in ("iterations", "batch_steps", "n_envs", "cg_iters", "value_epochs", "value_minibatch",
                     "disc_steps", "updater_hidden", "expert_trajectories", "expert_max_iterations",
                     "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_kl", "cg_damping", "value_lr", "disc_lr", "updater_sgd_lr"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("gamma", "gae_lambda"):
            if not 0 < float(getattr(self, name)) <= 1:
                raise ConfigError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.entropy_coef < 0 or self.shaping_scale < 0:
            raise ConfigError("entropy_coef and shaping_scale must be >= 0")
        for name in ("policy_hidden", "value_hidden", "disc_hidden"):
            value = tuple(int(h) for h in getattr(self, name))
            if not value or min(value) < 1:
                raise ConfigError(f"{name} must be a non-empty list of positive widths, got {getattr(self, name)}")
            object.__setattr__(self, name, value)

    @property
    def learned_updater(self) -> bool:
        """Whether θ_D follows the learned updater U (``gail-l2l``)."""
        return self.method == "gail-l2l"

    @property
    def reward(self) -> str:
        """The reward form used (``auto`` resolved for the environment)."""
        return AUTO_REWARD[self.env] if self.reward_form == "auto" else self.reward_form
