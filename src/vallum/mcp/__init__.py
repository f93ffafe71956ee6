"""The MCP proxy: inspects the JSON-RPC traffic between MCP clients and servers.

Pure core (no I/O): `jsonrpc` (framing, strict parsing), `shell` (command de-obfuscation),
`policy` (tool-call rules), `fingerprint` and `pins` (rug-pull detection), `inspection` (tool
definitions, arguments, results; scan kind `mcp`), `session` (the per-session state machine).
Edges: `stdio` (wrap), `http_upstream` (bridge), `http_server` (serve), `offline` (mcp scan).
May import: vallum.detection, vallum.decisions, vallum.config, the `mcp` SDK; nothing above.
"""
