"""The inspection pipeline: one entry point that every transport calls.

`Inspector(config)` compiles the rule set once; `inspector.scan(content, kind)` returns a `Verdict`.
`inspect_text` and `inspect_fields` are the finer pieces transports use directly (the egress proxy
scans header and body fields, the MCP proxy scans tool arguments). Pure: no I/O, no clock.

Directions: ``outbound`` text is leaving (credential / data-loss rules), ``inbound`` text is
entering an agent's context (injection rules, and credentials reported as such), ``tooldef`` is an
MCP tool definition (inbound rules plus tool-poisoning rules); ``None`` runs all but tooldef-only.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from vallum.config import Config
from vallum.detection import decode, normalize
from vallum.detection.matcher import RuleMatch, RuleMatcher
from vallum.detection.model import KINDS, Action, Finding, Mode, Verdict, dedupe, redact
from vallum.detection.rules import Rule, builtin_rules, check_unique, load_rule_file
from vallum.detection.validators import VALIDATORS, shannon_entropy

#: kinds implemented outside the detection package, loaded on first use ("module:function").
#: The handler is called as handler(inspector, content) -> list[Finding].
KIND_PLUGINS: dict[str, str] = {
    "url": "vallum.detection.urlpolicy:scan_url_input",
    "http_request": "vallum.detection.http:scan_http_request",
    "http_response": "vallum.detection.http:scan_http_response",
    "mcp": "vallum.mcp.inspection:scan_mcp_input",
}

SECRET_CATEGORIES = frozenset({"credential", "pii", "entropy"})
#: invisible format characters (zero-width, soft hyphen, bidi controls, tags, variation selectors)
_FORMAT_CHARS = re.compile("[\u00ad\u034f\u061c\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
                           "\ufe00-\ufe0f\ufeff\U000e0000-\U000e0fff]")
#: what makes that copy worth matching: format characters, full-width ASCII, math alphanumerics
_EVASION_CHARS = re.compile(_FORMAT_CHARS.pattern[:-1] + "\uff01-\uff5e\U0001d400-\U0001d7ff]")
INJECTION_CATEGORIES = frozenset({"injection", "tool_poisoning"})



_CLAUSE_END = re.compile(r"[.!?\u3002\uff01\uff1f](?=\s|$)|\n")
_LONG_TOKEN = re.compile(r"(?=[A-Za-z_+/=\-]*[0-9])[A-Za-z0-9_+/=\-]{24,}")


def directive_excerpt(text: str, start: int, end: int, limit: int = 80) -> str:
    """The directive phrase of an injection match, for evidence: from the match start to the end
    of its clause (injection rules consume only their anchor words and look ahead for the rest),
    at most `limit` characters; long token-like runs are cut so that no secret is quoted whole."""
    stop = min(len(text), start + limit)
    m = _CLAUSE_END.search(text, min(max(end, start + 12), stop), stop)
    out = " ".join(text[start:(m.end() if m else stop)].split())
    out = _LONG_TOKEN.sub(lambda t: t.group(0)[:6] + "…", out)
    return out if len(out) <= limit else out[:limit - 3] + "..."

class ScanInputError(ValueError):
    """The input cannot be scanned as given (wrong shape for its kind, unknown kind)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of text to inspect: the original or one decoded variant of it."""

    text: str
    chain: tuple[str, ...] = ()


def runs_in(rule: Rule, direction: str | None) -> bool:
    """Whether a rule runs for a scan direction (see `vallum.detection.rules`)."""
    if direction is None:
        return "outbound" in rule.directions or "inbound" in rule.directions
    if direction == "tooldef":
        return "tooldef" in rule.directions or "inbound" in rule.directions
    return direction in rule.directions


def _rule_enabled(rule_id: str, disabled: list[str]) -> bool:
    for d in disabled:
        if d == rule_id or (d.endswith("*") and rule_id.startswith(d[:-1])):
            return False
    return True


class Inspector:
    """A compiled rule set plus the policy of one configuration."""

    def __init__(self, config: Config | None = None, engine: str | None = None,
                 extra_rules: Iterable[Rule] = ()) -> None:
        self.config = config or Config()
        self.mode = Mode(self.config.mode)
        det = self.config.detection
        rules = list(builtin_rules())
        for path in det.rule_files:
            rules.extend(load_rule_file(path))
        rules.extend(extra_rules)
        check_unique(rules)
        disabled = list(det.disable) + [rid for rid, o in det.rules.items() if not o.enabled]
        self.rules = [r for r in rules if _rule_enabled(r.id, disabled)]
        self.rules_by_id = {r.id: r for r in self.rules}
        self.raw = RuleMatcher([r for r in self.rules if r.target == "raw"], engine)
        self.normalized = RuleMatcher([r for r in self.rules if r.target == "normalized"], engine)
        # inbound scans skip the tooldef-only rules (tool poisoning) instead of matching and discarding
        self.normalized_inbound = RuleMatcher(
            [r for r in self.rules if r.target == "normalized" and r.directions != ("tooldef",)], engine)
        self.engine = self.raw.engine

    # ----------------------------------------------------------------- policy
    def action_for(self, rule_id: str, default: Action, strict: Action | None = None) -> Action:
        """The action of a finding under the active mode and the config's overrides."""
        override = self.config.detection.rules.get(rule_id)
        if override is not None and override.action is not None:
            action = Action(override.action)
        elif self.mode is Mode.STRICT:
            action = strict or default
        else:
            action = default
        if self.mode is Mode.AUDIT and action is Action.BLOCK:
            return Action.WARN
        return action

    def finding(self, rule_id: str, category: str, severity: str, message: str, *,
                action: Action = Action.BLOCK, strict_action: Action | None = None,
                location: str = "content", decoded: tuple[str, ...] = (), evidence: str = "",
                score: float | None = None, extra: dict[str, Any] | None = None) -> Finding | None:
        """Build a finding for a detector that is not a pattern rule (URL policy, MCP, entropy).

        Returns None when the config disables `rule_id`.
        """
        if not _rule_enabled(rule_id, self.config.detection.disable):
            return None
        o = self.config.detection.rules.get(rule_id)
        if o is not None and not o.enabled:
            return None
        return Finding(rule=rule_id, category=category, severity=severity,
                       action=self.action_for(rule_id, action, strict_action), message=message,
                       location=location, decoded=decoded, evidence=evidence, score=score, extra=extra)

    # ----------------------------------------------------------------- text
    def segments(self, text: str) -> list[Segment]:
        det = self.config.detection
        segs = [Segment(text)]
        if not text.isascii() and _EVASION_CHARS.search(text):
            # a secret cut by zero-width characters or typed in full-width forms: match it folded
            folded = unicodedata.normalize("NFKC", _FORMAT_CHARS.sub("", text))
            if folded != text:
                segs.append(Segment(folded, ("unicode",)))
        for hidden in normalize.hidden_payloads(text):
            segs.append(Segment(hidden, ("unicode_tags",)))
        for d in decode.decode_layers(text, det.max_decode_depth, det.max_decoded_bytes):
            segs.append(Segment(d.text, d.chain))
        return segs

    def _rule_finding(self, m: RuleMatch, location: str, chain: tuple[str, ...]) -> Finding | None:
        r = m.rule
        if r.validator is not None:
            check = VALIDATORS.get(r.validator)
            if check is None or not check(m.value):
                return None
        if r.min_entropy is not None and shannon_entropy(m.value) < r.min_entropy:
            return None
        if r.category in SECRET_CATEGORIES:
            evidence = redact(m.value)
        elif r.category in ("injection", "tool_poisoning"):
            evidence = directive_excerpt(m.match.string, m.match.start(), m.match.end())
        else:
            snippet = m.match.group(0)
            evidence = snippet if len(snippet) <= 80 else snippet[:77] + "..."
        return Finding(rule=r.id, category=r.category, severity=r.severity,
                       action=self.action_for(r.id, r.action, r.strict_action), message=r.message,
                       location=location, decoded=chain, evidence=evidence)

    def inspect_text(self, text: str, *, direction: str | None = None,
                     location: str = "content") -> list[Finding]:
        """Every finding in `text` and in what decodes out of it."""
        findings: list[Finding] = []
        for seg in self.segments(text):
            for m in self.raw.finditer(seg.text):
                if runs_in(m.rule, direction):
                    f = self._rule_finding(m, location, seg.chain)
                    if f is not None:
                        findings.append(f)
            if self.normalized.rules and direction != "outbound":
                norm = normalize.normalize_for_matching(seg.text)
                matcher = self.normalized if direction == "tooldef" else self.normalized_inbound
                for m in matcher.finditer(norm):
                    if runs_in(m.rule, direction):
                        f = self._rule_finding(m, location, seg.chain)
                        if f is not None:
                            findings.append(f)
            if direction != "outbound" and not any(f.category in INJECTION_CATEGORIES for f in findings):
                # the semantic classifier runs only where no pattern already found an injection
                findings.extend(self.semantic_findings(seg.text, location, seg.chain))
            if direction in (None, "outbound"):
                findings.extend(self.entropy_findings(seg.text, location, seg.chain, findings))
        return dedupe(findings)

    def entropy_findings(self, text: str, location: str, chain: tuple[str, ...],
                         already: list[Finding]) -> list[Finding]:
        if not self.config.detection.entropy.enabled:
            return []
        hook = _entropy_hook()
        return hook(self, text, location, chain, already) if hook is not None else []

    def semantic_findings(self, text: str, location: str, chain: tuple[str, ...]) -> list[Finding]:
        if not self.config.detection.semantic.enabled:
            return []
        hook = _semantic_hook()
        return hook(self, text, location, chain) if hook is not None else []

    def inspect_fields(self, fields: list[tuple[str, str]], *, direction: str | None = "outbound",
                       join_label: str = "joined") -> list[Finding]:
        """Scan each (location, value), then the values joined, to catch secrets split across them.

        A finding from the joined text is kept only if no single field already produced it.
        """
        findings: list[Finding] = []
        for loc, value in fields:
            if value:
                findings.extend(self.inspect_text(value, direction=direction, location=loc))
        values = [v for _, v in fields if v]
        if len(values) > 1 and direction != "inbound":
            seen = {(f.rule) for f in findings}
            locs = "+".join(loc for loc, v in fields if v)
            for glue in ("", "\n"):
                joined = glue.join(values)
                for f in self.inspect_text(joined, direction="outbound", location=f"{join_label}({locs})"):
                    if f.rule not in seen and f.category in ("credential", "pii"):
                        findings.append(f)
                        seen.add(f.rule)
        return dedupe(findings)

    # ----------------------------------------------------------------- kinds
    def scan(self, content: Any, kind: str = "text", id: Any = None) -> Verdict:
        """Scan one input of a kind (INTERFACES §2). Fails closed on internal errors."""
        if kind not in KINDS:
            raise ScanInputError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        try:
            size = _approx_size(content)
            if size > self.config.detection.max_input_bytes:
                f = self.finding("vallum.input_too_large", "protocol", "high",
                                 f"input of {size} bytes exceeds detection.max_input_bytes; not inspected",
                                 action=Action.BLOCK)
                return Verdict.from_findings([f] if f else [], id=id)
            findings = self._scan_kind(content, kind)
        except ScanInputError:
            raise
        except Exception as exc:  # fail closed: an internal error never passes content
            f = Finding(rule="vallum.internal_error", category="protocol", severity="high",
                        action=self.action_for("vallum.internal_error", Action.BLOCK),
                        message=f"scanner error ({type(exc).__name__}); blocked (fail closed)")
            return Verdict.from_findings([f], id=id)
        return Verdict.from_findings(findings, id=id)

    def _scan_kind(self, content: Any, kind: str) -> list[Finding]:
        if kind in ("text", "outbound", "inbound"):
            if not isinstance(content, str):
                raise ScanInputError(f"kind {kind} needs a string content, not {type(content).__name__}")
            direction = None if kind == "text" else kind
            return self.inspect_text(content, direction=direction)
        handler = _plugin(kind)
        return handler(self, content)


