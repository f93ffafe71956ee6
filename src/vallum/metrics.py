"""vallum's Prometheus metrics: one registry, bounded label cardinality, and a decision sink.

Every label value that comes from traffic (transport, action, category, rule, queue and exporter
names) goes through a `BoundedLabel`: known values pass, a limited number of new values are
admitted first-come, and everything after that is reported as ``"other"``. So a flood of distinct
rule ids or a buggy transport name can never blow up the number of time series.

Public API:

- `REGISTRY` and `METRICS` — the process-wide registry and the metric objects on it
- `VallumMetrics` — the same set of metrics on any registry (tests use a private one)
- `MetricsSink` — a `DecisionSink` that counts decisions and observes scan latency
- `render_metrics()` — ``(body, content_type)`` in the Prometheus text format
- `metrics_endpoint(request)` — a Starlette endpoint for ``GET /metrics``

May import: the standard library, prometheus_client, `vallum.decisions` and `vallum.detection.model`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import exposition as _exposition

from vallum.detection.model import CATEGORIES

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from vallum.decisions.record import DecisionRecord

OTHER = "other"
#: the classic text format (every name here is a legacy-valid name, so the body is the same): the
#: one every Prometheus version and most scrapers understand
CONTENT_TYPE = getattr(_exposition, "CONTENT_TYPE_PLAIN_0_0_4", CONTENT_TYPE_LATEST)
#: at most this many raw label combinations are cached per metric (the label values are bounded anyway)
_CHILD_CACHE = 4096

#: transports that the core emits today; others are admitted up to the cap
KNOWN_TRANSPORTS = (
    "egress.http",
    "egress.connect",
    "egress.fetch",
    "mcp.stdio",
    "mcp.http",
    "scan.api",
    "scan.cli",
    "behaviour",
    "library",
)
KNOWN_ACTIONS = ("allow", "warn", "block", "review", "challenge")
#: seconds; from 50 µs (a cache hit) to 5 s (a stalled upstream)
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


class BoundedLabel:
    """Maps arbitrary label values onto at most ``len(known) + max_new + 1`` distinct values."""

    def __init__(self, known: Iterable[str] = (), max_new: int = 20) -> None:
        self._admitted: set[str] = set(known)
        self._new = 0
        self.max_new = max_new
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        v = value or "none"
        if v in self._admitted:
            return v
        with self._lock:
            if v in self._admitted:
                return v
            if self._new >= self.max_new:
                return OTHER
            self._new += 1
            self._admitted.add(v)
            return v

    @property
    def values(self) -> frozenset[str]:
        return frozenset(self._admitted)


class VallumMetrics:
    """All of vallum's metrics on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None, max_rules: int = 50) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.transport = BoundedLabel(KNOWN_TRANSPORTS, max_new=16)
        self.action = BoundedLabel(KNOWN_ACTIONS, max_new=4)
        self.category = BoundedLabel((*sorted(CATEGORIES), "none"), max_new=4)
        #: the first `max_rules` distinct rule ids get their own series; the rest share "other"
        self.rule = BoundedLabel((), max_new=max_rules)
        self.queue = BoundedLabel(("audit",), max_new=32)
        self.exporter = BoundedLabel(("syslog", "webhook", "otlp"), max_new=8)
        # metric children by raw label values, so a decision costs dict lookups, not labels() calls
        self._decision_children: dict[tuple[str, str, str, str], Any] = {}
        self._rule_children: dict[tuple[str, str], Any] = {}
        self._latency_children: dict[str, Any] = {}

        self.decisions = Counter(
            "vallum_decisions_total",
            "Decisions taken, by transport, action, and the category and rule of the finding that decided "
            "(rule ids beyond the cap are counted as 'other'; 'none' when nothing was found).",
            ("transport", "action", "category", "rule"),
            registry=r,
        )
        self.rule_hits = Counter(
            "vallum_rule_hits_total",
            "Findings per rule id (rare rules beyond the cap are counted as 'other').",
            ("rule", "action"),
            registry=r,
        )
        self.scan_latency = Histogram(
            "vallum_scan_latency_seconds",
            "Time spent inspecting one input, by transport.",
            ("transport",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("vallum_queue_depth", "Items waiting in an internal queue.", ("queue",), registry=r)
        self.audit_entries = Counter(
            "vallum_audit_entries_total",
            "Audit log entries written (durable), by kind.",
            ("kind",),
            registry=r,
        )
        self.audit_write_lag = Gauge(
            "vallum_audit_write_lag_seconds",
            "Age of the oldest decision in the last audit batch when it became durable (emit to fsync).",
            registry=r,
        )
        self.audit_dropped = Counter(
            "vallum_audit_dropped_total",
            "Decisions dropped because the audit queue was full (policy drop).",
            registry=r,
        )
        self.audit_refused = Counter(
            "vallum_audit_refused_total",
            "Decisions refused because the audit queue was full or the writer failed (policy block: traffic blocked).",
            registry=r,
        )
        self.audit_policy = Gauge(
            "vallum_audit_queue_full_policy",
            "1 for the audit queue-full policy in force.",
            ("policy",),
            registry=r,
        )
        self.audit_writer_errors = Counter(
            "vallum_audit_writer_errors_total",
            "I/O failures of the audit writer (it then refuses decisions).",
            registry=r,
        )
        self.audit_redactions = Counter(
            "vallum_audit_redactions_total",
            "Secrets that the audit log's defence-in-depth redaction removed (a detector leaked evidence).",
            registry=r,
        )
        self.audit_last_seq = Gauge("vallum_audit_last_seq", "Sequence number of the last durable entry.", registry=r)
        self.exporter_sent = Counter(
            "vallum_exporter_sent_total",
            "Audit entries delivered by a SIEM exporter.",
            ("exporter",),
            registry=r,
        )
        self.exporter_failures = Counter(
            "vallum_exporter_failures_total",
            "Failed delivery attempts of a SIEM exporter.",
            ("exporter",),
            registry=r,
        )
        self.exporter_dropped = Counter(
            "vallum_exporter_dropped_total",
            "Audit entries a SIEM exporter gave up on (its queue was full or retries were exhausted).",
            ("exporter",),
            registry=r,
        )

    def count_decision(self, record: DecisionRecord) -> None:
        """Count one decision (and its rules) and observe its scan latency."""
        category = rule = "none"
        for f in record.findings:
            category, rule = f.category, f.rule
            if str(f.action) == record.action:
                break
        key = (record.transport, record.action, category, rule)
        child = self._decision_children.get(key)
        if child is None:
            labels = (
                self.transport(key[0]),
                self.action(key[1]),
                self.category(key[2]),
                key[3] if key[3] == "none" else self.rule(key[3]),
            )
            child = self.decisions.labels(*labels)
            if len(self._decision_children) < _CHILD_CACHE:
                self._decision_children[key] = child
        child.inc()
        for f in record.findings:
            rkey = (f.rule, str(f.action))
            rc = self._rule_children.get(rkey)
            if rc is None:
                rc = self.rule_hits.labels(self.rule(rkey[0]), self.action(rkey[1]))
                if len(self._rule_children) < _CHILD_CACHE:
                    self._rule_children[rkey] = rc
            rc.inc()
        if record.duration_ms is not None:
            h = self._latency_children.get(record.transport)
            if h is None:
                h = self.scan_latency.labels(self.transport(record.transport))
                if len(self._latency_children) < _CHILD_CACHE:
                    self._latency_children[record.transport] = h
            h.observe(record.duration_ms / 1000.0)

    def observe_scan_latency(self, transport: str, seconds: float) -> None:
        """For transports that time their scans without emitting a record."""
        self.scan_latency.labels(self.transport(transport)).observe(seconds)

    def track_queue(self, name: str, depth: Callable[[], float]) -> None:
        """Report `depth()` as ``vallum_queue_depth{queue=name}`` at every scrape."""
        self.queue_depth.labels(self.queue(name)).set_function(depth)

    def set_queue_policy(self, policy: str) -> None:
        for p in ("block", "drop"):
            self.audit_policy.labels(p).set(1 if p == policy else 0)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE


#: the process-wide metrics
METRICS = VallumMetrics()
REGISTRY = METRICS.registry


class MetricsSink:
    """A `DecisionSink` that counts every decision; it never refuses one."""

    def __init__(self, metrics: VallumMetrics | None = None) -> None:
        self.metrics = metrics or METRICS

    def emit(self, record: DecisionRecord) -> bool:
        try:
            self.metrics.count_decision(record)
        except Exception:
            # Metrics are not evidence: a counting bug must not block traffic.
            return True
        return True


def render_metrics(metrics: VallumMetrics | None = None) -> tuple[bytes, str]:
    """The Prometheus text exposition of vallum's registry: ``(body, content_type)``."""
    return (metrics or METRICS).render()


async def metrics_endpoint(request: Request) -> Response:
    """Starlette endpoint for ``GET /metrics`` (no authentication, like other exporters)."""
    from starlette.responses import Response

    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
