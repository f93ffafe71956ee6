"""The audit log: hash-chained, signed JSON Lines evidence of every decision, and SIEM exporters.

- `writer.AuditLog` — the `DecisionSink` that writes the log (bounded queue, writer thread)
- `verify.verify_log` — checks a log file or directory (``vallum audit verify``)
- `show` — filters entries (``vallum audit show``)
- `canonical` — the canonical encoding hashes and signatures cover
- `exporters` — syslog (RFC 5424), webhook, OTLP/HTTP JSON
- `factory.open_audit_log(config)` — an `AuditLog` as the configuration describes it

May import: the standard library, cryptography, httpx, `vallum.decisions`, `vallum.detection.model`,
`vallum.config` and `vallum.metrics`. Nothing in the core imports this package.
"""

from vallum.audit.canonical import CanonicalError, canonical_bytes, entry_hash
from vallum.audit.verify import VerifyReport, verify_log
from vallum.audit.writer import AuditError, AuditLog

AuditSink = AuditLog

__all__ = [
    "AuditError",
    "AuditLog",
    "AuditSink",
    "CanonicalError",
    "VerifyReport",
    "canonical_bytes",
    "entry_hash",
    "verify_log",
]
