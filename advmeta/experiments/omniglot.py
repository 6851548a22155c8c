"""Omniglot robustness figures: MAML vs AQ, R-MAML-out, TAFL and ADML (5-way 1-shot, 28×28).

Run ``python -m advmeta.experiments.omniglot --out runs/omniglot`` (needs the Omniglot zips
under ``$ADVMETA_DATA/omniglot``). Stages, each resumable (trained checkpoints are reused):

1. MAML: 600 meta-iterations of 4 tasks, one inner step at lr 0.4, three at test; clean
   accuracy and PGD-20 robust accuracy at ε ∈ {8, 16, 32, 64}/255 (step ε/4, as AQ's Omniglot
   setting of 4/255 steps at 16/255); ε* = the smallest ε where MAML falls below 40%.
2. AQ, R-MAML-out and TAFL with the same budget, trained at ε*; clean and PGD-20 at ε*.
3. ADML (published: surrogate FGSM, trained at ε*) and MAML on ADML's surrogate table
   (support {clean, adv} × query {clean, adv}) at ε*. The fixed surrogate (a Conv4 classifier
   over the 4,112 meta-training classes, ``--surrogate-steps`` Adam steps; cached) crafts both
   ADML's training images and the table's; both learners are scored on the same attacked bank.

Every figure is a mean over the same bank of ``--episodes`` Omniglot test episodes (Vinyals
split) with its 95% CI. ``--stage`` runs a part; ``--eps`` fixes ε* instead of choosing it.
"""

from __future__ import annotations

import argparse


import pandas as pd
from pathlib import Path
from typing import Any

from advmeta.env import set_threads
from advmeta.eps import format_eps, parse_eps
from advmeta.evaluate import evaluate
from advmeta.protocol import EvalProtocol
from advmeta.results import to_frame, write_parquet_atomic
from advmeta.learners import get_learner
from advmeta.train import TrainConfig, load_dataset, make_surrogate, train

EPS_GRID = ("8/255", "16/255", "32/255", "64/255")
# Methods without a surrogate never read TrainConfig.surrogate_steps: pin it so their checkpoints
# (MAML's above all) do not depend on --surrogate-steps.
UNUSED_SURROGATE_STEPS = 1000


def base_config(args: argparse.Namespace, method: str, hparams: dict[str, Any]) -> TrainConfig:
    hp = {"inner_lr": 0.4, "inner_steps": 1, "test_inner_steps": 3, "first_order": args.first_order, **hparams}
    return TrainConfig(method=method, hparams=hp, dataset="omniglot", data_root=args.data_root, n_way=5, k_shot=1,
                       q_query=args.train_queries, meta_batch=4, iterations=args.iterations, val_every=args.iterations,
                       val_episodes=50, checkpoint_every=100, seed=args.seed, device="cpu", threads=args.threads,
                       surrogate_steps=args.surrogate_steps if get_learner(method).needs_surrogate
                       else UNUSED_SURROGATE_STEPS)


def surrogate_bank(args: argparse.Namespace, proto: EvalProtocol):
    """The (clean, surrogate-FGSM) test episodes of ``proto``'s bank, computed once and shared.

    Every learner of the surrogate table is scored on the same attacked images, from the
    surrogate of ``--surrogate-steps`` (not the one named by the learner's own checkpoint).
    """
    import time

    from advmeta.data import EpisodeSampler, EpisodeSpec

    cfg = base_config(args, "adml", {})
    set_threads(args.threads)  # train() sets them too, but the surrogate is trained before it
    ds = load_dataset(cfg)
    t0 = time.perf_counter()
    sur = make_surrogate(cfg, ds, "cpu", progress=True)
    print(f"[surrogate] {args.surrogate_steps} steps ready in {time.perf_counter() - t0:.0f} s", flush=True)
    sampler = EpisodeSampler(ds, proto.split, EpisodeSpec(n_way=5, k_shot=1, q_query=args.test_queries),
                             seed=args.seed)
    cache: dict[tuple, tuple] = {}

    def bank(idx, eps):
        key = (tuple(idx), eps)
        if key not in cache:
            ep = sampler.sample(list(idx))
            cache[key] = (ep, sur.attack_episodes(ep, eps, proto.split))
        return cache[key]

    return bank


def protocol(args: argparse.Namespace, eps: tuple[str, ...], scenarios: tuple[str, ...] = ("whitebox",),
             surrogate_eps: tuple[str, ...] = ()) -> EvalProtocol:
    params = {"pgd": {"steps": 20, "step_size": format_eps(parse_eps(e) / 4)} for e in eps[:1]}
    return EvalProtocol(n_episodes=args.episodes, q_query=args.test_queries, scenarios=scenarios, attacks=("pgd",),
                        eps=eps, attack_params=params, surrogate_eps=surrogate_eps,
                        surrogate_supports=("clean", "adv"), chunk=50, device="cpu")


def run(args: argparse.Namespace, name: str, method: str, hparams: dict[str, Any], proto: EvalProtocol,
        tag: str, bank: Any = None) -> list[dict]:
    """Train (or reuse) ``name`` and evaluate it; rows are saved as ``<name>-<tag>_summary.parquet``."""
    cfg = base_config(args, method, hparams)
    ckpt, metrics = train(cfg, Path(args.out) / name, progress=True)
    print(f"[{name}] trained {metrics.get('iteration')} it in {metrics.get('train_seconds', 0):.0f} s; "
          f"val {metrics.get('val_acc', float('nan')):.1f}%", flush=True)
    rows, eps_rows = evaluate(ckpt, proto, progress=True, bank=bank)
    for r in rows:
        r["sweep"] = f"omniglot-{name}-{tag}"
    write_parquet_atomic(to_frame(rows), Path(args.out) / f"{name}-{tag}_summary.parquet")
    write_parquet_atomic(to_frame(eps_rows, "episodes"), Path(args.out) / f"{name}-{tag}_episodes.parquet")
    return rows


