"""Multi-pattern matching: one Hyperscan pass selects the rules that can match, `re` locates them.

Every rule with `keywords` runs only when one of its keywords occurs in the lower-cased text (the
gitleaks idea). With Hyperscan, all keywords of all rules are one literal database scanned once
over the lower-cased buffer, which answers exactly the question the stdlib path answers with
`keyword in lowered` — so both paths select the same rules by construction. Rules without keywords
are prefiltered by their full pattern (compiled with the prefilter flag, a superset of what `re`
finds) or, if Hyperscan refuses it, always run. The selected rules then run `re.finditer`, which
alone decides what matched: Hyperscan only decides what not to run.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vallum.detection.gates import GATES
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


_BOUNDED = re.compile(r"(?<!\\)\{(\d+),(\d+)\}")


def prefilter_pattern(pattern: str) -> str:
    """The pattern Hyperscan compiles for a keyword-less rule: a superset, cheap to compile.

    Large bounded repeats (`{0,200}`) explode Hyperscan's automata under UTF-8; as a prefilter an
    unbounded repeat is a superset, so it is safe.
    """
    return _BOUNDED.sub(lambda m: m.group(0) if int(m.group(2)) <= 8 else f"{{{m.group(1)},}}", pattern)


def strip_lookarounds(pattern: str) -> str:
    """A superset of `pattern` without lookarounds, for Hyperscan's prefilter.

    A lookahead ``(?=X)`` that ends its alternative, inside groups that each end theirs up to
    the end of the pattern (``a(?=X)|b(?=Y)``, ``(?:a(?=X)|b)``), becomes ``(?:X)``: nothing is
    consumed after it on that path, and the text it looks at is there, so requiring it keeps a
    superset. Any other lookaround is dropped. Hyperscan's own prefilter mode drops lookaheads
    entirely, which turns ``do not (?=tell the user)`` into plain ``do not`` — and injection rules
    are written as anchor words plus a lookahead, so that is the difference between a prefilter
    that never fires on prose and one that fires on every "not".
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            for lead in ("^", "]"):
                if pattern[i:i + 1] == lead:
                    out.append(lead)
                    i += 1
            continue
        if pattern.startswith("(?=", i):
            end = _group_end(pattern, i)
            if _ends_path(pattern, end):
                out.append("(?:")  # nothing follows: consuming what it looks at is a superset
                i += 3
            else:
                i = end  # something follows at the same position: only dropping is a superset
            continue
        if pattern.startswith(("(?!", "(?<=", "(?<!"), i):
            i = _group_end(pattern, i)
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _ends_path(p: str, k: int) -> bool:
    """Whether nothing can be consumed after index `k` on any path through the pattern: from `k`
    on there are only ends of alternatives (``|`` skips to the end of the group) and group
    closings without quantifiers, up to the end of the pattern."""
    n = len(p)
    while k < n:
        c = p[k]
        if c == "|":
            k = _group_close(p, k)
        elif c == ")":
            k += 1
            if k < n and p[k] in "?*+{":
                return False
        else:
            return False
    return True


def _syntax(p: str, j: int = 0) -> Iterator[tuple[int, str]]:
    """(index, character) of each character of `p` from index `j` on that is regex syntax:
    escapes and character classes are skipped whole."""
    n = len(p)
    while j < n:
        c = p[j]
        if c == "\\":
            j += 2
            continue
        if c == "[":
            j += 1
            for lead in ("^", "]"):
                if p[j:j + 1] == lead:
                    j += 1
            while j < n and p[j] != "]":
                j += 2 if p[j] == "\\" else 1
            j += 1
            continue
        yield j, c
        j += 1


def _group_close(p: str, j: int) -> int:
    """Index of the ``)`` closing the group that contains index `j` (or len(p) at top level)."""
    depth = 0
    for k, c in _syntax(p, j):
        if c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                return k
            depth -= 1
    return len(p)


def _group_end(p: str, j: int) -> int:
    """Index just after the group opening at `j` (escapes and classes respected)."""
    depth = 0
    for k, c in _syntax(p, j):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return k + 1
    return len(p)


def _cache_dir() -> Path | None:
    root = os.environ.get("VALLUM_HS_CACHE")
    if root == "off":
        return None
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vallum" / "hyperscan"


def _compile_cached(entries: list[tuple[bytes, int, int]]) -> Any:
    """`_compile`, with the serialised database kept on disk: some prefilters take seconds.

    Keyed by the Hyperscan version and the exact expressions, ids and flags; any cache error
    falls back to compiling. Set VALLUM_HS_CACHE=off to disable, or to a folder to move it.
    """
    assert _hs is not None
    if not entries:
        return None
    folder = _cache_dir()
    key = hashlib.sha256(repr((getattr(_hs, "__version__", ""), entries)).encode()).hexdigest()[:32]
    path = folder / f"{key}.hsdb" if folder is not None else None
    if path is not None:
        try:
            return _hs.loadb(path.read_bytes(), _hs.HS_MODE_BLOCK)
        except Exception:
            pass
    db = _compile(entries)
    if db is not None and path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(_hs.dumpb(db))
            os.replace(tmp, path)
        except Exception:
            pass
    return db


