"""`vallum scan`: one input, or JSON Lines in / JSON Lines out with --batch."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, BinaryIO

import typer
from rich.console import Console
from rich.table import Table

from vallum.cli.common import CONFIG_OPTION, config_or_exit, fail
from vallum.detection.model import KINDS, Action, Verdict
from vallum.detection.pipeline import Inspector, ScanInputError, get_inspector

STRUCTURED_KINDS = ("http_request", "http_response", "mcp")
_ID_GUESS = re.compile(rb'"id"\s*:\s*("(?:[^"\\]|\\.){0,200}"|-?\d{1,20})')


def _open(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}") from None


def parse_content(raw: str, kind: str) -> Any:
    """Turn a file's text into the content of a scan input of `kind`."""
    if kind in STRUCTURED_KINDS:
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ScanInputError(f"kind {kind} needs JSON input: {exc}") from None
    if kind == "url":
        s = raw.strip()
        if s.startswith("{"):
            try:
                return json.loads(s)
            except json.JSONDecodeError as exc:
                raise ScanInputError(f"invalid JSON: {exc}") from None
        return s
    return raw


def _print_human(verdict: Verdict, console: Console) -> None:
    colour = {"allow": "green", "warn": "yellow", "block": "red"}[str(verdict.action)]
    console.print(f"[bold {colour}]{str(verdict.action).upper()}[/] ({len(verdict.findings)} finding(s))")
    if verdict.findings:
        t = Table(show_header=True, header_style="bold")
        for col in ("action", "rule", "category", "severity", "location", "decoded", "evidence"):
            t.add_column(col)
        for f in verdict.findings:
            t.add_row(str(f.action), f.rule, f.category, f.severity, f.location,
                      "→".join(f.decoded) or "-", f.evidence)
        console.print(t)
    for note in verdict.notes:
        console.print(f"[dim]note: {note}[/]")


def _semantic_note(cfg: Any) -> None:
    """Say on stderr when the semantic injection detector is not running, and why."""
    from vallum.detection.semantic import SemanticScorer, semantic_disabled_by_env

    if not cfg.detection.semantic.enabled:
        reason = "disabled in config (detection.semantic.enabled)"
    elif semantic_disabled_by_env():
        reason = "disabled by VALLUM_DISABLE_SEMANTIC"
    else:
        ok, reason = SemanticScorer.status()
        if ok:
            return
    print(f"note: semantic detector off: {reason}", file=sys.stderr)


def scan_batch_stream(inp: BinaryIO, out: Any, inspector: Inspector) -> int:
    """JSON Lines in, JSON Lines out, one verdict per line in order. Returns the number of blocks."""
    blocks = 0
    for lineno, line in enumerate(inp, start=1):
        if not line.strip():
            continue
        result = scan_batch_line(line, lineno, inspector)
        if result.get("action") == "block":
            blocks += 1
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
        out.flush()
    return blocks


def scan_batch_line(line: bytes, lineno: int, inspector: Inspector) -> dict[str, Any]:
    """One batch line → one verdict dict or `{"id", "error"}`. Never raises."""
    guess = _ID_GUESS.search(line[:4096])
    rid: Any = None
    if guess:
        try:
            rid = json.loads(guess.group(1))
        except ValueError:
            rid = None
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return {"id": rid, "error": f"line {lineno}: not valid UTF-8 (byte {exc.start})"}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return {"id": rid, "error": f"line {lineno}: invalid JSON: {exc.msg} at column {exc.colno}"}
    if not isinstance(obj, dict):
        return {"id": None, "error": f"line {lineno}: expected a JSON object"}
    rid = obj.get("id")
    kind = obj.get("kind", "text")
    if kind not in KINDS:
        return {"id": rid, "error": f"line {lineno}: unknown kind {kind!r}"}
    if "content" not in obj:
        return {"id": rid, "error": f"line {lineno}: missing 'content'"}
    try:
        return inspector.scan(obj["content"], kind, id=rid).to_dict()
    except ScanInputError as exc:
        return {"id": rid, "error": f"line {lineno}: {exc}"}


def scan(
    file: str = typer.Argument("-", metavar="[FILE|-]", help="Input file, or - for standard input."),
    kind: str = typer.Option("text", "--kind", "-k", help=f"Input kind: {', '.join(KINDS)}."),
    config: Path | None = CONFIG_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
    batch: bool = typer.Option(False, "--batch", help="JSON Lines in, JSON Lines out."),
) -> None:
    """Scan one input. Exit 0 = allow or warn, 1 = block, 2 = bad input or config."""
    cfg = config_or_exit(config)
    try:
        inspector = get_inspector(cfg)
    except ValueError as exc:  # a bad user rule file
        raise fail(str(exc)) from None
    stream = _open(file)
    if batch:
        blocks = scan_batch_stream(stream, sys.stdout, inspector)
        raise typer.Exit(1 if blocks else 0)
    if kind not in KINDS:
        raise fail(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    data = stream.read()
    try:
        raw = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"input is not valid UTF-8 (byte {exc.start})") from None
    try:
        verdict = inspector.scan(parse_content(raw, kind), kind)
    except ScanInputError as exc:
        raise fail(str(exc)) from None
    if kind in ("text", "inbound", "http_response", "mcp"):
        _semantic_note(cfg)
    if as_json:
        typer.echo(json.dumps(verdict.to_dict(), ensure_ascii=False))
    else:
        _print_human(verdict, Console())
    raise typer.Exit(1 if verdict.action is Action.BLOCK else 0)


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)
