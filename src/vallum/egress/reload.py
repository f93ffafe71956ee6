"""Configuration reload: what a new config weakens compared with the running one.

Pure: `weakenings(old, new)` lists, in words, every change that lowers protection (mode downgrade,
detectors switched off, allowlist widened, blocklist narrowed, private ranges opened, limits raised
or off, response scanning off). The server logs each one when it applies such a reload.
"""

from __future__ import annotations

from vallum.config import Config

_MODE_RANK = {"audit": 0, "balanced": 1, "strict": 2}
_ACTION_RANK = {"allow": 0, "warn": 1, "block": 2}


def _added(old: list[str], new: list[str]) -> list[str]:
    o = set(old)
    return [x for x in new if x not in o]


def _raised(old: int | float, new: int | float) -> bool:
    """A limit where 0 means off: raising it or switching it off weakens."""
    if old == 0:
        return False
    return new == 0 or new > old


def weakenings(old: Config, new: Config) -> list[str]:
    """Human-readable list of the ways `new` protects less than `old` (empty = not weaker)."""
    out: list[str] = []
    om, nm = str(old.mode), str(new.mode)
    if _MODE_RANK[nm] < _MODE_RANK[om]:
        out.append(f"mode downgraded from {om} to {nm}")
    od, nd = old.detection, new.detection
    for rid in _added(od.disable, nd.disable):
        out.append(f"detector {rid} disabled")
    for rid, o in nd.rules.items():
        prev = od.rules.get(rid)
        if not o.enabled and (prev is None or prev.enabled):
            out.append(f"rule {rid} disabled")
        elif o.action is not None:
            prev_rank = _ACTION_RANK[prev.action] if prev is not None and prev.action else 2
            if _ACTION_RANK[o.action] < prev_rank:
                out.append(f"rule {rid} lowered to {o.action}")
    if nd.max_input_bytes > od.max_input_bytes:
        out.append("detection.max_input_bytes raised")
    oe, ne = old.egress, new.egress
    if added := _added(oe.allowlist, ne.allowlist):
        out.append(f"allowlist widened: {', '.join(added)}")
    if oe.allowlist and not ne.allowlist:
        out.append("allowlist emptied")
    if removed := _added(ne.blocklist, oe.blocklist):
        out.append(f"blocklist narrowed: {', '.join(removed)} removed")
    if added := _added(oe.allow_private, ne.allow_private):
        out.append(f"allow_private widened: {', '.join(added)}")
    if _raised(oe.rate_limit_per_minute, ne.rate_limit_per_minute):
        out.append("rate limit raised or switched off")
    if _raised(oe.data_budget_per_minute, ne.data_budget_per_minute):
        out.append("data budget raised or switched off")
    if oe.scan_responses and not ne.scan_responses:
        out.append("response scanning switched off")
    if ne.max_body_bytes > oe.max_body_bytes or ne.max_response_bytes > oe.max_response_bytes:
        out.append("inspection size limits raised")
    if oe.tls.intercept and not ne.tls.intercept:
        out.append("TLS interception switched off")
    if added := _added(oe.tls.passthrough, ne.tls.passthrough):
        out.append(f"TLS passthrough widened: {', '.join(added)}")
    return out
