"""Benchmark: latency `vallum mcp wrap` adds to a tools/call round trip, and relay throughput.

One run measures both paths against the same minimal stdio MCP server (plain Python, answers
every tools/call with a 1 KB text result at once), so the difference is the proxy's cost:
JSON-RPC parsing, the session state machine, policy and credential checks on the arguments,
the injection scan of the 1 KB result, the decision record, and the extra pipe hop.

    python bench/bench_mcp.py [--calls 400] [--pipelined 3000] [--engine auto|re|hyperscan]

Prints one JSON object. Target: added p50 ≤ 1 ms for a 1 KB result.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER = r'''
import json, sys
body = ("lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20)[:1024]
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    m = json.loads(line)
    if "id" not in m or "method" not in m:
        continue
    if m["method"] == "tools/list":
        r = {"tools": [{"name": "get", "description": "Return a document.",
                        "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}}]}
    elif m["method"] == "tools/call":
        r = {"content": [{"type": "text", "text": body}], "isError": False}
    else:
        r = {}
    out.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}).encode() + b"\n")
    out.flush()
'''


def _call(i: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                       "params": {"name": "get", "arguments": {"q": f"query number {i}"}}}).encode() + b"\n"


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env)


def _roundtrips(p: subprocess.Popen[bytes], n: int, start_id: int) -> list[float]:
    assert p.stdin and p.stdout
    out = []
    for i in range(start_id, start_id + n):
        t = time.perf_counter()
        p.stdin.write(_call(i))
        p.stdin.flush()
        line = p.stdout.readline()
        out.append(time.perf_counter() - t)
        if not line:
            raise RuntimeError("relay closed the stream")
    return out


def _pipelined(p: subprocess.Popen[bytes], n: int, start_id: int) -> float:
    """Send n calls without waiting (from a thread), read n answers; return seconds."""
    import threading

    assert p.stdin and p.stdout
    payload = b"".join(_call(i) for i in range(start_id, start_id + n))
    t = time.perf_counter()
    def send() -> None:
        assert p.stdin
        p.stdin.write(payload)
        p.stdin.flush()

    th = threading.Thread(target=send)
    th.start()
    for _ in range(n):
        if not p.stdout.readline():
            raise RuntimeError("relay closed the stream")
    th.join()
    return time.perf_counter() - t


def _prime(p: subprocess.Popen[bytes]) -> None:
    assert p.stdin and p.stdout
    p.stdin.write(b'{"jsonrpc":"2.0","id":0,"method":"tools/list"}\n')
    p.stdin.flush()
    p.stdout.readline()


def _inspection_cost(engine: str, n: int = 300, rules: bool = True) -> float:
    """µs of session work (both directions) per tools/call with a 1 KB result, in process.

    With `rules=False` every detection rule is disabled: what is left is the proxy's own work
    (framing, state machine, tool policy, decision records)."""
    from vallum.config import Config
    from vallum.detection.pipeline import Inspector
    from vallum.mcp.session import McpSession, ServerContext

    cfg = Config() if rules else Config.model_validate({"detection": {"disable": ["*"]}})
    insp = Inspector(cfg, engine=None if engine == "auto" else engine)
    s = McpSession(ServerContext("bench", insp))
    body = ("lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20)[:1024]
    answers = [json.dumps({"jsonrpc": "2.0", "id": i, "result": {"content": [{"type": "text", "text": body}]}})
               .encode() for i in range(n + 20)]
    calls = [_call(i).strip() for i in range(n + 20)]
    for i in range(20):
        s.client_message(calls[i], 0.0)
        s.server_message(answers[i], 0.0)
    t = time.perf_counter()
    for i in range(20, n + 20):
        s.client_message(calls[i], 0.0)
        s.server_message(answers[i], 0.0)
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--pipelined", type=int, default=3000)
    ap.add_argument("--engine", default=os.environ.get("VALLUM_REGEX_ENGINE", "auto"))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vallum-bench-"))
    server = tmp / "server.py"
    server.write_text(SERVER)
    (tmp / "vallum.yaml").write_text(f"data_dir: {tmp / 'data'}\n")
    env = {**os.environ, "VALLUM_REGEX_ENGINE": a.engine, "VALLUM_DISABLE_SEMANTIC": "1"}
    direct = _start([sys.executable, str(server)], env)
    t0 = time.perf_counter()
    wrapped = _start([sys.executable, "-m", "vallum", "mcp", "wrap", "--config", str(tmp / "vallum.yaml"),
                      "--name", "bench", "--", sys.executable, str(server)], env)
    _prime(direct)
    _prime(wrapped)
    startup = time.perf_counter() - t0
    # warm up both paths, then interleave batches so load changes hit both alike
    _roundtrips(direct, 50, 1)
    _roundtrips(wrapped, 50, 1)
    d: list[float] = []
    w: list[float] = []
    next_id = 100
    for _ in range(8):
        d += _roundtrips(direct, a.calls // 8, next_id)
        w += _roundtrips(wrapped, a.calls // 8, next_id)
        next_id += a.calls
    td = _pipelined(direct, a.pipelined, next_id)
    tw = _pipelined(wrapped, a.pipelined, next_id)
    for p in (direct, wrapped):
        assert p.stdin
        p.stdin.close()
        p.wait(10)

    def q(xs: list[float], pct: float) -> float:
        return round(statistics.quantiles(xs, n=100)[int(pct) - 1] * 1000, 3)

    p50_d, p50_w = round(statistics.median(d) * 1000, 3), round(statistics.median(w) * 1000, 3)
    print(json.dumps({
        "benchmark": "mcp_wrap_tools_call",
        "result_bytes": 1024,
        "engine": a.engine,
        "calls": len(d),
        "direct_ms": {"p50": p50_d, "p90": q(d, 90), "p99": q(d, 99)},
        "wrapped_ms": {"p50": p50_w, "p90": q(w, 90), "p99": q(w, 99)},
        "added_p50_ms": round(p50_w - p50_d, 3),
        "added_p90_ms": round(q(w, 90) - q(d, 90), 3),
        "target_added_p50_ms": 1.0,
        "relay_calls_per_s": round(a.pipelined / tw, 1),
        "relay_messages_per_s": round(2 * a.pipelined / tw, 1),
        "direct_calls_per_s": round(a.pipelined / td, 1),
        "session_inspection_us_per_call": round(_inspection_cost(a.engine), 1),
        "session_without_detection_us_per_call": round(_inspection_cost(a.engine, rules=False), 1),
        "wrap_startup_s": round(startup, 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }, indent=2))


if __name__ == "__main__":
    main()
