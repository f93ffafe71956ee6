"""`console:` — the web console and HTTP API listener."""

from __future__ import annotations

from vallum.config.sections.base import Section


class ConsoleConfig(Section):
    listen: str = "127.0.0.1:8080"
