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


def _flags_take_no_value() -> None:
    """Typer's help shows a type beside every option, flags included (``--dry-run <bool>``,
    ``--version <bool>``), which reads as if the flag took a value; a flag's row shows none."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "flags_bare", False):
        return

    def display_type_rich(self: TyperOption, ctx: object) -> str | None:
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich.flags_bare = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_take_no_value()


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
        if isinstance(err, _click_exceptions()):
            typer.echo(f"error: {_usage_text(err)}", err=True)
            sys.exit(2)
        raise


def _click_exceptions() -> tuple[type[BaseException], ...]:
    """Click's exception class and Typer's vendored copy of it (not a subclass of click's)."""
    found: list[type[BaseException]] = []
    try:
        import click

        found.append(click.ClickException)
    except ImportError:
        pass
    try:
        from typer._click.exceptions import ClickException

        found.append(ClickException)
    except ImportError:
        pass
    return tuple(found)


def _usage_text(err: BaseException) -> str:
    """One line: the problem and where the usage is (``advmeta sweep --help``)."""
    message = " ".join(str(getattr(err, "format_message", lambda: str(err))()).split())
    ctx = getattr(err, "ctx", None)
    path = getattr(ctx, "command_path", None) or "advmeta"
    return f"{message} (see `{path} --help`)"
