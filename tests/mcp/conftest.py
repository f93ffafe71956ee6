"""Fixtures of the MCP tests (defined in `mcp_harness`)."""

from mcp_harness import audit_inspector, http_server, inspector, loop_thread, wrap_relay  # noqa: F401
