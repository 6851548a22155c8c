"""ADML — Adversarial Meta-Learning (docs/methods.md#adml): the published version and AQ's white-box one."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from advmeta.eps import Eps, parse_eps
from advmeta.errors import ConfigError
from advmeta.learners._base import accuracy, check_finite
from advmeta.learners._maml import MAMLBase, MAMLConfig
from advmeta.learners._registry import hp, hparams, register_learner
from advmeta.learners.inner_loop import Params, ce, split_per_class
from advmeta.learners.aq import AQConfig, train_attack_spec
from advmeta.surrogate import attack_per_episode

if TYPE_CHECKING:
    from advmeta.data import Episodes


def surrogate_episodes(learner: Any, episodes: Episodes) -> Any:
    """The surrogate-FGSM version (at ``train_eps``) of every image of ``episodes``.

    Read from ``learner.bank`` by episode index when the learner has one (a bank made with
    ``advmeta episodes --split train``), else computed with ``learner.surrogate`` one episode at
    a time, as the bank maker does, so that both give bit-identical images.

    Raises:
        ConfigError: the bank's clean episodes are not these (another dataset, split scheme,
            seed or shape).
    """
    eps = parse_eps(learner.cfg.train_eps)
    if learner.bank is not None:
        clean, adv = learner.bank(episodes.index.tolist(), eps)
        dev = episodes.support_x.device
        same = all(torch.equal(getattr(clean, f).to(dev), getattr(episodes, f))
                   for f in ("support_y", "query_y", "classes", "support_x", "query_x"))
        if not same:
            raise ConfigError("the training episode bank does not hold this run's episodes "
                              "(another dataset, split scheme, seed or episode shape)")
        return dataclasses.replace(episodes, support_x=adv.support_x.to(dev, episodes.support_x.dtype),
                                   query_x=adv.query_x.to(dev, episodes.query_x.dtype))
    if learner.surrogate is None:
        raise RuntimeError(f"{learner.name} needs the surrogate: pass surrogate= or bank= to the learner")
    # The training classes' place among the surrogate's outputs (a stand-in without offsets: 0).
    offset = getattr(learner.surrogate, "offsets", {}).get("train", 0)
    return attack_per_episode(learner.surrogate, episodes, eps, known=True, offset=offset)


def surrogate_halves(learner: Any, episodes: Episodes, k_shot: int, q_query: int) -> dict[str, Tensor]:
    """Split a doubled episode into clean images and surrogate-FGSM images of *other* images.

    The first ``k_shot`` (``q_query``) images of each class stay clean; the rest are replaced
    by their FGSM on the fixed surrogate at ``train_eps`` (labels: the split-level classes),
    taken from :func:`surrogate_episodes`.

    Returns:
        ``sc_x, sc_y, sa_x, sa_y`` (support clean / adversarial) and ``qc_x, qc_y, qa_x, qa_y``.
    """
    adv = surrogate_episodes(learner, episodes)
    out: dict[str, Tensor] = {}
    for part, x, x_adv, y, n in (("s", episodes.support_x, adv.support_x, episodes.support_y, k_shot),
                                 ("q", episodes.query_x, adv.query_x, episodes.query_y, q_query)):
        xc, yc, _, ya = split_per_class(x, y, n)
        _, _, xa, _ = split_per_class(x_adv, y, n)
        out[f"{part}c_x"], out[f"{part}c_y"] = xc, yc
        out[f"{part}a_x"], out[f"{part}a_y"] = xa.detach(), ya
    return out


@hparams
class ADMLConfig(MAMLConfig):
    """ADML's hyper-parameters (Yin et al. 2018, Algorithm 1)."""

    inner_lr: float = hp(0.01, "α₂: inner learning rate of the clean branch", low=1e-3, high=1.0, log=True)
    inner_lr_adv: float = hp(0.01, "α₁: inner learning rate of the adversarial branch", low=1e-3, high=1.0, log=True)
    meta_lr_adv: float = hp(0.001, "β₁: Adam learning rate of the first (θ′_adv on clean query) update",
                            low=1e-5, high=1e-2, log=True)
    meta_lr_clean: float = hp(0.001, "β₂: Adam learning rate of the second (θ′_c on adversarial query) update",
                              low=1e-5, high=1e-2, log=True)
    train_eps: Eps = hp("2/255", "ε of the surrogate FGSM at meta-training (paper: ε = 2 read as 2/255)")
    recompute_second: bool = hp(True, "the second update differentiates at the θ left by the first "
                                "(sequential assignment) [choice]; False: both at the pre-update θ",
                                choices=(True, False))

    DATASET_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {"omniglot": {"inner_lr_adv": 0.4}}  # as α₂ (MAML's)


