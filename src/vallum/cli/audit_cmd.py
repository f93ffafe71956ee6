"""CLI commands of one area; `register(app)` adds them to the main app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
