"""vallum: runtime security for AI agents and AI products.

Layers (each a sub-package; dependencies point inward, towards `detection`):

- ``detection``  pure, sans-I/O content inspection (normalise, decode, DLP, injection, URL policy)
- ``config``     strict YAML configuration
- ``decisions``  the decision record and the sink every transport hands its decisions to
- ``egress``     HTTP forward proxy, CONNECT, fetch endpoint (asyncio + llhttp via httptools)
- ``mcp``        MCP proxy (stdio, Streamable HTTP), tool poisoning, drift, tool policy
- ``audit``      hash-chained, signed audit log and SIEM exporters
- ``behaviour``  the risk engine: events, entities, features, rules, scores
- ``storage``    SQLAlchemy Core store and migrations
- ``api``        the HTTP API (Starlette)
- ``console``    the analyst web UI
- ``runtime``    `vallum run`: wiring every service into one process tree
- ``cli``        the `vallum` command
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from vallum.config import Config
    from vallum.detection.model import Finding, Verdict

__all__ = ["Finding", "Verdict", "__version__", "scan"]


def scan(content: Any, kind: str = "text", config: Config | None = None) -> Verdict:
    """Scan one input and return its verdict (see INTERFACES §2 for the kinds)."""
    from vallum.detection.pipeline import scan as _scan

    return _scan(content, kind=kind, config=config)


def __getattr__(name: str) -> Any:
    if name in ("Finding", "Verdict"):
        from vallum.detection import model

        return getattr(model, name)
    raise AttributeError(name)
