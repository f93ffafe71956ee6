"""Scores and decisions: rule hits → a 0-100 score with reasons → allow / review / challenge / block. Pure.

A hit contributes its rule's weight, halved every `half_life` seconds of event time since it last
fired. Contributions combine like independent probabilities, `100 · (1 − Π(1 − wᵢ/100))`, so two
weak signals score higher than one, and nothing exceeds 100. A rule with an `action` forces at
least that action while its hit is younger than the rule's `ttl`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vallum.behaviour.events import format_ts

ACTION_ORDER = {"allow": 0, "review": 1, "challenge": 2, "block": 3}
#: a contribution below this is forgotten
MIN_CONTRIBUTION = 0.5


@dataclass(slots=True)
class Hit:
    """The latest firing of one rule on one entity."""

    rule: str
    weight: float
    ts: float
    detail: str
    count: int = 1
    action: str | None = None
    ttl: float = 0.0
    event_id: str | None = None
    first_ts: float = 0.0

    def contribution(self, now: float, half_life: float) -> float:
        age = max(0.0, now - self.ts)
        return self.weight * 0.5 ** (age / half_life)


@dataclass(frozen=True, slots=True)
class Thresholds:
    review: float = 40.0
    challenge: float = 60.0
    block: float = 80.0

    def action_for(self, score: float) -> str:
        if score >= self.block:
            return "block"
        if score >= self.challenge:
            return "challenge"
        if score >= self.review:
            return "review"
        return "allow"


@dataclass(slots=True)
class Decision:
    """The current decision for one entity (INTERFACES §6)."""

    entity_type: str
    entity_id: str
    action: str
    score: float
    reasons: list[dict[str, Any]] = field(default_factory=list)
    as_of: float = 0.0
    #: "allow" / "block" when a manual override decided, with where it came from
    override: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "entity": {"type": self.entity_type, "id": self.entity_id},
            "action": self.action,
            "score": self.score,
            "reasons": self.reasons,
            "as_of": format_ts(self.as_of) if self.as_of else None,
        }
        if self.override:
            out["override"] = self.override
        return out


def stronger(a: str, b: str) -> str:
    return a if ACTION_ORDER[a] >= ACTION_ORDER[b] else b


def combine(contributions: list[float]) -> float:
    """Probabilistic OR of 0-100 contributions, rounded to 0.1."""
    keep = 1.0
    for c in contributions:
        keep *= 1.0 - min(max(c, 0.0), 100.0) / 100.0
    return round(100.0 * (1.0 - keep), 1)


def score_hits(hits: dict[str, Hit], now: float, half_life: float, thresholds: Thresholds
               ) -> tuple[float, str, list[dict[str, Any]]]:
    """(score, action from score and rule overrides, reasons strongest first). Drops spent hits."""
    contributions: list[tuple[float, Hit]] = []
    spent = []
    for rid, h in hits.items():
        c = h.contribution(now, half_life)
        if c < MIN_CONTRIBUTION and (h.action is None or now - h.ts > h.ttl):
            spent.append(rid)
            continue
        contributions.append((c, h))
    for rid in spent:
        del hits[rid]
    score = combine([c for c, _ in contributions])
    action = thresholds.action_for(score)
    for _c, h in contributions:
        if h.action and now - h.ts <= h.ttl:
            action = stronger(action, h.action)
    contributions.sort(key=lambda x: (-x[0], x[1].rule))
    reasons = [{"rule": h.rule, "weight": round(c, 1), "detail": h.detail, "count": h.count,
                "last_seen": format_ts(h.ts)} for c, h in contributions]
    return score, action, reasons
