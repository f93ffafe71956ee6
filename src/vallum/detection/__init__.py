"""The detection core: pure, sans-I/O content inspection.

Nothing here opens a socket, touches a database or reads the clock. Every transport (egress
proxy, fetch, MCP, scan API, library call) turns its traffic into inspection inputs and calls
`vallum.detection.pipeline.scan` (or the finer functions it is built from), getting back the same
`Verdict` / `Finding` objects. May import: the standard library, `vallum.config`, its own modules.
"""