def _compile(entries: list[tuple[bytes, int, int]], literal: bool = False) -> Any:
    assert _hs is not None
    if not entries:
        return None
    try:
        db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        kwargs: dict[str, Any] = {}
        if literal:
            kwargs["literal"] = True
        db.compile(expressions=[e[0] for e in entries], ids=[e[1] for e in entries],
                   flags=[e[2] for e in entries], **kwargs)
        return db
    except TypeError:
        if literal:  # an older binding without literal mode: escape the keywords instead
            return _compile([(re.escape(e[0].decode()).encode(), e[1], e[2]) for e in entries])
        return None
    except Exception:
        return None


def _hs_flags(rule: Rule, base: int) -> int:
    """Hyperscan flags for a rule: `base` plus the rule's own i/s/m flags."""
    assert _hs is not None
    f = base
    if "i" in rule.flags:
        f |= _hs.HS_FLAG_CASELESS
    if "s" in rule.flags:
        f |= _hs.HS_FLAG_DOTALL
    if "m" in rule.flags:
        f |= _hs.HS_FLAG_MULTILINE
    return f


class _HyperscanSelector:
    """Hyperscan databases answering 'which of these rules can match this buffer'."""

    def __init__(self, rules: list[Rule]) -> None:
        assert _hs is not None
        self.rules = rules
        self.always: list[int] = []
        # 1. keyword literals, matched over the lower-cased text (ids index self.keyword_owners)
        self.keyword_owners: list[list[int]] = []
        kw_index: dict[str, int] = {}
        for i, r in enumerate(rules):
            for k in r.keywords:
                if k not in kw_index:
                    kw_index[k] = len(self.keyword_owners)
                    self.keyword_owners.append([])
                self.keyword_owners[kw_index[k]].append(i)
        lit_flags = _hs.HS_FLAG_SINGLEMATCH
        self.kw_db = _compile([(k.encode("utf-8"), n, lit_flags) for k, n in kw_index.items()], literal=True)
        if self.kw_db is None and kw_index:  # should not happen; stay correct if it does
            self.always.extend(i for i, r in enumerate(rules) if r.keywords)
        # 2. full-pattern prefilter for rules without keywords
        base = (_hs.HS_FLAG_SINGLEMATCH | _hs.HS_FLAG_UTF8 | _hs.HS_FLAG_UCP | _hs.HS_FLAG_ALLOWEMPTY
                | _hs.HS_FLAG_PREFILTER)
        entries: list[tuple[bytes, int, int]] = []
        for i, r in enumerate(rules):
            if r.keywords:
                continue
            if r.gate:  # its gate decides (a prefilter of such a rule fires on ordinary text)
                self.always.append(i)
                continue
            f = _hs_flags(r, base)
            entries.append((prefilter_pattern(r.pattern).encode("utf-8"), i, f))
        self.pat_db = _compile(entries)
        if self.pat_db is None and entries:
            ok = []
            for e in entries:
                if _compile([e]) is not None:
                    ok.append(e)
                else:
                    self.always.append(e[1])
            self.pat_db = _compile(ok)
        # 3. the same prefilter for rules with keywords: common keywords ("not", "key", "when")
        # select rules whose `re` pass costs milliseconds on 10 KB; a pattern that cannot occur
        # anywhere in the buffer skips that pass. Still a superset of what `re` finds.
        # Built-in rules share one database per target (the "bank", built once per process and
        # cached on disk), so every rule set — configs that disable rules included — reuses it
        # and one Hyperscan pass answers for all of them; other rules (user rule files) get one
        # small database each, cached on disk by content. Both are built in the background: until
        # a prefilter is ready its rule is gated by its keywords alone, which selects a superset,
        # so results never depend on the timing (only speed does) and a cold cache never stalls
        # start-up. VALLUM_HS_PREFILTER_SYNC=1 builds them before returning (benchmarks that want
        # the steady state from the first scan).
        self.kwpat: dict[int, tuple[Any, Any]] = {}
        #: (bank, {rule index: id in the bank}, scratch once the bank is ready)
        self.banks: list[list[Any]] = []
        self._lock = threading.Lock()  # Hyperscan scratch space is not safe to share between threads
        sync = os.environ.get("VALLUM_HS_PREFILTER_SYNC", "") not in ("", "0")
        banked = self._attach_bank(base, sync)
        others = [i for i, r in enumerate(rules) if r.keywords and i not in banked]
        if others:
            if sync:
                self._build_rule_prefilters(base, others)
            else:
                threading.Thread(target=self._build_rule_prefilters, args=(base, others), daemon=True,
                                 name="vallum-hs-prefilters").start()
        self.kw_scratch = _hs.Scratch(self.kw_db) if self.kw_db is not None else None
        self.pat_scratch = _hs.Scratch(self.pat_db) if self.pat_db is not None else None
        self.any_keywords = bool(kw_index)

    def _attach_bank(self, base: int, sync: bool) -> set[int]:
        """Map this rule set's keyword rules onto the built-in banks; returns the indices of the
        rules a bank covers (it may still be compiling)."""
        by_bank: dict[_PrefilterBank, dict[int, int]] = {}
        for i, r in enumerate(self.rules):
            if not r.keywords or r.gate:
                continue
            bank = _PrefilterBank.get(_bank_group(r), base, sync)
            pid = bank.ids.get(_prefilter_key(r))
            if pid is not None:
                by_bank.setdefault(bank, {})[i] = pid
        self.banks = [[bank, ids, None] for bank, ids in by_bank.items()]
        return {i for ids in by_bank.values() for i in ids}

    def _build_rule_prefilters(self, base: int, indices: list[int]) -> None:
        assert _hs is not None
        for i in indices:
            r = self.rules[i]
            if r.gate:
                continue
            try:
                db = _compile_cached(_prefilter_entries(r, 0, base))
                if db is not None:
                    self.kwpat[i] = (db, _hs.Scratch(db))
            except Exception:  # noqa: S112 - no prefilter: the rule's keywords still gate it correctly
                continue

    def select(self, text: str, lowered: str | None) -> list[int]:
        with self._lock:
            return self._select(text, lowered)

    def _select(self, text: str, lowered: str | None) -> list[int]:
        hits: set[int] = set(self.always)
        if self.kw_db is not None and lowered:
            owners = self.keyword_owners
            kw_hits: set[int] = set()

            def on_kw(kid: int, start: int, end: int, flags: int, ctx: object) -> None:
                kw_hits.update(owners[kid])

            self.kw_db.scan(lowered.encode("utf-8", "surrogatepass"), match_event_handler=on_kw,
                            scratch=self.kw_scratch)
            data = text.encode("utf-8", "surrogatepass") if text else b""
            present: set[int] = set()

            def on_bank(pid: int, start: int, end: int, flags: int, ctx: object) -> None:
                present.add(pid)

            for entry in self.banks if data else ():
                bank, ids, scratch = entry
                ready = bank.ready
                if ready is None:
                    continue
                bank_db, in_db = ready
                asked = [rid for rid in kw_hits if ids.get(rid, -1) in in_db]
                if not asked:
                    continue
                if scratch is None:
                    scratch = entry[2] = _hs.Scratch(bank_db)
                present.clear()
                bank_db.scan(data, match_event_handler=on_bank, scratch=scratch)
                kw_hits.difference_update(rid for rid in asked if ids[rid] not in present)
            gated = [rid for rid in kw_hits if rid in self.kwpat]
            if gated and data:
                found: list[int] = []

                def on_kwpat(pid: int, start: int, end: int, flags: int, ctx: object) -> None:
                    found.append(pid)

                for rid in gated:
                    db, scratch = self.kwpat[rid]
                    found.clear()
                    db.scan(data, match_event_handler=on_kwpat, scratch=scratch)
                    if not found:
                        kw_hits.discard(rid)
            hits |= kw_hits
        if self.pat_db is not None and text:

            def on_pat(rid: int, start: int, end: int, flags: int, ctx: object) -> None:
                hits.add(rid)

            self.pat_db.scan(text.encode("utf-8", "surrogatepass"), match_event_handler=on_pat,
                             scratch=self.pat_scratch)
        return sorted(hits)


