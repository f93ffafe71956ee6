"""The behavioural risk engine: events, entities, features, rules, scores and decisions. Pure.

`events` validates the event schema, `windows` keeps sliding windows and baselines on event time,
`enrich` turns IPs and user agents into countries, networks and devices, `rules` loads YAML rule
files with CEL conditions, `scoring` turns rule hits into scores and actions, and `engine.RiskEngine`
ties them together. `testing` runs rule examples and backtests. No I/O here: the store is
`vallum.storage`, the HTTP edge is `vallum.api`. May import: config, the standard library, yaml,
cel-expr-python, iptocc, ua-parser, maxminddb.
"""

from vallum.behaviour.engine import RiskEngine
from vallum.behaviour.events import Event, EventError, validate_event
from vallum.behaviour.scoring import Decision

__all__ = ["Decision", "Event", "EventError", "RiskEngine", "validate_event"]
