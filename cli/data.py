"""``advmeta data list | check | prepare``: which datasets are where, are they intact, build caches."""

from __future__ import annotations

import time
from pathlib import Path
import typer

data_app = typer.Typer(help="Find, verify and prepare datasets.", no_args_is_help=True)

_ROOT_HELP = "Data root searched before $ADVMETA_DATA and the per-user cache."


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the main app."""
    app.add_typer(data_app, name="data")


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _names(names: list[str] | None, data_root: Path | None) -> list[str]:
    from advmeta.data.catalog import classification_names, dataset_names, find, records
    from advmeta.errors import ConfigError

    known = dataset_names() + classification_names()
    if names:
        bad = [n for n in names if n not in known]
        if bad:
            raise ConfigError(f"unknown dataset {bad[0]!r}; known: {', '.join(known)}")
        return names
    return [r.name for r in records() if not r.built_in and find(r.name, data_root) is not None]


@data_app.command("list")
def list_cmd(data_root: Path | None = typer.Option(None, "--data-root", help=_ROOT_HELP)) -> None:
    """Show which datasets are found, where, and their size on disk."""
    from advmeta.data.catalog import resolve_default_dataset, status
    from advmeta.data.roots import data_roots

    typer.echo("searched: " + "; ".join(str(r) for r in data_roots(data_root)))
    for row in status(data_root):
        where = row["path"] if row["found"] else "not found"
        size = _human(row["bytes"]) if row["bytes"] else ""
        typer.echo(f"{row['dataset']:<14} {where:<60} {size}")
    name, note = resolve_default_dataset(data_root)
    typer.echo(f"default dataset: {name}" + (f" ({note})" if note else ""))


@data_app.command("check")
def check_cmd(
    names: list[str] | None = typer.Argument(None, help="Datasets to check (default: all found)."),
    data_root: Path | None = typer.Option(None, "--data-root", help=_ROOT_HELP),
) -> None:
    """Verify checksums (where known), zip CRCs and that every image decodes."""
    from advmeta.data.catalog import check

    todo = _names(names, data_root)
    if not todo:
        typer.echo("no real dataset found; nothing to check (see `advmeta data list`)")
    for name in todo:
        for line in check(name, data_root):
            typer.echo(line)
        typer.echo(f"{name}: OK")


@data_app.command("prepare")
def prepare_cmd(
    names: list[str] | None = typer.Argument(None, help="Datasets to prepare (default: all found)."),
    data_root: Path | None = typer.Option(None, "--data-root", help=_ROOT_HELP),
    image_size: int | None = typer.Option(None, "--image-size", help="Side of the cached images."),
    download: bool = typer.Option(True, "--download/--no-download", help="Fetch missing files if possible."),
) -> None:
    """Decode datasets into their uint8 array caches (done once; later runs memory-map them)."""
    from advmeta.data import classification_names, load_classification, load_fewshot

    todo = _names(names, data_root)
    if not todo:
        typer.echo("no real dataset found; nothing to prepare (see `advmeta data list`)")
    for name in todo:
        t = time.perf_counter()
        if name in classification_names():
            cd = load_classification(name, data_root, image_size, download=download)
            note = cd.info.get("cache", "")
        else:
            ds = load_fewshot(name, data_root, image_size, download=download)
            info = ds.info()
            note = f"{info.get('cache_note')}; {info.get('cache')}"
        typer.echo(f"{name}: ready in {time.perf_counter() - t:.1f} s ({note})")
