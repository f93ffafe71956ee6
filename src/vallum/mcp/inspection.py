"""Pure MCP inspection pieces: tool definitions, tool-call arguments, tool results; kind `mcp`.

Everything here is a function of its inputs (the `Inspector`, the config, the message); the
session state machine in `vallum.mcp.session` strings them together. `scan_mcp_input` is the
handler of scan kind `mcp` (INTERFACES §2).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

from vallum.detection.model import Action, Finding
from vallum.detection.pipeline import Inspector, ScanInputError
from vallum.mcp import policy
from vallum.mcp.policy import PolicyHit

POISON_CATEGORIES = frozenset({"tool_poisoning", "injection"})
_QUOTES = {'"': '"', "“": "”", "'": "'", "‘": "’", "«": "»", "„": "“", "`": "`"}
_IMPERATIVE = re.compile(r"(?i)\b(?:must|always|never|instead|before|after|whenever|do not|don't|"
                         r"ignore|override|replace|redirect|send|include|also call)\b")


def tool_text_fields(tool: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every text in a tool definition, with its path: string values at any depth, and the keys
    of every mapping below the top level (parameter names inside `inputSchema.properties` …)."""
    if isinstance(tool, dict):
        for k, v in tool.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            if prefix and isinstance(k, str) and k:
                # parameter names are identifiers: read "ignore_previous_instructions" as words
                yield f"{path}(key)", _identifier_words(k)
            yield from tool_text_fields(v, path)
    elif isinstance(tool, list):
        for i, v in enumerate(tool):
            yield from tool_text_fields(v, f"{prefix}[{i}]")
    elif isinstance(tool, str):
        yield prefix, tool


def _identifier_words(name: str) -> str:
    return re.sub(r"[_\-.]+", " ", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)).strip() or name


def tool_label(tool: Any, index: int) -> str:
    name = tool.get("name") if isinstance(tool, dict) else None
    return name if isinstance(name, str) and name else f"#{index}"


def scan_tool_definition(inspector: Inspector, tool: Any, index: int = 0,
                         sibling_names: frozenset[str] = frozenset()) -> list[Finding]:
    """Tool-poisoning findings in one tool definition (every text field, recursively).

    Injection findings are reported as `tool_poisoning`; credential-like findings are left out
    (a key in a description is not a reason to hide the tool). Adds two MCP-specific checks:
    a reference to a credential file, and "shadowing" — instructions about another tool of the
    same server.
    """
    label = tool_label(tool, index)
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool.get("name"):
        f = inspector.finding("mcp.protocol.bad_tool", "protocol", "high",
                              f"tool definition {label} has no name", location=f"tools[{label}]")
        return [f] if f else []
    findings: list[Finding] = []
    for path, text in tool_text_fields(tool):
        if not text.strip():
            continue
        loc = f"tools[{label}].{path}"
        for f in inspector.inspect_text(text, direction="tooldef", location=loc):
            if f.category in POISON_CATEGORIES:
                findings.append(dataclasses.replace(f, category="tool_poisoning"))
        if path.endswith("(key)") or path == "name":
            continue
        m = policy._CRED_PATH.search(text)
        if m:
            f2 = inspector.finding("mcp.poison.credential_path", "tool_poisoning", "high",
                                   "Tool definition refers to a credential file (SSH keys, cloud "
                                   "credentials, .env …)", location=loc, evidence=m.group(0).strip()[:60])
            if f2:
                findings.append(f2)
        others = [n for n in sibling_names if n != tool["name"] and len(n) >= 4
                  and re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text)]
        if others and _IMPERATIVE.search(text):
            f3 = inspector.finding("mcp.poison.shadowing", "tool_poisoning", "medium",
                                   f"Tool definition gives instructions about another tool ({others[0]})",
                                   action=Action.WARN, location=loc, evidence=others[0])
            if f3:
                findings.append(f3)
    return _dedupe(findings)


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str]] = set()
    out = []
    for f in findings:
        if (f.rule, f.location) not in seen:
            seen.add((f.rule, f.location))
            out.append(f)
    return out


def hit_to_finding(inspector: Inspector, hit: PolicyHit) -> Finding | None:
    """A policy hit as a finding under the active mode (ask/redirect map to block/warn)."""
    act = {"allow": Action.ALLOW, "warn": Action.WARN, "block": Action.BLOCK, "ask": Action.BLOCK,
           "redirect": Action.WARN}[hit.action]
    return inspector.finding(hit.rule, hit.category, hit.severity, hit.message, action=act,
                             location=hit.location, evidence=hit.evidence,
                             extra={"policy_action": hit.action} if hit.action in ("ask", "redirect") else None)


def argument_findings(inspector: Inspector, args: Any) -> list[Finding]:
    """Credentials in tool-call arguments: each argument, and the arguments joined (split secrets)."""
    fields = [(f"arguments.{p}", v) for p, v in policy.string_arguments(args)]
    if not fields:
        return []
    return inspector.inspect_fields(fields, direction="outbound", join_label="arguments.joined")


