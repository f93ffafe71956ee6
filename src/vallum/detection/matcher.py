"""Multi-pattern matching: one Hyperscan pass selects the rules that can match, `re` locates them.

Hyperscan (when importable) compiles every rule of a target into one database scanned once per
buffer in "which patterns occur" mode, with the prefilter flag so that its answer is a superset
of what `re` would find. Only the selected rules then run `re.finditer`. Without Hyperscan every
rule runs `re` (after the same keyword gate). Both paths therefore report exactly the same matches:
Hyperscan only decides what not to run. Patterns Hyperscan refuses always run with `re`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from vallum.detection.rules import Rule

try:  # pragma: no cover - depends on the platform
    import hyperscan as _hs
except Exception:  # ImportError, or a broken native library
    _hs = None


def hyperscan_available() -> bool:
    return _hs is not None


@dataclass(frozen=True, slots=True)
class RuleMatch:
    rule: Rule
    start: int
    end: int
    #: the text of the rule's secret group (or the whole match)
    value: str
    match: re.Match[str]


class _HyperscanSelector:
    """Compiled Hyperscan database answering 'which of these rules can match this buffer'."""

    def __init__(self, rules: list[Rule]) -> None:
        assert _hs is not None
        self.rules = rules
        self.always: list[int] = []
        exprs: list[bytes] = []
        ids: list[int] = []
        flags: list[int] = []
        base = _hs.HS_FLAG_SINGLEMATCH | _hs.HS_FLAG_UTF8 | _hs.HS_FLAG_UCP | _hs.HS_FLAG_ALLOWEMPTY
        for i, r in enumerate(rules):
            f = base
            if "i" in r.flags:
                f |= _hs.HS_FLAG_CASELESS
            if "s" in r.flags:
                f |= _hs.HS_FLAG_DOTALL
            if "m" in r.flags:
                f |= _hs.HS_FLAG_MULTILINE
            expr = _to_pcre(r.pattern).encode("utf-8")
            if self._compiles(expr, f | _hs.HS_FLAG_PREFILTER):
                exprs.append(expr)
                ids.append(i)
                flags.append(f | _hs.HS_FLAG_PREFILTER)
            else:
                self.always.append(i)
        self.db = None
        if exprs:
            self.db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            self.db.compile(expressions=exprs, ids=ids, flags=flags)
            self.scratch = _hs.Scratch(self.db)

    @staticmethod
    def _compiles(expr: bytes, flags: int) -> bool:
        assert _hs is not None
        try:
            db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            db.compile(expressions=[expr], ids=[0], flags=[flags])
            return True
        except Exception:
            return False

    def select(self, data: bytes) -> list[int]:
        hits: set[int] = set(self.always)
        if self.db is not None and data:

            def on_match(rid: int, start: int, end: int, flags: int, ctx: object) -> None:
                hits.add(rid)

            self.db.scan(data, match_event_handler=on_match, scratch=self.scratch)
        return sorted(hits)


def _to_pcre(pattern: str) -> str:
    # Python's named-group syntax (?P<name>...) is accepted by PCRE; `(?P=name)` back-references
    # are not, but such patterns simply fall back to `re` when Hyperscan refuses them.
    return pattern


class RuleMatcher:
    """Matches a fixed list of rules (all of one target) against text."""

    def __init__(self, rules: Iterable[Rule], engine: str | None = None) -> None:
        self.rules = list(rules)
        engine = engine or os.environ.get("VALLUM_REGEX_ENGINE", "auto")
        if engine not in ("auto", "hyperscan", "re"):
            raise ValueError(f"unknown regex engine {engine!r}")
        if engine == "hyperscan" and _hs is None:
            raise RuntimeError("hyperscan is not importable")
        self.engine = "hyperscan" if (engine != "re" and _hs is not None and self.rules) else "re"
        self._selector = _HyperscanSelector(self.rules) if self.engine == "hyperscan" else None

    def candidate_rules(self, text: str) -> list[Rule]:
        if self._selector is not None:
            selected = [self.rules[i] for i in self._selector.select(text.encode("utf-8", "surrogatepass"))]
        else:
            selected = self.rules
        if not selected:
            return []
        lowered: str | None = None
        out = []
        for r in selected:
            if r.keywords:
                if lowered is None:
                    lowered = text.lower()
                if not any(k in lowered for k in r.keywords):
                    continue
            out.append(r)
        return out

    def finditer(self, text: str) -> Iterator[RuleMatch]:
        for rule in self.candidate_rules(text):
            for m in rule.compiled.finditer(text):
                try:
                    value = m.group(rule.secret_group)
                    start, end = m.span(rule.secret_group)
                except IndexError:
                    value, (start, end) = m.group(0), m.span(0)
                if value is None:
                    continue
                yield RuleMatch(rule, start, end, value, m)