def _approx_size(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, bytes | bytearray):
        return len(content)
    try:
        return len(json.dumps(content, default=str))
    except (TypeError, ValueError):
        return 0


_plugins: dict[str, Callable[[Inspector, Any], list[Finding]]] = {}


def _plugin(kind: str) -> Callable[[Inspector, Any], list[Finding]]:
    if kind not in _plugins:
        spec = KIND_PLUGINS[kind]
        mod, fn = spec.split(":")
        try:
            _plugins[kind] = getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as exc:
            raise ScanInputError(f"kind {kind} is not available in this build ({exc})") from None
    return _plugins[kind]


@functools.cache
def _semantic_hook() -> Callable[..., list[Finding]] | None:
    try:
        from vallum.detection.semantic import semantic_findings
    except ImportError:
        return None
    return semantic_findings


@functools.cache
def _entropy_hook() -> Callable[..., list[Finding]] | None:
    try:
        from vallum.detection.entropy import entropy_findings
    except ImportError:
        return None
    return entropy_findings


# --------------------------------------------------------------------- cache
_cache_lock = threading.Lock()
_inspectors: dict[tuple[str, str | None], Inspector] = {}


def get_inspector(config: Config | None = None, engine: str | None = None) -> Inspector:
    """A cached `Inspector` for this configuration (compiling rules is the slow part)."""
    cfg = config or Config()
    key = (cfg.model_dump_json(), engine)
    with _cache_lock:
        insp = _inspectors.get(key)
        if insp is None:
            if len(_inspectors) > 16:
                _inspectors.clear()
            insp = Inspector(cfg, engine)
            _inspectors[key] = insp
        return insp


def scan(content: Any, kind: str = "text", config: Config | None = None, id: Any = None) -> Verdict:
    """Scan one input with a (cached) inspector for `config`."""
    return get_inspector(config).scan(content, kind, id=id)
