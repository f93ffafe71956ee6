"""`vallum mcp …`: the MCP proxy (wrap, bridge, serve), offline scan, pin approval."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import typer

from vallum.cli.common import CONFIG_OPTION, config_or_exit, ensure_can_listen, fail
from vallum.config import Config
from vallum.decisions import DecisionSink, FanoutSink, NullSink

mcp_app = typer.Typer(name="mcp", help="MCP proxy: inspect traffic between MCP clients and servers.",
                      no_args_is_help=True)

NAME_OPTION = typer.Option(None, "--name", "-n", help="Server name (pins, policy); default: from the command.")
DECISIONS_OPTION = typer.Option(None, "--decisions", help="Also append every decision to this JSON Lines file.")


def pins_dir(cfg: Config) -> Path:
    """Where the pins of every server live: mcp.pins_dir, or <data_dir>/mcp/pins."""
    return Path(cfg.mcp.pins_dir) if cfg.mcp.pins_dir else cfg.data_path / "mcp" / "pins"


def decision_sink(cfg: Config, decisions: Path | None, component: str = "mcp") -> DecisionSink:
    """The process's decision sink — the audit log and metrics, as every vallum process — plus an
    optional JSON Lines file. An audit log that cannot be opened is an error: no unaudited proxy."""
    sinks: list[DecisionSink] = []
    try:
        from vallum.audit.factory import build_decision_sink
    except ImportError:  # pragma: no cover - a build without the audit layer
        build_decision_sink = None  # type: ignore[assignment]
    if build_decision_sink is not None:
        try:
            sinks.append(build_decision_sink(cfg, component=component))
        except Exception as exc:  # AuditError, OSError, ValueError: refuse to run unaudited
            raise fail(f"cannot open the audit log: {exc}") from None
    if decisions is not None:
        from vallum.mcp.decisionlog import JsonlDecisionSink

        sinks.append(JsonlDecisionSink(decisions))
    if not sinks:
        return NullSink()
    return sinks[0] if len(sinks) == 1 else FanoutSink(*sinks)


def _context(cfg: Config, name: str, transport: str, decisions: Path | None) -> Any:
    from vallum.detection.pipeline import get_inspector
    from vallum.mcp.pins import FilePinStore
    from vallum.mcp.session import ServerContext

    try:
        inspector = get_inspector(cfg)
    except ValueError as exc:
        raise fail(str(exc)) from None
    sink = decision_sink(cfg, decisions, component=f"mcp-{name}")
    # VALLUM_API_URL + VALLUM_API_KEY: join a `vallum run`'s behaviour loop (events out, posture in)
    from vallum.runtime.remote import attach_remote_loop

    sink, gate = attach_remote_loop(sink)
    return ServerContext(name, inspector, FilePinStore(pins_dir(cfg)), sink, transport=transport, gate=gate)


@mcp_app.command("wrap")
def wrap(
    cmd: list[str] = typer.Argument(..., metavar="-- CMD [ARG…]", help="The stdio MCP server to run."),
    config: Path | None = CONFIG_OPTION,
    name: str | None = NAME_OPTION,
    decisions: Path | None = DECISIONS_OPTION,
) -> None:
    """MCP stdio proxy around a stdio server: the MCP client launches this instead of the server."""
    from vallum.mcp.session import McpSession
    from vallum.mcp.stdio import LineWriter, default_server_name, stdin_reader, wrap_stdio

    cfg = config_or_exit(config)
    ctx = _context(cfg, name or default_server_name(cmd), "mcp.stdio", decisions)

    async def main() -> int:
        reader = await stdin_reader(cfg.mcp.max_message_bytes + 1024)
        session = McpSession(ctx)
        try:
            return await wrap_stdio(cmd, session, client_in=reader, client_out=LineWriter(sys.stdout.buffer))
        except (FileNotFoundError, PermissionError) as exc:
            print(f"error: cannot start {cmd[0]}: {exc.strerror}", file=sys.stderr)
            return 127

    raise typer.Exit(asyncio.run(main()))


@mcp_app.command("bridge")
def bridge(
    upstream: str = typer.Option(..., "--upstream", "-u", help="Streamable HTTP URL of the MCP server."),
    header: list[str] = typer.Option([], "--header", "-H", help="Upstream header 'Name: value' (repeatable)."),
    config: Path | None = CONFIG_OPTION,
    name: str | None = NAME_OPTION,
    decisions: Path | None = DECISIONS_OPTION,
) -> None:
    """stdio downstream ↔ Streamable-HTTP upstream."""
    from vallum.mcp.http_upstream import bridge_stdio_to_http, default_name_for_url, parse_headers
    from vallum.mcp.session import McpSession
    from vallum.mcp.stdio import LineWriter, stdin_reader

    cfg = config_or_exit(config)
    try:
        headers = parse_headers(header)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if not upstream.startswith(("http://", "https://")):
        raise fail(f"--upstream must be an http(s) URL, not {upstream!r}")
    ctx = _context(cfg, name or default_name_for_url(upstream), "mcp.http", decisions)

    async def main() -> int:
        reader = await stdin_reader(cfg.mcp.max_message_bytes + 1024)
        session = McpSession(ctx)
        return await bridge_stdio_to_http(upstream, headers, session, client_in=reader,
                                          client_out=LineWriter(sys.stdout.buffer))

    raise typer.Exit(asyncio.run(main()))


@mcp_app.command("serve")
def serve(
    cmd: list[str] = typer.Argument(None, metavar="[-- CMD [ARG…]]", help="A stdio MCP server to run."),
    listen: str = typer.Option("127.0.0.1:8765", "--listen", "-l", help="Listen address H:P."),
    upstream: str | None = typer.Option(None, "--upstream", "-u", help="Streamable HTTP URL of the server."),
    header: list[str] = typer.Option([], "--header", "-H", help="Upstream header 'Name: value' (repeatable)."),
    path: str = typer.Option("/mcp", "--path", help="URL path of the MCP endpoint."),
    config: Path | None = CONFIG_OPTION,
    name: str | None = NAME_OPTION,
    decisions: Path | None = DECISIONS_OPTION,
) -> None:
    """Streamable-HTTP listener in front of an HTTP upstream or a stdio server."""
    from vallum.mcp.http_server import run_server
    from vallum.mcp.http_upstream import default_name_for_url, parse_headers
    from vallum.mcp.stdio import default_server_name

    cfg = config_or_exit(config)
    if bool(upstream) == bool(cmd):
        raise fail("give exactly one of --upstream URL or -- CMD …")
    try:
        headers = parse_headers(header)
        host, _, port_s = listen.rpartition(":")
        port = int(port_s)
    except ValueError as exc:
        raise fail(f"bad --listen or --header: {exc}") from None
    ensure_can_listen(host.strip("[]") or "127.0.0.1", port)
    label = name or (default_name_for_url(upstream) if upstream else default_server_name(cmd))
    ctx = _context(cfg, label, "mcp.http", decisions)
    host = host.strip("[]") or "127.0.0.1"

    async def main() -> int:
        ready = asyncio.Event()
        task = asyncio.create_task(run_server(ctx, host, port, path=path, upstream=upstream, headers=headers,
                                              cmd=cmd or None, ready=ready))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            target = upstream or " ".join(cmd)
            print(f"vallum mcp serve: listening on http://{host}:{port}{path} → {target} (server {label}, "
                  f"mode {cfg.mode})", file=sys.stderr, flush=True)
        waiter.cancel()
        return await task

    try:
        code = asyncio.run(main())
    except OSError as exc:
        raise fail(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code)


@mcp_app.command("scan")
def scan(
    file: str = typer.Argument(..., metavar="FILE|-", help="A saved tools/list result or an MCP client config."),
    config: Path | None = CONFIG_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Offline scan of a saved tools/list or a client config. Exit 0 allow/warn, 1 block, 2 bad input."""
    from vallum.detection.pipeline import get_inspector
    from vallum.mcp.offline import OfflineInputError, print_report, scan_document

    cfg = config_or_exit(config)
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}") from None
    try:
        report = scan_document(get_inspector(cfg), raw)
    except OfflineInputError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        print_report(report)
    raise typer.Exit(1 if report.action == "block" else 0)


