"""The settings of one L2L-family training run (docs/methods.md#l2l).

The defaults are the paper's CIFAR-10 schedule: a WRN-34-10 classifier, SGD 0.1 with momentum 0.9
and weight decay 2e-4, ×0.1 at epochs 30/60/90 of 100, ε = 8/255, an Adam attacker at 1e-3.
Budgets are parameters, and the learning-rate milestones are *fractions* of the epoch budget so
that a shortened run keeps the shape of the schedule.

References:
    Jiang, Chen, Zhao & Wang, "Learning to Defense by Learning to Attack", AISTATS 2021.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any

from advmeta.eps import Eps, EpsStep, format_eps, parse_eps
from advmeta.errors import ConfigError
from advmeta.hparams import hp


class Method(str, Enum):
    """The trainers: the two baselines and the three learned-attacker variants."""

    PLAIN = "plain"
    """Plain Net: clean training, no perturbation."""
    PGM = "pgm"
    """PGM Net (Madry et al.): PGD adversarial training."""
    NAIVE = "naive-l2l"
    """δ = g(x)."""
    GRAD = "grad-l2l"
    """δ = g([x, ∇ₓℓ / max|∇ₓℓ|]) — the gradient normalised by its maximum over the batch."""
    TWO_STEP = "2step-l2l"
    """δ₀ = g([x, ∇ℓ(x)]); δ = clip_ε(δ₀ + g([x + δ₀, ∇ℓ(x + δ₀)]))."""

    @property
    def learned(self) -> bool:
        """Whether the method trains an attacker network g_φ."""
        return self in (Method.NAIVE, Method.GRAD, Method.TWO_STEP)

    @property
    def uses_gradient(self) -> bool:
        """Whether g_φ sees the classifier's input gradient (6-channel input on RGB)."""
        return self in (Method.GRAD, Method.TWO_STEP)


METHOD_NAMES: tuple[str, ...] = tuple(m.value for m in Method)
ATTACKER_KINDS: tuple[str, ...] = ("wide", "slim")


