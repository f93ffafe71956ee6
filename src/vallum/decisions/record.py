"""`DecisionRecord`: one inline or behavioural decision, with redacted findings."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from vallum.detection.model import Finding


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is behind the traffic, as far as the transport knows."""

    user: str | None = None
    session: str | None = None
    agent: str | None = None
    api_key: str | None = None
    ip: str | None = None
    #: how the identity was learnt: "listener", "proxy_auth", "header", "mcp_session", …
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}

    @property
    def is_known(self) -> bool:
        return any((self.user, self.session, self.agent, self.api_key))


@dataclass(slots=True)
class DecisionRecord:
    """What a transport saw and decided. Findings carry redacted evidence only."""

    #: wall-clock time of the decision, seconds since the epoch (passed in, never read here)
    ts: float
    transport: str  # egress.http | egress.connect | egress.fetch | mcp.stdio | mcp.http | scan.api | behaviour
    action: str  # allow | warn | block (behaviour: allow | review | challenge | block)
    request_id: str = field(default_factory=new_request_id)
    direction: str = "request"  # request | response | tools_list | tool_call | tool_result | event
    destination: str | None = None
    principal: Principal = field(default_factory=Principal)
    findings: list[Finding] = field(default_factory=list)
    #: a reason for a decision that has no finding (e.g. "upstream timeout", "body too large")
    reason: str | None = None
    duration_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rules(self) -> list[str]:
        return sorted({f.rule for f in self.findings})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ts": self.ts,
            "request_id": self.request_id,
            "transport": self.transport,
            "direction": self.direction,
            "action": self.action,
            "destination": self.destination,
            "principal": self.principal.to_dict(),
            "rules": self.rules,
            "findings": [f.to_dict() for f in self.findings],
        }
        if self.reason:
            out["reason"] = self.reason
        if self.duration_ms is not None:
            out["duration_ms"] = round(self.duration_ms, 3)
        if self.extra:
            out["extra"] = self.extra
        return out
