"""`audit:` configuration section (owned by the audit layer)."""

from __future__ import annotations

from vallum.config.sections.base import Section


class AuditConfig(Section):
    pass
