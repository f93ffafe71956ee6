"""Running a rule file's embedded examples, and backtesting a rule over history. Pure.

Example events are templates: ``at`` is an offset from the example's start (default
2026-11-01T00:00:00Z), ``repeat: n`` with ``every: 30s`` expands one template into n events, and
``{i}`` in any string is replaced by the repetition index (``{i%5}`` by it modulo 5).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vallum.behaviour.engine import RiskEngine
from vallum.behaviour.events import Event, EventError, format_ts, parse_ts, validate_event
from vallum.behaviour.rules import Rule, RuleSet
from vallum.behaviour.windows import parse_duration

EXAMPLE_START = parse_ts("2026-11-01T00:00:00Z")
_SUBST = re.compile(r"\{i(?:%(\d+))?(?:\*(\d+(?:\.\d+)?))?(?:\+(\d+(?:\.\d+)?))?\}")


def _calc(m: re.Match[str], i: int) -> int | float:
    v: int | float = i
    if m.group(1):
        v = v % int(m.group(1))
    if m.group(2):
        v = v * float(m.group(2))
    if m.group(3):
        v = v + (float(m.group(3)) if "." in m.group(3) else int(m.group(3)))
    if isinstance(v, float):
        v = round(v, 6)
    return v


def _fill(value: Any, i: int) -> Any:
    if isinstance(value, str):
        whole = _SUBST.fullmatch(value)
        if whole:  # "{i*0.1+0.2}" alone is a number
            return _calc(whole, i)
        return _SUBST.sub(lambda m: str(_calc(m, i)), value)
    if isinstance(value, dict):
        return {k: _fill(v, i) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, i) for v in value]
    return value


def expand_events(templates: list[dict[str, Any]], start: float = EXAMPLE_START) -> list[Event]:
    """Expand example templates into validated events, sorted by time (stable)."""
    out: list[Event] = []
    n_id = 0
    for tpl in templates:
        if not isinstance(tpl, dict):
            raise EventError("an example event must be a mapping")
        tpl = dict(tpl)
        repeat = int(tpl.pop("repeat", 1))
        every = parse_duration(tpl.pop("every")) if "every" in tpl else 1.0
        at = tpl.pop("at", None)
        t0 = start + (parse_duration(at) if at not in (None, 0, "0", "0s") else 0.0) if "ts" not in tpl else None
        for i in range(repeat):
            d = _fill(tpl, i)
            if t0 is not None:
                d["ts"] = format_ts(t0 + i * every)
            elif i:
                d["ts"] = format_ts(parse_ts(d["ts"]) + i * every)
            n_id += 1
            d.setdefault("id", f"ex-{n_id}")
            out.append(validate_event(d, now=None))
    out.sort(key=lambda e: e.ts)
    return out


@dataclass(slots=True)
class ExampleOutcome:
    rule: str
    example: str
    expected: bool
    fired: bool
    entities: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.expected == self.fired


def run_examples(ruleset: RuleSet, *, rule_ids: Iterable[str] | None = None,
                 engine_factory: Callable[[RuleSet], RiskEngine] | None = None) -> list[ExampleOutcome]:
    """Run every example of every rule (or of `rule_ids`) on a fresh engine with the whole rule set."""
    wanted = set(rule_ids) if rule_ids is not None else None
    outcomes: list[ExampleOutcome] = []
    for rule in ruleset.rules:
        if wanted is not None and rule.id not in wanted:
            continue
        for ex in rule.examples:
            try:
                events = expand_events(ex.events)
            except (EventError, ValueError) as exc:
                outcomes.append(ExampleOutcome(rule.id, ex.name, ex.expect, False, error=f"bad example event: {exc}"))
                continue
            engine = engine_factory(ruleset) if engine_factory else RiskEngine(ruleset=ruleset)
            fired_on: set[str] = set()
            for ev in events:
                res = engine.ingest([ev])
                for h in res.hits:
                    if h.rule == rule.id:
                        fired_on.add(f"{h.entity_type}:{h.entity_id}")
            fired = bool(fired_on) if ex.entity is None else ex.entity in fired_on
            err = engine.rule_errors.get(rule.id)
            outcomes.append(ExampleOutcome(rule.id, ex.name, ex.expect, fired, sorted(fired_on),
                                           error=f"rule error: {err}" if err else None))
    return outcomes


@dataclass(slots=True)
class BacktestResult:
    rule: str
    events: int
    entities: list[dict[str, Any]]
    errors: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "events_replayed": self.events, "entities": self.entities,
                "would_fire_on": len(self.entities), "errors": self.errors}


def backtest(rule: Rule, base: RuleSet, events: Iterable[Event], *, extra_features: RuleSet | None = None,
             limit: int = 1000) -> BacktestResult:
    """Replay `events` through the base features plus `rule` alone: which entities it would have fired on."""
    rs = RuleSet(features=list(base.features), rules=[rule])
    if extra_features is not None:
        rs.extend(RuleSet(features=extra_features.features))
    engine = RiskEngine(ruleset=rs)
    per: dict[tuple[str, str], dict[str, Any]] = {}
    n = 0
    for ev in events:
        n += 1
        res = engine.ingest([ev])
        for h in res.hits:
            k = (h.entity_type, h.entity_id)
            row = per.get(k)
            if row is None:
                row = per[k] = {"entity": {"type": h.entity_type, "id": h.entity_id}, "hits": 0,
                                "first": format_ts(h.ts), "detail": h.detail, "event_id": h.event_id}
            row["hits"] += 1
            row["last"] = format_ts(h.ts)
    rows = sorted(per.values(), key=lambda r: (-r["hits"], r["entity"]["type"], r["entity"]["id"]))[:limit]
    return BacktestResult(rule.id, n, rows, dict(engine.rule_errors))
