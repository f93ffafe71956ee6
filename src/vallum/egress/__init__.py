"""The egress proxy: forward proxy, CONNECT tunnels (optionally intercepted), fetch endpoint.

Pure pieces (no sockets, no clock reads): `flow` (the per-request object), `http1` (HTTP/1.1
framing on llhttp: requests in, responses out, and the upstream side), `sni` (ClientHello parser),
`sse` (event splitter and cross-event scanner), `limits` (rate limits and data budgets), `policy`
(turning traffic into findings and verdicts), `reload` (config diffs). Edges: `streams` (byte
streams with read deadlines, TLS over memory BIOs), `upstream` (resolver, connector, pooled
HTTP/1.1 client), `tlsca` (local CA and leaf certificates), `server` (`EgressProxy`, asyncio).
May import: vallum.config, vallum.detection, vallum.decisions. Nothing in vallum's core imports it.
"""

from vallum.egress.flow import Flow
from vallum.egress.server import EgressProxy, run_proxy

__all__ = ["EgressProxy", "Flow", "run_proxy"]
