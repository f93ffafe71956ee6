"""`identity:` configuration section (owned by the identity layer)."""

from __future__ import annotations

from vallum.config.sections.base import Section


class IdentityConfig(Section):
    pass
