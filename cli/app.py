"""The ``advmeta`` command: a Typer app whose bad-input errors are one line and exit code 2."""

from __future__ import annotations

import sys

import typer

from advmeta import __version__
from advmeta.errors import AdvmetaError

app = typer.Typer(
    name="advmeta",
    help="Adversarially robust few-shot meta-learning: train, attack, sweep, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"advmeta {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Adversarially robust few-shot meta-learning: train, attack, sweep, report."""


def _register_subcommands() -> None:
    # Each command group lives in its own module of advmeta.cli and adds itself to `app`.
    import importlib
    import pkgutil

    import advmeta.cli as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name not in {"app"} and not mod.name.startswith("_"):
            module = importlib.import_module(f"advmeta.cli.{mod.name}")
            register = getattr(module, "register", None)
            if register is not None:
                register(app)


_register_subcommands()


def main() -> None:
    """Console entry point: run the app, turning user errors into one line and exit code 2."""
    try:
        # Without standalone mode click *returns* a command's typer.Exit code instead of exiting.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except AdvmetaError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except typer.Exit as ex:
        sys.exit(ex.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as err:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise
