"""HTTP exporters: a JSON webhook and OpenTelemetry logs over OTLP/HTTP (JSON encoding)."""

from __future__ import annotations

import calendar
import json
import time
from typing import Any

import httpx

from vallum.audit.exporters.base import DeliveryError, Item, QueuedExporter
from vallum.metrics import VallumMetrics

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class HttpPostExporter(QueuedExporter):
    """POSTs each batch as JSON; retries connection errors, 408/425/429 and 5xx with backoff."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        max_queue: int = 10_000,
        batch_size: int = 100,
        retries: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        metrics: VallumMetrics | None = None,
    ) -> None:
        super().__init__(
            max_queue=max_queue, batch_size=batch_size, retries=retries, backoff_s=backoff_s, metrics=metrics
        )
        self.url = url
        self.headers = {"content-type": "application/json", **(headers or {})}
        self._client = httpx.Client(timeout=timeout_s, trust_env=False)

    def body(self, batch: list[Item]) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def deliver(self, batch: list[Item]) -> None:
        try:
            resp = self._client.post(self.url, content=self.body(batch), headers=self.headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"POST {self.url}: {exc}") from None
        if resp.status_code >= 300:
            raise DeliveryError(f"POST {self.url}: HTTP {resp.status_code}", retry=resp.status_code in _RETRY_STATUS)

    def shutdown(self) -> None:
        self._client.close()


class WebhookExporter(HttpPostExporter):
    """Body: ``{"source": "vallum", "entries": [entry, …]}`` (entries exactly as in the log)."""

    name = "webhook"

    def body(self, batch: list[Item]) -> bytes:
        # The stored lines are already JSON: splice them instead of re-encoding.
        return b'{"source":"vallum","entries":[' + b",".join(line.rstrip(b"\n") for _, line in batch) + b"]}"


_OTLP_SEVERITY = {
    "allow": (9, "INFO"),
    "warn": (13, "WARN"),
    "review": (13, "WARN"),
    "challenge": (13, "WARN"),
    "block": (17, "ERROR"),
}
_KIND_SEVERITY = {"recovery": (13, "WARN"), "dropped": (17, "ERROR"), "refused": (17, "ERROR")}


def ts_unix_nano(ts: str) -> int:
    """Nanoseconds since the epoch for an entry's ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` timestamp."""
    base, _, frac = ts.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return secs * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


def otlp_log_record(entry: dict[str, Any], line: bytes, observed_ns: int) -> dict[str, Any]:
    kind = entry.get("kind", "")
    num, text = (
        _OTLP_SEVERITY.get(entry.get("action", ""), (9, "INFO"))
        if kind == "decision"
        else _KIND_SEVERITY.get(kind, (9, "INFO"))
    )
    attrs = [_attr("vallum.seq", entry.get("seq")), _attr("vallum.kind", kind), _attr("vallum.hash", entry.get("hash"))]
    for name in ("action", "transport", "request_id", "destination"):
        if entry.get(name) is not None:
            attrs.append(_attr(f"vallum.{name}", entry[name]))
    if entry.get("rules"):
        attrs.append(_attr("vallum.rules", ",".join(entry["rules"])))
    try:
        t = ts_unix_nano(str(entry.get("ts", "")))
    except ValueError:
        t = observed_ns
    return {
        "timeUnixNano": str(t),
        "observedTimeUnixNano": str(observed_ns),
        "severityNumber": num,
        "severityText": text,
        "body": {"stringValue": line.rstrip(b"\n").decode("utf-8")},
        "attributes": attrs,
    }


class OtlpLogsExporter(HttpPostExporter):
    """OpenTelemetry logs over OTLP/HTTP JSON: ``POST {endpoint}/v1/logs``, one log record per entry."""

    name = "otlp"

    def __init__(
        self, endpoint: str, headers: dict[str, str] | None = None, service_name: str = "vallum", **kw: Any
    ) -> None:
        url = endpoint.rstrip("/")
        if not url.endswith("/v1/logs"):
            url += "/v1/logs"
        super().__init__(url, headers, **kw)
        self.service_name = service_name

    def body(self, batch: list[Item]) -> bytes:
        now = time.time_ns()
        payload = {
            "resourceLogs": [
                {
                    "resource": {"attributes": [_attr("service.name", self.service_name)]},
                    "scopeLogs": [
                        {
                            "scope": {"name": "vallum.audit"},
                            "logRecords": [otlp_log_record(e, line, now) for e, line in batch],
                        }
                    ],
                }
            ]
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
