"""The MCP session inspector: a sans-I/O state machine over the JSON-RPC messages of one session.

Transports feed it raw messages from either side and forward what it returns::

    ctx = ServerContext("files", inspector, pins, sink, transport="mcp.stdio")
    session = McpSession(ctx)
    out = session.client_message(line, now)     # → out.to_server, out.to_client
    out = session.server_message(line, now)

`ServerContext` is what every session of one upstream server shares: its tool pins, the status
of each tool from the last `tools/list` (visible or withheld, and why), the decision sink.
`McpSession` is one client's view: the requests in flight both ways, the call history for
sequence rules, the principal. No I/O and no clock: time is passed in.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vallum.config.sections.mcp import DriftPolicy, McpConfig
from vallum.decisions import DecisionRecord, DecisionSink, NullSink, Principal
from vallum.detection.model import Action, Finding, strongest
from vallum.detection.pipeline import Inspector
from vallum.mcp import jsonrpc, policy
from vallum.mcp.fingerprint import tool_diff, tool_fingerprint
from vallum.mcp.inspection import (
    argument_findings,
    hit_to_finding,
    result_findings,
    scan_tool_definition,
)
from vallum.mcp.jsonrpc import BLOCKED_CODE, Message, MessageError
from vallum.mcp.pins import PinStore

#: called for an "ask" rule: (server, tool, arguments, hit) → True to let the call through
Approver = Callable[[str, str, dict[str, Any], policy.PolicyHit], bool]

_ACTION_OF = {"allow": Action.ALLOW, "warn": Action.WARN, "block": Action.BLOCK}


def is_modern(params: dict[str, Any]) -> bool:
    """Whether a request uses the per-request envelope of protocol 2026-07-28 and later (whose
    results carry `resultType`)."""
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and "io.modelcontextprotocol/protocolVersion" in meta


def id_key(rid: Any) -> str:
    """A dict key for a JSON-RPC id that keeps 1 and "1" apart."""
    if isinstance(rid, str):
        return "s:" + rid
    if isinstance(rid, int) and not isinstance(rid, bool):
        return f"i:{rid}"
    return "j:" + json.dumps(rid)


def id_from_key(key: str) -> Any:
    """The JSON-RPC id an `id_key` was made from."""
    kind, value = key[:2], key[2:]
    if kind == "s:":
        return value
    if kind == "i:":
        return int(value)
    return json.loads(value)


@dataclass(slots=True)
class ToolStatus:
    """The proxy's view of one tool after the last `tools/list`."""

    visible: bool
    reason: str = ""  # poisoned | changed | new | denied
    findings: list[Finding] = field(default_factory=list)


@dataclass(slots=True)
class Outcome:
    """What to do after one message: bytes to send each way, and what was found."""

    to_server: list[bytes] = field(default_factory=list)
    to_client: list[bytes] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    action: Action = Action.ALLOW

    def merge(self, other: Outcome) -> None:
        self.to_server.extend(other.to_server)
        self.to_client.extend(other.to_client)
        self.findings.extend(other.findings)
        self.action = strongest([self.action, other.action])


@dataclass(slots=True)
class PendingRequest:
    method: str
    params: dict[str, Any]
    facts: policy.CallFacts | None = None
    #: the id the client used (the upstream may see another one, see the HTTP multiplexer)
    client_id: Any = None


