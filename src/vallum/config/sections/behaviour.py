"""`behaviour:` configuration section (owned by the behaviour layer)."""

from __future__ import annotations

from vallum.config.sections.base import Section


class BehaviourConfig(Section):
    pass