def load_rows(out: Path, name: str, tag: str) -> list[dict] | None:
    path = out / f"{name}-{tag}_summary.parquet"
    return pd.read_parquet(path).to_dict("records") if path.exists() else None


def pick(rows: list[dict], attack: str, eps_str: str | None = None) -> dict:
    return next(r for r in rows if r["scenario"] == "whitebox" and r["attack"] == attack
                and (eps_str is None or r["eps_str"] == eps_str))


def fmt(r: dict) -> str:
    return f"{r['acc']:6.2f} ± {r['acc_ci95']:.2f}% (n={r['n_episodes']})"


def report(args: argparse.Namespace, eps_star: str | None) -> None:
    """Print every figure from the saved rows."""
    out = Path(args.out)
    print("== MAML (5-way 1-shot Omniglot, test split) ==")
    curve = {}
    for e in EPS_GRID:
        rows = load_rows(out, "maml", f"pgd{e.split('/')[0]}")
        if rows:
            if not curve:
                print(f"maml clean            {fmt(pick(rows, 'none'))}")
            curve[e] = pick(rows, "pgd", e)
            print(f"maml PGD-20 {e:<9} {fmt(curve[e])}")
    if eps_star is None and curve:
        below = [e for e in EPS_GRID if e in curve and curve[e]["acc"] < 40.0]
        eps_star = below[0] if below else None
    print(f"eps* = {eps_star} (smallest of {list(EPS_GRID)} where MAML's PGD-20 accuracy < 40%)")
    ref = load_rows(out, "maml", f"pgd{eps_star.split('/')[0]}") if eps_star else None
    print(f"== clean and PGD-20 at eps* = {eps_star}, same budget ==")
    for m in ["maml"] + args.methods.split(","):
        rows = ref if m == "maml" else load_rows(out, m, "robust")
        if not rows:
            print(f"{m:<10} (not run)")
            continue
        clean, rob = pick(rows, "none"), pick(rows, "pgd", eps_star)
        line = f"{m:<10} clean {fmt(clean)}  robust {fmt(rob)}"
        if ref and m != "maml":
            line += (f"  Δrobust {rob['acc'] - pick(ref, 'pgd', eps_star)['acc']:+.2f}"
                     f"  Δclean {clean['acc'] - pick(ref, 'none')['acc']:+.2f} points vs MAML")
        print(line)
    print(f"== ADML's surrogate table at eps* = {eps_star} (surrogate FGSM; last fine-tune step) ==")
    for name in ("maml", "adml"):
        rows = load_rows(out, name, "surrogate")
        if not rows:
            print(f"{name:<6} (not run)")
            continue
        last = max(r["finetune_step"] for r in rows)
        for r in rows:
            if r["finetune_step"] == last:
                print(f"{name:<6} support {r['support']:<5} query {r['query']:<5} {fmt(r)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/omniglot")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--iterations", type=int, default=600)
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--train-queries", type=int, default=15)
    ap.add_argument("--test-queries", type=int, default=15)
    ap.add_argument("--first-order", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--surrogate-steps", type=int, default=3000,
                    help="Adam steps of the fixed surrogate (batch 64, lr 1e-3) of ADML and the surrogate table")
    ap.add_argument("--eps", default=None, help="fix eps* (k/255) instead of choosing it from MAML's PGD-20 curve")
    ap.add_argument("--stage", default="all", choices=("all", "maml", "robust", "adml", "report"))
    ap.add_argument("--methods", default="aq,rmaml-out,tafl")
    ap.add_argument("--grid", default=",".join(EPS_GRID), help="the ε of MAML's PGD-20 curve run by --stage maml")
    ap.add_argument("--adml-names", default="adml,maml", help="learners of the surrogate table")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    eps_star = args.eps
    if args.stage in ("all", "maml"):
        for e in args.grid.split(","):
            run(args, "maml", "maml", {}, protocol(args, (e,)), f"pgd{e.split('/')[0]}")
            rows = load_rows(out, "maml", f"pgd{e.split('/')[0]}")
            print(f"maml PGD-20 {e}: {fmt(pick(rows, 'pgd', e))}; clean {fmt(pick(rows, 'none'))}", flush=True)
            if eps_star is None and pick(rows, "pgd", e)["acc"] < 40.0:
                eps_star = e
    if args.stage in ("all", "robust", "adml") and eps_star is None:
        raise SystemExit("eps* unknown: run --stage maml first or pass --eps")
    if args.stage in ("all", "robust"):
        hps = {"aq": {"train_eps": eps_star, "train_step_size": eps_star},
               "rmaml-out": {"train_eps": eps_star},
               "tafl": {"train_eps": eps_star, "train_step_size": eps_star}}
        for m in args.methods.split(","):
            run(args, m, m, hps[m], protocol(args, (eps_star,)), "robust")
    if args.stage in ("all", "adml"):
        proto = protocol(args, (eps_star,), ("surrogate",), (eps_star,))
        bank = surrogate_bank(args, proto)
        for name, method, hp in (("maml", "maml", {}), ("adml", "adml", {"train_eps": eps_star, "inner_lr_adv": 0.4})):
            if name not in args.adml_names.split(","):
                continue
            run(args, name, method, hp, proto, "surrogate", bank)
    report(args, eps_star)


if __name__ == "__main__":
    main()
