"""The verdict types shared by every transport: `Finding`, `Verdict`, actions and categories."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    ALLOW = "allow"
    WARN = "warn"
    BLOCK = "block"


ACTION_RANK = {Action.ALLOW: 0, Action.WARN: 1, Action.BLOCK: 2}

#: Finding categories (INTERFACES §2).
CATEGORIES = frozenset(
    {
        "credential",
        "pii",
        "injection",
        "tool_poisoning",
        "tool_drift",
        "tool_policy",
        "ssrf",
        "url",
        "entropy",
        "rate_limit",
        "behaviour",
        "protocol",
    }
)

SEVERITIES = ("info", "low", "medium", "high", "critical")

KINDS = ("text", "outbound", "inbound", "url", "http_request", "http_response", "mcp")


class Mode(StrEnum):
    STRICT = "strict"
    BALANCED = "balanced"
    AUDIT = "audit"


def strongest(actions: list[Action] | tuple[Action, ...]) -> Action:
    """The strongest of several actions (block > warn > allow)."""
    best = Action.ALLOW
    for a in actions:
        if ACTION_RANK[a] > ACTION_RANK[best]:
            best = a
    return best


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a detector found. `evidence` never holds a whole secret."""

    rule: str
    category: str
    severity: str
    action: Action
    message: str
    location: str = "content"
    decoded: tuple[str, ...] = ()
    evidence: str = ""
    score: float | None = None
    extra: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "category": self.category,
            "severity": self.severity,
            "action": str(self.action),
            "location": self.location,
            "decoded": list(self.decoded),
            "evidence": self.evidence,
            "message": self.message,
        }
        if self.score is not None:
            out["score"] = round(self.score, 4)
        if self.extra:
            out["extra"] = self.extra
        return out


@dataclass(slots=True)
class Verdict:
    """The outcome of inspecting one input: the strongest finding's action, and the findings."""

    action: Action
    findings: list[Finding] = field(default_factory=list)
    id: Any = None
    #: notes about the scan itself, e.g. "semantic detector off"; not findings
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_findings(cls, findings: list[Finding], id: Any = None) -> Verdict:
        return cls(action=strongest([f.action for f in findings]), findings=findings, id=id)

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.id is not None:
            out["id"] = self.id
        out["action"] = str(self.action)
        out["findings"] = [f.to_dict() for f in self.findings]
        return out


def dedupe(findings: list[Finding]) -> list[Finding]:
    """Drop repeats of the same rule at the same location with the same evidence; keep order."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for f in findings:
        key = (f.rule, f.location, f.evidence)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def redact(secret: str, keep: int = 4) -> str:
    """Evidence for a secret: at most a short prefix, then `…[redacted]`.

    Keeps at most `keep` characters and never more than a quarter of the value, so even a short
    secret is never shown whole.
    """
    s = secret.strip()
    n = min(keep, len(s) // 4)
    return f"{s[:n]}…[redacted]"
