"""advmeta.cli: the Typer command-line interface, installed from the top-level ``cli/`` folder."""
