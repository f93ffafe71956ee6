"""A deterministic benign population: hundreds of normal users over weeks, with realistic variety.

Home users in several countries, an office whose staff share one public IP, travellers who fly
(country changes hours apart), heavy but honest users (steady high spend, long contexts), developers
using SDKs with API keys, backend service keys running around the clock, agents with stable tool
sets, occasional password typos, refusals and rephrasing. No event is an attack.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from vallum.behaviour.events import Event, format_ts, validate_event

START = 1_790_000_000.0  # 2026-09-21, a Monday-ish epoch start for the population

COUNTRY_NETS = {
    "GB": "81.2.{a}.{b}",
    "US": "24.{a}.{b}.{c}",
    "DE": "5.9.{a}.{b}",
    "FR": "62.210.{a}.{b}",
    "JP": "133.11.{a}.{b}",
    "BR": "200.160.{a}.{b}",
    "IE": "31.13.{a}.{b}",
    "IN": "196.1.{a}.{b}",
}
BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_{v2}) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{v2} Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{v2} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{v2} Mobile/15E148 Safari/604.1",
]
SDKS = ["OpenAI/Python 1.{v}.0", "anthropic-python/0.{v}.0", "python-httpx/0.27.{v2}"]
LANGS = ["en-GB", "en-US", "de-DE", "fr-FR", "ja-JP", "pt-BR", "en-IE", "en-IN"]
TOPICS = ["billing", "code", "writing", "travel", "cooking", "math", "support", "legal", "health", "music"]
AGENT_TOOLS = {
    "agent:support": ["search_kb", "get_order", "create_ticket", "send_email"],
    "agent:coder": ["read_file", "write_file", "run_tests", "search_code"],
    "agent:research": ["web_search", "fetch_page", "summarise"],
    "agent:ops": ["get_metrics", "list_alerts", "restart_service"],
}
AGENT_DOMAINS = {
    "agent:support": ["kb.internal.example", "mail.example.com"],
    "agent:coder": ["git.internal.example"],
    "agent:research": ["en.wikipedia.org", "arxiv.org", "news.example.com"],
    "agent:ops": ["metrics.internal.example"],
}


@dataclass
class Person:
    user: str
    country: str
    ip: str
    ua: str
    lang: str
    plan: str
    kind: str  # home | office | traveller | heavy | developer
    key: str | None = None
    active_hours: tuple[int, int] = (8, 22)
    travel: list[tuple[float, str, str]] = field(default_factory=list)


def _ip(rng: random.Random, country: str) -> str:
    return COUNTRY_NETS[country].format(a=rng.randint(1, 250), b=rng.randint(1, 250), c=rng.randint(1, 250))


def make_people(rng: random.Random, n: int = 300) -> list[Person]:
    people = []
    office_ip = "81.2.70.5"
    countries = list(COUNTRY_NETS)
    for i in range(n):
        r = i % 10
        country = countries[i % len(countries)]
        ua = rng.choice(BROWSERS).format(v=rng.randint(118, 124), v2=rng.randint(0, 5))
        lang = LANGS[countries.index(country)]
        plan = "pro" if i % 4 == 0 else "free"
        if r in (0, 1):
            kind, country, ip, lang = "office", "GB", office_ip, "en-GB"
        elif r == 2:
            kind, ip = "traveller", _ip(rng, country)
        elif r == 3:
            kind, ip, plan = "heavy", _ip(rng, country), "pro"
        elif r == 4:
            kind, ip = "developer", _ip(rng, country)
            ua = rng.choice(SDKS).format(v=rng.randint(30, 50), v2=rng.randint(0, 9))
        else:
            kind, ip = "home", _ip(rng, country)
        start_h = rng.randint(6, 11)
        p = Person(user=f"user{i:04d}@{rng.choice(['mail.example', 'post.example', 'corp.example'])}",
                   country=country, ip=ip, ua=ua, lang=lang, plan=plan, kind=kind,
                   active_hours=(start_h, min(23, start_h + rng.randint(8, 14))))
        if kind in ("developer", "heavy") or i % 7 == 0:
            p.key = f"key-{i:04d}"
        if kind == "traveller":
            # one trip: leave on a random day, fly (≥ 8 h without activity), come back a week later
            day = rng.randint(3, 12)
            dest = rng.choice([c for c in countries if c != country])
            p.travel.append((START + day * 86400, dest, _ip(rng, dest)))
            p.travel.append((START + (day + 7) * 86400, country, ip))
        people.append(p)
    return people


def _where(p: Person, t: float) -> tuple[str, str]:
    ip, country = p.ip, p.country
    for when, c, tip in p.travel:
        if t >= when:
            ip, country = tip, c
    return ip, country


def generate(days: int = 14, n_users: int = 200, seed: int = 7) -> list[Event]:
    """Benign events for `n_users` over `days`, sorted by time. Deterministic for a seed."""
    rng = random.Random(seed)
    people = make_people(rng, n_users)
    raw: list[dict] = []
    seq = 0

    def add(t: float, **kw: object) -> None:
        nonlocal seq
        seq += 1
        raw.append({"ts": format_ts(t), "id": f"b{seq}", **kw})

    # registrations spread over the first ten days (never a burst from one place)
    for i, p in enumerate(people):
        t = START + (i / len(people)) * 10 * 86400 + rng.uniform(0, 3600)
        ip, _ = _where(p, t)
        add(t, type="auth.register", user=p.user, ip=ip, user_agent=p.ua, accept_language=p.lang,
            attrs={"email": p.user, "plan": p.plan})
        p.travel.insert(0, (t, p.country, p.ip))
    reg_time = {p.user: p.travel[0][0] for p in people}
    for p in people:
        p.travel.pop(0)

    for p in people:
        conv_n = 0
        for day in range(days):
            day0 = START + day * 86400
            if day0 + 86400 < reg_time[p.user]:
                continue
            if p.kind != "heavy" and rng.random() < 0.5:
                continue  # not every day
            n_sessions = 1 if p.kind not in ("heavy", "office") else rng.randint(1, 3)
            for s in range(n_sessions):
                h0, h1 = p.active_hours
                t = day0 + rng.uniform(h0, h1) * 3600
                if t < reg_time[p.user] + 60:
                    continue
                ip, _country = _where(p, t)
                # travellers are in the air around their departure: no activity 10 h either side
                if any(abs(t - w) < 10 * 3600 for w, _c, _i in p.travel):
                    continue
                session = f"s-{p.user}-{day}-{s}"
                if rng.random() < 0.04:  # a typo or two before logging in
                    for _ in range(rng.randint(1, 2)):
                        add(t, type="auth.login_failed", user=p.user, ip=ip, user_agent=p.ua)
                        t += rng.uniform(5, 30)
                add(t, type="auth.login", user=p.user, ip=ip, user_agent=p.ua, accept_language=p.lang,
                    session=session)
                conv_n += 1
                conv = f"c-{p.user}-{conv_n}"
                n_turns = rng.randint(2, 8) if p.kind != "heavy" else rng.randint(10, 30)
                topic = rng.choice(TOPICS)
                refused_prev = False
                for _turn in range(n_turns):
                    t += rng.uniform(20, 240) if p.kind != "heavy" else rng.uniform(15, 60)
                    if rng.random() < 0.1:
                        topic = rng.choice(TOPICS)
                    inp = rng.randint(40000, 60000) if p.kind == "heavy" and rng.random() < 0.5 else rng.randint(
                        50, 2500)
                    out = rng.randint(50, 1500)
                    cost = round((inp * 0.000002 + out * 0.000008) * (3 if p.kind == "heavy" else 1), 6)
                    attrs = {"gen_ai.request.model": "m-large" if p.plan == "pro" else "m-small",
                             "gen_ai.usage.input_tokens": inp, "gen_ai.usage.output_tokens": out,
                             "cost_usd": cost, "topic": topic, "plan": p.plan,
                             "guard_score": round(rng.random() * 0.3, 3),
                             "prompt_similarity_prev": round(rng.random() * (0.9 if refused_prev else 0.5), 3)}
                    if rng.random() < 0.02:
                        attrs["gen_ai.request.max_tokens"] = 64000
                    if rng.random() < 0.03:
                        attrs["stream_cancelled"] = True
                    ev = {"type": "llm.request", "user": p.user, "session": session, "conversation": conv,
                          "ip": ip, "user_agent": p.ua, "accept_language": p.lang, "attrs": attrs}
                    if p.key:
                        ev["api_key"] = p.key
                    add(t, **ev)
                    refused = rng.random() < 0.015
                    refused_prev = refused
                    add(t + rng.uniform(1, 8), type="llm.response", user=p.user, session=session, conversation=conv,
                        attrs={"refused": refused, "cost_usd": 0.0})
                if rng.random() < 0.05:
                    add(t + 30, type="guard.verdict", user=p.user, session=session,
                        attrs={"action": "warn", "category": "injection", "guard_score": 0.55})
                if rng.random() < 0.01:
                    add(t + 60, type="account.password_change", user=p.user, ip=ip, user_agent=p.ua)

    # agents: stable tool sets used by their owners, retrieval then known tools
    for ai, (agent, tools) in enumerate(AGENT_TOOLS.items()):
        owner = people[ai * 5 + 4].user
        t = START + 86400 * 10  # agents deployed after everyone registered
        while t < START + days * 86400:
            t += rng.uniform(60, 1800)
            if rng.random() < 0.3:
                add(t, type="retrieval.hit", user=owner, agent=agent, attrs={"doc_id": f"doc-{rng.randint(1, 500)}"})
                t += rng.uniform(5, 60)
            tool = rng.choice(tools)
            add(t, type="tool.call", user=owner, agent=agent,
                attrs={"gen_ai.tool.name": tool, "dest_domain": rng.choice(AGENT_DOMAINS[agent]),
                       "args_bytes": rng.randint(200, 4000)})

    # backend service keys: a datacenter box calling every minute or so, day and night, no logprobs
    for k in range(3):
        svc_user = f"service{k}@corp.example"
        t = START + 86400
        while t < START + days * 86400:
            t += rng.uniform(40, 120)
            add(t, type="llm.request", user=svc_user, api_key=f"svc-key-{k}", ip=f"24.50.0.{10 + k}",
                user_agent="python-httpx/0.27.0",
                attrs={"gen_ai.usage.input_tokens": rng.randint(200, 800), "cost_usd": 0.001, "plan": "pro"})

    raw.sort(key=lambda d: d["ts"])
    return [validate_event(d, now=None) for d in raw]