class ServerContext:
    """State shared by every session of one upstream server."""

    def __init__(self, name: str, inspector: Inspector, pins: PinStore | None = None,
                 sink: DecisionSink | None = None, transport: str = "mcp.stdio",
                 approver: Approver | None = None, mcp_config: McpConfig | None = None,
                 gate: Callable[[Principal], tuple[str, str, int] | None] | None = None) -> None:
        self.name = name
        #: principal → its behaviour posture (action, reason, status) or None (vallum.runtime)
        self.gate = gate
        self.inspector = inspector
        #: the `mcp:` section in force (default: the inspector's config)
        self.config: McpConfig = mcp_config if mcp_config is not None else inspector.config.mcp
        self.pins = pins if pins is not None else PinStore()
        self.sink: DecisionSink = sink if sink is not None else NullSink()
        self.transport = transport
        self.approver = approver
        self.status: dict[str, ToolStatus] = {}
        server_cfg = self.config.servers.get(name)
        self.drift: DriftPolicy = (server_cfg.drift if server_cfg and server_cfg.drift else self.config.drift)
        self.deny_tools = list(server_cfg.deny_tools) if server_cfg else []
        self.sequence_rules = list(self.config.sequence_rules)
        if self.config.builtin_sequence_rules:
            self.sequence_rules.append(policy.BUILTIN_SEQUENCE)

    # ----------------------------------------------------------------- tools/list
    def review_tools(self, tools: list[Any], complete: bool, now: float) -> tuple[list[Any], list[Finding]]:
        """Scan and pin-check a `tools/list` page; return the tools the client may see, and findings.

        `complete` is True when this page is the whole list (no cursor either way): only then are
        removals reported and the server's first list marked as seen.
        """
        self.pins.reload(self.name)
        st = self.pins.state(self.name)
        first = not st.get("initialized")
        names = frozenset(t["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str))
        visible: list[Any] = []
        findings: list[Finding] = []
        dirty = False
        seen_names: set[str] = set()
        for i, tool in enumerate(tools):
            tf = scan_tool_definition(self.inspector, tool, i, names)
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                findings.extend(tf)
                continue
            name = tool["name"]
            if name in seen_names:
                f = self.inspector.finding("mcp.protocol.duplicate_tool", "protocol", "high",
                                           f"tool {name} is listed twice", location=f"tools[{name}]")
                findings.extend([f] if f else [])
                self.status[name] = ToolStatus(False, "duplicate", [f] if f else [])
                visible = [t for t in visible if t.get("name") != name]
                continue
            seen_names.add(name)
            if any(fnmatch.fnmatchcase(name, g) for g in self.deny_tools):
                f = self.inspector.finding("mcp.policy.denied_tool", "tool_policy", "high",
                                           f"tool {name} is denied by the config for server {self.name}",
                                           location=f"tools[{name}]", evidence=name)
                if f:
                    tf.append(f)
            if any(f.action is Action.BLOCK for f in tf):
                findings.extend(tf)
                reason = "denied" if any(f.rule == "mcp.policy.denied_tool" for f in tf) else "poisoned"
                self.status[name] = ToolStatus(False, reason, tf)
                continue
            findings.extend(tf)
            pin = st["tools"].get(name)
            fp = tool_fingerprint(tool)
            drift_f: Finding | None = None
            reason = ""
            if pin is None:
                if first or self.drift.on_new_tool == "allow":
                    self.pins.pin(self.name, tool, now)
                    dirty = True
                else:
                    dirty |= self.pins.set_pending(self.name, tool, "new", now)
                    reason = "new"
                    drift_f = self.inspector.finding(
                        "mcp.drift.new_tool", "tool_drift", "high",
                        f"tool {name} appeared after the server's first tools/list; withheld until "
                        f"approved (vallum mcp approve --server {self.name} {name})",
                        action=_ACTION_OF[self.drift.on_new_tool], location=f"tools[{name}]", evidence=name,
                        extra={"fingerprint": fp})
            elif pin["fingerprint"] != fp:
                diff = tool_diff(pin.get("definition") or {}, tool)
                if self.drift.on_change == "allow":
                    self.pins.pin(self.name, tool, now)
                    dirty = True
                else:
                    dirty |= self.pins.set_pending(self.name, tool, "changed", now)
                    reason = "changed"
                    drift_f = self.inspector.finding(
                        "mcp.drift.changed", "tool_drift", "high",
                        f"tool {name} changed since it was pinned: " + "; ".join(diff[:3])
                        + f" (approve: vallum mcp approve --server {self.name} {name})",
                        action=_ACTION_OF[self.drift.on_change], location=f"tools[{name}]",
                        evidence=name, extra={"diff": diff, "pinned": pin["fingerprint"], "seen": fp})
            elif name in st["pending"]:
                # back to the approved definition: nothing left to approve
                st["pending"].pop(name, None)
                dirty = True
            if drift_f is not None:
                findings.append(drift_f)
                if drift_f.action is Action.BLOCK:
                    self.status[name] = ToolStatus(False, reason, [drift_f])
                    continue
            self.status[name] = ToolStatus(True, reason, [drift_f] if drift_f else [])
            visible.append(tool)
        if complete:
            for gone in sorted(set(st["tools"]) - seen_names):
                if self.drift.on_removed == "warn":
                    f = self.inspector.finding("mcp.drift.removed", "tool_drift", "low",
                                               f"pinned tool {gone} is no longer listed", action=Action.WARN,
                                               location=f"tools[{gone}]", evidence=gone)
                    findings.extend([f] if f else [])
            if first:
                st["initialized"] = True
                dirty = True
        if dirty:
            self.pins.save(self.name)
        return visible, findings

    def call_gate(self, tool: str) -> Finding | None:
        """A blocking finding if the tool may not be called (withheld, poisoned, unapproved)."""
        status = self.status.get(tool)
        if status is not None and not status.visible:
            why = {"poisoned": ("mcp.tool.poisoned", "tool_poisoning", "its definition is poisoned"),
                   "denied": ("mcp.policy.denied_tool", "tool_policy", "it is denied by the config"),
                   "changed": ("mcp.tool.unapproved_change", "tool_drift",
                               "its definition changed and the change is not approved"),
                   "new": ("mcp.tool.unapproved", "tool_drift", "it appeared after the first list and is not "
                           "approved"),
                   "duplicate": ("mcp.protocol.duplicate_tool", "protocol", "it is listed twice")}[status.reason]
            return self.inspector.finding(why[0], why[1], "high", f"tool {tool} is withheld: {why[2]}",
                                          location="params.name", evidence=tool)
        if status is None:
            st = self.pins.state(self.name)
            if st.get("initialized") and tool not in st["tools"] and tool in st["pending"]:
                return self.inspector.finding("mcp.tool.unapproved", "tool_drift", "high",
                                              f"tool {tool} is not approved", location="params.name",
                                              evidence=tool)
        return None

    def emit(self, record: DecisionRecord) -> bool:
        try:
            return bool(self.sink.emit(record))
        except Exception:
            return False


class McpSession:
    """One client's MCP session through the proxy (see the module docstring)."""

    def __init__(self, server: ServerContext, principal: Principal | None = None, *,
                 session_id: str | None = None, offline: bool = False) -> None:
        self.server = server
        self.inspector = server.inspector
        self.session_id = session_id or uuid.uuid4().hex[:16]
        self.principal = principal or Principal(session=self.session_id, source="mcp_session")
        self.pending: dict[str, PendingRequest] = {}
        self.server_pending: dict[str, str] = {}
        self.history: list[policy.CallFacts] = []
        self.offline = offline
        self.saw_requests = False
        #: the request whose response is being judged (for fail-closed answers on internal errors)
        self._answering: PendingRequest | None = None

    # ----------------------------------------------------------------- helpers
    def _record(self, now: float, direction: str, findings: list[Finding], *, destination: str | None = None,
                reason: str | None = None, extra: dict[str, Any] | None = None,
                request_id: str | None = None) -> tuple[Action, bool]:
        """Emit a decision; returns (action, accepted). A refused record turns into a block."""
        action = strongest([f.action for f in findings])
        rec = DecisionRecord(ts=now, transport=self.server.transport, action=str(action), direction=direction,
                             destination=destination or self.server.name, principal=self.principal,
                             findings=findings, reason=reason,
                             extra={"server": self.server.name, **(extra or {})})
        if request_id:
            rec.request_id = request_id
        ok = self.server.emit(rec)
        return action, ok

    def _learn_principal(self, msg: Message) -> None:
        info = None
        if msg.method == "initialize":
            info = msg.params.get("clientInfo")
        meta = msg.params.get("_meta")
        if info is None and isinstance(meta, dict):
            info = meta.get("io.modelcontextprotocol/clientInfo")
        if isinstance(info, dict) and isinstance(info.get("name"), str) and self.principal.agent is None:
            self.principal = dataclasses.replace(self.principal, agent=str(info["name"])[:200])

    @staticmethod
    def _decision_meta(findings: list[Finding], action: Action, request_id: str) -> dict[str, Any]:
        top = next((f for f in findings if f.action is action), findings[0] if findings else None)
        out: dict[str, Any] = {"action": str(action), "request_id": request_id,
                               "findings": [f.to_dict() for f in findings]}
        if top is not None:
            out.update(rule=top.rule, category=top.category, message=top.message)
        return out

    def blocked_reply(self, msg: Message, findings: list[Finding], note: str = "") -> bytes:
        """The answer to a blocked request: a tool error for tools/call, else error -32001."""
        rid = uuid.uuid4().hex[:16]
        top = next((f for f in findings if f.action is Action.BLOCK), findings[0] if findings else None)
        text = top.message if top else note or "blocked by policy"
        if note and top:
            text = f"{text} ({note})"
        decision = self._decision_meta(findings, Action.BLOCK, rid)
        if msg.method == "tools/call":
            result: dict[str, Any] = {"content": [{"type": "text", "text": f"Blocked by vallum: {text}"}],
                                      "isError": True, "_meta": {"vallum/decision": decision}}
            if is_modern(msg.params):
                result["resultType"] = "complete"
            return jsonrpc.dumps(jsonrpc.result_response(msg.id, result))
        return jsonrpc.dumps(jsonrpc.error_response(msg.id, BLOCKED_CODE, f"Blocked by vallum: {text}",
                                                    {"vallum/decision": decision}))

    def _parse(self, data: bytes | str | Message | Any) -> Message:
        if isinstance(data, Message):
            return data
        if isinstance(data, bytes | str):
            return jsonrpc.parse_message(data)
        return jsonrpc.from_object(data)

    def _protocol_finding(self, exc: MessageError) -> Finding:
        f = self.inspector.finding(exc.rule, "protocol", "high", f"invalid MCP message: {exc}")
        return f or Finding(rule=exc.rule, category="protocol", severity="high", action=Action.ALLOW,
                            message=str(exc))

    # ----------------------------------------------------------------- client → server
    def client_message(self, data: bytes | str | Message | Any, now: float) -> Outcome:
        """A message from the client: forward it, rewrite it, or answer it in the server's place.

        An internal error blocks the message (fail closed) and answers a request with an error."""
        try:
            return self._client_message(data, now)
        except Exception as exc:
            return self._internal_error(data, now, exc, "request")

    def server_message(self, data: bytes | str | Message | Any, now: float) -> Outcome:
        """A message from the server: relay it, filter it, or replace it (fails closed too)."""
        try:
            return self._server_message(data, now)
        except Exception as exc:
            return self._internal_error(data, now, exc, "response")

    def _internal_error(self, data: Any, now: float, exc: Exception, direction: str) -> Outcome:
        f = Finding(rule="vallum.internal_error", category="protocol", severity="high", action=Action.BLOCK,
                    message=f"inspection error ({type(exc).__name__}); blocked (fail closed)")
        self._record(now, direction, [f], reason=repr(exc)[:200])
        out = Outcome(findings=[f], action=Action.BLOCK)
        try:
            msg = self._parse(data)
        except Exception:
            return out
        if msg.kind == "request":
            out.to_client.append(self.blocked_reply(msg, [f]))
        elif msg.kind in ("response", "error"):
            p = self.pending.pop(id_key(msg.id), None) or self._answering
            self._answering = None
            if p is not None:
                req = Message({"jsonrpc": "2.0", "id": msg.id, "method": p.method, "params": p.params}, "request")
                out.to_client.append(self.blocked_reply(req, [f]))
        return out

    def _client_message(self, data: bytes | str | Message | Any, now: float) -> Outcome:
        try:
            msg = self._parse(data)
        except MessageError as exc:
            f = self._protocol_finding(exc)
            out = Outcome(findings=[f], action=f.action)
            self._record(now, "request", [f], reason=str(exc))
            if f.action is not Action.BLOCK and isinstance(data, bytes | str):
                out.to_server.append(data.encode() if isinstance(data, str) else data)
            elif exc.id is not None:
                out.to_client.append(jsonrpc.dumps(jsonrpc.error_response(
                    exc.id, BLOCKED_CODE, f"Blocked by vallum: {exc}")))
            return out
        if msg.kind == "batch":
            out = Outcome()
            for item in msg.obj:
                out.merge(self.client_message(jsonrpc.from_object(item), now))
            return out
        if msg.kind == "request":
            self.saw_requests = True
            self._learn_principal(msg)
            if msg.method == "tools/call":
                return self._tools_call(msg, now)
            self.pending[id_key(msg.id)] = PendingRequest(msg.method or "", msg.params, client_id=msg.id)
            return Outcome(to_server=[msg.encode()])
        if msg.kind in ("response", "error"):
            key = id_key(msg.id)
            if key in self.server_pending or self.offline:
                self.server_pending.pop(key, None)
                return Outcome(to_server=[msg.encode()])
            uf = self.inspector.finding("mcp.protocol.unanswered_id", "protocol", "high",
                                       "client response answers no pending server request",
                                       location="id", evidence=str(msg.id)[:40])
            fs = [uf] if uf else []
            act, _ = self._record(now, "request", fs, reason="unmatched response id")
            return Outcome(to_server=[] if act is Action.BLOCK else [msg.encode()], findings=fs, action=act)
        self._learn_principal(msg)
        return Outcome(to_server=[msg.encode()])

    def _tools_call(self, msg: Message, now: float) -> Outcome:
        params = msg.params
        tool = params.get("name")
        args = params.get("arguments")
        if not isinstance(tool, str):
            f = self.inspector.finding("mcp.protocol.bad_call", "protocol", "high",
                                       "tools/call without a tool name", location="params.name")
            fs = [f] if f else []
            self._record(now, "tool_call", fs)
            if f and f.action is Action.BLOCK:
                return Outcome(to_client=[self.blocked_reply(msg, fs)], findings=fs, action=Action.BLOCK)
            self.pending[id_key(msg.id)] = PendingRequest("tools/call", params, client_id=msg.id)
            return Outcome(to_server=[msg.encode()], findings=fs)
        if args is None:
            args = {}
        cfg = self.server.config
        findings: list[Finding] = []
        gate = self.server.call_gate(tool)
        if gate is not None:
            findings.append(gate)
        views = policy.command_views(tool, args) if isinstance(args, dict) else {}
        arg_dict = args if isinstance(args, dict) else {"arguments": args}
        hit = policy.config_hit(cfg, self.server.name, tool, arg_dict, views)
        hits: list[policy.PolicyHit] = []
        if hit is not None:
            hits.append(hit)
        builtin = policy.builtin_hits(tool, arg_dict, views) if cfg.builtin_rules else []
        # an explicit allow rule is the user's exception to the built-in rules
        if hit is None or hit.action != "allow":
            hits.extend(builtin)
        facts = policy.CallFacts(server=self.server.name, tool=tool, arguments=arg_dict,
                                 secret_read=any(h.rule == "mcp.policy.credential_file" for h in builtin),
                                 network_send=policy.is_network_send(tool, arg_dict))
        hits.extend(policy.sequence_hits(self.server.sequence_rules, self.history, facts))
        redirect_to = ""
        note = ""
        for h in hits:
            if h.action == "ask":
                approved = False
                if self.server.approver is not None:
                    try:
                        approved = bool(self.server.approver(self.server.name, tool, arg_dict, h))
                    except Exception:
                        approved = False
                if approved:
                    continue
                if self.server.approver is None:
                    note = "rule asks for approval and no interactive approver is configured"
                    h = dataclasses.replace(h, message=f"{h.message} — approval required; no interactive "
                                                       "approver is configured, so the call is blocked")
            if h.action == "redirect" and h.redirect_to:
                redirect_to = h.redirect_to
            f = hit_to_finding(self.inspector, h)
            if f is not None:
                findings.append(f)
        arg_findings = argument_findings(self.inspector, args)
        findings.extend(arg_findings)
        findings = self._apply_posture(tool, arg_dict, findings, facts)
        if any(f.category in ("credential", "pii") for f in arg_findings):
            facts.secret_read = facts.secret_read or False
        facts.hits = [f.rule for f in findings]
        self.history.append(facts)
        if len(self.history) > 1000:
            del self.history[:-500]
        action, ok = self._record(now, "tool_call", findings, destination=f"{self.server.name}/{tool}",
                                  extra={"tool": tool, **({"redirect_to": redirect_to} if redirect_to else {})})
        if not ok and action is not Action.BLOCK:
            f = Finding(rule="vallum.sink_refused", category="protocol", severity="high", action=Action.BLOCK,
                        message="the decision could not be recorded; blocked (fail closed)")
            findings.append(f)
            action = Action.BLOCK
        if action is Action.BLOCK:
            return Outcome(to_client=[self.blocked_reply(msg, findings, note)], findings=findings, action=action)
        self.pending[id_key(msg.id)] = PendingRequest("tools/call", params, facts, client_id=msg.id)
        if redirect_to and self.inspector.mode.value != "audit":
            new_obj = dict(msg.obj)
            new_obj["params"] = {**params, "name": redirect_to}
            return Outcome(to_server=[msg.replace(new_obj).encode()], findings=findings, action=action)
        return Outcome(to_server=[msg.encode()], findings=findings, action=action)

    def _apply_posture(self, tool: str, args: dict[str, Any], findings: list[Finding],
                       facts: policy.CallFacts) -> list[Finding]:
        """The principal's behaviour posture: block denies, review enforces warnings, challenge
        holds risky calls (any finding, a network send or a secret read) for approval."""
        if self.server.gate is None:
            return findings
        try:
            posture = self.server.gate(self.principal)
        except Exception:
            posture = ("block", "the principal's risk posture could not be determined (fail closed)", 403)
        if posture is None:
            return findings
        action, reason, _status = posture
        if action == "block":
            return [*findings, Finding(rule="behaviour.principal_blocked", category="behaviour", severity="high",
                                       action=Action.BLOCK, message=reason, location="principal")]
        out = [dataclasses.replace(f, action=Action.BLOCK, message=f"{f.message} (blocked: principal under "
                                   f"{action})") if f.action is Action.WARN else f for f in findings]
        if action == "challenge" and (out or facts.network_send or facts.secret_read):
            approved = False
            if self.server.approver is not None:
                hit = policy.PolicyHit(rule="behaviour.challenge", action="ask", category="behaviour",
                                       severity="high", message=reason)
                try:
                    approved = bool(self.server.approver(self.server.name, tool, args, hit))
                except Exception:
                    approved = False
            if not approved:
                note = "" if self.server.approver is not None else "; no interactive approver is configured"
                out.append(Finding(rule="behaviour.challenge", category="behaviour", severity="high",
                                   action=Action.BLOCK, location="principal",
                                   message=f"risky tool call held for approval: {reason}{note}"))
        return out

    # ----------------------------------------------------------------- server → client
    def _server_message(self, data: bytes | str | Message | Any, now: float) -> Outcome:
        try:
            msg = self._parse(data)
        except MessageError as exc:
            f = self._protocol_finding(exc)
            self._record(now, "response", [f], reason=str(exc))
            out = Outcome(findings=[f], action=f.action)
            if f.action is not Action.BLOCK and isinstance(data, bytes | str):
                out.to_client.append(data.encode() if isinstance(data, str) else data)
                return out
            if exc.id is not None:
                p = self.pending.pop(id_key(exc.id), None)
                if p is not None:
                    out.to_client.append(self.blocked_reply(
                        Message({"jsonrpc": "2.0", "id": exc.id, "method": p.method}, "request"), [f]))
            return out
        if msg.kind == "batch":
            out = Outcome()
            for item in msg.obj:
                out.merge(self.server_message(jsonrpc.from_object(item), now))
            return out
        if msg.kind == "request":
            self.server_pending[id_key(msg.id)] = msg.method or ""
            return Outcome(to_client=[msg.encode()])
        if msg.kind == "notification":
            return Outcome(to_client=[msg.encode()])
        key = id_key(msg.id)
        pending = self.pending.pop(key, None)
        self._answering = pending
        if pending is None:
            if self.offline and not self.saw_requests:
                return self._by_shape(msg, now)
            uf = self.inspector.finding("mcp.protocol.unanswered_id", "protocol", "high",
                                       "response answers no pending request (confused deputy)",
                                       location="id", evidence=str(msg.id)[:40])
            fs = [uf] if uf else []
            act, _ = self._record(now, "response", fs, reason="unmatched response id")
            return Outcome(to_client=[] if act is Action.BLOCK else [msg.encode()], findings=fs, action=act)
        if msg.kind == "error":
            return Outcome(to_client=[msg.encode()])
        if pending.method == "tools/list":
            return self._tools_list_result(msg, pending, now)
        if pending.method == "tools/call":
            return self._tool_result(msg, pending, now)
        if pending.method in ("resources/read", "prompts/get"):
            return self._content_result(msg, pending, now)
        return Outcome(to_client=[msg.encode()])

    def _content_result(self, msg: Message, pending: PendingRequest, now: float) -> Outcome:
        """A `resources/read` or `prompts/get` result: injection scan like a tool result; a block
        answers error -32001 instead, a warn passes with the decision in `_meta`."""
        result = msg.obj.get("result")
        if not self.server.config.scan_results:
            return Outcome(to_client=[msg.encode()])
        findings = result_findings(self.inspector, result, self.server.config.quoted_injection, pending.method)
        target = pending.params.get("uri") or pending.params.get("name")
        action, ok = self._record(now, "response", findings,
                                  destination=f"{self.server.name}/{target}" if isinstance(target, str) else None,
                                  extra={"method": pending.method})
        if not ok and action is not Action.BLOCK:
            findings.append(Finding(rule="vallum.sink_refused", category="protocol", severity="high",
                                    action=Action.BLOCK,
                                    message="the decision could not be recorded; blocked (fail closed)"))
            action = Action.BLOCK
        if action is Action.BLOCK:
            req = Message({"jsonrpc": "2.0", "id": msg.id, "method": pending.method, "params": pending.params},
                          "request")
            return Outcome(to_client=[self.blocked_reply(req, findings, "content withheld")], findings=findings,
                           action=action)
        if action is Action.WARN and isinstance(result, dict):
            meta = dict(result.get("_meta") or {}) if isinstance(result.get("_meta"), dict) else {}
            meta["vallum/decision"] = self._decision_meta(findings, action, uuid.uuid4().hex[:16])
            new = {**msg.obj, "result": {**result, "_meta": meta}}
            return Outcome(to_client=[msg.replace(new).encode()], findings=findings, action=action)
        return Outcome(to_client=[msg.encode()], findings=findings, action=action)

    def _by_shape(self, msg: Message, now: float) -> Outcome:
        result = msg.obj.get("result") if isinstance(msg.obj, dict) else None
        if isinstance(result, dict) and isinstance(result.get("tools"), list):
            return self._tools_list_result(msg, PendingRequest("tools/list", {}), now)
        if isinstance(result, dict) and isinstance(result.get("content"), list):
            return self._tool_result(msg, PendingRequest("tools/call", {}), now)
        return Outcome(to_client=[msg.encode()])

    def _tools_list_result(self, msg: Message, pending: PendingRequest, now: float) -> Outcome:
        result = msg.obj.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
            return Outcome(to_client=[msg.encode()])
        complete = not pending.params.get("cursor") and not result.get("nextCursor")
        tools = result["tools"]
        visible, findings = self.server.review_tools(tools, complete, now)
        withheld = [t.get("name") for t in tools if isinstance(t, dict) and t not in visible]
        action, ok = self._record(now, "tools_list", findings,
                                  extra={"tools": len(tools), "withheld": withheld})
        if not ok:
            f = Finding(rule="vallum.sink_refused", category="protocol", severity="high", action=Action.BLOCK,
                        message="the decision could not be recorded; blocked (fail closed)")
            req = Message({"jsonrpc": "2.0", "id": msg.id, "method": "tools/list"}, "request")
            return Outcome(to_client=[self.blocked_reply(req, [*findings, f])], findings=[*findings, f],
                           action=Action.BLOCK)
        if len(visible) == len(tools):
            return Outcome(to_client=[msg.encode()], findings=findings, action=action)
        new_result = {**result, "tools": visible}
        return Outcome(to_client=[msg.replace({**msg.obj, "result": new_result}).encode()], findings=findings,
                       action=action)

    def _tool_result(self, msg: Message, pending: PendingRequest, now: float) -> Outcome:
        result = msg.obj.get("result")
        cfg = self.server.config
        findings: list[Finding] = []
        if cfg.scan_results:
            findings = result_findings(self.inspector, result, cfg.quoted_injection)
        tool = pending.params.get("name") if isinstance(pending.params.get("name"), str) else None
        if pending.facts is not None and any(f.category == "credential" for f in findings):
            pending.facts.secret_read = True
        action, ok = self._record(now, "tool_result", findings,
                                  destination=f"{self.server.name}/{tool}" if tool else None,
                                  extra={"tool": tool} if tool else None)
        if not ok:
            f = Finding(rule="vallum.sink_refused", category="protocol", severity="high", action=Action.BLOCK,
                        message="the decision could not be recorded; blocked (fail closed)")
            findings.append(f)
            action = Action.BLOCK
        if action is Action.BLOCK:
            req = Message({"jsonrpc": "2.0", "id": msg.id, "method": "tools/call", "params": pending.params},
                          "request")
            return Outcome(to_client=[self.blocked_reply(req, findings, "tool result withheld")],
                           findings=findings, action=action)
        if action is Action.WARN and isinstance(result, dict):
            rid = uuid.uuid4().hex[:16]
            meta = dict(result.get("_meta") or {}) if isinstance(result.get("_meta"), dict) else {}
            meta["vallum/decision"] = self._decision_meta(findings, action, rid)
            new = {**msg.obj, "result": {**result, "_meta": meta}}
            return Outcome(to_client=[msg.replace(new).encode()], findings=findings, action=action)
        return Outcome(to_client=[msg.encode()], findings=findings, action=action)

    # ----------------------------------------------------------------- offline (kind mcp)
    def offline_message(self, obj: Any, index: int) -> list[Finding]:
        """One message of a saved session: requests/notifications are client→server, results
        server→client. Returns the findings, located by message index."""
        try:
            kind = jsonrpc.classify(obj)
        except MessageError as exc:
            f = self._protocol_finding(exc)
            return [dataclasses.replace(f, location=f"messages[{index}]")]
        side = self.client_message if kind in ("request", "notification") else self.server_message
        if kind == "batch":
            side = self.client_message if all(isinstance(x, dict) and "method" in x for x in obj) \
                else self.server_message
        out = side(obj, 0.0)
        return [dataclasses.replace(f, location=f"messages[{index}].{f.location}") for f in out.findings]


def offline_session(inspector: Inspector, messages: list[Any]) -> McpSession:
    """A session for a saved transcript (kind `mcp`): in-memory pins, no sink."""
    ctx = ServerContext("scan", inspector, PinStore(), NullSink(), transport="scan.api")
    return McpSession(ctx, offline=True)