def _prefilter_key(rule: Rule) -> tuple[str, str]:
    return (rule.pattern, rule.flags)


def _prefilter_entries(rule: Rule, pid: int, base: int) -> list[tuple[bytes, int, int]]:
    """A rule's prefilter as Hyperscan expressions, all reporting `pid`: a long one split into
    one expression per top-level alternative. Hyperscan refuses some long alternations as one
    expression ("Pattern length exceeds limit") that it compiles as separate expressions (the
    union is the same); short ones stay whole, which compiles faster."""
    pattern = prefilter_pattern(strip_lookarounds(rule.pattern)).encode("utf-8")
    flags = _hs_flags(rule, base)
    if len(pattern) <= _SPLIT_ABOVE:
        return [(pattern, pid, flags)]
    return [(alt.encode("utf-8"), pid, flags) for alt in top_level_alternatives(pattern.decode("utf-8"))]


#: prefilters longer than this (bytes of UTF-8) are banked one alternative per expression
_SPLIT_ABOVE = 4000


def top_level_alternatives(pattern: str) -> list[str]:
    """`pattern` split at its top-level ``|`` (escapes, classes and groups respected). A pattern
    that starts with an inline flag group stays whole (its flags would not reach later parts)."""
    if pattern.startswith("(?") and pattern[2:3] not in (":", "=", "!", "<", "P"):
        return [pattern]
    parts: list[str] = []
    depth = start = 0
    for j, c in _syntax(pattern):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            parts.append(pattern[start:j])
            start = j + 1
    parts.append(pattern[start:])
    return parts