@mcp_app.command("approve")
def approve(
    tools: list[str] = typer.Argument(None, metavar="[TOOL…]", help="Tools to approve (default: all pending)."),
    server: str | None = typer.Option(None, "--server", "-s", help="Server name (default: every server)."),
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Accept pending tool changes and new tools: they become the pinned definitions."""
    from vallum.mcp.pins import FilePinStore

    cfg = config_or_exit(config)
    store = FilePinStore(pins_dir(cfg))
    servers = [server] if server else store.servers()
    total = 0
    try:
        for s in servers:
            for n in store.approve(s, list(tools or []), time.time()):
                typer.echo(f"approved {s}/{n}")
                total += 1
    except ValueError as exc:
        raise fail(str(exc)) from None
    if total == 0:
        typer.echo("nothing to approve" + (f" for {', '.join(tools)}" if tools else ""))
        if tools:
            raise typer.Exit(1)


@mcp_app.command("pins")
def pins(
    server: str | None = typer.Option(None, "--server", "-s", help="Only this server."),
    config: Path | None = CONFIG_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """List pinned tools and pending changes per server."""
    from vallum.mcp.pins import FilePinStore

    cfg = config_or_exit(config)
    store = FilePinStore(pins_dir(cfg))
    out: dict[str, Any] = {}
    try:
        for s in [server] if server else store.servers():
            st = store.state(s)
            out[s] = {"tools": {n: p["fingerprint"] for n, p in sorted(st["tools"].items())},
                      "pending": {n: p.get("reason", "") for n, p in sorted(st["pending"].items())}}
    except ValueError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    for s, data in out.items():
        typer.echo(f"{s}: {len(data['tools'])} pinned, {len(data['pending'])} pending")
        for n, fp in data["tools"].items():
            typer.echo(f"  {n}  {fp[:19]}…")
        for n, reason in data["pending"].items():
            typer.echo(f"  ! {n}  pending ({reason})")


def register(app: typer.Typer) -> None:
    app.add_typer(mcp_app, name="mcp")
