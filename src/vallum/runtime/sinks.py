"""The decision sink of a vallum process: the audit log (fail closed) plus metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vallum.decisions import DecisionSink, FanoutSink

if TYPE_CHECKING:
    from vallum.config import Config


def build_decision_sink(config: Config, component: str = "vallum") -> DecisionSink:
    """The audit log and metrics sink (`vallum.audit.factory.build_decision_sink`). Raises when the
    audit log cannot be opened: no vallum process runs unaudited."""
    from vallum.audit.factory import build_decision_sink as audit_sink

    return audit_sink(config, component=component)


def close_sink(sink: DecisionSink, timeout: float = 30.0) -> None:
    """Close every audit log inside `sink` (drains its queue and writes the closing checkpoint)."""
    from vallum.audit.writer import AuditLog

    stack: list[object] = [sink]
    while stack:
        s = stack.pop()
        if isinstance(s, FanoutSink):
            stack.extend(s.sinks)
        elif isinstance(s, AuditLog):
            s.close(timeout)