@dataclass(frozen=True)
class L2LConfig:
    """One L2L-family training run; every field is a hyper-parameter recorded with the results."""

    method: str = hp("grad-l2l", "Trainer: plain | pgm | naive-l2l | grad-l2l | 2step-l2l.")
    attacker: str = hp("wide", "Attacker network g_φ: ``wide`` (the paper's) or ``slim``; ignored by plain and pgm.")
    dataset: str = hp("cifar10", "Classification set for advmeta.data.load_classification "
                                 "(cifar10, cifar100, miniimagenet-64, omniglot-cls).")
    data_root: str | None = hp(None, "Data folder; None → $ADVMETA_DATA → the per-user cache.")
    image_size: int | None = hp(None, "Resize images to this side (None keeps the dataset's own size).")
    num_classes: int | None = hp(None, "Keep only the first this-many classes (None: all) — "
                                       "a budget knob for CPU runs.")
    train_per_class: int | None = hp(None, "Keep at most this many training images per class (None: all).")
    test_per_class: int | None = hp(None, "Keep at most this many held-out test images per class "
                                          "for validation (None: all).")
    classifier: str = hp("wrn", "Classifier architecture name for advmeta.models.build_model.")
    classifier_kwargs: dict[str, Any] = hp(factory=lambda: {"depth": 34, "widen": 10},
                                           doc="Extra arguments of the classifier (WRN-34-10 by default).")
    attacker_kwargs: dict[str, Any] = hp(factory=dict, doc="Extra arguments of the attacker network "
                                                           "(e.g. width overrides for tiny runs).")
    eps: Eps = hp("8/255", "ℓ∞ budget of every training perturbation, k/255.")
    epochs: int = hp(100, "Training epochs.")
    batch_size: int = hp(128, "Minibatch size.")
    lr: float = hp(0.1, "Classifier SGD learning rate.")
    momentum: float = hp(0.9, "Classifier SGD momentum.")
    weight_decay: float = hp(2e-4, "Classifier SGD weight decay.")
    lr_milestones: tuple[float, ...] = hp((0.3, 0.6, 0.9), "Epochs (as fractions of ``epochs``) where the classifier's "
                                                           "learning rate is multiplied by ``lr_gamma``.")
    lr_gamma: float = hp(0.1, "Learning-rate decay factor at each milestone.")
    attacker_lr: float = hp(1e-3, "Adam learning rate of the attacker.")
    pgd_steps: int = hp(10, "PGM Net's PGD steps during training.")
    pgd_step_size: EpsStep = hp("2/255", "PGM Net's PGD step size, k/255.")
    perturb_eval_mode: bool = hp(True, "[choice] Put the classifier in eval mode while the perturbation (and its input "
                                       "gradient) is computed, as in the attacker's own update, so batch-norm running "
                                       "statistics only see the batches the classifier is trained on.")
    augment: bool = hp(True, "Random crop (4-pixel padding) and horizontal flip of training images, "
                             "as the paper's CIFAR code.")
    flip: bool | None = hp(None, "Whether the augmentation flips horizontally; None: yes for natural images, no for "
                                 "handwritten characters (``omniglot-cls``), whose mirror image is another glyph.")
    seed: int = hp(0, "Seed of initialisation, data order and every training perturbation.")
    device: str = hp("auto", "auto | cpu | cuda | cuda:N.")
    checkpoint_every: int = hp(1, "Write a resumable checkpoint every this many epochs (and always after the last).")
    eval_batches: int | None = hp(4, "Held-out batches for the per-epoch clean / PGD-20 check "
                                     "(None: all; 0 disables it).")

    def __post_init__(self) -> None:
        if self.method not in METHOD_NAMES:
            raise ConfigError(f"unknown L2L method {self.method!r}; known: {', '.join(METHOD_NAMES)}")
        if self.attacker not in ATTACKER_KINDS:
            raise ConfigError(f"unknown attacker {self.attacker!r}; known: {', '.join(ATTACKER_KINDS)}")
        parse_eps(self.eps)
        parse_eps(self.pgd_step_size)
        for name in ("epochs", "batch_size", "pgd_steps", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.attacker_lr <= 0:
            raise ConfigError("learning rates must be > 0")
        if any(not 0 <= m <= 1 for m in self.lr_milestones):
            raise ConfigError(f"lr_milestones are fractions of the epoch budget in [0, 1], got {self.lr_milestones}")

    @property
    def method_enum(self) -> Method:
        """``method`` as a :class:`Method`."""
        return Method(self.method)

    @property
    def eps_value(self) -> float:
        """ε on the [0, 1] scale."""
        return parse_eps(self.eps)

    @property
    def flips(self) -> bool:
        """Whether training images are flipped (``flip`` with its dataset default resolved)."""
        return self.flip if self.flip is not None else not self.dataset.startswith("omniglot")

    @property
    def name(self) -> str:
        """The trainer's display name: ``grad-l2l-wide``, ``pgm``, …"""
        return f"{self.method}-{self.attacker}" if self.method_enum.learned else self.method

    def milestone_epochs(self) -> list[int]:
        """The milestone fractions turned into epoch numbers (30/60/90 at 100 epochs)."""
        return sorted({max(1, round(m * self.epochs)) for m in self.lr_milestones})

    def hparams(self) -> dict[str, Any]:
        """The fields that define the trained network (no paths or device), for result rows."""
        skip = {"data_root", "device", "checkpoint_every", "eval_batches"}
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        out["eps"] = format_eps(self.eps)
        out["pgd_step_size"] = format_eps(self.pgd_step_size)
        out["lr_milestones"] = list(self.lr_milestones)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (the checkpoint stores it)."""
        out = dataclasses.asdict(self)
        out["lr_milestones"] = list(self.lr_milestones)
        return out

    def result_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the fields that do not change the result (device, data root):
        resume compares this, so a run continues on another device or data path."""
        return {k: v for k, v in self.to_dict().items() if k not in ("device", "data_root")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> L2LConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown L2LConfig fields: {', '.join(unknown)}")
        data = dict(data)
        if "lr_milestones" in data:
            data["lr_milestones"] = tuple(data["lr_milestones"])
        return cls(**data)
