"""The egress proxy: forward proxy, CONNECT tunnels (optionally intercepted), fetch endpoint.

Pure pieces (no sockets, no clock reads): `flow` (the per-request object), `sni` (ClientHello
parser), `sse` (event splitter and cross-event scanner), `limits` (rate limits and data budgets),
`policy` (turning traffic into findings and verdicts), `reload` (config diffs). Edges: `streams`
(byte streams, TLS over memory BIOs), `upstream` (resolver, connector, pooled h11 client),
`tlsca` (local CA and leaf certificates), `server` (`EgressProxy`, asyncio + h11).
May import: vallum.config, vallum.detection, vallum.decisions. Nothing in vallum's core imports it.
"""

from vallum.egress.flow import Flow
from vallum.egress.server import EgressProxy, run_proxy

__all__ = ["EgressProxy", "Flow", "run_proxy"]
