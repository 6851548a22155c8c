"""L2L on real data within a CPU budget: Plain Net, PGM Net and Grad L2L, trained and attacked.

Reproduces the *shape* of the L2L paper's claims (docs/methods.md#l2l) on the data this project has:
mini-ImageNet's 64 training classes used as a plain classification set (20% of each class's
images held out), downscaled, a subset of classes, a small WRN, a few epochs, ε = 8/255.
Default budget: the first 10 classes at 16×16 (800 training / 200 held-out images), WRN-10-2,
16 epochs, batch 50, the slim attacker, evaluation clean / FGSM / PGD-20 (worst of 2 seeds).

1. Grad L2L and PGM Net raise PGD-20 robust accuracy far above Plain Net;
2. Grad L2L's training time per epoch is below PGM Net's (PGD-10 costs ~11 classifier passes
   per batch; Grad L2L ~3 classifier passes plus one attacker pass).

Run (≈ 10 min on one CPU core; on a machine shared with other jobs pass ``--threads 1``)::

    ADVMETA_DATA=../shared/data python -m advmeta.experiments.l2l --threads 1 --out runs/l2l

Re-running with the same ``--out`` reuses the trained networks *and* every finished evaluation
(cached next to each checkpoint, keyed by the checkpoint and the protocol), so a run can be cut
into pieces: train or evaluate one trainer per process with ``--methods`` (one per core), then
call once more with every trainer for the combined table, the black-box table and the timing.

The two documented runs (``results/l2l-miniimagenet/`` and ``results/l2l-omniglot/``, each with
its commands and printed output) are

- mini-ImageNet, all 64 training classes (80 / 20 images per class) at 16×16, 40 epochs::

      python -m advmeta.experiments.l2l --threads 1 --classes 0 --epochs 40 --out results/l2l-miniimagenet \
          --attacks none,fgsm,pgd-20,pgd-100,cw-linf,apgd-ce --seeds 0,1 \
          --eps-curve 2/255,4/255,16/255 --steps-curve 5,10,50

- Omniglot, the first 200 background characters (16 / 4 drawings each) at 28×28, ε = 32/255
  (8/255 barely moves a pen stroke; 32/255 is the ε* of the Omniglot few-shot protocol), 20 epochs::

      python -m advmeta.experiments.l2l --threads 1 --dataset omniglot-cls --image-size 28 --classes 200 \
          --eps 32/255 --epochs 20 --out results/l2l-omniglot \
          --attacks none,fgsm,pgd-20,apgd-ce --seeds 0,1 --eps-curve 16/255,64/255

Every option is a flag (``--help``); the paper's full setting is
``--dataset cifar10 --image-size 32 --classes 0 --depth 34 --widen 10 --epochs 100 --attacker wide
--attacks none,fgsm,pgd-20,pgd-100,cw-linf,apgd-ce --seeds 0,1,2,3,4`` (a GPU job). Results are
also written as a ``summary`` Parquet table (advmeta.results schema) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from advmeta.env import resolve_device, set_threads
from advmeta.eps import format_eps, parse_eps

if TYPE_CHECKING:
    from advmeta.l2l import L2LConfig, L2LData, L2LEvalProtocol


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m advmeta.experiments.l2l", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="miniimagenet-64", help="classification set (miniimagenet-64, omniglot-cls, cifar10, cifar100)")
    p.add_argument("--data-root", default=None, help="data folder (default $ADVMETA_DATA)")
    p.add_argument("--image-size", type=int, default=16, help="resize images to this side")
    p.add_argument("--classes", type=int, default=10, help="first N classes (0: all)")
    p.add_argument("--train-per-class", type=int, default=0, help="training images per class (0: all)")
    p.add_argument("--test-per-class", type=int, default=0, help="held-out test images per class (0: all)")
    p.add_argument("--methods", default="plain,pgm,grad-l2l", help="comma-separated trainers")
    p.add_argument("--attacker", default="slim", choices=["wide", "slim"], help="attacker network of the L2L trainers")
    p.add_argument("--depth", type=int, default=10, help="WRN depth (6n+4)")
    p.add_argument("--widen", type=int, default=2, help="WRN width factor")
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--lr", type=float, default=0.05, help="classifier SGD learning rate (paper: 0.1 at batch 128)")
    p.add_argument("--milestones", default="0.5,0.75",
                   help="LR ×0.1 points as fractions of the epochs (paper: 0.3,0.6,0.9 of 100 epochs; a few-epoch "
                        "run decays later so it can learn first)")
    p.add_argument("--flip", choices=["auto", "yes", "no"], default="auto",
                   help="horizontal flips in the augmentation (auto: not for omniglot-cls, whose mirrored glyphs are other glyphs)")
    p.add_argument("--eps", default="8/255")
    p.add_argument("--pgd-step-size", default="auto",
                   help="PGM Net's training PGD step, k/255 (auto: eps/4, the paper's 2/255 at 8/255)")
    p.add_argument("--attacks", default="none,fgsm,pgd-20", help="evaluation attacks (none, fgsm, pgd-<k>, cw-linf, apgd-ce, ...)")
    p.add_argument("--seeds", default="0,1", help="attack seeds; the worst is reported")
    p.add_argument("--eps-curve", default="", help="ε values for robust accuracy vs ε (PGD-20), e.g. 2/255,4/255")
    p.add_argument("--steps-curve", default="", help="PGD step counts for robust accuracy vs steps, e.g. 5,10,40")
    p.add_argument("--no-blackbox", dest="blackbox", action="store_false",
                   help="skip the black-box (transfer) table (PGD-20 crafted on each network, applied to every other)")
    p.add_argument("--timing-rounds", type=int, default=3, help="interleaved rounds of the per-batch timing (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: $OMP_NUM_THREADS, else all CPUs); on a machine shared with "
                        "other jobs use 1 — oversubscribed OpenMP threads were 10x slower here")
    p.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    return p.parse_args(argv)


def cached_evaluation(ckpt: Path, protocol: L2LEvalProtocol, data: L2LData | None,
                      device: str) -> list[dict[str, Any]]:
    """:func:`advmeta.l2l.evaluate_l2l`, stored next to the checkpoint and reused while both the
    checkpoint and the protocol are unchanged.

    Evaluations cost as much as training here, so an interrupted script, or one trainer's
    evaluation run in another process (``--methods``), is never recomputed. The key hashes the
    protocol and the checkpoint's bytes; the file is written atomically.
    """
    import dataclasses
    import hashlib

    from advmeta.atomic import write_text_atomic
    from advmeta.l2l import evaluate_l2l

    h = hashlib.sha256(json.dumps(dataclasses.asdict(protocol), sort_keys=True, default=str).encode())
    h.update(ckpt.read_bytes())
    path = ckpt.parent / f"eval-{h.hexdigest()[:16]}.json"
    if path.is_file():
        print(f"[{ckpt.parent.name}] evaluation reused: {path}", file=sys.stderr, flush=True)
        cached: list[dict[str, Any]] = json.loads(path.read_text())  # the rows written below
        return cached
    rows = evaluate_l2l(ckpt, protocol, data=data, device=device, progress=True)
    write_text_atomic(path, json.dumps(rows, default=str))
    return rows


def _config(a: argparse.Namespace, method: str) -> L2LConfig:
    """The :class:`~advmeta.l2l.L2LConfig` of ``method`` under the command's options."""
    from advmeta.l2l import L2LConfig

    step_size = format_eps(parse_eps(a.eps) / 4) if a.pgd_step_size == "auto" else a.pgd_step_size
    return L2LConfig(method=method, attacker=a.attacker, dataset=a.dataset, data_root=a.data_root,
                     image_size=a.image_size, num_classes=a.classes or None,
                     train_per_class=a.train_per_class or None, test_per_class=a.test_per_class or None,
                     classifier_kwargs={"depth": a.depth, "widen": a.widen}, eps=a.eps, epochs=a.epochs,
                     batch_size=a.batch_size, lr=a.lr, pgd_step_size=step_size,
                     flip={"auto": None, "yes": True, "no": False}[a.flip],
                     lr_milestones=tuple(float(m) for m in a.milestones.split(",") if m), seed=a.seed,
                     device=a.device, eval_batches=0, checkpoint_every=a.epochs)


