"""`vallum run` (every service in one process tree), `vallum demo`, `vallum identity hash`."""

from __future__ import annotations

import asyncio
import getpass
import logging
import signal
import sys
from pathlib import Path

import typer

from vallum.cli.common import CONFIG_OPTION, config_or_exit, fail

identity_app = typer.Typer(help="Data-path identities (docs/identity.md).", no_args_is_help=True)


def first_run_credentials(services: object) -> list[str]:
    """Lines announcing the console's first admin and a first API key — only when they were just
    created (the secrets are shown once and stored hashed)."""
    svc = services.behaviour  # type: ignore[attr-defined]
    lines: list[str] = []
    try:
        from vallum.console import ensure_admin

        creds = ensure_admin(svc.store)
        if creds is not None:
            lines.append(f"  console login:  {creds.username} / {creds.password}   (shown once; change it)")
    except ImportError:
        pass
    if not svc.store.list_keys():
        kid, key = svc.store.create_key("first key (vallum run)")
        lines.append(f"  API key:        {key}   (id {kid}; shown once)")
    return lines


def banner(listen: dict[str, str], creds: list[str]) -> str:
    """What `vallum run` prints once at start: where each service listens and how to use it."""
    proxy = listen["proxy"]
    api = listen["console"]
    out = ["vallum is running", f"  egress proxy:   http://{proxy}", f"  console + API:  http://{api}/  "
           f"(health: http://{api}/api/v1/health)"]
    for k, v in listen.items():
        if k.startswith("listener:"):
            out.append(f"  agent listener: http://{v}  ({k.split(':', 1)[1]})")
        elif k.startswith("mcp:"):
            out.append(f"  MCP gateway:    http://{v}  ({k.split(':', 1)[1]})")
    out += creds
    out += [
        "",
        "Point your agent here:",
        f"  export HTTP_PROXY=http://{proxy} HTTPS_PROXY=http://{proxy}",
        f"  curl 'http://{proxy}/fetch?url=https://example.com/'          # fetch endpoint",
        f"  MCP (stdio):  VALLUM_API_URL=http://{api} VALLUM_API_KEY=KEY \\",
        "                vallum mcp wrap --name files -- npx @modelcontextprotocol/server-filesystem /tmp",
        f"  first event:  curl -H 'Authorization: Bearer KEY' -H 'content-type: application/json' "
        f"-d '{{\"type\":\"llm.request\",\"ts\":1764000000000,\"user\":\"u1\"}}' http://{api}/api/v1/events",
        "Stop with Ctrl-C (SIGINT) or SIGTERM.",
    ]
    return "\n".join(out)


async def _run(cfg: object, config_path: Path | None) -> int:
    from vallum.runtime.stack import Stack, StartupError

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stack = Stack(cfg, config_path=config_path)  # type: ignore[arg-type]
    try:
        services = await stack.start()
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        creds = first_run_credentials(services)
    except Exception as exc:
        print(f"error: cannot create the first credentials: {exc}", file=sys.stderr)
        await stack.stop()
        return 2
    print(banner(stack.listen, creds), flush=True)
    await stop.wait()
    print("vallum: shutting down (draining queues, writing the audit checkpoint)", file=sys.stderr, flush=True)
    await stack.stop()
    return 0


def run(config: Path | None = CONFIG_OPTION,
        log_level: str = typer.Option("warning", "--log-level", help="Python log level.")) -> None:
    """Every service with embedded defaults: egress proxy, MCP gateways, console + API, audit log,
    risk engine and store."""
    cfg = config_or_exit(config)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise typer.Exit(asyncio.run(_run(cfg, config)))


def demo(keep_running: bool = typer.Option(False, "--keep-running",
                                           help="Keep the services up afterwards to explore the console."),
         data_dir: Path | None = typer.Option(None, "--data-dir", help="Keep the demo's data here (default: "
                                                                       "a temporary folder)."),
         as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON.")) -> None:
    """A scripted attack on loopback showing the inline ↔ behaviour loop; verifies the audit log."""
    from vallum.runtime.demo import run_demo

    raise typer.Exit(asyncio.run(run_demo(keep_running=keep_running, data_dir=data_dir, as_json=as_json)))


@identity_app.command("hash")
def identity_hash(method: str = typer.Option("scrypt", "--method", help="scrypt (passwords) or sha256 (long "
                                                                       "random tokens)."),
                  stdin: bool = typer.Option(False, "--stdin", help="Read the secret from standard input.")) -> None:
    """Hash a password or token for `identity.credentials[].secret_hash`."""
    from vallum.runtime.identity import hash_secret

    if method not in ("scrypt", "sha256"):
        raise fail("--method must be scrypt or sha256")
    secret = sys.stdin.readline().rstrip("\n") if stdin else getpass.getpass("secret: ")
    if not secret:
        raise fail("empty secret")
    typer.echo(hash_secret(secret, method=method))


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("demo")(demo)
    app.add_typer(identity_app, name="identity")
