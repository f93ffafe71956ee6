"""Metrics: Prometheus text format, decision counting, bounded label cardinality, the endpoint."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from auditkit import new_log, record
from prometheus_client.parser import text_string_to_metric_families

from vallum.decisions import DecisionRecord
from vallum.detection.model import Action, Finding
from vallum.metrics import METRICS, MetricsSink, VallumMetrics, metrics_endpoint, render_metrics


def finding(rule: str, category: str = "credential", action: Action = Action.BLOCK) -> Finding:
    return Finding(rule, category, "high", action, "m")


def samples(metrics: VallumMetrics, name: str) -> list:
    body, _ = metrics.render()
    return [s for fam in text_string_to_metric_families(body.decode()) for s in fam.samples if s.name == name]


def test_metrics_sink_counts_decisions_and_latency():
    m = VallumMetrics()
    sink = MetricsSink(m)
    assert sink.emit(
        DecisionRecord(ts=0, transport="egress.http", action="block", findings=[finding("dlp.x")], duration_ms=2.0)
    )
    assert sink.emit(DecisionRecord(ts=0, transport="egress.http", action="allow", duration_ms=0.04))
    assert sink.emit(
        DecisionRecord(
            ts=0, transport="mcp.stdio", action="warn", findings=[finding("inj.a", "injection", Action.WARN)]
        )
    )
    g = m.registry.get_sample_value
    assert (
        g(
            "vallum_decisions_total",
            {"transport": "egress.http", "action": "block", "category": "credential", "rule": "dlp.x"},
        )
        == 1
    )
    assert (
        g("vallum_decisions_total", {"transport": "egress.http", "action": "allow", "category": "none", "rule": "none"})
        == 1
    )
    assert (
        g(
            "vallum_decisions_total",
            {"transport": "mcp.stdio", "action": "warn", "category": "injection", "rule": "inj.a"},
        )
        == 1
    )
    assert g("vallum_rule_hits_total", {"rule": "dlp.x", "action": "block"}) == 1
    assert g("vallum_scan_latency_seconds_count", {"transport": "egress.http"}) == 2
    assert g("vallum_scan_latency_seconds_bucket", {"transport": "egress.http", "le": "5e-05"}) == 1
    assert g("vallum_scan_latency_seconds_bucket", {"transport": "egress.http", "le": "0.001"}) == 1
    assert g("vallum_scan_latency_seconds_bucket", {"transport": "egress.http", "le": "0.0025"}) == 2


def test_label_cardinality_is_bounded():
    m = VallumMetrics(max_rules=10)
    sink = MetricsSink(m)
    for i in range(500):
        sink.emit(
            DecisionRecord(
                ts=0, transport=f"weird.{i}", action=f"act{i}", findings=[finding(f"rule.{i}", category=f"cat{i}")]
            )
        )
    rules = {s.labels["rule"] for s in samples(m, "vallum_rule_hits_total")}
    assert len(rules) == 11 and "other" in rules
    dec = samples(m, "vallum_decisions_total")
    assert len({s.labels["transport"] for s in dec}) <= 16 + 1
    assert len({s.labels["action"] for s in dec}) <= 4 + 1
    assert len({s.labels["category"] for s in dec}) <= 4 + 1
    assert len({s.labels["rule"] for s in dec}) <= 11
    assert len(dec) <= 17 * 5 * 5 * 11
    assert sum(s.value for s in dec) == 500


def test_audit_metrics_and_prometheus_text(logdir: Path):
    m = VallumMetrics()
    with new_log(logdir, metrics=m) as log:
        for i in range(5):
            log.emit(record(i))
        assert log.flush()
        body, ctype = m.render()
        text = body.decode()
        assert ctype.startswith("text/plain; version=")
        assert re.search(r'^vallum_queue_depth\{queue="audit"\} 0\.0$', text, re.M)
        assert re.search(r"^vallum_audit_write_lag_seconds [0-9.e-]+$", text, re.M)
        assert re.search(r'^vallum_audit_queue_full_policy\{policy="block"\} 1\.0$', text, re.M)
        assert "# TYPE vallum_audit_entries_total counter" in text
    g = m.registry.get_sample_value
    assert g("vallum_audit_entries_total", {"kind": "decision"}) == 5
    assert g("vallum_audit_entries_total", {"kind": "checkpoint"}) == 1
    assert g("vallum_audit_last_seq") == 6
    # every line of the exposition parses
    assert sum(1 for _ in text_string_to_metric_families(text)) > 10


def test_render_metrics_and_endpoint():
    MetricsSink().emit(DecisionRecord(ts=0, transport="scan.api", action="allow"))
    body, ctype = render_metrics()
    assert b"vallum_decisions_total" in body and ctype.startswith("text/plain")

    class _Req:  # the endpoint ignores the request
        pass

    resp = asyncio.run(metrics_endpoint(_Req()))  # type: ignore[arg-type]
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert b'vallum_decisions_total{action="allow",category="none",rule="none",transport="scan.api"}' in resp.body
    assert (
        METRICS.registry.get_sample_value(
            "vallum_decisions_total", {"transport": "scan.api", "action": "allow", "category": "none", "rule": "none"}
        )
        >= 1
    )
