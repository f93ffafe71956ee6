"""SIEM exporters: they receive audit entries once durable and deliver them in their own threads.

- `syslog.SyslogExporter` — RFC 5424 over UDP, or TCP with octet counting (RFC 6587)
- `http.WebhookExporter` — JSON POST, retries with exponential backoff
- `http.OtlpLogsExporter` — OpenTelemetry logs, OTLP/HTTP with JSON encoding

Each has a bounded queue: a slow or dead SIEM loses (and counts) exports, never blocks the writer.
"""

from vallum.audit.exporters.base import QueuedExporter
from vallum.audit.exporters.http import OtlpLogsExporter, WebhookExporter
from vallum.audit.exporters.syslog import SyslogExporter, format_rfc5424

__all__ = ["OtlpLogsExporter", "QueuedExporter", "SyslogExporter", "WebhookExporter", "format_rfc5424"]
