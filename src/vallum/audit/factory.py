"""Building the audit log and its exporters from the configuration."""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from vallum.audit.exporters import OtlpLogsExporter, SyslogExporter, WebhookExporter
from vallum.audit.keys import PRIVATE_KEY_NAME
from vallum.audit.writer import AuditError, AuditLog, EntryExporter
from vallum.decisions import DecisionSink, FanoutSink
from vallum.metrics import MetricsSink, VallumMetrics

log = logging.getLogger("vallum.audit")

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


def open_audit_log(
    config: Config,
    metrics: VallumMetrics | None = None,
    start: bool = True,
    directory: Path | None = None,
) -> AuditLog | None:
    """The configured `AuditLog` (started unless ``start=False``), or None if ``audit.enabled`` is false.

    ``queue_full: drop`` is honoured only with ``mode: audit``; otherwise it is a configuration error,
    because dropping evidence while enforcing would let traffic through unrecorded.
    """
    a = config.audit
    if not a.enabled:
        return None
    if a.queue_full == "drop" and str(config.mode) != "audit":
        raise ValueError("audit.queue_full: drop is only allowed with mode: audit (use block)")
    audit = AuditLog(
        directory or audit_dir(config),
        # every chain under the audit directory is signed by the same key (one audit.pub to keep)
        key_path=a.key_path or (audit_dir(config) / PRIVATE_KEY_NAME),
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
    if start:
        audit.start()
        install_sigterm_exit()
    return audit


def install_sigterm_exit() -> bool:
    """Make SIGTERM exit the interpreter normally (SystemExit 143), so the closing checkpoint is
    written by the exit hooks. Only when SIGTERM still has its default action and only from the
    main thread; a handler the application installed is never replaced. Returns True if installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    return True


def build_decision_sink(
    config: Config, component: str = "vallum", metrics: VallumMetrics | None = None
) -> DecisionSink:
    """The sink a vallum process hands its decisions to: the audit log (started; closed at exit)
    plus `MetricsSink`.

    One writer owns a log directory. The first process takes ``<audit dir>`` itself; a process that
    finds it taken (``vallum mcp wrap`` beside ``vallum run``) writes its own chain in
    ``<audit dir>/<component>/`` (``<component>-<pid>`` if that is taken too). ``vallum audit
    verify <audit dir>`` checks every chain. An audit log that cannot be opened at all raises:
    the caller must not run unaudited.
    """
    sinks: list[DecisionSink] = []
    root = audit_dir(config)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", component).strip("-.") or "vallum"
    audit: AuditLog | None = None
    for candidate in (root, root / safe, root / f"{safe}-{os.getpid()}"):
        try:
            audit = open_audit_log(config, metrics, directory=candidate)
            break
        except AuditError:
            log.info("audit log %s is held by another process; trying the next directory", candidate)
    else:
        raise AuditError(f"no audit log directory under {root} could be opened")
    if audit is not None:
        sinks.append(audit)
    sinks.append(MetricsSink(metrics))
    return FanoutSink(*sinks)
