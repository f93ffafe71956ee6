"""The web console: server-rendered pages (Starlette + Jinja2 + htmx + uPlot, all vendored).

Mount it into the API app (`vallum.api.app.create_app`) through `extra_routes`:

    from vallum.console import console_routes, ensure_admin

    creds = ensure_admin(store)               # Credentials(username, password) on first run, else None
    if creds:
        print(f"console login: {creds.username} / {creds.password}")   # shown once
    app = create_app(config, store=store, extra_routes=console_routes(
        config, store=store, service=None, audit_dir=audit_dir,
        recent_decisions=memory_sink, pins_dir=pins_dir))

- `console_routes(...)` returns the page routes and `/static`. `store`/`service` may be None: the
  app's `BehaviourService` (`app.state.behaviour`) is used then. `recent_decisions` is a
  `MemorySink`, an iterable of `DecisionRecord`s/dicts or a callable returning one; without it the
  inline-traffic page reads decision entries from the audit log under `audit_dir`. `pins_dir` is
  the MCP pin folder (`mcp.pins_dir`, default `<data_dir>/mcp/pins`).
- `ensure_admin(store_or_url)` creates the first admin (argon2-hashed password) when no console
  user exists and returns its credentials once.

Modules: `auth` (users, sessions, CSRF; tables `console_*` in the store's database), `data` (read
models over the store, audit log, recent decisions and pins), `routes` (pages and forms).
May import: starlette, jinja2, argon2, sqlalchemy, and vallum's storage, behaviour, audit, mcp.pins,
decisions and config. Nothing imports the console except the CLI/runtime that mount it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute

from vallum.console.auth import ROLES, Credentials, UserStore, ensure_admin
from vallum.console.data import RecentSource


def console_routes(config: Any, *, store: Any = None, service: Any = None, audit_dir: str | Path | None = None,
                   recent_decisions: RecentSource = None, pins_dir: str | Path | None = None) -> list[BaseRoute]:
    """The console's routes, to pass to `create_app(..., extra_routes=...)`."""
    from vallum.console.routes import Console, build_routes

    console = Console(config, store=store, service=service, audit_dir=Path(audit_dir) if audit_dir else None,
                      recent_decisions=recent_decisions, pins_dir=Path(pins_dir) if pins_dir else None)
    return build_routes(console)


def default_paths(config: Any) -> dict[str, Path]:
    """The audit folder and MCP pin folder a config implies (what `vallum run`/`serve` use)."""
    data_dir = Path(config.data_dir)
    audit_dir = config.audit.resolve_dir(data_dir)
    pins = Path(config.mcp.pins_dir) if config.mcp.pins_dir else data_dir / "mcp" / "pins"
    return {"audit_dir": audit_dir, "pins_dir": pins}


__all__ = ["ROLES", "Credentials", "UserStore", "console_routes", "default_paths", "ensure_admin"]
