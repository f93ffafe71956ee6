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


def ensure_can_listen(host: str, port: int) -> None:
    """Exit 2 with a clear message when HOST:PORT cannot be bound (in use, no such address), before a
    server framework gets to fail with its own exit status and traceback. Port 0 is always fine."""
    import socket

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers themselves do
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def fail(message: str, code: int = 2) -> typer.Exit:
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)