def result_texts(result: Any) -> Iterator[tuple[str, str]]:
    """The texts of a tool result an agent would read: text content, embedded resources,
    structured content."""
    if not isinstance(result, dict):
        return
    content = result.get("content")
    if isinstance(content, list):
        for i, item in enumerate(content):
            if not isinstance(item, dict):
                continue
            if isinstance(item.get("text"), str):
                yield f"result.content[{i}].text", item["text"]
            res = item.get("resource")
            if isinstance(res, dict) and isinstance(res.get("text"), str):
                yield f"result.content[{i}].resource.text", res["text"]
            for key in ("description", "title", "name"):
                if item.get("type") == "resource_link" and isinstance(item.get(key), str):
                    yield f"result.content[{i}].{key}", item[key]
    sc = result.get("structuredContent")
    if sc is not None:
        # each string on its own: JSON escaping would hide quotation marks from the rules
        seen = {t for item in content or [] if isinstance(item, dict) for t in [item.get("text")]
                if isinstance(t, str)} if isinstance(content, list) else set()
        for path, text in tool_text_fields(sc, "result.structuredContent"):
            if not path.endswith("(key)") and text not in seen:
                yield path, text


def content_texts(method: str, result: Any) -> Iterator[tuple[str, str]]:
    """Texts entering the agent's context from other results: `resources/read` contents and
    `prompts/get` messages (the text of each, and of embedded resources)."""
    if not isinstance(result, dict):
        return
    if method == "resources/read" and isinstance(result.get("contents"), list):
        for i, c in enumerate(result["contents"]):
            if isinstance(c, dict) and isinstance(c.get("text"), str):
                yield f"result.contents[{i}].text", c["text"]
    if method == "prompts/get" and isinstance(result.get("messages"), list):
        for i, m in enumerate(result["messages"]):
            content = m.get("content") if isinstance(m, dict) else None
            for j, item in enumerate(content if isinstance(content, list) else [content]):
                if isinstance(item, dict):
                    if isinstance(item.get("text"), str):
                        yield f"result.messages[{i}].content[{j}].text", item["text"]
                    res = item.get("resource")
                    if isinstance(res, dict) and isinstance(res.get("text"), str):
                        yield f"result.messages[{i}].content[{j}].resource.text", res["text"]


def _quoted(text: str, evidence: str) -> bool:
    """Whether every occurrence of `evidence` in `text` sits inside quotation marks."""
    if not evidence or evidence.endswith("..."):
        evidence = evidence[:-3] if evidence.endswith("...") else evidence
    if len(evidence) < 8:
        return False
    low, ev = text.lower(), evidence.lower()
    start = low.find(ev)
    if start < 0:
        return False
    while start >= 0:
        before = text[max(0, start - 2):start]
        opener = next((q for q in reversed(before) if q in _QUOTES), None)
        if opener is None:
            return False
        tail = text[start + len(ev):]
        close = tail.find(_QUOTES[opener])
        if close < 0 or close > 200 or "\n" in tail[:close]:
            return False
        start = low.find(ev, start + 1)
    return True


def result_findings(inspector: Inspector, result: Any, quoted_action: str = "warn",
                    method: str = "tools/call") -> list[Finding]:
    """Injection (and credentials, reported as such) in a tool result (or a `resources/read` /
    `prompts/get` result); an injection quoted in prose (a security article citing an attack)
    gets `quoted_action` instead of block."""
    findings: list[Finding] = []
    texts = result_texts(result) if method == "tools/call" else content_texts(method, result)
    for loc, text in texts:
        for f in inspector.inspect_text(text, direction="inbound", location=loc):
            if (f.category == "injection" and f.action is Action.BLOCK and quoted_action != "block"
                    and not f.decoded and _quoted(text, f.evidence)):
                if quoted_action == "allow":
                    continue
                f = dataclasses.replace(f, action=Action.WARN, message=f"{f.message} (quoted in the text)")
            findings.append(f)
    return findings


# --------------------------------------------------------------------------- kind mcp
def scan_mcp_input(inspector: Inspector, content: Any) -> list[Finding]:
    """Scan kind `mcp`: `{"messages": [...]}`, one session in order (INTERFACES §2)."""
    from vallum.mcp.session import offline_session

    if isinstance(content, list):
        messages = content
    elif isinstance(content, dict) and isinstance(content.get("messages"), list):
        messages = content["messages"]
    else:
        raise ScanInputError('kind mcp needs {"messages": [JSON-RPC message, …]}')
    session = offline_session(inspector, messages)
    findings: list[Finding] = []
    for i, msg in enumerate(messages):
        findings.extend(session.offline_message(msg, i))
    return findings
