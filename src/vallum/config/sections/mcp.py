"""`mcp:` configuration section (owned by the mcp layer)."""

from __future__ import annotations

from vallum.config.sections.base import Section


class McpConfig(Section):
    pass
