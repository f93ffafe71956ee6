"""RFC 5424 syslog export over UDP (one datagram per entry) or TCP (octet counting, RFC 6587)."""

from __future__ import annotations

import os
import socket
from typing import Any

from vallum.audit.exporters.base import DeliveryError, Item, QueuedExporter
from vallum.metrics import VallumMetrics

#: SD-ID of vallum's structured data. 32473 is the private enterprise number reserved for
#: documentation (RFC 5612); replace it if you register your own.
SD_ID = "vallum@32473"
BOM = b"\xef\xbb\xbf"
#: largest UDP payload we send; longer messages are cut (the entry stays whole in the log)
MAX_UDP = 65000

_SEVERITY = {"block": 4, "refused": 4, "dropped": 4, "recovery": 4, "warn": 5, "challenge": 5, "review": 5}


def severity_of(entry: dict[str, Any]) -> int:
    """Syslog severity: 4 warning (block, lost or recovered entries), 5 notice (warn), 6 info."""
    kind = entry.get("kind")
    key = entry.get("action") if kind == "decision" else kind
    return _SEVERITY.get(str(key), 6)


def _sd_escape(value: object) -> str:
    s = str(value)
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(value: str, limit: int) -> str:
    s = "".join(ch for ch in value if 33 <= ord(ch) <= 126)[:limit]
    return s or "-"


def format_rfc5424(
    entry: dict[str, Any],
    line: bytes,
    *,
    app_name: str = "vallum",
    facility: int = 16,
    hostname: str | None = None,
    procid: str | None = None,
) -> bytes:
    """One RFC 5424 message: header, ``[vallum@32473 …]`` structured data, BOM + the JSON entry."""
    pri = facility * 8 + severity_of(entry)
    host = _header_field(hostname if hostname is not None else socket.gethostname(), 255)
    app = _header_field(app_name, 48)
    proc = _header_field(procid if procid is not None else str(os.getpid()), 128)
    msgid = _header_field(str(entry.get("kind", "-")), 32)
    params = [("seq", entry.get("seq")), ("kind", entry.get("kind")), ("hash", entry.get("hash"))]
    for name in ("action", "transport", "request_id"):
        if entry.get(name) is not None:
            params.append((name, entry[name]))
    if entry.get("rules"):
        params.append(("rules", ",".join(map(str, entry["rules"]))))
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_escape(v)}"' for k, v in params) + "]"
    ts = _header_field(str(entry.get("ts", "-")), 64)
    header = f"<{pri}>1 {ts} {host} {app} {proc} {msgid} {sd} ".encode()
    return header + BOM + line.rstrip(b"\n")


class SyslogExporter(QueuedExporter):
    """Sends each durable entry as an RFC 5424 message to ``host:port`` over UDP or TCP."""

    name = "syslog"

    def __init__(
        self,
        address: str,
        protocol: str = "udp",
        app_name: str = "vallum",
        facility: int = 16,
        *,
        max_queue: int = 10_000,
        retries: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        metrics: VallumMetrics | None = None,
    ) -> None:
        super().__init__(max_queue=max_queue, batch_size=200, retries=retries, backoff_s=backoff_s, metrics=metrics)
        host, _, port = address.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        if protocol not in ("udp", "tcp"):
            raise ValueError("protocol must be udp or tcp")
        self.protocol = protocol
        self.app_name = app_name
        self.facility = facility
        self.timeout_s = timeout_s
        self._hostname = socket.gethostname()
        self._procid = str(os.getpid())
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            if self.protocol == "udp":
                info = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
                s = socket.socket(info[0], socket.SOCK_DGRAM)
                s.connect(info[4])
            else:
                s = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            self._sock = s
        return self._sock

    def deliver(self, batch: list[Item]) -> None:
        msgs = [
            format_rfc5424(
                e, line, app_name=self.app_name, facility=self.facility, hostname=self._hostname, procid=self._procid
            )
            for e, line in batch
        ]
        try:
            sock = self._connect()
            if self.protocol == "udp":
                for m in msgs:
                    sock.send(m[:MAX_UDP])
            else:
                sock.sendall(b"".join(b"%d %s" % (len(m), m) for m in msgs))
        except OSError as exc:
            self.shutdown()
            raise DeliveryError(f"syslog {self.protocol} {self.host}:{self.port}: {exc}") from None

    def shutdown(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
