"""Turning proxy traffic into findings with the detection engine, failing closed.

Thin adapters over `vallum.detection.http`, `vallum.detection.urlpolicy` and friends, each wrapped so
that an exception inside a detector becomes a blocking `vallum.internal_error` finding instead of a
pass. Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from vallum.detection.model import ACTION_RANK, SEVERITIES, Action, Finding
from vallum.detection.pipeline import Inspector

_TEXT_SUBTYPES = ("json", "xml", "javascript", "ecmascript", "x-www-form-urlencoded", "yaml", "ndjson", "graphql")


def media_type(content_type: str | None) -> str:
    """`text/html; charset=utf-8` → `text/html`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_sse(content_type: str | None) -> bool:
    return media_type(content_type) == "text/event-stream"


def is_scannable(content_type: str | None) -> bool:
    """Whether a response of this type is text the injection detectors read (HTML, text, JSON…).

    A response without a type is scanned too: it may be anything, so it is not waved through.
    """
    mt = media_type(content_type)
    if not mt:
        return True
    if mt.startswith("text/"):
        return True
    if mt.startswith(("application/", "message/")):
        sub = mt.split("/", 1)[1]
        return any(s in sub for s in _TEXT_SUBTYPES)
    return False


def internal_error(inspector: Inspector, exc: BaseException, where: str) -> Finding:
    """The finding for a detector that failed: blocks (audit: warns), never passes silently."""
    return Finding(rule="vallum.internal_error", category="protocol", severity="high",
                   action=inspector.action_for("vallum.internal_error", Action.BLOCK),
                   message=f"scanner error in {where} ({type(exc).__name__}); blocked (fail closed)",
                   location=where)


def guarded(inspector: Inspector, where: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Finding]:
    """Run a detector; its exception becomes an `internal_error` finding (fail closed)."""
    try:
        out = fn(*args, **kwargs)
    except Exception as exc:
        return [internal_error(inspector, exc, where)]
    if out is None:
        return []
    if isinstance(out, Finding):
        return [out]
    return list(out)


def protocol_finding(inspector: Inspector, rule: str, message: str, *, severity: str = "high",
                     category: str = "protocol", location: str = "request") -> Finding:
    """A finding about the traffic itself (oversize, uninspectable, malformed, SNI mismatch…).

    These cannot be disabled by config: they guard the proxy's ability to inspect at all.
    """
    return Finding(rule=rule, category=category, severity=severity,
                   action=inspector.action_for(rule, Action.BLOCK), message=message, location=location)


def url_findings(inspector: Inspector, url: str, method: str, location: str = "url") -> list[Finding]:
    def run() -> list[Finding]:
        from vallum.detection.urlpolicy import check_url

        return check_url(inspector, url, method, location)

    return guarded(inspector, location, run)


def request_findings(inspector: Inspector, method: str, url: str, headers: dict[str, str], body: bytes, *,
                     content_type: str | None, content_encoding: str | None, max_body_bytes: int) -> list[Finding]:
    def run() -> list[Finding]:
        from vallum.detection import http

        return http.request_findings(inspector, method, url, headers, body, content_type=content_type,
                                     content_encoding=content_encoding, max_body_bytes=max_body_bytes)

    return guarded(inspector, "request", run)


def response_findings(inspector: Inspector, url: str, status: int, headers: dict[str, str], body: bytes, *,
                      content_type: str | None, content_encoding: str | None, max_body_bytes: int) -> list[Finding]:
    def run() -> list[Finding]:
        from vallum.detection import http

        return http.response_findings(inspector, url, status, headers, body, content_type=content_type,
                                      content_encoding=content_encoding, max_body_bytes=max_body_bytes)

    return guarded(inspector, "response", run)


def address_finding(inspector: Inspector, host: str, ip: str, port: int) -> list[Finding]:
    def run() -> Finding | None:
        from vallum.detection.urlpolicy import check_resolved_address

        return check_resolved_address(inspector, host, ip, port)

    return guarded(inspector, "dns", run)


def text_findings(inspector: Inspector, text: str, location: str) -> list[Finding]:
    """Injection (inbound) findings in text entering the agent's context."""
    return guarded(inspector, location, inspector.inspect_text, text, direction="inbound", location=location)


def html_findings(inspector: Inspector, html: str, location: str) -> list[Finding]:
    def run() -> list[Finding]:
        from vallum.detection.html import scan_html

        return scan_html(inspector, html, location)

    return guarded(inspector, location, run)


def domain_matches(host: str, patterns: list[str]) -> bool:
    """Whether `host` matches one of the domain patterns ("*.example.com" also matches the apex)."""
    try:
        from vallum.detection.urlpolicy import domain_matches as dm

        return bool(dm(host, patterns))
    except ImportError:
        h = host.lower().rstrip(".")
        for p in patterns:
            p = p.lower().rstrip(".")
            base = p[2:] if p.startswith("*.") else p
            if h == base or (p.startswith("*.") and h.endswith("." + base)):
                return True
        return False


def registrable_domain(host: str) -> str:
    """The rate-limit key of a host: its registrable domain (public-suffix aware), or the IP."""
    try:
        from vallum.detection.netaddr import registrable_domain as rd

        return rd(host) or host
    except ImportError:
        return host


def primary(findings: list[Finding]) -> Finding | None:
    """The finding that explains a decision: the strongest action, then the highest severity."""
    best: Finding | None = None
    for f in findings:
        if best is None or (ACTION_RANK[f.action], _sev(f)) > (ACTION_RANK[best.action], _sev(best)):
            best = f
    return best


def _sev(f: Finding) -> int:
    return SEVERITIES.index(f.severity) if f.severity in SEVERITIES else 0


def block_body(request_id: str, finding: Finding | None, *, rule: str = "vallum.blocked",
               category: str = "protocol", message: str = "blocked by vallum") -> bytes:
    """The JSON body of a blocked request or response (INTERFACES §4)."""
    if finding is not None:
        rule, category, message = finding.rule, finding.category, finding.message
    return json.dumps({"action": "block", "rule": rule, "category": category, "message": message,
                       "request_id": request_id}).encode()


def headers_dict(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header pairs → a dict for the detectors; repeated fields are joined as RFC 9110 allows."""
    out: dict[str, str] = {}
    for k, v in headers:
        name = k.decode("latin-1").lower()
        value = v.decode("latin-1")
        if name in out:
            out[name] = out[name] + ("; " if name == "cookie" else ", ") + value
        else:
            out[name] = value
    return out
