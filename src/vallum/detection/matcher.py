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



class PatternScout:
    """Exact answers to "which of these patterns occur in this buffer" (and, for some, where).

    Used by the normaliser and the decoder to skip work cheaply: one Hyperscan pass (when
    importable) replaces many whole-buffer `re` passes. The answers are exact in both engines
    (no prefilter), so the normaliser and decoder produce the same output whichever is installed.
    Patterns are bytes regexes over ASCII classes that both engines read identically; `located`
    patterns also report their match end offsets (`re`: the ends of non-overlapping matches;
    Hyperscan: every end offset — callers must only use them as anchors to expand from).
    """

    def __init__(self, patterns: dict[str, bytes], located: dict[str, bytes] | None = None,
                 engine: str | None = None) -> None:
        engine = engine or os.environ.get("VALLUM_REGEX_ENGINE", "auto")
        self.names = list(patterns)
        self.located_names = list(located or {})
        self._re = {n: re.compile(p) for n, p in patterns.items()}
        self._re_loc = {n: re.compile(p) for n, p in (located or {}).items()}
        self._db = self._db_loc = None
        if engine != "re" and _hs is not None:
            try:
                self._db = self._compile(list(patterns.values()), _hs.HS_FLAG_SINGLEMATCH)
                self._scratch = _hs.Scratch(self._db)
                if located:
                    self._db_loc = self._compile(list(located.values()), 0)
                    self._scratch_loc = _hs.Scratch(self._db_loc)
            except Exception:  # a pattern Hyperscan refuses: the whole scout uses `re`
                self._db = self._db_loc = None
        self.engine = "hyperscan" if self._db is not None else "re"

    @staticmethod
    def _compile(exprs: list[bytes], extra: int) -> object:
        assert _hs is not None
        db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        db.compile(expressions=exprs, ids=list(range(len(exprs))),
                   flags=[extra | _hs.HS_FLAG_ALLOWEMPTY] * len(exprs))
        return db

    def present(self, data: bytes) -> set[str]:
        """The names of the patterns that match somewhere in `data`."""
        if not data:
            return {n for n, r in self._re.items() if r.search(data)}
        if self._db is None:
            return {n for n, r in self._re.items() if r.search(data)}
        hits: set[str] = set()
        names = self.names

        def on_match(pid: int, start: int, end: int, flags: int, ctx: object) -> None:
            hits.add(names[pid])

        self._db.scan(data, match_event_handler=on_match, scratch=self._scratch)  # type: ignore[attr-defined]
        return hits

    def ends(self, name: str, data: bytes) -> list[int]:
        """End offsets of matches of the located pattern `name` (sorted, de-duplicated)."""
        if self._db_loc is None or not data:
            return [m.end() for m in self._re_loc[name].finditer(data)]
        want = self.located_names.index(name)
        out: list[int] = []

        def on_match(pid: int, start: int, end: int, flags: int, ctx: object) -> None:
            if pid == want:
                out.append(end)

        self._db_loc.scan(data, match_event_handler=on_match, scratch=self._scratch_loc)  # type: ignore[attr-defined]
        return sorted(set(out))
