"""`RiskEngine`: the in-memory behavioural engine. Pure over data: events in, hits and decisions out.

The engine's clock is the latest event time it has seen; windows, score decay, session expiry and
rule-action expiry all run on that clock, so replaying stored history rebuilds the same state and
the same decisions. No I/O: the store and the HTTP API are adapters around it (`vallum.api`).

In-process use (the proxies):

    engine = RiskEngine(config.behaviour)
    result = engine.ingest([event, …])          # hits and decision changes
    engine.decide("user", "u_1").to_dict()      # current decision, decayed to the engine clock
    engine.current_action("agent", "agent:x")   # "allow" | "review" | "challenge" | "block"
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vallum.behaviour.enrich import IpEnricher, classify_user_agent, email_domain
from vallum.behaviour.events import Event
from vallum.behaviour.rules import MISSING, FeatureDef, Rule, RuleProblem, RuleSet, cel_env, guard_false, load_ruleset
from vallum.behaviour.scoring import ACTION_ORDER, Decision, Hit, Thresholds, score_hits
from vallum.behaviour.windows import BucketWindow, DistinctWindow, Ewma, HourlyBaseline, Reservoir

#: how far apart (event time) decay sweeps run, re-deciding entities whose score is decaying
SWEEP_EVERY_S = 60.0
#: at most this many users are considered when following links from one device / key / IP
MAX_LINK_FANOUT = 200
NO_SWITCH = 1e12
#: a user-agent fingerprint shared by more accounts than this does not link them
MAX_WEAK_DEVICE_SHARE = 5
#: the kinds of links recorded between a user and its identifiers
USER_LINKS = ("ip", "net", "asn", "device", "api_key", "session", "conversation", "agent", "email_domain")
#: identifiers owned by a user: a manual override of the user propagates to them
OWNED_KINDS = ("session", "conversation", "api_key")
#: identifiers that an override propagates to only when no other user uses them
EXCLUSIVE_KINDS = ("device", "ip", "email_domain")


@dataclass(slots=True)
class Override:
    action: str  # allow | block
    reason: str = ""
    created_by: str = ""
    created_at: float = 0.0
    expires_at: float | None = None


class EntityState:
    """Everything the engine knows about one entity."""

    __slots__ = (
        "attrs",
        "decision_action",
        "decision_score",
        "events",
        "feats",
        "first_seen",
        "history",
        "hits",
        "id",
        "kind",
        "last_country",
        "last_country_ts",
        "last_seen",
        "links",
        "prev_last_seen",
        "recent",
        "seen",
    )

    def __init__(self, kind: str, eid: str, ts: float) -> None:
        self.kind = kind
        self.id = eid
        self.first_seen = ts
        self.last_seen = ts
        self.prev_last_seen = ts
        self.events = 0
        self.feats: dict[str, Any] = {}
        self.seen: dict[str, set[Any]] = {}
        self.links: dict[str, set[str]] = {}
        self.recent: deque[str] = deque(maxlen=25)
        self.hits: dict[str, Hit] = {}
        self.history: deque[tuple[float, float, str]] = deque(maxlen=200)
        self.attrs: dict[str, Any] = {}
        self.decision_action = "allow"
        self.decision_score = 0.0
        self.last_country = ""
        self.last_country_ts = 0.0


@dataclass(slots=True)
class HitRecord:
    rule: str
    entity_type: str
    entity_id: str
    ts: float
    weight: float
    detail: str
    event_id: str


@dataclass(slots=True)
class DecisionChange:
    """An entity whose action or score changed; `previous` is the action before."""

    decision: Decision
    previous: str
    action_changed: bool


@dataclass(slots=True)
class IngestResult:
    hits: list[HitRecord] = field(default_factory=list)
    changes: list[DecisionChange] = field(default_factory=list)
    #: rule evaluation errors during this batch: rule id → last message
    rule_errors: dict[str, str] = field(default_factory=dict)
    #: the decision for the last event's user (what `POST /api/v1/decide` answers)
    processed: int = 0


def _num(v: Any) -> Any:
    """CEL does not mix int and double in arithmetic: every number reaches rules as a double."""
    if isinstance(v, bool) or not isinstance(v, int):
        return v
    return float(v)


def _resolve(base: dict[str, Any], path: tuple[str, ...]) -> Any:
    cur: Any = base
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
        if cur is None:
            return None
    return cur


class RiskEngine:
    """Entities, features, rules, scores and decisions over a stream of events (see module doc)."""

    def __init__(self, config: Any = None, ruleset: RuleSet | None = None, *, ip_enricher: IpEnricher | None = None
                 ) -> None:
        if config is None:
            from vallum.config.sections.behaviour import BehaviourConfig

            config = BehaviourConfig()
        self.config = config
        self.thresholds = Thresholds(config.thresholds.review, config.thresholds.challenge, config.thresholds.block)
        self.half_life = float(config.score_half_life_s)
        self.session_idle = float(config.sessions.idle_s)
        self.session_absolute = float(config.sessions.absolute_s)
        paths = [p for p in [config.mmdb_path, *config.mmdb_paths] if p]
        self.ip = ip_enricher or IpEnricher(paths, config.datacenter_asns)
        self.clock = 0.0
        self.entities: dict[tuple[str, str], EntityState] = {}
        self.overrides: dict[tuple[str, str], Override] = {}
        self.cohorts: dict[tuple[str, str], Reservoir] = {}
        #: jailbreak evidence shared across sessions and accounts: prompt hash / conversation → who
        self.flagged_prompts: dict[str, str] = {}
        self.flagged_conversations: dict[str, tuple[str | None, str | None]] = {}
        self.rule_errors: dict[str, str] = {}
        self.rule_hit_counts: dict[str, int] = {}
        self.weights: dict[str, float] = {}
        self.disabled: set[str] = set()
        self.lock = threading.RLock()
        self._active: set[tuple[str, str]] = set()
        self._last_sweep = 0.0
        self.events_processed = 0
        self.set_ruleset(ruleset if ruleset is not None else load_ruleset(config.rule_files, config.disable))

    # ------------------------------------------------------------------ rules
    def set_ruleset(self, ruleset: RuleSet) -> None:
        """Swap the rules (hot reload). Feature state of unchanged features is kept."""
        with self.lock:
            self.ruleset = ruleset
            self._features_by_type: dict[str, list[FeatureDef]] = {}
            self._features_any: list[FeatureDef] = [f for f in ruleset.features if not f.on]
            self._feature_defs: dict[str, dict[str, FeatureDef]] = {}
            for f in ruleset.features:
                self._feature_defs.setdefault(f.entity, {})[f.name] = f
            for f in ruleset.features:
                for t in f.on:
                    self._features_by_type.setdefault(t, []).append(f)
            self._rules_by_type: dict[str, list[Rule]] = {}
            self._rules_any: list[Rule] = []
            self._reindex_rules()

    def _reindex_rules(self) -> None:
        self._rules_by_type = {}
        self._rules_any = [r for r in self.ruleset.rules if not r.on and self._rule_on(r)]
        for r in self.ruleset.rules:
            if not self._rule_on(r):
                continue
            for t in r.on:
                self._rules_by_type.setdefault(t, []).append(r)
        self._uses_cache: dict[str, tuple[list[Rule], frozenset[str], dict[str, frozenset[str] | None]]] = {}

    def _rule_on(self, r: Rule) -> bool:
        return r.enabled and r.id not in self.disabled

    def set_rule_setting(self, rule_id: str, *, enabled: bool | None = None, weight: float | None = None) -> None:
        """Console edits: enable/disable a rule or change its weight (applies from the next event)."""
        with self.lock:
            if enabled is not None:
                if enabled:
                    self.disabled.discard(rule_id)
                else:
                    self.disabled.add(rule_id)
            if weight is not None:
                self.weights[rule_id] = float(weight)
            self._reindex_rules()

    def problems(self) -> list[RuleProblem]:
        return list(self.ruleset.problems)

    def _rules_for(self, etype: str) -> tuple[list[Rule], frozenset[str], dict[str, frozenset[str] | None]]:
        """Rules for an event type, the top-level names they use, and per entity kind the attributes."""
        cached = self._uses_cache.get(etype)
        if cached is None:
            rules = self._rules_by_type.get(etype, []) + self._rules_any
            uses: set[str] = set()
            attrs: dict[str, set[str] | None] = {}
            for r in rules:
                uses |= r.uses
                texts = [r.when, *r.evidence]
                for kind in r.uses:
                    if kind in ("event", "first", "signals", "cohort"):
                        continue
                    found = attrs.setdefault(kind, set())
                    for t in texts:
                        for m in re.finditer(rf"(?<![\w.]){re.escape(kind)}\s*(\.\s*(\w+)|\[)", t):
                            if m.group(2) is None or found is None:
                                attrs[kind] = None  # indexed dynamically: build the whole map
                                found = None
                                break
                            found.add(m.group(2))
            frozen = {k: (frozenset(v) if v is not None else None) for k, v in attrs.items()}
            cached = (rules, frozenset(uses), frozen)
            self._uses_cache[etype] = cached
        return cached

    # ------------------------------------------------------------------ state helpers
    def _state(self, kind: str, eid: str, ts: float) -> EntityState:
        key = (kind, eid)
        st = self.entities.get(key)
        if st is None:
            st = EntityState(kind, eid, ts)
            self.entities[key] = st
        return st

    def get_entity(self, kind: str, eid: str) -> EntityState | None:
        return self.entities.get((kind, eid))

    def _link(self, a: EntityState, b: EntityState) -> None:
        mine = a.links.get(b.kind)
        if mine is not None and b.id in mine:
            return  # already linked (the common case): links are symmetric
        a.links.setdefault(b.kind, set()).add(b.id)
        b.links.setdefault(a.kind, set()).add(a.id)

    # ------------------------------------------------------------------ ingestion
    def ingest(self, events: Iterable[Event]) -> IngestResult:
        """Process events in the order given (callers sort by event time when replaying)."""
        result = IngestResult()
        with self.lock:
            for ev in events:
                self._process(ev, result)
                result.processed += 1
            if self.clock - self._last_sweep >= SWEEP_EVERY_S:
                self._sweep(result)
        return result

    def _process(self, ev: Event, result: IngestResult) -> None:
        ts = ev.ts
        if ts > self.clock:
            self.clock = ts
        now = self.clock
        self.events_processed += 1
        attrs = {k: _num(v) for k, v in ev.attrs.items()}
        event_map: dict[str, Any] = {"type": ev.type, "ts": ts, "id": ev.id, "attrs": attrs,
                                     "hour": float(int(ts // 3600) % 24), "minute": float(int(ts // 60))}
        for name in ("user", "session", "conversation", "api_key", "agent", "ip", "user_agent", "accept_language"):
            v = getattr(ev, name)
            if v is not None:
                event_map[name] = v
        base: dict[str, Any] = {"event": event_map}
        ids: dict[str, str] = {}
        if ev.user:
            ids["user"] = ev.user
        if ev.session:
            ids["session"] = ev.session
        if ev.conversation:
            ids["conversation"] = ev.conversation
        if ev.api_key:
            ids["api_key"] = ev.api_key
        if ev.agent:
            ids["agent"] = ev.agent
        ipinfo = None
        if ev.ip:
            ipinfo = self.ip.lookup(ev.ip)
            base["ip"] = {"id": ev.ip, **ipinfo.to_dict()}
            ids["ip"] = ev.ip
            ids["net"] = ipinfo.net
            if ipinfo.asn:
                ids["asn"] = str(ipinfo.asn)
        dev = None
        if ev.user_agent:
            dev = classify_user_agent(ev.user_agent, ev.accept_language or "")
            base["device"] = dev.to_dict()
            ids["device"] = dev.id
        strong_dev = attrs.get("device_id")
        if isinstance(strong_dev, str) and strong_dev:
            base.setdefault("device", {"client": "unknown", "kind": "unknown", "os": "", "major": ""})
            base["device"]["id"] = ids["device"] = "app:" + strong_dev[:200]
        em = email_domain(attrs.get("email")) or (
            email_domain(attrs.get("new_value")) if ev.type == "account.email_change" else None)
        if em is None and ev.user and "@" in ev.user:
            em = email_domain(ev.user)
        if em:
            ids["email_domain"] = em
        dest = attrs.get("dest_domain")
        if isinstance(dest, str) and dest:
            ids["domain"] = dest.lower()
        ids["global"] = "*"

        signals: dict[str, Any] = {"session_expired_reuse": False, "prompt_flagged_other": False,
                                   "user_country_switch_s": NO_SWITCH, "key_country_switch_s": NO_SWITCH,
                                   "user_prev_country": "", "key_prev_country": ""}
        # sessions: an id reused after its idle or absolute timeout starts a fresh session
        sid = ids.get("session")
        if sid:
            sst = self.entities.get(("session", sid))
            if sst is not None and sst.events and (ts - sst.last_seen > self.session_idle
                                                   or ts - sst.first_seen > self.session_absolute):
                signals["session_expired_reuse"] = True
                fresh = EntityState("session", sid, ts)
                fresh.links = sst.links
                fresh.hits = sst.hits
                fresh.history = sst.history
                self.entities[("session", sid)] = fresh

        states: dict[str, EntityState] = {k: self._state(k, v, ts) for k, v in ids.items()}
        user = states.get("user")
        plan = attrs.get("plan")
        if user is not None:
            if isinstance(plan, str) and plan:
                user.attrs["plan"] = plan
            plan = user.attrs.get("plan", "default")
        if not isinstance(plan, str) or not plan:
            plan = "default"
        states["plan"] = self._state("plan", plan, ts)
        ids["plan"] = plan

        # first-seen flags, before this event is added to the seen sets
        first: dict[str, Any] = {"user": user is not None and user.events == 0}
        country = ipinfo.country if ipinfo else ""
        tool = attrs.get("gen_ai.tool.name")
        model = attrs.get("gen_ai.request.model")
        obs: dict[str, Any] = {"country": country or None, "device": dev.id if dev else None,
                               "ip": ev.ip, "net": ipinfo.net if ipinfo else None,
                               "asn": ids.get("asn"), "client": dev.client if dev else None,
                               "tool": tool if isinstance(tool, str) else None,
                               "dest_domain": ids.get("domain"), "model": model if isinstance(model, str) else None}
        if user is not None:
            known = user.events > 0
            for k, v in obs.items():
                seen = user.seen.setdefault(k, set())
                first[k] = bool(known and v is not None and v not in seen)
                if v is not None:
                    seen.add(v)
            if country and not (ipinfo and (ipinfo.vpn or ipinfo.private)):
                if user.last_country and user.last_country != country:
                    signals["user_country_switch_s"] = ts - user.last_country_ts
                    signals["user_prev_country"] = user.last_country
                user.last_country, user.last_country_ts = country, ts
        else:
            for k in obs:
                first[k] = False
        agent = states.get("agent")
        for k, v in (("agent_tool", obs["tool"]), ("agent_domain", obs["dest_domain"])):
            if agent is not None:
                seen = agent.seen.setdefault(k, set())
                first[k] = bool(agent.events > 0 and v is not None and v not in seen)
                if v is not None:
                    seen.add(v)
            else:
                first[k] = False
        key = states.get("api_key")
        for k, v in (("key_country", obs["country"]), ("key_client", obs["client"]), ("key_net", obs["net"])):
            if key is not None:
                seen = key.seen.setdefault(k, set())
                first[k] = bool(key.events > 0 and v is not None and v not in seen)
                if v is not None:
                    seen.add(v)
            else:
                first[k] = False
        if key is not None and country and not (ipinfo and (ipinfo.vpn or ipinfo.private)):
            if key.last_country and key.last_country != country:
                signals["key_country_switch_s"] = ts - key.last_country_ts
                signals["key_prev_country"] = key.last_country
            key.last_country, key.last_country_ts = country, ts
        ph = attrs.get("prompt_hash")
        if isinstance(ph, str) and ph in self.flagged_prompts and self.flagged_prompts[ph] != ev.user:
            signals["prompt_flagged_other"] = True
        flagged = self.flagged_conversations.get(ev.conversation) if ev.conversation else None
        signals["conversation_flagged"] = flagged is not None
        signals["conversation_flagged_other_session"] = bool(flagged and flagged[1] != ev.session)
        signals["conversation_flagged_other_user"] = bool(flagged and flagged[0] != ev.user)
        base["first"] = first
        base["signals"] = signals

        # links and counters
        if user is not None:
            for k in USER_LINKS:
                other = states.get(k)
                if other is not None:
                    self._link(user, other)
        if agent is not None and "domain" in states:
            self._link(agent, states["domain"])
        if key is not None:
            for k in ("ip", "device", "net"):
                if k in states:
                    self._link(key, states[k])
        if "session" in states and "conversation" in states:
            self._link(states["session"], states["conversation"])
        for k, st in states.items():
            if k in ("plan", "global"):
                st.events += 1
                st.last_seen = ts
                continue
            st.prev_last_seen = st.last_seen if st.events else ts
            st.events += 1
            if ts > st.last_seen:
                st.last_seen = ts
            if ts < st.first_seen:
                st.first_seen = ts
            st.recent.append(ev.id)

        # features
        self._update_features(ev.type, base, states, ts, now, plan)

        # rules
        rules, uses, attr_uses = self._rules_for(ev.type)
        if not rules:
            return
        act: dict[str, Any] = {"event": event_map, "first": first, "signals": signals}
        #: entity maps filled lazily by the guards (name by name), completed before any CEL evaluation
        partial: dict[str, dict[str, Any]] = {}
        present = states.keys()
        env_act = None
        touched: set[tuple[str, str]] = set()
        for rule in rules:
            if not rule.needs <= present:
                continue  # the rule is about an entity this event does not carry
            if rule.guards and self._guards_fail(rule.guards, act, partial, states, base,
                                                                        attr_uses, now):
                continue  # a top-level `&&` operand is false: so is the condition (no CEL needed)
            if env_act is None:
                # the snapshot every rule of this event sees: built once, before the first hit
                if "cohort" in uses:
                    act["cohort"] = self._cohort_map(plan, now)
                for kind in uses:
                    if kind in act:
                        continue
                    kst = states.get(kind)
                    if kst is not None:
                        act[kind] = self._entity_map(kst, base.get(kind), now, attr_uses.get(kind),
                                                     partial.get(kind))
                env_act = cel_env().Activation(act)
            try:
                val = rule.expr.eval(env_act)
                out = val.value()
            except Exception as exc:  # a CEL runtime fault must never stop ingestion
                self._rule_error(rule, str(exc), result)
                continue
            if out is True:
                target = self._scope_entity(rule.scope, states)
                if target is None:
                    continue
                detail = self._evidence(rule, env_act)
                self._hit(rule, target, ts, detail, ev.id, result)
                touched.add((target.kind, target.id))
                if "jailbreak" in rule.tags:
                    if isinstance(ph, str) and ev.user:
                        self.flagged_prompts.setdefault(ph, ev.user)
                    if ev.conversation and ev.conversation not in self.flagged_conversations:
                        self.flagged_conversations[ev.conversation] = (ev.user, ev.session)
            elif out is not False:
                if val.type().name() == "error" or isinstance(out, str):
                    self._rule_error(rule, str(out), result)
                else:
                    self._rule_error(rule, f"expression returned {out!r}, not a boolean", result)
        for tkey in touched:
            self._redecide(self.entities[tkey], result)

    def _guards_fail(self, guards: tuple[tuple[str, str, str, Any], ...], act: dict[str, Any],
                     partial: dict[str, dict[str, Any]], states: dict[str, EntityState], base: dict[str, Any],
                     attr_uses: dict[str, frozenset[str] | None], now: float) -> bool:
        """True when one guard of a rule is certainly false on the values its CEL program would see.

        Before the snapshot of the event is built, entity values are computed name by name into
        `partial` (the same values the full map gets: nothing changes before the first CEL
        evaluation, which builds the snapshot); afterwards the snapshot itself is read.
        """
        for src, name, op, const in guards:
            if src == "attrs":
                value = act["event"]["attrs"].get(name, MISSING)
            elif src == "first" or src == "signals":
                d = act[src]
                value = [d.get(n, MISSING) for n in const] if op == "or" else d.get(name, MISSING)
            else:
                m = act.get(src)  # the complete snapshot, once built
                if m is not None:
                    value = m.get(name, MISSING)
                    if guard_false(op, value, const):
                        return True
                    continue
                m = partial.get(src)
                if m is None:
                    kst = states.get(src)
                    if kst is None:
                        continue
                    info = base.get(src)
                    m = partial[src] = dict(info) if info else {}
                if name not in m:
                    wanted = attr_uses.get(src)
                    if wanted is not None and name not in wanted:
                        continue
                    self._entity_value(m, states[src], name, now)
                value = m.get(name, MISSING)
            if guard_false(op, value, const):
                return True
        return False

    def _rule_error(self, rule: Rule, msg: str, result: IngestResult) -> None:
        # missing keys are the normal way a rule does not apply (e.g. no ip on the event)
        if msg.startswith("NOT_FOUND") or "No such key" in msg:
            return
        self.rule_errors[rule.id] = msg
        result.rule_errors[rule.id] = msg

    def _scope_entity(self, scope: str, states: dict[str, EntityState]) -> EntityState | None:
        if scope == "event":
            for k in ("user", "agent", "api_key", "ip"):
                if k in states:
                    return states[k]
            return None
        return states.get(scope)

    def _evidence(self, rule: Rule, env_act: Any) -> str:
        parts = []
        for text, expr in rule.evidence_exprs:
            try:
                v = expr.eval(env_act).value()
            except Exception as exc:  # evidence is best effort; the hit stands without it
                v = f"<error: {exc}>"
            if isinstance(v, float):
                v = round(v, 4)
                if v == int(v):
                    v = int(v)
            elif isinstance(v, list):
                v = v[-10:]
            parts.append(f"{text}={v}")
        return "; ".join(parts) if parts else rule.description[:200]

    def _hit(self, rule: Rule, st: EntityState, ts: float, detail: str, event_id: str, result: IngestResult) -> None:
        weight = self.weights.get(rule.id, rule.weight)
        h = st.hits.get(rule.id)
        if h is None:
            h = Hit(rule=rule.id, weight=weight, ts=ts, detail=detail, action=rule.action,
                    ttl=rule.ttl if rule.ttl is not None else self.half_life, event_id=event_id, first_ts=ts)
            st.hits[rule.id] = h
        else:
            h.count += 1
            h.weight = weight
            h.detail = detail
            h.event_id = event_id
            if ts > h.ts:
                h.ts = ts
        self.rule_hit_counts[rule.id] = self.rule_hit_counts.get(rule.id, 0) + 1
        self._active.add((st.kind, st.id))
        result.hits.append(HitRecord(rule.id, st.kind, st.id, ts, weight, detail, event_id))

    # ------------------------------------------------------------------ features
    def _update_features(self, etype: str, base: dict[str, Any], states: dict[str, EntityState], ts: float,
                         now: float, plan: str) -> None:
        todo = self._features_by_type.get(etype)
        if self._features_any:
            todo = (todo or []) + self._features_any
        if not todo:
            return
        base_act = None
        for f in todo:
            st = states.get(f.entity)
            if st is None:
                continue
            if f.when_expr is not None:
                if f.guards and _feature_guards_fail(f.guards, base):
                    continue  # `when` is certainly not true: skip the CEL evaluation
                if base_act is None:
                    base_act = cel_env().Activation(base)
                try:
                    ok = f.when_expr.eval(base_act).value()
                except Exception:
                    ok = False
                if ok is not True:
                    continue
            if f.field_path:
                value = _resolve(base, f.field_path)
                if value is None:
                    continue
            else:
                value = 1.0
            self._feed(f, st, ts, now, value, plan)

    def _feed(self, f: FeatureDef, st: EntityState, ts: float, now: float, value: Any, plan: str) -> None:
        slot = st.feats.get(f.name)
        agg = f.agg
        if agg in ("count", "sum", "max"):
            if agg != "count" and (isinstance(value, bool) or not isinstance(value, int | float)):
                return
            if slot is None:
                slot = st.feats[f.name] = BucketWindow(f.window)
            slot.add(ts, 1.0 if agg == "count" else float(value))
        elif agg == "distinct":
            if isinstance(value, dict | list):
                return
            if slot is None:
                slot = st.feats[f.name] = DistinctWindow(f.window)
            slot.add(ts, value)
        elif agg == "last":
            if slot is None:
                slot = st.feats[f.name] = deque(maxlen=f.n)
            slot.append(_num(value))
        elif agg == "hourly":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return
            if slot is None:
                slot = st.feats[f.name] = HourlyBaseline()
            before = slot.hours()
            slot.add(ts, float(value))
            if f.cohort and slot.hours() > before:
                self.cohorts.setdefault((f.name, plan), Reservoir()).add(slot.history[-1])
        elif agg == "ewma":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return
            if slot is None:
                slot = st.feats[f.name] = [Ewma(f.alpha), 0.0]
            slot[1] = slot[0].zscore(float(value))
            slot[0].add(float(value))

    def _feature_value(self, f: FeatureDef, slot: Any, now: float) -> Any:
        agg = f.agg
        if slot is None:
            if agg in ("count", "sum", "max", "distinct"):
                return 0.0
            if agg == "last":
                return []
            if agg == "hourly":
                return {"current": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "hours": 0.0}
            return {"mean": 0.0, "z": 0.0, "n": 0.0}
        if agg == "count":
            return float(slot.count(now))
        if agg == "sum":
            return slot.sum(now)
        if agg == "max":
            return slot.max(now)
        if agg == "distinct":
            return float(slot.count(now))
        if agg == "last":
            return list(slot)
        if agg == "hourly":
            return {"current": slot.current(now), "p50": slot.pct(50), "p90": slot.pct(90), "p99": slot.pct(99),
                    "max": max(slot.history, default=0.0), "hours": float(slot.hours())}
        ew, z = slot
        return {"mean": ew.mean, "z": z, "n": float(ew.n)}

    def _cohort_map(self, plan: str, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {"plan": plan}
        for (name, p), res in self.cohorts.items():
            if p == plan:
                out[name] = {"p50": res.pct(50), "p90": res.pct(90), "p99": res.pct(99), "n": float(len(res))}
        return out

    def _entity_map(self, st: EntityState, info: dict[str, Any] | None, now: float,
                    wanted: frozenset[str] | None = None, partial: dict[str, Any] | None = None) -> dict[str, Any]:
        """The CEL map of an entity: enrichment info, built-in values and features.

        With `wanted`, only those names are computed (the rules of this event type use no others).
        `partial` is a map already started (by the rule guards): it is completed in place.
        """
        m: dict[str, Any] = partial if partial is not None else (dict(info) if info else {})
        feats = self._feature_defs.get(st.kind, {})
        names = wanted if wanted is not None else (set(_BUILTINS) | set(feats) | {
            "n_" + k + "s" for k in st.links} | {"n_seen_" + k for k in st.seen} | {
            "n_users", "n_ips", "n_devices", "n_api_keys", "n_sessions", "n_conversations", "n_nets", "n_asns",
            "n_agents"})
        for name in names:
            if name in m:
                continue
            self._entity_value(m, st, name, now, feats)
        return m

    def _entity_value(self, m: dict[str, Any], st: EntityState, name: str, now: float,
                      feats: dict[str, FeatureDef] | None = None) -> None:
        """Compute one name of an entity map into `m` (nothing when the entity has no such value)."""
        if feats is None:
            feats = self._feature_defs.get(st.kind, {})
        f = feats.get(name)
        if f is not None:
            m[name] = self._feature_value(f, st.feats.get(name), now)
            return
        fn = _BUILTINS.get(name)
        if fn is not None:
            v = fn(self, st, now)
            if v is not None:
                m[name] = v
            return
        if name.startswith("n_seen_"):
            m[name] = float(len(st.seen.get(name[7:], ())))
        elif name.startswith("n_") and name.endswith("s"):
            m[name] = float(len(st.links.get(name[2:-1], ())))

    def _linked_users(self, st: EntityState) -> tuple[set[str], int]:
        """Users sharing a device or an API key with this user (IPs are too often shared to count)."""
        out: set[str] = set()
        for kind in ("device", "api_key"):
            for did in st.links.get(kind, ()):
                other = self.entities.get((kind, did))
                if other is None:
                    continue
                users = other.links.get("user", ())
                # a user-agent fingerprint shared by many accounts is a popular browser, not a farm;
                # app-supplied device ids and API keys are strong links
                limit = MAX_LINK_FANOUT if kind == "api_key" or did.startswith("app:") else MAX_WEAK_DEVICE_SHARE
                if len(users) > limit:
                    continue
                out.update(users)
        out.discard(st.id)
        flagged = 0
        for u in out:
            ust = self.entities.get(("user", u))
            if ust is not None and ust.decision_action != "allow":
                flagged += 1
        return out, flagged

    # ------------------------------------------------------------------ decisions
    def _score_now(self, st: EntityState) -> float:
        if not st.hits:
            return 0.0
        score, _a, _r = score_hits(st.hits, self.clock, self.half_life, self.thresholds)
        return score

    def _override_for(self, kind: str, eid: str) -> tuple[Override, dict[str, Any]] | None:
        ov = self.overrides.get((kind, eid))
        if ov is not None and (ov.expires_at is None or ov.expires_at > self.clock):
            return ov, {"action": ov.action, "source": {"type": kind, "id": eid}, "reason": ov.reason}
        st = self.entities.get((kind, eid))
        if st is None or kind == "user":
            return None
        users = st.links.get("user", set())
        found: list[tuple[Override, str]] = []
        for u in list(users)[:MAX_LINK_FANOUT]:
            uov = self.overrides.get(("user", u))
            if uov is not None and (uov.expires_at is None or uov.expires_at > self.clock):
                found.append((uov, u))
        if not found:
            return None
        if kind in EXCLUSIVE_KINDS and len(users) > 1:
            return None  # a shared IP or device does not inherit one user's override
        if kind not in OWNED_KINDS and kind not in EXCLUSIVE_KINDS:
            return None
        found.sort(key=lambda x: -ACTION_ORDER[x[0].action])
        ov, u = found[0]
        return ov, {"action": ov.action, "source": {"type": "user", "id": u}, "reason": ov.reason}

    def decide(self, kind: str, eid: str) -> Decision:
        """The decision for an entity now (engine clock), overrides applied. Unknown entity: allow, 0."""
        with self.lock:
            st = self.entities.get((kind, eid))
            if st is not None and st.hits:
                score, action, reasons = score_hits(st.hits, self.clock, self.half_life, self.thresholds)
            else:
                score, action, reasons = 0.0, "allow", []
            d = Decision(kind, eid, action, score, reasons, as_of=self.clock)
            ov = self._override_for(kind, eid)
            if ov is not None:
                d.action = ov[0].action
                d.override = ov[1]
            return d

    def current_action(self, kind: str, eid: str) -> str:
        """Just the action (what the proxies ask on their hot path)."""
        return self.decide(kind, eid).action

    def _redecide(self, st: EntityState, result: IngestResult) -> None:
        d = self.decide(st.kind, st.id)
        prev_action, prev_score = st.decision_action, st.decision_score
        changed = d.action != prev_action
        if changed or abs(d.score - prev_score) >= 1.0:
            st.decision_action, st.decision_score = d.action, d.score
            st.history.append((self.clock, d.score, d.action))
            result.changes.append(DecisionChange(d, prev_action, changed))
        if not st.hits:
            self._active.discard((st.kind, st.id))

    def _sweep(self, result: IngestResult) -> None:
        """Re-decide decaying entities (step-down) and forget sessions long past their timeout."""
        self._last_sweep = self.clock
        for key in list(self._active):
            st = self.entities.get(key)
            if st is None:
                self._active.discard(key)
                continue
            self._redecide(st, result)

    def sweep(self) -> IngestResult:
        """Run a decay sweep now (the API calls this on a timer between batches)."""
        result = IngestResult()
        with self.lock:
            self._sweep(result)
        return result

    # ------------------------------------------------------------------ overrides & privacy
    def set_override(self, kind: str, eid: str, action: str, *, reason: str = "", created_by: str = "",
                     created_at: float = 0.0, expires_at: float | None = None) -> IngestResult:
        """Allow-list (`allow`) or block-list (`block`) an entity; returns the decision changes it causes."""
        if action not in ("allow", "block"):
            raise ValueError("an override is 'allow' or 'block'")
        with self.lock:
            self.overrides[(kind, eid)] = Override(action, reason, created_by, created_at, expires_at)
            return self._redecide_around(kind, eid)

    def remove_override(self, kind: str, eid: str) -> IngestResult:
        with self.lock:
            self.overrides.pop((kind, eid), None)
            return self._redecide_around(kind, eid)

    def _redecide_around(self, kind: str, eid: str) -> IngestResult:
        result = IngestResult()
        st = self._state(kind, eid, self.clock)
        self._redecide(st, result)
        if kind == "user":
            for k in (*OWNED_KINDS, *EXCLUSIVE_KINDS):
                for oid in list(st.links.get(k, ())):
                    other = self.entities.get((k, oid))
                    if other is not None:
                        self._redecide(other, result)
        return result

    def forget_user(self, user: str) -> None:
        """GDPR erasure from memory: the user's state and links; identifiers only it used go too."""
        with self.lock:
            st = self.entities.pop(("user", user), None)
            self.overrides.pop(("user", user), None)
            self._active.discard(("user", user))
            if st is None:
                return
            for kind, ids in st.links.items():
                for oid in ids:
                    other = self.entities.get((kind, oid))
                    if other is None:
                        continue
                    users = other.links.get("user")
                    if users:
                        users.discard(user)
                    if kind in ("session", "conversation", "email_domain", "device") and not users:
                        self.entities.pop((kind, oid), None)
                        self._active.discard((kind, oid))
            for ph, u in list(self.flagged_prompts.items()):
                if u == user:
                    del self.flagged_prompts[ph]
            for cid, (fu, _s) in list(self.flagged_conversations.items()):
                if fu == user:
                    del self.flagged_conversations[cid]

    # ------------------------------------------------------------------ views
    def entity_view(self, kind: str, eid: str) -> dict[str, Any] | None:
        """The entity, its links, features, recent event ids and score history (for the API/console)."""
        with self.lock:
            st = self.entities.get((kind, eid))
            if st is None:
                return None
            info: dict[str, Any] | None = None
            if kind == "ip":
                info = self.ip.lookup(eid).to_dict()
            feats = {f.name: self._feature_value(f, st.feats.get(f.name), self.clock)
                     for f in self.ruleset.features if f.entity == kind}
            linked_users, flagged = self._linked_users(st) if kind == "user" else (set(), 0)
            return {
                "type": kind,
                "id": eid,
                "first_seen": st.first_seen,
                "last_seen": st.last_seen,
                "events": st.events,
                "attrs": {**st.attrs, **(info or {})},
                "seen": {k: sorted(map(str, v))[:50] for k, v in st.seen.items()},
                "links": {k: sorted(v)[:100] for k, v in st.links.items()},
                "link_counts": {k: len(v) for k, v in st.links.items()},
                "linked_users": sorted(linked_users)[:100],
                "linked_flagged": flagged,
                "features": feats,
                "recent_event_ids": list(reversed(st.recent)),
                "score_history": [{"ts": t, "score": s, "action": a} for t, s, a in st.history],
            }

    def cluster(self, user: str, *, max_size: int = 500) -> list[str]:
        """Users connected to `user` through shared devices or API keys (transitively): an account farm."""
        with self.lock:
            seen = {user}
            frontier = [user]
            while frontier and len(seen) < max_size:
                u = frontier.pop()
                st = self.entities.get(("user", u))
                if st is None:
                    continue
                linked, _ = self._linked_users(st)
                for o in linked:
                    if o not in seen:
                        seen.add(o)
                        frontier.append(o)
            return sorted(seen)

    def top_entities(self, *, limit: int = 50, min_score: float = 0.0) -> list[Decision]:
        with self.lock:
            out = []
            for key in self._active:
                d = self.decide(*key)
                if d.score >= min_score:
                    out.append(d)
            out.sort(key=lambda d: (-d.score, d.entity_type, d.entity_id))
            return out[:limit]


