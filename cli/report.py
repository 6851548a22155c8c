"""``advmeta report results/<sweep>``: Markdown + LaTeX tables and PNG figures of a sweep."""

from __future__ import annotations

from typing import Optional

import typer


def report(
    folder: str = typer.Argument(..., help="Sweep folder holding summary.parquet (and episodes.parquet)."),
    out: Optional[str] = typer.Option(None, "--out", help="Where to write (default: <folder>/report)."),
    show: bool = typer.Option(True, "--show/--no-show", help="Print the Markdown tables."),
) -> None:
    """Render the papers' tables (mean ± 95% CI, best per column marked) and figures."""
    from pathlib import Path

    from advmeta.bank import filesystem
    from advmeta.errors import DataNotFoundError
    from advmeta.report import write_report

    fs, root = filesystem(folder)
    import pyarrow.fs as pafs

    if fs.get_file_info(f"{root}/summary.parquet").type != pafs.FileType.File:
        raise DataNotFoundError(f"no summary.parquet in {folder} (run `advmeta sweep` first)")
    if out is None and "://" in folder:
        out = "report-" + Path(root).name
    paths = write_report(folder, out)
    if show:
        typer.echo(Path(paths["markdown"]).read_text())
    verdicts = ", ".join(f"{n} {v}" for v, n in sorted(paths["verdicts"].items()))
    typer.echo(f"wrote {paths['markdown']}, {Path(paths['markdown']).with_name('index.html')}, {paths['latex']}, "
               f"{len(paths['figures'])} figures and {paths['claims']} ({verdicts or 'no claims'})", err=True)
    for flag in paths.get("flags") or []:  # not converged / masking suspected, by method and settings
        typer.echo(flag, err=True)


def register(app: typer.Typer) -> None:
    """Add ``advmeta report``."""
    app.command("report")(report)
