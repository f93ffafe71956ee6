"""Helpers shared by the CLI modules: loading the config with a clean error and exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from vallum.config import Config, ConfigError, load_config

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="Path to vallum.yaml (default: embedded defaults).")


def config_or_exit(path: Path | None) -> Config:
    """Load the config, or print every error and exit with status 2."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"error: invalid config {exc.source}:", file=sys.stderr)
        for e in exc.errors:
            print(f"  - {e}", file=sys.stderr)
        raise typer.Exit(2) from None


def fail(message: str, code: int = 2) -> typer.Exit:
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)
