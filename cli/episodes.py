"""``advmeta episodes``: make a bank of clean + surrogate-attacked episodes with Ray Data;
``advmeta episodes export``: write a standard test-episode manifest (classes and images by name, hashed)."""

from __future__ import annotations

from typing import Optional

import typer

episodes_app = typer.Typer(invoke_without_command=True, no_args_is_help=False, add_completion=False)


@episodes_app.callback()
def episodes(
    ctx: typer.Context,
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Bank folder (a path or pyarrow URI)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Few-shot dataset (default: first real one found, else glyphs)."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Data folder."),
    split: str = typer.Option("test", "--split", help="train | val | test (train banks feed ADML/MAML-AD: give their doubled shape, 2K shots and 2Q queries, and iterations × meta-batch episodes)."),
    n_way: int = typer.Option(5, "--n-way"),
    k_shot: int = typer.Option(1, "--k-shot"),
    q_query: int = typer.Option(15, "--q-query"),
    n_episodes: int = typer.Option(600, "--episodes", help="Episodes 0 … n-1."),
    seed: int = typer.Option(0, "--seed", help="Seed of the episodes and of the surrogate."),
    eps: str = typer.Option("2/255,0.2/255", "--eps", help="ε of the surrogate FGSM (list or range, k/255)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Image side (default: the dataset's)."),
    surrogate_steps: int = typer.Option(1500, "--surrogate-steps", help="Training steps of the fixed surrogate."),
    actors: int = typer.Option(2, "--actors", help="Ray Data actor pool size (0: single process, no Ray)."),
    cpus_per_actor: float = typer.Option(0.5, "--cpus-per-actor", help="CPUs per actor (0.5 keeps 2-core machines flowing)."),
    gpus_per_actor: float = typer.Option(0.0, "--gpus-per-actor", help="GPUs per actor (fractions share a GPU)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Episodes per batch."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to join (default: $RAY_ADDRESS)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bank."),
) -> None:
    """Sample episodes by index and attack them once with the fixed surrogate (ADML's protocol).

    Every evaluation that reads the bank (``advmeta sweep --banks DIR``) meets the same
    adversarial episodes, and the surrogate attack is not recomputed per method. A ``--split
    train`` bank feeds ADML/MAML-AD training instead (the same images they would compute).

    ``advmeta episodes export`` writes a manifest of standard test episodes instead (see its --help).
    """
    if ctx.invoked_subcommand is not None:
        return
    from advmeta.bank import BankSpec, surrogate_key
    from advmeta.plan.sweeps import resolve_dataset
    from advmeta.errors import ConfigError, ResourceError
    from advmeta.plan.space import parse_eps_option
    from advmeta.surrogate import DEFAULT_ARCH
    from advmeta.tune.banks import BankJob, generate
    from advmeta.tune.session import ray_session

    if output is None:
        raise ConfigError("advmeta episodes: --output (the bank folder) is required; or `advmeta episodes export`")
    if n_episodes < 1:
        raise ConfigError("--episodes must be >= 1")
    for option, value, least in (("--n-way", n_way, 2), ("--k-shot", k_shot, 1), ("--q-query", q_query, 1),
                                 ("--batch-size", batch_size, 1), ("--actors", actors, 0), ("--seed", seed, 0),
                                 ("--surrogate-steps", surrogate_steps, 1), ("--image-size", image_size or 1, 1)):
        if value < least:  # each of these hung or failed deep inside Ray Data
            raise ConfigError(f"{option} must be >= {least}, got {value}")
    if not cpus_per_actor > 0 or not gpus_per_actor >= 0:
        raise ConfigError(f"--cpus-per-actor must be > 0 and --gpus-per-actor >= 0, got {cpus_per_actor:g} and "
                          f"{gpus_per_actor:g}")
    if actors > 0:
        from advmeta.cli._options import check_cluster

        check_cluster(address, gpus_per_actor, "--gpus-per-actor")  # before the surrogate trains
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split {split!r}; known: train, val, test")
    eps_list = tuple(parse_eps_option(eps, "--eps"))
    ds = resolve_dataset(dataset, data_root)
    from advmeta.data import load_fewshot

    fewshot = load_fewshot(ds, data_root=data_root, image_size=image_size)
    shape = tuple(fewshot.image_shape)
    classes = fewshot.split(split).num_classes
    if n_way > classes:
        raise ConfigError(f"--n-way {n_way}: {ds}'s {split} split has {classes} classes")
    spec = BankSpec(dataset=ds, split=split, n_way=n_way, k_shot=k_shot, q_query=q_query, seed=seed,
                    n_episodes=n_episodes, eps=eps_list, attack="fgsm",
                    attack_params={"labels": "true on the surrogate's split, else its predictions"},
                    surrogate=surrogate_key(DEFAULT_ARCH, surrogate_steps, seed, image_size), image_shape=shape,  # type: ignore[arg-type]
                    image_size=image_size)
    job = BankJob(spec, data_root, surrogate_steps, DEFAULT_ARCH, batch_size, actors, cpus_per_actor, gpus_per_actor)
    if actors == 0:
        result = generate(output, job, overwrite=overwrite)
    else:
        with ray_session(address) as cluster:
            if gpus_per_actor > 0 and cluster.get("GPU", 0) == 0:
                raise ResourceError("--gpus-per-actor > 0 but the Ray cluster has no GPU")
            result = generate(output, job, overwrite=overwrite)
    typer.echo(f"bank: {result['path']}: {result['episodes']} episodes × {len(eps_list)} ε = {result['rows']} rows "
               f"in {result['seconds']:.1f} s ({result['episodes_per_second']:.1f} episodes/s)")


