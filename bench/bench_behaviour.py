"""Behaviour engine benchmark (prints JSON): sustained ingestion with the full built-in rule pack on
SQLite and PostgreSQL, next to a bare executemany insert of the same events (the ceiling), and the
p99 latency of POST /api/v1/decide through a real uvicorn server.

    .venv/bin/python bench/bench_behaviour.py [--events N] [--decides N] [--no-postgres]

Ingestion is measured through the same path the API uses after parsing: durable insert (one commit
per batch of 500), then scoring by the engine and persisting hits/decisions, batch after batch.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from vallum.api.service import BehaviourService
from vallum.behaviour.events import Event, format_ts, validate_event
from vallum.config import Config

T0 = 1_790_000_000.0
UAS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
       "OpenAI/Python 1.40.0", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 Safari/605.1.15"]
NETS = ["81.2.{a}.{b}", "24.{a}.{b}.7", "5.9.{a}.{b}", "133.11.{a}.{b}"]
TYPES = ["llm.request"] * 6 + ["llm.response"] * 4 + ["tool.call"] * 2 + ["auth.login", "page.view",
                                                                          "auth.login_failed", "guard.verdict"]


def make_events(n: int, seed: int = 1) -> list[Event]:
    """A realistic mix: 2,000 users, sessions, conversations, tools, logins, some failures."""
    rng = random.Random(seed)
    out = []
    t = T0
    for _i in range(n):
        t += rng.expovariate(50.0)  # ~50 events per second of event time
        u = rng.randint(0, 1999)
        typ = rng.choice(TYPES)
        d = {"type": typ, "ts": format_ts(t), "id": f"bench-{uuid.uuid4().hex}", "user": f"user{u}",
             "session": f"s{u}-{int(t // 1800)}", "ip": NETS[u % 4].format(a=u % 200 + 1, b=u % 97 + 1),
             "user_agent": UAS[u % 3], "accept_language": "en-GB"}
        if typ in ("llm.request", "llm.response"):
            d["conversation"] = f"c{u}-{int(t // 3600)}"
            d["attrs"] = {"gen_ai.request.model": "m-large", "gen_ai.usage.input_tokens": rng.randint(50, 3000),
                          "gen_ai.usage.output_tokens": rng.randint(50, 900), "cost_usd": rng.random() * 0.02,
                          "guard_score": rng.random() * 0.3, "refused": rng.random() < 0.01, "plan": "pro"}
            if u % 5 == 0:
                d["api_key"] = f"key-{u}"
        elif typ == "tool.call":
            d["agent"] = f"agent:{u % 10}"
            d["attrs"] = {"gen_ai.tool.name": rng.choice(["search", "read", "send_email"]),
                          "dest_domain": rng.choice(["a.example", "b.example"]), "args_bytes": rng.randint(100, 5000)}
        elif typ == "guard.verdict":
            d["attrs"] = {"action": rng.choice(["allow", "warn"]), "category": "injection"}
        out.append(validate_event(d, now=None))
    return out


def bench_engine(events: list[Event]) -> dict:
    """The pure engine alone (no store): the part of ingestion that the rule pack costs."""
    from vallum.behaviour.engine import RiskEngine

    eng = RiskEngine()
    t, c = time.perf_counter(), time.process_time()
    for i in range(0, len(events), 500):
        eng.ingest(events[i:i + 500])
    dt, dc = time.perf_counter() - t, time.process_time() - c
    return {"events": len(events), "events_per_s": round(len(events) / dt),
            "events_per_cpu_s": round(len(events) / dc), "us_per_event": round(dt / len(events) * 1e6, 1)}


def bench_ingest(url: str, events: list[Event], batch: int = 500) -> dict:
    cfg = Config()
    cfg.store.url = url
    cfg.behaviour.replay_on_start = False
    svc = BehaviourService(cfg)
    svc.start_sync()
    t, c = time.perf_counter(), time.process_time()
    for i in range(0, len(events), batch):
        chunk = events[i:i + batch]
        fresh = svc.store.insert_events(chunk, key_id="bench", received_at=time.time())
        svc.pending_events += sum(fresh)
        svc._score([e for e, f in zip(chunk, fresh, strict=True) if f])
    dt, dc = time.perf_counter() - t, time.process_time() - c
    rules = sum(1 for r in svc.engine.ruleset.rules if r.enabled)
    # the ceiling: the same rows, a bare executemany into the same table of a fresh database
    rows = [{"event_id": e.id + "-bare", "ts_ms": e.ts_ms, "type": e.type, "user_id": e.user,
             "body": json.dumps(e.to_dict(), separators=(",", ":")), "received_at": 0.0, "key_id": "bench"}
            for e in events]
    t = time.perf_counter()
    for i in range(0, len(rows), batch):
        svc.store.bare_insert(rows[i:i + batch])
    bare = time.perf_counter() - t
    svc.store.close()
    svc.executor.shutdown()
    return {"events": len(events), "rules": rules, "events_per_s": round(len(events) / dt),
            # CPU seconds of this process only: what the machine's other load does not distort
            # (on PostgreSQL the server's own CPU is not in it)
            "events_per_cpu_s": round(len(events) / dc),
            "bare_insert_events_per_s": round(len(events) / bare),
            "ratio_to_bare_insert": round((len(events) / dt) / (len(events) / bare), 3)}


def bench_decide(n: int, tmp: Path) -> dict:
    """p99 of POST /api/v1/decide against `vallum serve` in its own process (the client is not
    competing with the server for the GIL)."""
    import subprocess

    import httpx

    from vallum.storage import open_store

    url = f"sqlite:///{tmp / 'decide.db'}"
    st = open_store(url)
    _kid, key = st.create_key("bench")
    st.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "vallum", "serve", "--listen", f"127.0.0.1:{port}", "--store", url,
                             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lat = []
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError("vallum serve did not start")
            time.sleep(0.1)
        now = time.time()
        rng = random.Random(3)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"},
                          trust_env=False) as c:
            for i in range(n + 50):
                ev = {"type": rng.choice(["llm.request", "auth.login", "tool.call"]),
                      "ts": format_ts(now + i * 0.001), "user": f"user{rng.randint(0, 300)}",
                      "ip": f"81.2.69.{rng.randint(1, 250)}", "user_agent": UAS[i % 3],
                      "attrs": {"cost_usd": 0.001, "gen_ai.tool.name": "search"}}
                t = time.perf_counter()
                r = c.post("/api/v1/decide", json=ev)
                el = time.perf_counter() - t
                assert r.status_code == 200, r.text
                if i >= 50:  # warm-up
                    lat.append(el * 1000)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    lat.sort()
    return {"requests": n, "p50_ms": round(statistics.median(lat), 2),
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1], 2), "max_ms": round(lat[-1], 2)}


def pg_url() -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            pass
        import psycopg

        schema = "bench_" + uuid.uuid4().hex[:8]
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
        return f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    except Exception:
        return None


def drop_pg(url: str) -> None:
    import psycopg

    schema = url.rsplit("%3D", 1)[1]
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as c:
        c.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--decides", type=int, default=500)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    events = make_events(args.events)
    out: dict = {"cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                 "note": "events_per_s is wall clock; with load_avg above cpu_count other processes share the "
                         "cores, and events_per_cpu_s shows the cost independent of that"}
    with tempfile.TemporaryDirectory() as tmp:
        out["engine_only"] = bench_engine(events)
        out["sqlite"] = bench_ingest(f"sqlite:///{tmp}/bench.db", events)
        url = None if args.no_postgres else pg_url()
        if url:
            try:
                out["postgres"] = bench_ingest(url, events)
            finally:
                drop_pg(url)
        else:
            out["postgres"] = "skipped (not reachable)"
        out["decide"] = bench_decide(args.decides, Path(tmp))
    out["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    out["targets"] = {"sqlite_events_per_s": 5000, "decide_p99_ms": 10}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
