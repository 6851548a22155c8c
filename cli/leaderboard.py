"""``advmeta leaderboard DIR… -o OUT``: records of evaluations and finished sweeps as one table."""

from __future__ import annotations

from typing import List

import typer


def leaderboard(
    folders: List[str] = typer.Argument(..., help="Evaluation folders (record.json, advmeta evaluate) and finished "
                                        "sweep folders (summary.parquet)."),
    output: str = typer.Option(..., "--output", "-o", help="Where to write OUT.md and OUT.html (a folder: "
                                                           "leaderboard.md and leaderboard.html in it)."),
    show: bool = typer.Option(True, "--show/--no-show", help="Print the Markdown table."),
) -> None:
    """A Markdown table and a self-contained HTML page: clean, AutoAttack, worst white-box, support,
    support+query and transfer accuracy with their intervals, sorted by the strongest attack's
    accuracy (most robust first), flagged rows marked, the gaps to the authors' reported numbers."""
    from advmeta.leaderboard import write_leaderboard

    md, page, found = write_leaderboard(folders, output)
    if show:
        typer.echo(md.read_text())
    typer.echo(f"wrote {md} and {page} ({len(found)} rows)", err=True)


def register(app: typer.Typer) -> None:
    """Add ``advmeta leaderboard``."""
    app.command("leaderboard")(leaderboard)