@episodes_app.command("export")
def export(
    output: str = typer.Option(..., "--output", "-o", help="Manifest file to write (.json, or .json.gz compressed)."),
    dataset: str = typer.Option(..., "--dataset", help="Few-shot dataset (omniglot, miniimagenet, …)."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Data folder."),
    split: str = typer.Option("test", "--split", help="train | val | test."),
    n_way: int = typer.Option(5, "--n-way"),
    k_shot: int = typer.Option(1, "--k-shot"),
    q_query: int = typer.Option(15, "--q-query"),
    n_episodes: int = typer.Option(600, "--episodes", help="Episodes 0 … n-1 of the seeded sampler."),
    seed: int = typer.Option(0, "--seed", help="Seed of advmeta's episode sampler."),
    names: Optional[str] = typer.Option(None, "--names", help="A filename,label CSV naming the split's images "
                                        "(mini-ImageNet's test.csv of the FULL dataset), instead of the installed copy."),
) -> None:
    """Write the test-episode manifest: per episode its classes and images by name, with a content hash.

    ``advmeta sweep --episodes FILE`` and ``advmeta evaluate --episodes FILE`` then evaluate on
    exactly these episodes; every result row records the hash (``episodes_hash``). Built-in
    manifests (Omniglot and mini-ImageNet test, 5-way 1/5-shot, 600 episodes) are named by
    ``advmeta.data.manifest.builtin_manifests()``.
    """
    import shlex
    import sys

    from advmeta import __version__
    from advmeta.data import EpisodeSpec, load_fewshot
    from advmeta.data.cache import file_md5
    from advmeta.data.manifest import export_manifest, image_names, names_from_csv
    from advmeta.errors import ConfigError

    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split {split!r}; known: train, val, test")
    spec = EpisodeSpec(n_way=n_way, k_shot=k_shot, q_query=q_query)
    source: dict[str, object] = {"command": shlex.join(["advmeta", *sys.argv[1:]]), "seed": seed,
                                 "sampler": "advmeta.data.EpisodeSampler: episode i from SeedSequence([seed, i, "
                                            "sha256(dataset, split)])", "advmeta_version": __version__}
    if names is not None:
        if dataset != "miniimagenet":
            raise ConfigError("--names reads mini-ImageNet's filename,label CSVs; other datasets are named from "
                              "their installed files")
        class_names, files = names_from_csv(names)
        scheme = "ravi"
        from pathlib import Path

        source["names"] = {"file": Path(names).name, "md5": file_md5(Path(names)), "classes": len(class_names),
                           "images": sum(len(f) for f in files)}
    else:
        ds = load_fewshot(dataset, data_root=data_root)
        class_names, files, scheme = ds.split(split).class_names, image_names(ds, split), ds.split_scheme
        source["names"] = "the installed dataset's files"
    m = export_manifest(dataset, split, spec, n_episodes, seed, class_names, files, scheme, source)
    path = m.write(output)
    typer.echo(f"{path}: {m.describe()}, sha256 {m.hash}")


def register(app: typer.Typer) -> None:
    """Add ``advmeta episodes`` (the bank) and ``advmeta episodes export`` (a manifest)."""
    app.add_typer(episodes_app, name="episodes")