@register_learner("adml")
class ADML(MAMLBase):
    """Published ADML: surrogate-FGSM images, two inner branches, crossed two-step meta-update.

    Per task, D_c = K clean images and D_adv = the surrogate FGSM of K *other* images (likewise
    for the query). θ′_adv = θ − α₁∇L(θ, D_adv), θ′_c = θ − α₂∇L(θ, D_c); then
    θ ← θ − β₁∇ΣL(θ′_adv, D′_c) and θ ← θ − β₂∇ΣL(θ′_c, D′_adv), each with its own Adam.

    References:
        Yin et al., "Adversarial Meta-Learning", arXiv:1806.03316 (Algorithm 1).
    """

    Config = ADMLConfig
    needs_surrogate = True

    def train_shots(self, k_shot: int, q_query: int, n_unlabeled: int) -> tuple[int, int, int]:
        return 2 * k_shot, 2 * q_query, n_unlabeled

    def optimizers(self, meta_lr: float) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.net.parameters(), lr=self.cfg.meta_lr_adv),
                torch.optim.Adam(self.net.parameters(), lr=self.cfg.meta_lr_clean)]

    def _halves(self, episodes: Episodes) -> dict[str, Tensor]:
        n_way = int(episodes.classes.shape[1])
        return surrogate_halves(self, episodes, episodes.support_y.shape[1] // n_way // 2,
                                episodes.query_y.shape[1] // n_way // 2)

    def branch_adv(self, h: dict[str, Tensor]) -> Tensor:
        """L(θ′_adv, D′_c): adapted on the adversarial support, scored on the clean query."""
        fast = self.adapt(self.params(), h["sa_x"], h["sa_y"], lr=self.cfg.inner_lr_adv)
        return ce(self.logits(fast, h["qc_x"]), h["qc_y"])

    def branch_clean(self, h: dict[str, Tensor]) -> Tensor:
        """L(θ′_c, D′_adv): adapted on the clean support, scored on the adversarial query."""
        fast = self.adapt(self.params(), h["sc_x"], h["sc_y"], lr=self.cfg.inner_lr)
        return ce(self.logits(fast, h["qa_x"]), h["qa_y"])

    def meta_loss(self, episodes: Episodes, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        h = self._halves(episodes)
        l1, l2 = self.branch_adv(h), self.branch_clean(h)
        return l1 + l2, {"loss_adv_branch": float(l1.detach()), "loss_clean_branch": float(l2.detach())}

    def update(self, optimizers: list[torch.optim.Optimizer], episodes: Episodes,
               generator: torch.Generator | None = None) -> dict[str, float]:
        opt1, opt2 = optimizers
        h = self._halves(episodes)
        params = [p for p in self.net.parameters()]
        l1 = self.branch_adv(h)
        check_finite(l1)
        if self.cfg.recompute_second:
            opt1.zero_grad(set_to_none=True)
            l1.backward()
            opt1.step()
            l2 = self.branch_clean(h)
            check_finite(l2)
            opt2.zero_grad(set_to_none=True)
            l2.backward()
            opt2.step()
        else:
            l2 = self.branch_clean(h)
            check_finite(l2)
            g1 = torch.autograd.grad(l1, params)
            g2 = torch.autograd.grad(l2, params)
            for opt, grads in ((opt1, g1), (opt2, g2)):
                for p, g in zip(params, grads):
                    p.grad = g.clone()
                opt.step()
        return {"loss": float(l1.detach() + l2.detach()), "loss_adv_branch": float(l1.detach()),
                "loss_clean_branch": float(l2.detach())}


@hparams
class ADMLWBConfig(AQConfig):
    """Hyper-parameters of the white-box ADML that AQ's code trains as "ADML"."""


@register_learner("adml-wb")
class ADMLWhiteBox(MAMLBase):
    """White-box ADML as in AQ's code: PGD on the support at θ and on the query at θ′.

    θ′_rob adapts on the attacked support, θ′_nat on the clean one (same images);
    meta-loss ½[CE(θ′_rob, clean query) + CE(θ′_nat, query attacked at θ′_nat)], one Adam step
    [choice: the query is attacked at the natural fast weights].
    """

    Config = ADMLWBConfig

    def meta_loss(self, episodes: Episodes, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        spec = train_attack_spec(self.cfg)
        theta = self.params()
        sx, sy, qx, qy = episodes.support_x, episodes.support_y, episodes.query_x, episodes.query_y
        sx_adv = self.attack(spec, theta, sx, sy, generator, shared=True)
        fast_rob: Params = self.adapt(theta, sx_adv, sy)
        fast_nat: Params = self.adapt(theta, sx, sy)
        qx_adv = self.attack(spec, fast_nat, qx, qy, generator)
        out_rob, out_adv = self.logits(fast_rob, qx), self.logits(fast_nat, qx_adv)
        loss = 0.5 * (ce(out_rob, qy) + ce(out_adv, qy))
        return loss, {"acc": accuracy(out_rob, qy), "acc_adv": accuracy(out_adv, qy)}
