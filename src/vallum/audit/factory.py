"""Building the audit log and its exporters from the configuration."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vallum.audit.exporters import OtlpLogsExporter, SyslogExporter, WebhookExporter
from vallum.audit.writer import AuditLog, EntryExporter
from vallum.metrics import VallumMetrics

if TYPE_CHECKING:
    from vallum.config import Config


def build_exporters(config: Config, metrics: VallumMetrics | None = None) -> list[EntryExporter]:
    ex = config.audit.exporters
    out: list[EntryExporter] = []
    if ex.syslog is not None:
        s = ex.syslog
        out.append(
            SyslogExporter(s.address, s.protocol, s.app_name, s.facility, max_queue=s.max_queue, metrics=metrics)
        )
    if ex.webhook is not None:
        w = ex.webhook
        out.append(
            WebhookExporter(
                w.url,
                w.headers,
                max_queue=w.max_queue,
                batch_size=w.batch_size,
                retries=w.retries,
                backoff_s=w.backoff_s,
                timeout_s=w.timeout_s,
                metrics=metrics,
            )
        )
    if ex.otlp is not None:
        o = ex.otlp
        out.append(
            OtlpLogsExporter(
                o.endpoint,
                o.headers,
                o.service_name,
                max_queue=o.max_queue,
                batch_size=o.batch_size,
                retries=o.retries,
                backoff_s=o.backoff_s,
                timeout_s=o.timeout_s,
                metrics=metrics,
            )
        )
    return out


def audit_dir(config: Config) -> Path:
    return config.audit.resolve_dir(config.data_dir)


def open_audit_log(config: Config, metrics: VallumMetrics | None = None, start: bool = True) -> AuditLog | None:
    """The configured `AuditLog` (started unless ``start=False``), or None if ``audit.enabled`` is false.

    ``queue_full: drop`` is honoured only with ``mode: audit``; otherwise it is a configuration error,
    because dropping evidence while enforcing would let traffic through unrecorded.
    """
    a = config.audit
    if not a.enabled:
        return None
    if a.queue_full == "drop" and str(config.mode) != "audit":
        raise ValueError("audit.queue_full: drop is only allowed with mode: audit (use block)")
    log = AuditLog(
        audit_dir(config),
        key_path=a.key_path or None,
        checkpoint_every=a.checkpoint_every,
        rotate_bytes=a.rotate_bytes,
        keep_files=a.keep_files,
        queue_size=a.queue_size,
        queue_full=a.queue_full,
        fsync_every=a.fsync_every,
        fsync_interval_ms=a.fsync_interval_ms,
        exporters=build_exporters(config, metrics),
        metrics=metrics,
    )
    return log.start() if start else log
