"""``advmeta evaluate``: the full adaptive evaluation of any few-shot model (or an advmeta checkpoint)."""

from __future__ import annotations

from typing import Any, Optional

import typer

from advmeta.cli import _options as opt


def evaluate(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="PKG.MODULE:FACTORY (or FILE.py:FACTORY): a "
                                        "function returning an nn.Module that takes images in [0, 1], (N, C, H, W)."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="An advmeta trial's checkpoint.pt instead of --model."),
    weights: Optional[str] = typer.Option(None, "--weights", help="State dict for the module (read as tensors only: "
                                          "torch.save'd, or .safetensors)."),
    adapt: Optional[str] = typer.Option(None, "--adapt", help="How the model meets an episode: finetune (all weights) | "
                                        "finetune-head (a linear head on its features) | protonet (prototypes of its "
                                        "features) | none (module(support_x, support_y, query_x) -> logits)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="SGD steps on the support (finetune, finetune-head; default 10)."),
    lr: float = typer.Option(0.01, "--lr", help="Their learning rate."),
    normalize: Optional[str] = typer.Option(None, "--normalize", help="MEAN,STD (or C means then C stds) the model "
                                            "expects its inputs normalised with; attacks stay in [0, 1] pixels."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Few-shot dataset of the test episodes (a "
                                          "checkpoint's own by default)."),
    data_root: Optional[str] = opt.DATA_ROOT,
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Image side the model takes (default: the dataset's)."),
    n_way: Optional[int] = typer.Option(None, "--n-way", help="Classes per episode (default: the manifest's, else 5)."),
    k_shot: Optional[int] = typer.Option(None, "--k-shot", help="Support images per class (default: the manifest's, else 1)."),
    eps: Optional[str] = typer.Option(None, "--eps", help="ε of the attacks, k/255 (list a,b or range); default: the "
                                      "papers' on the dataset where there is one."),
    budget: str = opt.BUDGET,
    episodes: Optional[str] = typer.Option(None, "--episodes", help="Standard test episodes: a manifest file or a "
                                           "built-in name (omniglot-test-5way-1shot, …; advmeta episodes export)."),
    reported: Optional[str] = typer.Option(None, "--reported", help="The author's own numbers, e.g. "
                                           "clean=98.1,autoattack=45.2 (clean, pgd, autoattack, worst, support, "
                                           "support+query, transfer): the leaderboard shows the gaps."),
    reported_source: str = typer.Option("", "--reported-source", help="Where the reported numbers come from."),
    name: Optional[str] = typer.Option(None, "--name", help="The model's name in the rows and the leaderboard."),
    seed: int = opt.SEED,
    device: str = opt.DEVICE,
    output: str = typer.Option(..., "--output", "-o", help="Folder for summary/episodes/checks.parquet and record.json."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier evaluation in --output."),
    quiet: bool = opt.QUIET,
) -> None:
    """Evaluate a few-shot model: clean accuracy, AutoAttack and PGD on the query (per-query worst
    case), PGD through its adaptation on the support and on support and query, the fixed
    surrogate's transfer, attacks run to convergence, and the masking checks — the adaptive
    table's evaluation at --budget. Writes the rows (a sweep's schema) and record.json.
    """
    import shlex
    import sys
    from pathlib import Path

    from advmeta.errors import ConfigError
    from advmeta.model_eval import evaluate_checkpoint, evaluate_model
    from advmeta.plan.budgets import get_budget
    from advmeta.plan.space import parse_eps_option

    opt.check_run_options(device=device, seed=seed)
    get_budget(budget)
    if (model is None) == (checkpoint is None):
        raise ConfigError("give --model PKG.MODULE:FACTORY or --checkpoint PATH (one of them)")
    if (Path(output) / "record.json").exists() and not overwrite:
        raise ConfigError(f"{output} already holds an evaluation (record.json); use --overwrite or another --output")
    eps_list = parse_eps_option(eps, "--eps") if eps else None  # one syntax and one check for every --eps
    common = dict(eps=eps_list, budget=budget, episodes=episodes, n_way=n_way, k_shot=k_shot, device=device,
                  reported=reported, reported_source=reported_source, progress=not quiet)
    if checkpoint is not None:
        bad = [o for o, v in (("--weights", weights), ("--adapt", adapt), ("--normalize", normalize),
                              ("--dataset", dataset), ("--image-size", image_size), ("--steps", steps)) if v is not None]
        if bad:
            raise ConfigError(f"{', '.join(bad)}: a checkpoint carries its own (give them with --model)")
        if not Path(checkpoint).is_file():
            raise ConfigError(f"--checkpoint {checkpoint}: no such file")
        res = evaluate_checkpoint(checkpoint, name=name, seed=seed, **common)  # type: ignore[arg-type]
    else:
        from advmeta.external import load_factory

        if adapt is None or dataset is None:
            raise ConfigError("--model needs --adapt (finetune | finetune-head | protonet | none) and --dataset")
        module, factory_name = load_factory(str(model))
        res = evaluate_model(module, adapt, dataset=dataset, steps=steps, lr=lr, normalize=normalize,
                             name=name or factory_name, factory=str(model), weights=weights, data_root=data_root,
                             image_size=image_size, seed=seed, **common)  # type: ignore[arg-type]
    res.record["command"] = shlex.join(["advmeta", *sys.argv[1:]])
    from advmeta.model_eval import write_outputs

    write_outputs(output, res.rows, res.episodes, res.checks, res.record)  # the record last, atomically
    _print(res.record, output)


def _print(rec: dict[str, Any], output: str) -> None:
    for es, results in rec["results"].items():
        parts = [f"{k} {v['acc']:.1f} ± {v['ci95']:.1f}" for k, v in results.items()
                 if v.get("acc") is not None and v.get("ci95") is not None]
        typer.echo(f"{rec['model']['name']} on {rec['dataset']} {rec['n_way']}-way {rec['k_shot']}-shot, ε {es}: "
                   + ", ".join(parts))
    s = rec.get("strongest")
    if s:
        typer.echo(f"strongest attack: {s['attack']} at ε {s['eps']}: {s['acc']:.1f} % ({rec['episodes']['n_episodes']} "
                   f"episodes{', manifest ' + rec['episodes']['hash'][:12] if rec['episodes']['hash'] else ''})")
    for flag in rec.get("flags", []):
        typer.echo(f"flag: {flag}")
    typer.echo(f"wrote {output}/record.json, summary.parquet, episodes.parquet, checks.parquet "
               f"({rec['runtime_seconds']:.0f} s, {rec['forward_passes']['images']} images through the model)")


def register(app: typer.Typer) -> None:
    """Add ``advmeta evaluate``."""
    app.command("evaluate")(evaluate)
