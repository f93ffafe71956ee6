"""Tool-call policy: the config's rules, the built-in command rules, and sequence rules.

Pure functions over a tool call (server, tool name, arguments). Command-like argument values are
de-obfuscated with `vallum.mcp.shell` before the built-in rules and the config's regexes see them.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from vallum.config.sections.mcp import CallMatcher, McpConfig, SequenceRule, ToolPolicyRule
from vallum.mcp.shell import SHELLS, ShellCommand, expand_commands

#: argument names treated as shell commands whatever the tool
COMMAND_ARG_NAMES = frozenset({"command", "cmd", "script", "shell", "bash", "sh", "commandline",
                               "command_line", "exec", "run", "code", "input", "args", "argv"})
_TOOLISH = re.compile(r"shell|exec|command|cmd|terminal|bash|run|script|process|system", re.I)
_SHELLISH = re.compile(r"[|;&`$><]|\b(?:rm|curl|wget|nc|bash|sh|dd|mkfs|chmod|python\d?|perl|eval|base64)\b")

_CRED_PATH = re.compile(
    r"""(?ix)
    (?:^|[\s'"=:(/~]|\$HOME|\$\{HOME\})
    (?:
        \.ssh(?:/|$|\b) | id_(?:rsa|dsa|ecdsa|ed25519)\b | authorized_keys\b
      | \.aws/(?:credentials|config)\b | \.aws(?:/|$)
      | \.netrc\b | _netrc\b | \.pgpass\b | \.git-credentials\b | \.npmrc\b | \.pypirc\b
      | \.docker/config\.json | \.kube/config\b | \.config/gcloud | \.azure/
      | \.gnupg(?:/|$) | \.password-store
      | (?<![\w.])\.env(?:\.[\w-]+)?(?![\w/-])
    )
    | /etc/(?:shadow|gshadow|sudoers|master\.passwd)\b
    | /proc/(?:self|\d+)/environ\b
    """
)
_DEV_TCP = re.compile(r"/dev/(?:tcp|udp)/[^\s/]+/\d+")
_FORK_BOMB = re.compile(r"(\w+|:)\s*\(\s*\)\s*\{\s*\1\s*\|\s*\1\s*&\s*\}\s*;?\s*\1")
_SCRIPT_SOCKET = re.compile(r"socket|fsockopen|TCPSocket|IO::Socket", re.I)
_SCRIPT_EXEC = re.compile(r"subprocess|pty\.spawn|os\.dup2|exec\(|/bin/(?:ba)?sh|system\(|popen|spawn", re.I)
_BLOCK_DEVICE = re.compile(r"^/dev/(?:sd[a-z]|hd[a-z]|xvd[a-z]|vd[a-z]|nvme\d|mmcblk\d|disk\d|md\d|dm-\d|mapper/)")
_CRITICAL_PATHS = frozenset({"/", "/*", "~", "~/", "~/*", "$HOME", "/root", "/home", "/etc", "/usr", "/var",
                             "/bin", "/boot", "/lib", "/opt", "/sbin", "/srv", "/dev", "/sys", "/proc", ".",
                             "..", "*", "/home/*", "/root/*", "/etc/*", "/usr/*", "/var/*"})
_DOWNLOADERS = frozenset({"curl", "wget", "fetch", "aria2c", "lwp-download", "http", "httpie"})
_INTERPRETERS = SHELLS | {"python", "python2", "python3", "perl", "ruby", "node", "php", "source", "."}
_NETWORK_TOOL = re.compile(
    r"http|post|fetch|send|upload|request|email|mail|webhook|curl|slack|notify|publish|browse", re.I)
_URL = re.compile(r"\b(?:https?|ftp|wss?)://", re.I)


@dataclass(frozen=True, slots=True)
class PolicyHit:
    """A rule that matched a call: its id, action, severity, message and evidence."""

    rule: str
    action: str  # allow | warn | block | ask | redirect
    category: str
    severity: str
    message: str
    location: str = "arguments"
    evidence: str = ""
    redirect_to: str = ""


@dataclass(slots=True)
class CallFacts:
    """What one tool call did, kept in the session history for sequence rules."""

    server: str
    tool: str
    arguments: dict[str, Any]
    secret_read: bool = False
    network_send: bool = False
    hits: list[str] = field(default_factory=list)


def string_arguments(args: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every string leaf of the arguments as (dotted path, value); numbers become strings."""
    if isinstance(args, dict):
        for k, v in args.items():
            yield from string_arguments(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(args, list):
        for i, v in enumerate(args):
            yield from string_arguments(v, f"{prefix}[{i}]")
    elif isinstance(args, str):
        yield prefix, args
    elif isinstance(args, int | float) and not isinstance(args, bool):
        yield prefix, str(args)


def is_command_like(tool: str, path: str, value: str) -> bool:
    """Whether an argument value should be read as a shell command."""
    leaf = re.split(r"[.\[]", path)[-1].lower() if path else ""
    if leaf in COMMAND_ARG_NAMES or _TOOLISH.search(tool):
        return True
    return bool(_SHELLISH.search(value)) and len(value) < 16384


def command_views(tool: str, args: dict[str, Any]) -> dict[str, list[ShellCommand]]:
    """The de-obfuscated shell commands of each command-like argument."""
    out: dict[str, list[ShellCommand]] = {}
    for path, value in string_arguments(args):
        if value and is_command_like(tool, path, value):
            cmds = expand_commands(value)
            if cmds:
                out[path] = cmds
    # an argv-style list ("command": ["rm", "-rf", "/"]) is one command too
    for k, v in args.items() if isinstance(args, dict) else ():
        if isinstance(v, list) and v and all(isinstance(x, str) for x in v) and k.lower() in COMMAND_ARG_NAMES:
            out.setdefault(k, []).extend(expand_commands(" ".join(_q(x) for x in v)))
    return out


def _q(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


# --------------------------------------------------------------------------- built-in rules
def _flags(argv: list[str]) -> set[str]:
    out: set[str] = set()
    for a in argv[1:]:
        if a.startswith("--"):
            out.add(a)
        elif a.startswith("-") and len(a) > 1:
            out.update("-" + ch for ch in a[1:])
    return out


def _operands(argv: list[str]) -> list[str]:
    return [a for a in argv[1:] if not a.startswith("-")]


def _critical(path: str) -> bool:
    p = path.strip()
    if p in _CRITICAL_PATHS:
        return True
    return (p.rstrip("/") or "/") in _CRITICAL_PATHS


def _destructive(c: ShellCommand) -> str | None:
    name, argv = c.name, c.argv
    fl = _flags(argv)
    ops = _operands(argv)
    if name == "rm":
        recursive = bool({"-r", "-R", "--recursive"} & fl)
        if recursive and (any(_critical(o) for o in ops) or "--no-preserve-root" in fl):
            return "recursive delete of a system or home directory"
    if name.startswith("mkfs") or name in ("mke2fs", "mkswap", "wipefs", "fdisk", "sfdisk", "parted"):
        return f"filesystem or partition tool {name}"
    if name == "dd" and any(a.startswith("of=") and _BLOCK_DEVICE.match(a[3:]) for a in argv):
        return "dd onto a block device"
    if name in ("shred", "wipe") and any(_BLOCK_DEVICE.match(o) or _critical(o) for o in ops):
        return "shredding a device or system path"
    if name in ("chmod", "chown", "chgrp") and bool({"-R", "--recursive"} & fl) and any(_critical(o) for o in ops):
        return f"recursive {name} on a system path"
    if any(_BLOCK_DEVICE.match(r) for r in c.redirects):
        return "write redirected onto a block device"
    if name in ("shutdown", "reboot", "halt", "poweroff", "init") and (name != "init" or "0" in ops):
        return f"system {name}"
    return None


def _reverse_shell(c: ShellCommand) -> str | None:
    name, argv = c.name, c.argv
    fl = _flags(argv)
    if any(_DEV_TCP.search(x) for x in (*argv, *c.redirects)):
        return "shell connected to /dev/tcp"
    if name in ("nc", "ncat", "netcat", "nc.traditional", "nc.openbsd") and ({"-e", "-c"} & fl or "--exec" in fl
                                                                              or "--sh-exec" in fl):
        return f"{name} executing a program for a remote peer"
    if name == "socat" and any(re.search(r"(?i)\bexec:|system:|pty", a) for a in argv):
        return "socat with exec"
    if name.rstrip("0123456789.") in ("python", "perl", "ruby", "php", "node", "lua"):
        code = " ".join(argv[1:])
        if _SCRIPT_SOCKET.search(code) and _SCRIPT_EXEC.search(code):
            return f"{name} opening a socket and running a shell"
    if name in ("telnet", "openssl") and c.pipe_to is not None:
        return f"{name} piped into a program"
    if name == "mkfifo":
        return None
    return None


def builtin_hits(tool: str, args: dict[str, Any], views: dict[str, list[ShellCommand]]) -> list[PolicyHit]:
    """The built-in rules over one call: destructive commands, reverse shells, curl|sh, secrets."""
    hits: list[PolicyHit] = []
    for path, cmds in views.items():
        loc = f"arguments.{path}"
        for i, c in enumerate(cmds):
            why = _destructive(c)
            if why:
                hits.append(PolicyHit("mcp.policy.destructive_command", "block", "tool_policy", "critical",
                                      f"Destructive command: {why}", loc, c.line()[:120]))
            why = _reverse_shell(c)
            if why:
                hits.append(PolicyHit("mcp.policy.reverse_shell", "block", "tool_policy", "critical",
                                      f"Reverse shell: {why}", loc, c.line()[:120]))
            if c.name in _DOWNLOADERS and _pipes_into_interpreter(cmds, i):
                hits.append(PolicyHit("mcp.policy.pipe_to_shell", "block", "tool_policy", "high",
                                      "Downloaded content piped into a shell or interpreter", loc, c.line()[:120]))
            if c.name in SHELLS and any(x.name in _DOWNLOADERS and "subst" in x.via for x in cmds):
                hits.append(PolicyHit("mcp.policy.pipe_to_shell", "block", "tool_policy", "high",
                                      "Shell running downloaded content", loc, c.line()[:120]))
        raw = _raw_value(args, path)
        if raw and _FORK_BOMB.search(raw):
            hits.append(PolicyHit("mcp.policy.destructive_command", "block", "tool_policy", "critical",
                                  "Destructive command: fork bomb", loc, raw[:60]))
    for path, value in string_arguments(args):
        texts = [value] + [c.line() for c in views.get(path, [])]
        for t in texts:
            m = _CRED_PATH.search(t)
            if m:
                hits.append(PolicyHit("mcp.policy.credential_file", "block", "tool_policy", "high",
                                      "Access to a credential file (SSH keys, cloud credentials, .env, "
                                      "/etc/shadow …)", f"arguments.{path}", m.group(0).strip()[:60]))
                break
    return _dedupe(hits)


def _raw_value(args: dict[str, Any], path: str) -> str:
    for p, v in string_arguments(args):
        if p == path:
            return v
    return ""


def _pipes_into_interpreter(cmds: list[ShellCommand], i: int) -> bool:
    seen = 0
    j = cmds[i].pipe_to
    while j is not None and j < len(cmds) and seen < 16:
        seen += 1
        if cmds[j].program in _INTERPRETERS:
            return True
        j = cmds[j].pipe_to
    return False


def _dedupe(hits: list[PolicyHit]) -> list[PolicyHit]:
    seen: set[tuple[str, str]] = set()
    out = []
    for h in hits:
        if (h.rule, h.location) not in seen:
            seen.add((h.rule, h.location))
            out.append(h)
    return out


# --------------------------------------------------------------------------- config rules
def _glob(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern or "*")


def _regex_match(pattern: str, values: Iterable[str]) -> str | None:
    try:
        rx = re.compile(pattern)
    except re.error:
        return None
    for v in values:
        m = rx.search(v)
        if m:
            return m.group(0)
    return None


def _values_for(name: str, args: dict[str, Any], views: dict[str, list[ShellCommand]]) -> list[str]:
    out: list[str] = []
    for path, value in string_arguments(args):
        if name == "*" or path == name or path.split(".")[0].split("[")[0] == name:
            out.append(value)
            out.extend(c.line() for c in views.get(path, []))
    if name != "*" and isinstance(args, dict) and name in args and not isinstance(args[name], str):
        out.append(json.dumps(args[name], sort_keys=True, ensure_ascii=False))
    return out


def rule_matches(rule: ToolPolicyRule | CallMatcher, server: str, tool: str, args: dict[str, Any],
                 views: dict[str, list[ShellCommand]]) -> str | None:
    """The evidence if `rule` matches the call (every condition holds), else None."""
    if not _glob(rule.tool, tool):
        return None
    if isinstance(rule, ToolPolicyRule) and not _glob(rule.server, server):
        return None
    evidence = tool
    for name, pattern in rule.arguments.items():
        hit = _regex_match(pattern, _values_for(name, args, views))
        if hit is None:
            return None
        evidence = hit
    return evidence


def config_hit(cfg: McpConfig, server: str, tool: str, args: dict[str, Any],
               views: dict[str, list[ShellCommand]]) -> PolicyHit | None:
    """The first config rule that matches the call, as a hit."""
    for i, rule in enumerate(cfg.tool_policy):
        ev = rule_matches(rule, server, tool, args, views)
        if ev is None:
            continue
        rid = rule.id or f"mcp.policy.config.{i}"
        msg = rule.message or f"tool policy rule {rid} ({rule.action}) matched {tool}"
        return PolicyHit(rid, rule.action, "tool_policy", rule.severity, msg, "arguments", ev[:120],
                         rule.redirect_to)
    return None


# --------------------------------------------------------------------------- sequences
BUILTIN_SEQUENCE = SequenceRule(
    id="mcp.sequence.secret_then_send",
    first=CallMatcher(kind="secret_read"),
    then=CallMatcher(kind="network_send"),
    within=5,
    action="block",
    message="A network send follows a read of a secret within 5 calls (possible exfiltration)",
)


def is_network_send(tool: str, args: dict[str, Any]) -> bool:
    """A tool that sends data out: its name says so, or an argument is a URL."""
    if _NETWORK_TOOL.search(tool):
        return True
    return any(_URL.search(v) for _, v in string_arguments(args))


def _matches_call(m: CallMatcher, call: CallFacts) -> bool:
    if m.kind == "secret_read" and not call.secret_read:
        return False
    if m.kind == "network_send" and not call.network_send:
        return False
    return rule_matches(m, call.server, call.tool, call.arguments, {}) is not None


def sequence_hits(rules: list[SequenceRule], history: list[CallFacts], current: CallFacts) -> list[PolicyHit]:
    """Sequence rules whose `then` is the current call and whose `first` is a recent earlier call."""
    hits = []
    for rule in rules:
        if not _matches_call(rule.then, current):
            continue
        recent = history[-rule.within:]
        for earlier in reversed(recent):
            if _matches_call(rule.first, earlier):
                msg = rule.message or f"sequence rule {rule.id}: {earlier.tool} then {current.tool}"
                hits.append(PolicyHit(rule.id, rule.action, "tool_policy", "high", msg, "sequence",
                                      f"{earlier.tool} → {current.tool}"))
                break
    return hits
