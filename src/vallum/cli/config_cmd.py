"""`vallum config check F`."""

from __future__ import annotations

from pathlib import Path

import typer

from vallum.cli.common import config_or_exit

config_app = typer.Typer(help="Configuration tools.", no_args_is_help=True)


@config_app.command("check")
def check(path: Path = typer.Argument(..., help="The config file to validate.")) -> None:
    """Validate a config file: unknown keys and bad values are errors (exit 2)."""
    cfg = config_or_exit(path)
    typer.echo(f"{path}: ok (mode {cfg.mode})")


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
