"""Shell de-obfuscation: turn a command-like string into the simple commands a shell would run.

`expand_commands(text)` parses with `bashlex` (a real bash parser) and returns every simple command
(`ShellCommand`: its argv after quote removal and the expansions an attacker uses to hide words —
`$IFS`, `${VAR:off:len}` slicing on variables assigned in the script or a small default
environment, `$'\\x..'` ANSI-C quoting, brace expansion, command substitution of `echo`/`printf`),
plus the commands hidden in `eval`, `sh -c`, `base64 -d | sh` chains, backticks and `$(…)`.
Pipelines are kept (`ShellCommand.pipe_to`) so `curl … | sh` can be recognised.

Pure and bounded: recursion depth, the number of commands and the input size are capped; on a
parse error the text is split with a forgiving tokenizer instead (the caller still gets words).
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from dataclasses import dataclass, field

import bashlex
import bashlex.errors

MAX_INPUT = 64 * 1024
MAX_DEPTH = 4
MAX_COMMANDS = 256
MAX_BRACE_WORDS = 64

#: variables a script may slice without assigning them first (`${PATH:0:1}` is "/")
DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "SHELL": "/bin/bash",
    "PWD": "/",
    "IFS": " ",
    "USER": "root",
}

SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "ash", "fish", "busybox"})
#: commands that run another command given as their arguments
WRAPPERS = frozenset({"sudo", "doas", "env", "nohup", "exec", "command", "nice", "stdbuf", "setsid"})


@dataclass(slots=True)
class ShellCommand:
    """One simple command: `argv` after expansion, redirect targets, and what it pipes into."""

    argv: list[str]
    redirects: list[str] = field(default_factory=list)
    #: index (in the result list) of the command this one pipes into, if any
    pipe_to: int | None = None
    #: how it was found: () at top level, ("eval",), ("base64", "sh -c"), …
    via: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The command's basename (`/usr/bin/rm` → `rm`), or "" for an empty command."""
        return self.argv[0].rsplit("/", 1)[-1] if self.argv else ""

    @property
    def program(self) -> str:
        """The program that really runs: `sudo -E bash` → bash, `env A=1 sh` → sh."""
        for a in self.argv:
            base = a.rsplit("/", 1)[-1]
            if base in WRAPPERS or a.startswith("-") or ("=" in a and not a.startswith("=")):
                continue
            return base
        return self.name

    def line(self) -> str:
        return " ".join(self.argv + [f"> {r}" for r in self.redirects])


_ANSI_C = re.compile(r"\$'((?:[^'\\]|\\.)*)'")
_ANSI_ESC = re.compile(r"\\(x[0-9a-fA-F]{1,2}|u[0-9a-fA-F]{1,4}|[0-7]{1,3}|.)", re.S)
_SIMPLE_ESC = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "e": "\x1b", "f": "\f",
               "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}
