"""Decisions: the structured record every transport emits, and the sink it hands it to.

Transports (egress, MCP, scan API, behaviour) build a `DecisionRecord` per decision and call
`sink.emit(record)`. The audit log, the risk engine's event feed and metrics plug in as sinks.
May import: the standard library and `vallum.detection.model`.
"""

from vallum.decisions.record import DecisionRecord, Principal
from vallum.decisions.sink import DecisionSink, FanoutSink, MemorySink, NullSink

__all__ = ["DecisionRecord", "DecisionSink", "FanoutSink", "MemorySink", "NullSink", "Principal"]