def _bank_group(rule: Rule) -> tuple[str, str]:
    """Which bank holds a rule's prefilter: by target, and tool-definition-only rules apart (an
    inbound scan never asks about them, so it should not pay for scanning them)."""
    return (rule.target, "tooldef" if rule.directions == ("tooldef",) else "main")


class _PrefilterBank:
    """One Hyperscan database holding the prefilters of every built-in keyword rule of a target.

    Shared by all selectors of that target whatever rules their config disables (a disabled
    rule's prefilter hit is simply never asked about). Compiled once per process — in a background
    thread unless `sync` — and cached on disk by content. `ready` is None until it is built, then
    (database, ids it holds): prefilters Hyperscan refuses are left out, and their rules stay
    gated by their keywords alone.
    """

    _banks: dict[tuple[str, str], _PrefilterBank] = {}
    _banks_lock = threading.Lock()

    def __init__(self, rules: list[Rule], base: int) -> None:
        self.ids: dict[tuple[str, str], int] = {}
        self.entries: list[tuple[bytes, int, int]] = []
        for r in rules:
            key = _prefilter_key(r)
            if not r.keywords or r.gate or key in self.ids:
                continue
            pid = self.ids[key] = len(self.ids)
            self.entries.extend(_prefilter_entries(r, pid, base))
        self.ready: tuple[Any, frozenset[int]] | None = None

    @classmethod
    def get(cls, group: tuple[str, str], base: int, sync: bool) -> _PrefilterBank:
        from vallum.detection.rules import builtin_rules

        with cls._banks_lock:
            bank = cls._banks.get(group)
            if bank is None:
                bank = cls._banks[group] = cls([r for r in builtin_rules() if _bank_group(r) == group], base)
                if sync:
                    bank.build()
                else:
                    threading.Thread(target=bank.build, daemon=True, name=f"vallum-hs-bank-{'-'.join(group)}").start()
        return bank

    @classmethod
    def ensure_all_built(cls) -> None:
        """Build every bank made so far now (tests, benchmarks): idempotent, uses the disk cache."""
        for bank in list(cls._banks.values()):
            if bank.ready is None:
                bank.build()

    def build(self) -> None:
        entries = self.entries
        db = _compile_cached(entries)
        if db is None and entries:
            # one prefilter Hyperscan refuses (unsupported construct) sinks the whole database:
            # find the rules whose expressions all compile alone and bank only those
            bad = {e[1] for e in entries if _compile_cached([(e[0], 0, e[2])]) is None}
            entries = [e for e in entries if e[1] not in bad]
            db = _compile_cached(entries)
        if db is not None:
            self.ready = (db, frozenset(e[1] for e in entries))


#: compiled selectors by (pattern, flags, keywords) of their rules: compiling is the slow part
_SELECTORS: dict[tuple[tuple[str, str, tuple[str, ...]], ...], _HyperscanSelector] = {}


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
        self._selector: _HyperscanSelector | None = None
        self._gated = any(r.gate for r in self.rules)
        if self.engine == "hyperscan":
            key = tuple((r.pattern, r.flags, r.keywords) for r in self.rules)
            sel = _SELECTORS.get(key)
            if sel is None:
                sel = _SELECTORS[key] = _HyperscanSelector(self.rules)
            self._selector = sel

    def candidate_rules(self, text: str) -> list[Rule]:
        """The rules that may match `text`: keyword gate (and, with Hyperscan, pattern prefilter)."""
        if not self.rules:
            return []
        needs_lower = self._selector.any_keywords if self._selector is not None else True
        lowered = text.lower() if needs_lower else None
        if self._selector is not None:
            out = [self.rules[i] for i in self._selector.select(text, lowered)]
        else:
            out = [r for r in self.rules
                   if not r.keywords or any(k in lowered for k in r.keywords)]  # type: ignore[operator]
        if self._gated:
            out = [r for r in out if not r.gate or GATES[r.gate](text, self.engine)]
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