_PARAM = re.compile(r"\$\{(#?)([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:=|:)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_BRACE = re.compile(r"\{([^{}\s]*,[^{}\s]*)\}")


def _decode_ansi_c(body: str) -> str:
    def esc(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] in "xu" and len(e) > 1:
            return chr(int(e[1:], 16))
        if e[0] in "01234567":
            return chr(int(e, 8) & 0xFF)
        return _SIMPLE_ESC.get(e, "\\" + e)

    return _ANSI_ESC.sub(esc, body)


def _quote_single(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


def preprocess(text: str) -> str:
    """Rewrite `$'…'` ANSI-C strings as plain single-quoted strings bashlex understands."""
    return _ANSI_C.sub(lambda m: _quote_single(_decode_ansi_c(m.group(1))), text)


def _slice(value: str, spec: str) -> str:
    parts = spec.split(":")
    try:
        off = int(parts[0].strip() or 0)
        if len(parts) > 1 and parts[1].strip():
            ln = int(parts[1].strip())
            return value[off:][:ln] if ln >= 0 else value[off:ln]
        return value[off:]
    except ValueError:
        return ""


def expand_params(word: str, env: dict[str, str]) -> str:
    """Expand `$VAR`, `${VAR}`, `${#VAR}`, `${VAR:off:len}`, `${VAR:-default}` against `env`."""

    def sub(m: re.Match[str]) -> str:
        if m.group(5):
            return env.get(m.group(5), "")
        hash_, name, op, arg = m.group(1), m.group(2), m.group(3), m.group(4) or ""
        value = env.get(name, "")
        if hash_:
            return str(len(value))
        if op == ":":
            return _slice(value, arg)
        if op in (":-", ":="):
            return value or arg
        return value

    return _PARAM.sub(sub, word)


def brace_expand(word: str, limit: int = MAX_BRACE_WORDS) -> list[str]:
    """Bash brace expansion of comma lists (`{rm,-rf,/}` → rm, -rf, /; `a{b,c}` → ab, ac)."""
    m = _BRACE.search(word)
    if not m:
        return [word]
    pre, post = word[: m.start()], word[m.end():]
    out: list[str] = []
    for alt in m.group(1).split(","):
        for rest in brace_expand(post, limit):
            out.append(pre + alt + rest)
            if len(out) >= limit:
                return out
    return out


def _fallback_words(text: str) -> list[list[str]]:
    """Split text on command separators and tokenize forgivingly (for unparsable input)."""
    out = []
    for chunk in re.split(r"[;&|\n]+", text):
        try:
            words = shlex.split(chunk, posix=True)
        except ValueError:
            words = chunk.split()
        if words:
            out.append(words)
    return out


class _Expander:
    def __init__(self) -> None:
        self.commands: list[ShellCommand] = []
        self.env = dict(DEFAULT_ENV)

    # ------------------------------------------------------------- entry
    def run(self, text: str, depth: int, via: tuple[str, ...]) -> None:
        if depth > MAX_DEPTH or len(self.commands) >= MAX_COMMANDS or not text.strip():
            return
        text = preprocess(text[:MAX_INPUT])
        try:
            trees = bashlex.parse(text)
        except (bashlex.errors.ParsingError, NotImplementedError, IndexError, AttributeError,
                TypeError, ValueError, AssertionError, RecursionError):
            for words in _fallback_words(text):
                self._add(self._expand_words(words, depth, via), [], via, depth)
            return
        for tree in trees:
            self._node(tree, depth, via)

    # ------------------------------------------------------------- walk
    def _node(self, node: bashlex.ast.node, depth: int, via: tuple[str, ...]) -> None:
        kind = node.kind
        if kind == "command":
            self._command(node, depth, via)
        elif kind == "pipeline":
            last: int | None = None
            for part in node.parts:
                if part.kind == "pipe":
                    continue
                before = len(self.commands)
                self._node(part, depth, via)
                if last is not None and len(self.commands) > before:
                    self.commands[last].pipe_to = before
                if len(self.commands) > before:
                    last = before
            self._resolve_pipes(depth, via)
        elif kind in ("list", "compound", "reservedword", "operator") or hasattr(node, "parts"):
            for part in getattr(node, "parts", []) or []:
                self._node(part, depth, via)
            for attr in ("list",):
                for part in getattr(node, attr, []) or []:
                    self._node(part, depth, via)
        if kind == "function":
            body = getattr(node, "body", None)
            if body is not None:
                self._node(body, depth, via)

    def _command(self, node: bashlex.ast.node, depth: int, via: tuple[str, ...]) -> None:
        words: list[str] = []
        redirects: list[str] = []
        for part in node.parts:
            if part.kind == "assignment":
                name, _, value = part.word.partition("=")
                self.env[name] = self._expand_one(value, part, depth, via)
            elif part.kind == "word":
                words.extend(self._expand_word(part, depth, via))
            elif part.kind == "redirect":
                out = part.output
                if hasattr(out, "word"):
                    redirects.extend(self._expand_word(out, depth, via))
                else:
                    redirects.append(str(out))
        self._add(words, redirects, via, depth)

    def _substitutions(self, node: bashlex.ast.node, depth: int, via: tuple[str, ...]) -> str:
        """Run nested $(…) / `…` commands; return what an echo/printf among them would print."""
        printed = ""
        for part in getattr(node, "parts", []) or []:
            if part.kind in ("commandsubstitution", "processsubstitution"):
                before = len(self.commands)
                self._node(part.command, depth + 1, (*via, "subst"))
                for c in self.commands[before:]:
                    if c.name in ("echo", "printf") and c.pipe_to is None:
                        printed += " ".join(a for a in c.argv[1:] if not a.startswith("-"))
        return printed

    def _expand_one(self, word: str, node: bashlex.ast.node, depth: int, via: tuple[str, ...]) -> str:
        printed = self._substitutions(node, depth, via)
        w = re.sub(r"\$\((?:[^()]|\([^()]*\))*\)|`[^`]*`", lambda _m: printed, word)
        return expand_params(w, self.env)

    def _expand_word(self, node: bashlex.ast.node, depth: int, via: tuple[str, ...]) -> list[str]:
        expanded = self._expand_one(node.word, node, depth, via)
        out: list[str] = []
        pieces = expanded.split() if expanded != node.word else [expanded]
        for p in pieces:
            out.extend(brace_expand(p))
        return out

    def _expand_words(self, words: list[str], depth: int, via: tuple[str, ...]) -> list[str]:
        out: list[str] = []
        for w in words:
            e = expand_params(preprocess(w), self.env)
            for p in e.split() if e != w else [e]:
                out.extend(brace_expand(p))
        return out

    # ------------------------------------------------------------- commands
    def _add(self, argv: list[str], redirects: list[str], via: tuple[str, ...], depth: int) -> None:
        if len(self.commands) >= MAX_COMMANDS:
            return
        # a brace-expanded first word can itself hold the whole command ("{rm,-rf,/}")
        self.commands.append(ShellCommand(argv=argv, redirects=redirects, via=via))
        self._nested(argv, depth, via)

    def _nested(self, argv: list[str], depth: int, via: tuple[str, ...]) -> None:
        if not argv:
            return
        name = argv[0].rsplit("/", 1)[-1]
        if name == "eval":
            self.run(" ".join(argv[1:]), depth + 1, (*via, "eval"))
        elif name in SHELLS or name in WRAPPERS or name in ("timeout", "xargs"):
            args = argv[1:]
            if name in SHELLS:
                for i, a in enumerate(args):
                    if a.startswith("-") and "c" in a[1:] and not a.startswith("--") and i + 1 < len(args):
                        self.run(args[i + 1], depth + 1, (*via, f"{name} -c"))
                        return
            else:
                # the wrapper's own options and VAR=value words come first; the command follows
                i = 0
                while i < len(args) and (args[i].startswith("-") or (name == "env" and "=" in args[i])):
                    i += 1
                rest = args[i:]
                if name == "timeout" and rest:
                    rest = rest[1:]
                if rest:
                    self.run(" ".join(_quote_single(a) for a in rest), depth + 1, (*via, name))

    def _resolve_pipes(self, depth: int, via: tuple[str, ...]) -> None:
        """`echo <b64> | base64 -d | sh` and `echo 'cmd' | sh`: run what reaches the shell."""
        for c in list(self.commands):
            if c.name not in ("echo", "printf") or c.pipe_to is None:
                continue
            payload = " ".join(a for a in c.argv[1:] if not a.startswith("-"))
            chain: tuple[str, ...] = ()
            j: int | None = c.pipe_to
            steps = 0
            while j is not None and j < len(self.commands) and steps < 8:
                steps += 1
                nxt = self.commands[j]
                if nxt.name in ("base64", "base32") and any(a in ("-d", "--decode", "-D") for a in nxt.argv[1:]):
                    payload = _b64(payload)
                    chain += ("base64",)
                elif nxt.name == "rev":
                    payload = payload[::-1]
                    chain += ("rev",)
                elif nxt.program in SHELLS or nxt.name in ("eval", "source"):
                    if chain or nxt.program in SHELLS:
                        marker = ("pipe", *chain, nxt.name)
                        if not any(x.via == via + marker for x in self.commands):
                            self.run(payload, depth + 1, via + marker)
                    break
                else:
                    break
                j = nxt.pipe_to


def _b64(s: str) -> str:
    s = "".join(s.split())
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=False).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


def expand_commands(text: str) -> list[ShellCommand]:
    """Every simple command that `text` would run, de-obfuscated (see the module docstring)."""
    ex = _Expander()
    try:
        ex.run(text, 0, ())
    except RecursionError:
        pass
    return ex.commands


def normalized_lines(text: str) -> list[str]:
    """The de-obfuscated command lines of `text` (for regex policy rules and evidence)."""
    return [c.line() for c in expand_commands(text) if c.argv or c.redirects]
