"""Behaviour rule files: YAML features and rules whose conditions are CEL expressions. Pure.

A rule file holds ``features`` (sliding-window aggregates per entity, computed on event time) and
``rules`` (a CEL condition over the event, the entities' features and their links, with an id, a
weight, a scope and optional action override). `load_rule_source(text)` parses and compiles a file
and returns a `RuleSet` plus a list of `RuleProblem`s (with the position in the expression) — a
broken rule is reported and skipped, never raised into ingestion. See docs/risk-engine.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vallum.behaviour.windows import parse_duration

#: entity kinds a feature can be kept for, and a rule can be scoped to
ENTITY_KINDS = ("user", "session", "conversation", "ip", "net", "asn", "device", "api_key", "agent",
                "email_domain", "domain", "plan", "global")
#: public entity types of the HTTP API (INTERFACES §6), plus the extra kinds kept internally
API_ENTITY_TYPES = ("user", "session", "conversation", "ip", "device", "api_key", "agent", "domain",
                    "net", "asn", "email_domain")
SCOPES = ("event", *[k for k in ENTITY_KINDS if k not in ("plan", "global")])
AGGS = ("count", "sum", "max", "distinct", "last", "hourly", "ewma")
ACTIONS = ("allow", "review", "challenge", "block")
SEVERITIES = ("info", "low", "medium", "high", "critical")
#: top-level names a CEL expression may use
CEL_VARS = ("event", "first", "signals", "cohort", *ENTITY_KINDS)
_ID = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,127}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_POS = re.compile(r"<input>:(\d+):(\d+): (.*?)(?:\n|$)")


class _RuleLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false (YAML 1.1 would read the key `on:` as True)."""


_RuleLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RuleLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


