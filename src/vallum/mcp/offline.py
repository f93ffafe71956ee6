"""`vallum mcp scan FILE`: offline scan of a saved `tools/list` or an MCP client config.

Recognised inputs: a `tools/list` result (`{"tools": [...]}`), a JSON-RPC response holding one,
a bare array of tools; a client config — Claude Desktop / Claude Code / Cursor (`mcpServers`,
also per project in `~/.claude.json`), VS Code (`servers` in `.vscode/mcp.json`, `mcp.servers` or
`{"mcp": {"servers": …}}` in settings.json). No network: servers are listed, not contacted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from vallum.detection.model import Action, Finding, strongest
from vallum.detection.pipeline import Inspector
from vallum.mcp import jsonrpc, policy
from vallum.mcp.inspection import scan_tool_definition, tool_label
from vallum.mcp.jsonrpc import as_dict
from vallum.mcp.shell import expand_commands


class OfflineInputError(ValueError):
    """The file is not one of the recognised shapes (exit status 2)."""


@dataclass(slots=True)
class ToolReport:
    name: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def action(self) -> str:
        return str(strongest([f.action for f in self.findings]))


@dataclass(slots=True)
class ServerReport:
    name: str
    transport: str  # stdio | http | sse | unknown
    target: str  # command line or URL
    findings: list[Finding] = field(default_factory=list)

    @property
    def action(self) -> str:
        return str(strongest([f.action for f in self.findings]))


@dataclass(slots=True)
class ScanReport:
    kind: str  # tools | config
    tools: list[ToolReport] = field(default_factory=list)
    servers: list[ServerReport] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return [f for t in self.tools for f in t.findings] + [f for s in self.servers for f in s.findings]

    @property
    def action(self) -> str:
        return str(strongest([f.action for f in self.findings]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "action": self.action,
            "tools": [{"name": t.name, "action": t.action, "findings": [f.to_dict() for f in t.findings]}
                      for t in self.tools],
            "servers": [{"name": s.name, "transport": s.transport, "target": s.target, "action": s.action,
                         "findings": [f.to_dict() for f in s.findings]} for s in self.servers],
            "findings": [f.to_dict() for f in self.findings],
        }


def _tools_of(doc: Any) -> list[Any] | None:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        if isinstance(doc.get("tools"), list):
            return doc["tools"]
        res = doc.get("result")
        if isinstance(res, dict) and isinstance(res.get("tools"), list):
            return res["tools"]
    return None


def _server_maps(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(doc.get("mcpServers"), dict):
        out.append(("", doc["mcpServers"]))
    if isinstance(doc.get("servers"), dict):
        out.append(("", doc["servers"]))
    if isinstance(doc.get("mcp.servers"), dict):
        out.append(("", doc["mcp.servers"]))
    mcp = doc.get("mcp")
    if isinstance(mcp, dict) and isinstance(mcp.get("servers"), dict):
        out.append(("", mcp["servers"]))
    projects = doc.get("projects")
    if isinstance(projects, dict):
        for path, proj in projects.items():
            if isinstance(proj, dict) and isinstance(proj.get("mcpServers"), dict):
                out.append((f"{path}:", proj["mcpServers"]))
    return out


def _server_report(inspector: Inspector, name: str, entry: Any) -> ServerReport:
    if not isinstance(entry, dict):
        f = inspector.finding("mcp.config.bad_entry", "protocol", "medium", f"server {name} is not an object",
                              action=Action.WARN, location=f"servers[{name}]")
        return ServerReport(name, "unknown", "", [f] if f else [])
    url = entry.get("url") or entry.get("serverUrl") or entry.get("httpUrl")
    command = entry.get("command")
    raw_args = entry.get("args")
    args: list[Any] = raw_args if isinstance(raw_args, list) else []
    findings: list[Finding] = []
    if isinstance(url, str):
        transport = str(entry.get("type") or entry.get("transport") or "http")
        target = url
        if url.startswith("http://") and not url.startswith(("http://127.", "http://localhost", "http://[::1]")):
            f = inspector.finding("mcp.config.plain_http", "url", "medium",
                                  f"server {name} is reached over plain http", action=Action.WARN,
                                  location=f"servers[{name}].url", evidence=url[:80])
            findings.extend([f] if f else [])
        findings.extend(c for c in inspector.inspect_text(url, direction="outbound",
                                                          location=f"servers[{name}].url")
                        if c.category == "credential")
    elif isinstance(command, str):
        transport = "stdio"
        words = [command, *[str(a) for a in args]]
        target = " ".join(words)
        line = " ".join(policy._q(w) for w in words) if args else command
        views = {"command": expand_commands(line)}
        for h in policy.builtin_hits("server", {"command": line}, views):
            hf = inspector.finding(h.rule, h.category, h.severity, f"server {name}: {h.message}",
                                   location=f"servers[{name}].command", evidence=h.evidence)
            findings.extend([hf] if hf else [])
    else:
        transport, target = "unknown", ""
    env = as_dict(entry.get("env"))
    headers = as_dict(entry.get("headers"))
    for where, mapping in (("env", env), ("headers", headers)):
        for k, v in mapping.items():
            if not isinstance(v, str) or v.startswith("${") or v.startswith("$"):
                continue
            for f in inspector.inspect_text(v, direction="outbound", location=f"servers[{name}].{where}.{k}"):
                if f.category in ("credential", "pii"):
                    # a key in a local config is expected, but worth knowing about: report, don't fail
                    findings.append(dataclasses.replace(
                        f, action=Action.WARN, message=f"{f.message} stored in plain text in the client config"))
    return ServerReport(name, transport, target, findings)


def scan_document(inspector: Inspector, raw: bytes | str) -> ScanReport:
    """Scan the bytes of a saved tools/list or client config; raises `OfflineInputError`."""
    try:
        doc = jsonrpc.loads_strict(raw)
    except jsonrpc.DuplicateKeyError as exc:
        raise OfflineInputError(f"duplicate JSON key {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise OfflineInputError(f"not valid JSON: {exc}") from None
    tools = _tools_of(doc)
    if tools is not None:
        names = frozenset(t["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str))
        report = ScanReport("tools")
        for i, t in enumerate(tools):
            report.tools.append(ToolReport(tool_label(t, i), scan_tool_definition(inspector, t, i, names)))
        return report
    if isinstance(doc, dict):
        maps = _server_maps(doc)
        if maps:
            report = ScanReport("config")
            for prefix, servers in maps:
                for name, entry in servers.items():
                    report.servers.append(_server_report(inspector, f"{prefix}{name}", entry))
            return report
    raise OfflineInputError("not a tools/list result, a tools array, or an MCP client config "
                            "(mcpServers / servers / mcp.servers)")


def print_report(report: ScanReport) -> None:
    """A human-readable report on standard output."""
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    colour = {"allow": "green", "warn": "yellow", "block": "red"}
    if report.kind == "tools":
        console.print(f"{len(report.tools)} tool(s)")
        for t in report.tools:
            console.print(f"  [{colour[t.action]}]{t.action.upper():5}[/] {escape(t.name)}")
            for f in t.findings:
                console.print(escape(f"        {f.rule} ({f.category}, {f.action}) at {f.location}: {f.evidence}"))
    else:
        console.print(f"{len(report.servers)} server(s)")
        for s in report.servers:
            console.print(f"  [{colour[s.action]}]{s.action.upper():5}[/] "
                          + escape(f"{s.name} [{s.transport}] {s.target}"))
            for f in s.findings:
                console.print(escape(f"        {f.rule} ({f.category}, {f.action}) at {f.location}: {f.evidence}"))
        console.print("[dim]tool definitions are not in a client config; scan a saved tools/list to check them[/]")
    console.print(f"[bold {colour[report.action]}]{report.action.upper()}[/]")
