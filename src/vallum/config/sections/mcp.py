"""`mcp:` configuration section (owned by the mcp layer): tool policy, drift, sequence rules."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from vallum.config.sections.base import Section

PolicyAction = Literal["allow", "warn", "block", "ask", "redirect"]


def _check_patterns(value: dict[str, str]) -> dict[str, str]:
    """Argument regexes must compile: a rule that can never match would fail open."""
    for name, pattern in value.items():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"argument {name!r}: invalid regex {pattern!r}: {exc}") from None
    return value


class ToolPolicyRule(Section):
    """One tool-call rule. Every given condition must hold; the first matching rule decides.

    `tool` and `server` are globs (`fs_*`); `arguments` maps an argument name (or `*` for any
    argument) to a regex searched in its value — for command-like values, also in the
    de-obfuscated shell command lines.
    """

    id: str = ""
    tool: str = "*"
    server: str = "*"
    arguments: dict[str, str] = Field(default_factory=dict)
    action: PolicyAction = "block"
    #: for action `redirect`: the tool the call is sent to instead (same arguments)
    redirect_to: str = ""
    message: str = ""
    severity: Literal["info", "low", "medium", "high", "critical"] = "high"

    _patterns = field_validator("arguments")(_check_patterns)


class CallMatcher(Section):
    """What a call in a sequence rule must look like (all given conditions hold)."""

    tool: str = "*"
    arguments: dict[str, str] = Field(default_factory=dict)
    #: built-in call classes: secret_read (credential file in arguments or a secret in the result),
    #: network_send (a tool that sends data out, or a URL argument)
    kind: Literal["", "secret_read", "network_send"] = ""

    _patterns = field_validator("arguments")(_check_patterns)


class SequenceRule(Section):
    """`first` then `then` within `within` calls of the same session → `action` on the later call."""

    id: str
    first: CallMatcher
    then: CallMatcher
    within: int = Field(5, ge=1, le=1000)
    action: Literal["warn", "block"] = "block"
    message: str = ""


class DriftPolicy(Section):
    """What happens when a pinned tool changes, or a tool appears after the first list."""

    #: a pinned tool's definition changed: block = withheld until `vallum mcp approve`
    on_change: Literal["block", "warn", "allow"] = "block"
    #: a tool that was not in the server's first list
    on_new_tool: Literal["block", "warn", "allow"] = "block"
    #: a tool that disappeared from the list (reported only)
    on_removed: Literal["warn", "allow"] = "warn"


class McpServerConfig(Section):
    """Per-server settings, keyed by the server name (`--name`)."""

    drift: DriftPolicy | None = None
    #: tools of this server that are hidden and blocked whatever their definitions
    deny_tools: list[str] = Field(default_factory=list)
    #: `vallum run`: serve this server as a Streamable-HTTP gateway on host:port (empty = not served)
    listen: str = ""
    #: the gateway's upstream: a Streamable-HTTP URL, or a stdio server command (exactly one)
    upstream: str = ""
    command: list[str] = Field(default_factory=list)
    path: str = "/mcp"


class McpConfig(Section):
    #: tool-call rules, evaluated in order before the built-in ones; the first match decides
    tool_policy: list[ToolPolicyRule] = Field(default_factory=list)
    #: the built-in rules (destructive commands, reverse shells, credential files, curl|sh)
    builtin_rules: bool = True
    #: the built-in sequence rule (secret read → network send within 5 calls)
    builtin_sequence_rules: bool = True
    sequence_rules: list[SequenceRule] = Field(default_factory=list)
    drift: DriftPolicy = Field(default_factory=DriftPolicy)
    servers: dict[str, McpServerConfig] = Field(default_factory=dict)
    #: scan tool results for injection (direction inbound)
    scan_results: bool = True
    #: an injection found inside quotation marks in a tool result (an article quoting an attack)
    quoted_injection: Literal["block", "warn", "allow"] = "warn"
    #: where pins live; default <data_dir>/mcp/pins
    pins_dir: str = ""
    #: a single JSON-RPC message larger than this is blocked unread
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024)
