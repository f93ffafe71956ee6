"""SIEM exporters against local receivers on 127.0.0.1: syslog UDP/TCP, webhook, OTLP/HTTP."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from auditkit import entries_of, new_log, record
from hypothesis import given, settings
from hypothesis import strategies as st

from vallum.audit.exporters import OtlpLogsExporter, SyslogExporter, WebhookExporter, format_rfc5424
from vallum.audit.verify import verify_log
from vallum.metrics import VallumMetrics

SEG1 = "audit-000001.jsonl"
RFC5424 = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<proc>\S+) (?P<msgid>\S+) "
    rb"(?P<sd>\[(?:[^\]\\]|\\.)*\]) \xef\xbb\xbf(?P<msg>.*)$",
    re.S,
)


def parse_sd(sd: str) -> tuple[str, dict[str, str]]:
    """A strict RFC 5424 SD-ELEMENT parser (one element)."""
    assert sd[0] == "[" and sd[-1] == "]"
    body = sd[1:-1]
    sd_id, _, rest = body.partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.index('="', i)
        name = rest[i:eq]
        j = eq + 2
        val = []
        while rest[j] != '"':
            if rest[j] == "\\" and rest[j + 1] in '"\\]':
                val.append(rest[j + 1])
                j += 2
            else:
                assert rest[j] not in '"]', "unescaped special character"
                val.append(rest[j])
                j += 1
        params[name] = "".join(val)
        i = j + 2  # closing quote and the space
    return sd_id, params


def check_message(raw: bytes, line: bytes, entry: dict[str, Any]) -> None:
    m = RFC5424.match(raw)
    assert m, raw[:200]
    severity = {"block": 4, "warn": 5, "allow": 6}.get(entry.get("action", ""), 6)
    if entry["kind"] == "recovery":
        severity = 4
    assert int(m["pri"]) == 16 * 8 + severity
    assert m["ts"].decode() == entry["ts"]
    assert m["app"] == b"vallum-test" and m["msgid"].decode() == entry["kind"]
    sd_id, params = parse_sd(m["sd"].decode())
    assert sd_id == "vallum@32473"
    assert params["seq"] == str(entry["seq"]) and params["hash"] == entry["hash"]
    assert m["msg"] == line.rstrip(b"\n")


def test_syslog_udp(logdir: Path):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    port = rx.getsockname()[1]
    ex = SyslogExporter(f"127.0.0.1:{port}", "udp", app_name="vallum-test", metrics=VallumMetrics())
    with new_log(logdir, exporters=[ex]) as log:
        for i in range(3):
            log.emit(record(i, action=["allow", "warn", "block"][i]))
    lines = (logdir / SEG1).read_bytes().splitlines(keepends=True)
    got = [rx.recv(65535) for _ in lines]
    rx.close()
    for raw, line in zip(got, lines, strict=True):
        check_message(raw, line, json.loads(line))
    assert ex.sent == len(lines)


def test_syslog_tcp_octet_counting(logdir: Path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(5)
    port = srv.getsockname()[1]
    received = bytearray()

    def serve() -> None:
        conn, _ = srv.accept()
        conn.settimeout(5)
        with conn:
            while chunk := conn.recv(65536):
                received.extend(chunk)

    t = threading.Thread(target=serve)
    t.start()
    ex = SyslogExporter(f"127.0.0.1:{port}", "tcp", app_name="vallum-test", metrics=VallumMetrics())
    with new_log(logdir, exporters=[ex]) as log:
        for i in range(25):
            log.emit(record(i, reason='multi\nline ] " \\ reason'))
    t.join(10)
    srv.close()
    frames, buf = [], bytes(received)
    while buf:
        n, _, rest = buf.partition(b" ")
        size = int(n)
        frames.append(rest[:size])
        buf = rest[size:]
    lines = (logdir / SEG1).read_bytes().splitlines(keepends=True)
    assert len(frames) == len(lines) == 27
    for raw, line in zip(frames, lines, strict=True):
        check_message(raw, line, json.loads(line))


@settings(deadline=None)
@given(st.text(max_size=40), st.lists(st.text(max_size=12), max_size=3))
def test_rfc5424_structured_data_escaping(reason_text, rules):
    entry = {
        "seq": 7,
        "kind": "decision",
        "ts": "2026-11-22T00:00:00.000000Z",
        "hash": "ab" * 32,
        "action": reason_text,
        "rules": rules,
        "transport": 'x]y"z\\',
    }
    raw = format_rfc5424(entry, b'{"a":1}\n', app_name="vallum-test", hostname="h", procid="1")
    m = RFC5424.match(raw)
    assert m
    _, params = parse_sd(m["sd"].decode())
    assert params["action"] == reason_text
    assert params["transport"] == 'x]y"z\\'
    if rules:
        assert params["rules"] == ",".join(rules)


class Receiver:
    """A tiny HTTP server recording POSTs; answers the first `fail_first` requests with 503."""

    def __init__(self, fail_first: int = 0, status: int = 200) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.fail_first = fail_first
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                code = 503 if len(outer.requests) <= outer.fail_first else status
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver(fail_first=1)
    yield r
    r.close()


def test_webhook_retries_with_backoff_and_delivers_every_entry(logdir: Path, receiver: Receiver):
    metrics = VallumMetrics()
    ex = WebhookExporter(receiver.url + "/hook", {"X-Token": "t0k"}, backoff_s=0.02, retries=3, metrics=metrics)
    with new_log(logdir, exporters=[ex]) as log:
        for i in range(5):
            log.emit(record(i))
        assert log.flush()
        assert ex.drain(5)
    posted = [json.loads(b)["entries"] for p, h, b in receiver.requests[1:]]
    assert receiver.requests[0][0] == "/hook" and receiver.requests[0][1]["x-token"] == "t0k"
    delivered = [e for batch in posted for e in batch]
    assert delivered == entries_of(logdir / SEG1)
    assert metrics.registry.get_sample_value("vallum_exporter_failures_total", {"exporter": "webhook"}) == 1
    assert metrics.registry.get_sample_value("vallum_exporter_sent_total", {"exporter": "webhook"}) == len(delivered)


def test_webhook_gives_up_and_counts_without_blocking_the_writer(logdir: Path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()  # nothing listens there
    metrics = VallumMetrics()
    ex = WebhookExporter(f"http://127.0.0.1:{dead}/", retries=2, backoff_s=0.01, metrics=metrics)
    t = time.perf_counter()
    with new_log(logdir, exporters=[ex]) as log:
        for i in range(20):
            assert log.emit(record(i))
        assert log.flush(5)
        assert ex.drain(5)
    assert time.perf_counter() - t < 10
    assert ex.dropped == 22 and ex.sent == 0
    assert metrics.registry.get_sample_value("vallum_exporter_dropped_total", {"exporter": "webhook"}) == 22
    assert verify_log(logdir).ok


def test_exporter_queue_is_bounded():
    ex = WebhookExporter("http://127.0.0.1:9/", max_queue=3, metrics=VallumMetrics())  # never started
    ex.offer([({"seq": i}, b"{}\n") for i in range(5)])
    assert ex.dropped == 2 and len(ex._queue) == 3


def test_otlp_http_json(logdir: Path, receiver: Receiver):
    receiver.fail_first = 0
    ex = OtlpLogsExporter(
        receiver.url, {"Authorization": "Bearer x"}, service_name="vallum-test", backoff_s=0.01, metrics=VallumMetrics()
    )
    with new_log(logdir, exporters=[ex]) as log:
        log.emit(record(1))
        assert log.flush()
        assert ex.drain(5)
    path, headers, body = receiver.requests[0]
    assert path == "/v1/logs" and headers["content-type"] == "application/json"
    records = []
    for _, _, body in receiver.requests:
        rl = json.loads(body)["resourceLogs"][0]
        assert rl["resource"]["attributes"] == [{"key": "service.name", "value": {"stringValue": "vallum-test"}}]
        assert rl["scopeLogs"][0]["scope"]["name"] == "vallum.audit"
        records += rl["scopeLogs"][0]["logRecords"]
    lines = (logdir / SEG1).read_bytes().splitlines()
    assert [r["body"]["stringValue"].encode() for r in records] == lines
    decision = records[1]
    attrs = {a["key"]: a["value"] for a in decision["attributes"]}
    assert attrs["vallum.seq"] == {"intValue": "1"} and attrs["vallum.action"] == {"stringValue": "block"}
    assert decision["severityText"] == "ERROR" and decision["severityNumber"] == 17
    assert decision["timeUnixNano"] == str(1_795_000_001 * 10**9)
