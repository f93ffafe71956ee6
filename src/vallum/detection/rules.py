"""Detection rules as data: loading and checking the versioned YAML rule files.

A rule file is ``{"version": 1, "rules": [...]}``; each rule::

    id: dlp.github_pat                 # unique, dotted: <family>.<name>
    description: GitHub personal access token (classic)
    category: credential               # one of model.CATEGORIES
    severity: critical                 # info | low | medium | high | critical
    action: block                      # default action in balanced mode: allow | warn | block
    strict_action: block               # optional, default = action
    target: raw                        # raw (decoded text as is) | normalized (normalize_for_matching)
    pattern: 'ghp_[A-Za-z0-9]{36}'     # Python `re` syntax that Hyperscan also accepts (PCRE subset)
    flags: [i]                         # optional: i (ignore case), s (dot matches newline), m (multiline)
    secret_group: 1                    # optional group (number or name) holding the secret; default 0
    keywords: [ghp_]                   # optional: the rule runs only if one occurs (case-insensitively)
    validator: github_checksum         # optional name in vallum.detection.validators.VALIDATORS
    gate: bip39_run                    # optional name in vallum.detection.gates.GATES: a cheap
                                       # test of the whole buffer that is true whenever the rule
                                       # could find something; when false the rule does not run
    min_entropy: 3.0                   # optional: the secret's Shannon entropy (bits/char) must reach it
    directions: [outbound, inbound]    # optional (default [outbound, inbound]); `tooldef` = MCP tool
                                       # definitions only (inspect_text(direction="tooldef") runs
                                       # inbound and tooldef rules; direction None runs all but
                                       # tooldef-only rules)
    message: GitHub personal access token   # optional, default = description
    samples:                           # checked by the test suite
      positive: ["..."]                # each must produce this rule's finding
      negative: ["..."]                # each must not
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vallum.detection.model import CATEGORIES, SEVERITIES, Action

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 20x faster on the big rule files
_ID_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_\-]+)+$")
_FLAG_BITS = {"i": re.IGNORECASE, "s": re.DOTALL, "m": re.MULTILINE}
#: the directions a rule may declare; `tooldef` = MCP tool definitions (poisoning rules)
ALL_DIRECTIONS = ("outbound", "inbound", "tooldef")
#: default when a rule declares none
DIRECTIONS = ("outbound", "inbound")
_ALLOWED_KEYS = {
    "id", "description", "category", "severity", "action", "strict_action", "target", "pattern",
    "flags", "secret_group", "keywords", "validator", "gate", "min_entropy", "directions", "message",
    "samples", "tags",
}


class RuleFileError(ValueError):
    """A rule file that cannot be loaded; the message names the file and the rule."""


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    description: str
    category: str
    severity: str
    action: Action
    strict_action: Action
    target: str
    pattern: str
    flags: str = ""
    secret_group: int | str = 0
    keywords: tuple[str, ...] = ()
    validator: str | None = None
    gate: str | None = None
    min_entropy: float | None = None
    directions: tuple[str, ...] = DIRECTIONS
    message: str = ""
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    source: str = ""
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @property
    def compiled(self) -> re.Pattern[str]:
        """The compiled pattern; built-in rules compile on first use (a few are very long, and a
        short-lived `vallum scan` should not pay for rules it never runs)."""
        if self.regex is None:
            object.__setattr__(self, "regex", re.compile(self.pattern, self.re_flags))
        return self.regex  # type: ignore[return-value]

    @property
    def re_flags(self) -> int:
        bits = 0
        for ch in self.flags:
            bits |= _FLAG_BITS[ch]
        return bits


def _fail(source: str, rid: str, msg: str) -> RuleFileError:
    return RuleFileError(f"{source}: rule {rid or '?'}: {msg}")


def rule_from_dict(d: dict[str, Any], source: str = "<memory>", *, compile_now: bool = True) -> Rule:
    rid = str(d.get("id", ""))
    if not isinstance(d, dict):
        raise _fail(source, rid, "a rule must be a mapping")
    unknown = set(d) - _ALLOWED_KEYS
    if unknown:
        raise _fail(source, rid, f"unknown key(s): {', '.join(sorted(unknown))}")
    for req in ("id", "description", "category", "severity", "action", "pattern"):
        if req not in d:
            raise _fail(source, rid, f"missing '{req}'")
    if not _ID_RE.match(rid):
        raise _fail(source, rid, "id must be dotted lower-case, e.g. dlp.github_pat")
    if d["category"] not in CATEGORIES:
        raise _fail(source, rid, f"unknown category {d['category']!r}")
    if d["severity"] not in SEVERITIES:
        raise _fail(source, rid, f"unknown severity {d['severity']!r}")
    try:
        action = Action(d["action"])
        strict_action = Action(d.get("strict_action", d["action"]))
    except ValueError as exc:
        raise _fail(source, rid, str(exc)) from None
    target = d.get("target", "raw")
    if target not in ("raw", "normalized"):
        raise _fail(source, rid, f"target must be raw or normalized, not {target!r}")
    flags = "".join(d.get("flags", []) or [])
    if set(flags) - set(_FLAG_BITS):
        raise _fail(source, rid, f"unknown flag(s) {flags!r}")
    directions = tuple(d.get("directions", DIRECTIONS))
    if not directions or set(directions) - set(ALL_DIRECTIONS):
        raise _fail(source, rid, f"directions must be among {ALL_DIRECTIONS}")
    samples = d.get("samples") or {}
    bits = 0
    for ch in flags:
        bits |= _FLAG_BITS[ch]
    gate = d.get("gate")
    if gate is not None:
        from vallum.detection.gates import GATES

        if gate not in GATES:
            raise _fail(source, rid, f"unknown gate {gate!r}; known: {', '.join(sorted(GATES))}")
    group = d.get("secret_group", 0)
    compiled = None
    if compile_now:  # user rule files: a bad pattern is an error at load, naming the rule
        try:
            compiled = re.compile(d["pattern"], bits)
        except re.error as exc:
            raise _fail(source, rid, f"invalid pattern: {exc}") from None
        if isinstance(group, int) and group > compiled.groups:
            raise _fail(source, rid, f"secret_group {group} but the pattern has {compiled.groups} groups")
        if isinstance(group, str) and group not in compiled.groupindex:
            raise _fail(source, rid, f"secret_group {group!r} is not a named group of the pattern")
    return Rule(
        id=rid,
        description=str(d["description"]),
        category=d["category"],
        severity=d["severity"],
        action=action,
        strict_action=strict_action,
        target=target,
        pattern=d["pattern"],
        flags=flags,
        secret_group=group,
        keywords=tuple(k.lower() for k in d.get("keywords", []) or []),
        validator=d.get("validator"),
        gate=d.get("gate"),
        min_entropy=d.get("min_entropy"),
        directions=directions,
        message=str(d.get("message") or d["description"]),
        positive=tuple(samples.get("positive", []) or []),
        negative=tuple(samples.get("negative", []) or []),
        tags=tuple(d.get("tags", []) or []),
        source=source,
        regex=compiled,
    )


def load_rule_file(path: str | Path, text: str | None = None, *, compile_now: bool = True) -> list[Rule]:
    source = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise RuleFileError(f"{source}: cannot read: {exc}") from None
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader (libyaml's when present)
    except yaml.YAMLError as exc:
        raise RuleFileError(f"{source}: invalid YAML: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("rules"), list):
        raise RuleFileError(f"{source}: expected {{version: 1, rules: [...]}}")
    return [rule_from_dict(r, source, compile_now=compile_now) for r in data["rules"]]


@lru_cache(maxsize=1)
def builtin_rules() -> tuple[Rule, ...]:
    """Every rule shipped in `vallum/detection/rules/**.yaml`, ids unique."""
    root = resources.files("vallum.detection") / "rules"
    rules: list[Rule] = []
    for path in sorted(_walk(Path(str(root)))):
        rel = path.relative_to(Path(str(root))).as_posix()
        # compiled on first use; the test suite loads them with compile_now (every pattern valid)
        rules.extend(load_rule_file(f"rules/{rel}", path.read_text(encoding="utf-8"), compile_now=False))
    check_unique(rules)
    return tuple(rules)


def _walk(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.yaml") if p.is_file()]


def check_unique(rules: list[Rule]) -> None:
    seen: dict[str, str] = {}
    for r in rules:
        if r.id in seen:
            raise RuleFileError(f"duplicate rule id {r.id} in {r.source} and {seen[r.id]}")
        seen[r.id] = r.source
