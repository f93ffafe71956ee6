"""The `vallum` console script: assembles every area's commands."""

from __future__ import annotations

import typer

from vallum import __version__

app = typer.Typer(
    name="vallum",
    help="Runtime security for AI agents: agent firewall, risk engine, audit log.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vallum {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    pass


def _register() -> None:
    # Each area module defines `register(app)`; order only affects --help listing.
    from vallum.cli import (
        audit_cmd,
        behaviour_cmd,
        config_cmd,
        mcp_cmd,
        proxy_cmd,
        run_cmd,
        scan_cmd,
    )

    for mod in (run_cmd, scan_cmd, proxy_cmd, mcp_cmd, behaviour_cmd, audit_cmd, config_cmd):
        mod.register(app)


_register()


def main() -> None:
    app()
