"""`audit:` configuration section (owned by the audit layer)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from vallum.config.sections.base import Section


class SyslogExporterConfig(Section):
    """RFC 5424 syslog; TCP uses octet-counting framing (RFC 6587)."""

    address: str = Field(..., description="host:port, e.g. 127.0.0.1:514")
    protocol: Literal["udp", "tcp"] = "udp"
    app_name: str = "vallum"
    #: syslog facility number (16-23 = local0-local7)
    facility: int = Field(16, ge=0, le=23)
    max_queue: int = Field(10_000, ge=1)

    @field_validator("address")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("address must be host:port")
        return v


class WebhookExporterConfig(Section):
    """JSON POST of batches of entries, retried with exponential backoff."""

    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    max_queue: int = Field(10_000, ge=1)
    retries: int = Field(5, ge=0)
    timeout_s: float = Field(5.0, gt=0)
    backoff_s: float = Field(0.5, gt=0)
    batch_size: int = Field(100, ge=1)

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return v


class OtlpExporterConfig(Section):
    """OpenTelemetry logs over OTLP/HTTP with JSON encoding (POST …/v1/logs)."""

    endpoint: str = "http://127.0.0.1:4318"
    headers: dict[str, str] = Field(default_factory=dict)
    service_name: str = "vallum"
    max_queue: int = Field(10_000, ge=1)
    retries: int = Field(5, ge=0)
    timeout_s: float = Field(5.0, gt=0)
    backoff_s: float = Field(0.5, gt=0)
    batch_size: int = Field(100, ge=1)

    @field_validator("endpoint")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("endpoint must start with http:// or https://")
        return v


class ExportersConfig(Section):
    syslog: SyslogExporterConfig | None = None
    webhook: WebhookExporterConfig | None = None
    otlp: OtlpExporterConfig | None = None


class AuditConfig(Section):
    """The hash-chained, signed audit log (docs/audit-log.md)."""

    enabled: bool = True
    #: log directory; empty = <data_dir>/audit
    dir: str = ""
    #: a signed checkpoint every N entries (and one at clean shutdown)
    checkpoint_every: int = Field(1000, ge=1)
    #: start a new file when the current one reaches this size
    rotate_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    #: keep at most this many files (the oldest are pruned, and the pruning is recorded); 0 = keep all
    keep_files: int = Field(0, ge=0)
    queue_size: int = Field(100_000, ge=1)
    #: block: refuse the decision (the transport fails closed); drop: lose it and count (audit mode only)
    queue_full: Literal["block", "drop"] = "block"
    #: fsync after this many entries, or after this many milliseconds, whichever comes first
    fsync_every: int = Field(1000, ge=1)
    fsync_interval_ms: float = Field(50.0, gt=0)
    #: the Ed25519 signing key (PEM); empty = <dir>/audit.key
    key_path: str = ""
    exporters: ExportersConfig = Field(default_factory=ExportersConfig)

    def resolve_dir(self, data_dir: str | Path) -> Path:
        return Path(self.dir) if self.dir else Path(data_dir) / "audit"