def _feature_guards_fail(guards: tuple[tuple[str, str, str, Any], ...], base: dict[str, Any]) -> bool:
    """A feature's `when` guards over the base map (event, ip, device, first, signals)."""
    for src, name, op, const in guards:
        if src == "attrs":
            value = base["event"]["attrs"].get(name, MISSING)
        else:
            m = base.get(src)
            if m is None:
                continue
            value = [m.get(n, MISSING) for n in const] if op == "or" else m.get(name, MISSING)
        if guard_false(op, value, const):
            return True
    return False


def _b_plan(eng: RiskEngine, st: EntityState, now: float) -> Any:
    return st.attrs.get("plan", "default") if st.kind == "user" else None


def _b_linked_users(eng: RiskEngine, st: EntityState, now: float) -> Any:
    return float(len(eng._linked_users(st)[0])) if st.kind == "user" else None


def _b_linked_flagged(eng: RiskEngine, st: EntityState, now: float) -> Any:
    return float(eng._linked_users(st)[1]) if st.kind == "user" else None


#: built-in values of every entity map (besides features, `n_<kind>s` link counts, `n_seen_<what>`)
_BUILTINS: dict[str, Any] = {
    "id": lambda eng, st, now: st.id,
    "events": lambda eng, st, now: float(st.events),
    "age_s": lambda eng, st, now: now - st.first_seen,
    "idle_s": lambda eng, st, now: st.last_seen - st.prev_last_seen,
    "score": lambda eng, st, now: eng._score_now(st),
    "action": lambda eng, st, now: st.decision_action,
    "plan": _b_plan,
    "linked_users": _b_linked_users,
    "linked_flagged": _b_linked_flagged,
}