def _print_table(summary: dict[str, dict[str, float]], step_s: dict[str, float]) -> None:
    """The accuracy table (± half-widths), each trainer's seconds per epoch (and per batch, interleaved,
    where measured), and each learned-attacker trainer's time against PGM Net's."""
    cols = [c for c in summary[next(iter(summary))] if c != "epoch_s" and not c.endswith("_ci")]
    step_hdr = f"{'s/batch (interl.)':>19}" if step_s else ""
    print(f"{'trainer':<16}" + "".join(f"{c:>16}" for c in cols) + f"{'time/epoch (s)':>16}{step_hdr}")
    for name, s in summary.items():
        cells = "".join(f"{s[c]:>9.1f} ± {s[c + '_ci']:<4.1f}" for c in cols)
        step_cell = f"{step_s[name]:>19.3f}" if step_s else ""
        print(f"{name:<16}{cells}{s['epoch_s']:>16.1f}{step_cell}")
    if "pgm" in summary:
        for n in summary:
            if n not in ("pgm", "plain"):
                ratio = summary[n]["epoch_s"] / summary["pgm"]["epoch_s"]
                inter = f", per batch interleaved {step_s[n] / step_s['pgm']:.2f}" if step_s else ""
                print(f"time {n} / pgm: per epoch {ratio:.2f}{inter}")


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Train and evaluate every trainer; print the table.

    Returns:
        {trainer: {attack: acc, attack + "_ci": half-width, "epoch_s": mean training seconds per
        epoch}}, plus ``"_step_seconds"``: {trainer: median seconds per minibatch, interleaved}.
    """
    from advmeta.l2l import L2LEvalProtocol, blackbox_matrix, blackbox_table, load_l2l_data, train_l2l
    from advmeta.results import to_frame, write_parquet_atomic

    a = _args(argv)
    set_threads(a.threads)
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="advmeta-l2l-"))
    t_start = time.perf_counter()
    data = load_l2l_data(a.dataset, a.data_root, a.image_size, a.classes or None, a.train_per_class or None,
                         a.test_per_class or None)
    print(f"data: {data.name} {tuple(data.train_x.shape)} train / {tuple(data.test_x.shape)} test, "
          f"{data.num_classes} classes; WRN-{a.depth}-{a.widen}; {a.epochs} epochs; eps={a.eps}; "
          f"torch threads={torch.get_num_threads()}", flush=True)
    protocol = L2LEvalProtocol(
        attacks=tuple(a.attacks.split(",")), eps=a.eps, seeds=tuple(int(s) for s in a.seeds.split(",")),
        eps_curve=tuple(e for e in a.eps_curve.split(",") if e), steps_curve=tuple(int(k) for k in a.steps_curve.split(",") if k),
        worst_row=len(a.attacks.split(",")) > 2,
    )
    rows, summary, ckpts, cfgs = [], {}, {}, []
    for method in a.methods.split(","):
        cfg = _config(a, method)
        cfgs.append(cfg)
        # resume: a finished run in --out is reused, and so is a finished evaluation of it
        ckpt, metrics = train_l2l(cfg, out / cfg.name, resume=True, progress=True, data=data)
        ckpts[cfg.name] = ckpt
        got = cached_evaluation(ckpt, protocol, data, a.device)
        rows += got
        summary[cfg.name] = {"epoch_s": metrics["epoch_seconds"]}
        for r in got:
            params = json.loads(r["attack_params"])
            key = r["attack"] if "curve" not in params else f"{r['attack']}@{r['eps_str']}"
            summary[cfg.name][key] = r["acc"]
            summary[cfg.name][key + "_ci"] = r["acc_ci95"]
    if a.blackbox and len(ckpts) > 1:
        bb = blackbox_table(ckpts, attack="pgd-20", eps=a.eps, data=data, device=a.device, progress=False)
        rows += bb
    write_parquet_atomic(to_frame(rows), out / "summary.parquet")
    step_s = {}
    if a.timing_rounds:
        from advmeta.l2l.data import to_float
        from advmeta.l2l.timing import interleaved_step_seconds

        n_batch = cfgs[0].batch_size
        step_s = interleaved_step_seconds(cfgs, to_float(data.train_x[:n_batch]), data.train_y[:n_batch], data.num_classes,
                                          a.timing_rounds, resolve_device(a.device))

    print(f"\nPer-image accuracy (%) on {len(data.test_y)} held-out images, ± binomial 95% half-width; "
          f"eps={a.eps}, PGD step 0.003·(eps/(8/255)), worst of seeds {a.seeds}")
    _print_table(summary, step_s)
    if a.blackbox and len(ckpts) > 1:
        print("\nBlack-box PGD-20 accuracy (%): rows = source network, columns = target network")
        print(blackbox_matrix(bb).round(1).to_string())
    print(f"\nrows: {out / 'summary.parquet'}; total wall time {time.perf_counter() - t_start:.0f} s")
    summary["_step_seconds"] = step_s
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