class RuleFileError(ValueError):
    """A rule file that cannot be read at all (not YAML, wrong top-level shape)."""


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One error in a rule file, with where it is."""

    source: str
    item: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = f" (expression line {self.line}, column {self.column})" if self.line else ""
        return f"{self.source}: {self.item}: {self.message}{where}"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "item": self.item, "message": self.message, "line": self.line,
                "column": self.column}


@dataclass(slots=True)
class FeatureDef:
    """A feature kept per entity: `<entity>.<name>` in rule expressions."""

    name: str
    entity: str
    agg: str
    on: frozenset[str]
    window: float = 3600.0
    field: str | None = None
    n: int = 6
    #: ewma: weight of each new value (small = slow, long memory)
    alpha: float = 0.1
    when: str | None = None
    #: hourly features: also feed a per-plan cohort baseline (`cohort.<name>`)
    cohort: bool = False
    source: str = ""
    when_expr: Any = None
    field_path: tuple[str, ...] = ()
    #: cheap Python pre-checks of `when` (see `guards_for`): one false guard means `when` is false
    guards: tuple[tuple[str, str, str, Any], ...] = ()


@dataclass(slots=True)
class Example:
    name: str
    expect: bool
    events: list[dict[str, Any]]
    entity: str | None = None


@dataclass(slots=True)
class Rule:
    """One behaviour rule."""

    id: str
    description: str
    when: str
    scope: str = "user"
    on: frozenset[str] = frozenset()
    weight: float = 20.0
    severity: str = "medium"
    action: str | None = None
    ttl: float | None = None
    evidence: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    enabled: bool = True
    source: str = ""
    expr: Any = None
    evidence_exprs: list[tuple[str, Any]] = field(default_factory=list)
    #: top-level names the expression (and evidence) use, to build only what is needed
    uses: frozenset[str] = frozenset()
    #: entity kinds the condition reads: the rule is skipped for events without one of them
    needs: frozenset[str] = frozenset()
    #: cheap Python pre-checks of `when` (see `guards_for`): one false guard means `when` is false
    guards: tuple[tuple[str, str, str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "description": self.description, "when": self.when, "scope": self.scope,
                "on": sorted(self.on), "weight": self.weight, "severity": self.severity, "action": self.action,
                "ttl": self.ttl, "evidence": self.evidence, "tags": self.tags, "enabled": self.enabled,
                "source": self.source, "examples": len(self.examples)}


@dataclass(slots=True)
class RuleSet:
    features: list[FeatureDef] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)

    def extend(self, other: RuleSet) -> None:
        have = {r.id for r in self.rules}
        for r in other.rules:
            if r.id in have:
                self.problems.append(RuleProblem(r.source, r.id, "duplicate rule id; the later one is ignored"))
                continue
            have.add(r.id)
            self.rules.append(r)
        fnames = {(f.entity, f.name) for f in self.features}
        for f in other.features:
            if (f.entity, f.name) in fnames:
                continue  # same feature declared by two files: the first definition wins
            fnames.add((f.entity, f.name))
            self.features.append(f)
        self.problems.extend(other.problems)

    def rule(self, rule_id: str) -> Rule | None:
        for r in self.rules:
            if r.id == rule_id:
                return r
        return None


_ENV: Any = None


def cel_env() -> Any:
    """The CEL environment rules compile in: every top-level name is a map of dynamic values."""
    global _ENV
    if _ENV is None:
        from cel_expr_python import cel

        dyn_map = cel.Type.Map(cel.Type.STRING, cel.Type.DYN)
        _ENV = cel.NewEnv(variables={name: dyn_map for name in CEL_VARS})
    return _ENV


class CelCompileError(ValueError):
    def __init__(self, message: str, line: int | None, column: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


def compile_cel(expression: str) -> Any:
    """Compile a CEL expression; `CelCompileError` carries the line and column (1-based)."""
    if not isinstance(expression, str) or not expression.strip():
        raise CelCompileError("empty expression", None, None)
    try:
        return cel_env().compile(expression)
    except RuntimeError as exc:
        text = str(exc)
        m = _POS.search(text)
        if m:
            raise CelCompileError(m.group(3).strip(), int(m.group(1)), int(m.group(2))) from None
        raise CelCompileError(text.split("\n")[0], None, None) from None


def _conjuncts(expression: str, op: str = "&&") -> list[str] | None:
    """The top-level `&&` (or `||`) operands of an expression; None when it is not that plain form."""
    other = "||" if op == "&&" else "&&"
    if re.search(r"(?<![\w.])[rRbB]{1,2}['\"]", expression):
        return None  # raw/bytes literals: not worth parsing here
    parts: list[str] = []
    depth = 0
    quote = ""
    start = 0
    i = 0
    n = len(expression)
    while i < n:
        ch = expression[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            if expression.startswith(ch * 3, i):
                return None
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            if expression.startswith(op, i):
                parts.append(expression[start:i])
                i += 2
                start = i
                continue
            if (op == "&&" and expression.startswith(other, i)) or ch == "?":
                return None
        i += 1
    if quote or depth:
        return None
    parts.append(expression[start:])
    return [p.strip() for p in parts]


_NUM = r"(-?\d+\.\d*(?:[eE][+-]?\d+)?)"
_CMP = r"\s*(>=|<=|>|<|==)\s*"
_ATTR = r"event\.attrs(?:\.([A-Za-z_]\w*)|\[\"([^\"\\]*)\"\])"
_G_VAR_CMP = re.compile(rf"^([a-z_]+)\.([A-Za-z_]\w*){_CMP}{_NUM}$")
_G_VAR_BOOL = re.compile(r"^([a-z_]+)\.([A-Za-z_]\w*)$")
_G_ATTR_CMP = re.compile(rf"^{_ATTR}{_CMP}{_NUM}$")
_G_ATTR_STR = re.compile(rf"^{_ATTR}\s*==\s*(?:'([^'\\]*)'|\"([^\"\\]*)\")$")
_G_ATTR_BOOL = re.compile(rf"^{_ATTR}$")
_G_HAS = re.compile(r"^(?:has\(event\.attrs\.([A-Za-z_]\w*)\)"
                    r"|\"([^\"\\]*)\"\s+in\s+event\.attrs|'([^'\\]*)'\s+in\s+event\.attrs)$")
_G_SIZE = re.compile(r"^size\(([a-z_]+)\.([A-Za-z_]\w*)\)\s*(>=|<=|>|<|==)\s*(\d+)$")
_GUARD_VARS = frozenset(k for k in CEL_VARS if k not in ("event", "cohort"))


def guards_for(expression: str) -> tuple[tuple[str, str, str, Any], ...]:
    """Cheap pre-checks of a CEL condition, evaluated in Python before the CEL program.

    Each guard is one top-level `&&` operand of a simple form: `<var>.<name> <op> <double>`,
    `size(<var>.<name>) <op> <int>` over a list, a bare boolean `<var>.<name>` /
    `event.attrs.<name>`, `event.attrs.<name> == '<text>'`,
    (or the whole expression is `first.<a> || first.<b> || …`, likewise for `signals`),
    `has(event.attrs.<name>)` or `'<name>' in event.attrs`. When a guard is certainly false on the
    values the expression would see, the whole conjunction is false (CEL's `&&` is false as soon
    as one operand is false, whatever the others give, errors included), so the CEL evaluation
    can be skipped with the same outcome. A guard that cannot be decided (missing key, other
    types) decides nothing: the CEL program runs as before.
    """
    parts = _conjuncts(expression)
    if not parts:
        # `first.a || first.b || …` (one map's booleans): false when every one of them is false
        alts = _conjuncts(expression, "||")
        if alts and len(alts) > 1:
            ms = [_G_VAR_BOOL.match(a) for a in alts]
            if all(ms) and len({m.group(1) for m in ms if m}) == 1:
                src = ms[0].group(1) if ms[0] else ""
                if src in ("first", "signals"):
                    return ((src, "", "or", tuple(m.group(2) for m in ms if m)),)
        return ()
    out: list[tuple[str, str, str, Any]] = []
    for p in parts:
        m = _G_HAS.match(p)
        if m:
            out.append(("attrs", next(g for g in m.groups() if g is not None), "has", None))
            continue
        m = _G_ATTR_CMP.match(p)
        if m:
            out.append(("attrs", m.group(1) if m.group(1) is not None else m.group(2), m.group(3), float(m.group(4))))
            continue
        m = _G_ATTR_STR.match(p)
        if m:
            out.append(("attrs", m.group(1) if m.group(1) is not None else m.group(2), "==s",
                        m.group(3) if m.group(3) is not None else m.group(4)))
            continue
        m = _G_ATTR_BOOL.match(p)
        if m:
            out.append(("attrs", m.group(1) if m.group(1) is not None else m.group(2), "bool", None))
            continue
        m = _G_SIZE.match(p)
        if m and m.group(1) in _GUARD_VARS:
            out.append((m.group(1), m.group(2), "size" + m.group(3), int(m.group(4))))
            continue
        m = _G_VAR_CMP.match(p)
        if m and m.group(1) in _GUARD_VARS:
            out.append((m.group(1), m.group(2), m.group(3), float(m.group(4))))
            continue
        m = _G_VAR_BOOL.match(p)
        if m and m.group(1) in _GUARD_VARS:
            out.append((m.group(1), m.group(2), "bool", None))
    return tuple(out)


#: what a guard sees for an absent key
MISSING: Any = object()


def guard_false(op: str, value: Any, const: Any) -> bool:
    """True when a guard is certainly false for `value` (`MISSING`: the key is absent)."""
    if op == "has":
        return value is MISSING
    if op == "bool":
        return value is False
    if op == "or":
        return all(v is False for v in value)
    if op == "==s":
        return type(value) is str and value != const
    if op[:4] == "size":
        if type(value) is not list:
            return False
        value, op = float(len(value)), op[4:]
    if type(value) is not float:
        return False
    if op == ">=":
        return not value >= const
    if op == ">":
        return not value > const
    if op == "<=":
        return not value <= const
    if op == "<":
        return not value < const
    return value != const


def names_used(*expressions: str) -> frozenset[str]:
    found: set[str] = set()
    for e in expressions:
        for name in CEL_VARS:
            if re.search(rf"(?<![\w.]){re.escape(name)}\b", e):
                found.add(name)
    return frozenset(found)


def _types(value: Any, where: str, problems: list[str]) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where}: 'on' must be an event type or a list of them")
        return frozenset()
    return frozenset(value)


def _parse_feature(d: Any, source: str, problems: list[RuleProblem]) -> FeatureDef | None:
    if not isinstance(d, dict):
        problems.append(RuleProblem(source, "features", "each feature must be a mapping"))
        return None
    name = d.get("name")
    item = f"feature {name!r}"
    allowed = {"name", "entity", "agg", "on", "window", "field", "n", "when", "cohort", "description", "alpha"}
    errs: list[str] = [f"unknown key {k!r}" for k in d if k not in allowed]
    if not isinstance(name, str) or not _NAME.match(name):
        errs.append("name must be lowercase letters, digits and _")
    entity = d.get("entity")
    if entity not in ENTITY_KINDS:
        errs.append(f"entity must be one of {', '.join(ENTITY_KINDS)}")
    agg = d.get("agg", "count")
    if agg not in AGGS:
        errs.append(f"agg must be one of {', '.join(AGGS)}")
    on = _types(d.get("on"), "on", errs)
    window = 3600.0
    try:
        if "window" in d:
            window = parse_duration(d["window"])
    except ValueError as exc:
        errs.append(str(exc))
    fld = d.get("field")
    if agg in ("sum", "max", "distinct", "last", "hourly", "ewma") and agg != "hourly" and not fld:
        errs.append(f"agg {agg} needs a field")
    if fld is not None and (not isinstance(fld, str) or not re.match(r"^[a-z_]+(\.[\w.]+)?$", fld)):
        errs.append("field must be a path such as event.attrs.cost_usd or ip.country")
    n = d.get("n", 6)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 100:
        errs.append("n must be an integer 1..100")
    alpha = d.get("alpha", 0.1)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha <= 1:
        errs.append("alpha must be a number in (0, 1]")
    if errs:
        for e in errs:
            problems.append(RuleProblem(source, item, e))
        return None
    assert isinstance(name, str) and isinstance(entity, str)  # checked above
    f = FeatureDef(name=name, entity=entity, agg=agg, on=on, window=window, field=fld, n=n, when=d.get("when"),
                   cohort=bool(d.get("cohort", False)), source=source, alpha=float(alpha))
    if fld:
        f.field_path = tuple(_split_path(fld))
    if f.when:
        try:
            f.when_expr = compile_cel(str(f.when))
            f.guards = guards_for(str(f.when))
        except CelCompileError as exc:
            problems.append(RuleProblem(source, item, f"when: {exc.message}", exc.line, exc.column))
            return None
    return f


def _split_path(path: str) -> list[str]:
    """`event.attrs.gen_ai.usage.input_tokens` → ["event", "attrs", "gen_ai.usage.input_tokens"]."""
    parts = path.split(".")
    if len(parts) > 2 and parts[0] == "event" and parts[1] == "attrs":
        return ["event", "attrs", ".".join(parts[2:])]
    return parts


def _parse_example(d: Any, item: str, source: str, problems: list[RuleProblem]) -> Example | None:
    if not isinstance(d, dict) or not isinstance(d.get("events"), list):
        problems.append(RuleProblem(source, item, "each example needs an 'events' list"))
        return None
    expect = d.get("expect", "fire")
    if expect not in ("fire", "no_fire"):
        problems.append(RuleProblem(source, item, "example expect must be fire or no_fire"))
        return None
    return Example(name=str(d.get("name", "example")), expect=expect == "fire", events=d["events"],
                   entity=d.get("entity"))


def _parse_rule(d: Any, source: str, problems: list[RuleProblem]) -> Rule | None:
    if not isinstance(d, dict):
        problems.append(RuleProblem(source, "rules", "each rule must be a mapping"))
        return None
    rid = d.get("id")
    item = f"rule {rid!r}"
    allowed = {"id", "description", "when", "scope", "on", "weight", "severity", "action", "ttl", "evidence",
               "tags", "examples", "enabled"}
    errs = [f"unknown key {k!r}" for k in d if k not in allowed]
    if not isinstance(rid, str) or not _ID.match(rid):
        errs.append("id must be lowercase letters, digits, '.', '_' or '-'")
    when = d.get("when")
    if not isinstance(when, str) or not when.strip():
        errs.append("missing 'when' (a CEL expression)")
    scope = d.get("scope", "user")
    if scope not in SCOPES:
        errs.append(f"scope must be one of {', '.join(SCOPES)}")
    weight = d.get("weight", 20)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 100:
        errs.append("weight must be a number 0..100")
    severity = d.get("severity", "medium")
    if severity not in SEVERITIES:
        errs.append(f"severity must be one of {', '.join(SEVERITIES)}")
    action = d.get("action")
    if action is not None and action not in ACTIONS:
        errs.append(f"action must be one of {', '.join(ACTIONS)}")
    ttl = None
    if d.get("ttl") is not None:
        try:
            ttl = parse_duration(d["ttl"])
        except ValueError as exc:
            errs.append(f"ttl: {exc}")
    evidence = d.get("evidence", [])
    if not isinstance(evidence, list) or not all(isinstance(e, str) for e in evidence):
        errs.append("evidence must be a list of CEL expressions")
        evidence = []
    on = _types(d.get("on"), "on", errs)
    if errs:
        for e in errs:
            problems.append(RuleProblem(source, item, e))
        return None
    assert isinstance(rid, str) and isinstance(when, str)  # checked above
    rule = Rule(id=rid, description=str(d.get("description", "")).strip(), when=when, scope=scope, on=on,
                weight=float(weight), severity=severity, action=action, ttl=ttl, evidence=evidence,
                tags=[str(t) for t in d.get("tags", []) or []], enabled=bool(d.get("enabled", True)), source=source)
    try:
        rule.expr = compile_cel(when)
    except CelCompileError as exc:
        problems.append(RuleProblem(source, item, exc.message, exc.line, exc.column))
        return None
    for ev in evidence:
        try:
            rule.evidence_exprs.append((ev, compile_cel(ev)))
        except CelCompileError as exc:
            problems.append(RuleProblem(source, item, f"evidence {ev!r}: {exc.message}", exc.line, exc.column))
    rule.uses = names_used(when, *evidence)
    rule.guards = guards_for(when)
    rule.needs = frozenset(k for k in names_used(when) if k in ENTITY_KINDS and k not in ("plan", "global")) | (
        frozenset([scope]) if scope in ENTITY_KINDS else frozenset())
    for ex in d.get("examples", []) or []:
        parsed = _parse_example(ex, item, source, problems)
        if parsed:
            rule.examples.append(parsed)
    return rule


def load_rule_source(text: str, source: str = "<rules>") -> RuleSet:
    """Parse one rule file's text. Raises `RuleFileError` only when the file as a whole is unusable."""
    try:
        data = yaml.load(text, Loader=_RuleLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise RuleFileError(f"{source}: invalid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RuleFileError(f"{source}: the top level must be a mapping with 'features' and/or 'rules'")
    unknown = [k for k in data if k not in ("version", "features", "rules")]
    if unknown:
        raise RuleFileError(f"{source}: unknown top-level key {unknown[0]!r}")
    rs = RuleSet()
    for fd in data.get("features") or []:
        f = _parse_feature(fd, source, rs.problems)
        if f:
            rs.features.append(f)
    seen: set[str] = set()
    for rd in data.get("rules") or []:
        r = _parse_rule(rd, source, rs.problems)
        if r is None:
            continue
        if r.id in seen:
            rs.problems.append(RuleProblem(source, r.id, "duplicate rule id; the later one is ignored"))
            continue
        seen.add(r.id)
        rs.rules.append(r)
    return rs


def load_rule_file(path: str | Path) -> RuleSet:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleFileError(f"{p}: cannot read: {exc}") from None
    return load_rule_source(text, str(p))


def builtin_rule_files() -> list[tuple[str, str]]:
    """(name, text) of every built-in rule file, in name order."""
    pkg = resources.files("vallum.behaviour") / "rules"
    out = []
    for entry in sorted(pkg.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            out.append((f"builtin:{entry.name}", entry.read_text(encoding="utf-8")))
    return out


def load_ruleset(rule_files: list[str] | tuple[str, ...] = (), disable: list[str] | tuple[str, ...] = (),
                 builtin: bool = True) -> RuleSet:
    """The built-in pack plus user files; disabled ids (or `prefix*`) are marked off."""
    rs = RuleSet()
    if builtin:
        for name, text in builtin_rule_files():
            try:
                rs.extend(load_rule_source(text, name))
            except RuleFileError as exc:
                rs.problems.append(RuleProblem(name, "file", str(exc)))
    for path in rule_files:
        try:
            rs.extend(load_rule_file(path))
        except RuleFileError as exc:
            rs.problems.append(RuleProblem(str(path), "file", str(exc)))
    for r in rs.rules:
        for d in disable:
            if d == r.id or (d.endswith("*") and r.id.startswith(d[:-1])):
                r.enabled = False
    return rs
