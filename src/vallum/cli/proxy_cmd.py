"""`vallum proxy` (the egress proxy alone) and `vallum tls init` (the interception CA)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import typer

from vallum.cli.common import CONFIG_OPTION, config_or_exit, fail

tls_app = typer.Typer(help="TLS interception: the local certificate authority.", no_args_is_help=True)


def proxy(
    listen: str | None = typer.Option(None, "--listen", "-l", help="H:P to listen on (default: proxy.listen)."),
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Run the egress proxy alone (HTTP_PROXY / HTTPS_PROXY, plus GET /fetch?url=…)."""
    from vallum.egress.flow import TargetError, parse_authority
    from vallum.egress.server import run_proxy
    from vallum.egress.tlsca import CAError

    cfg = config_or_exit(config)
    addr = listen or cfg.proxy.listen
    try:
        parse_authority(addr)
    except TargetError as exc:
        raise fail(f"bad --listen {addr!r}: {exc}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)

    def ready(p: object) -> None:
        print(f"vallum egress proxy listening on {addr} (mode {cfg.mode}); "
              f"HTTP_PROXY=http://{addr} HTTPS_PROXY=http://{addr}", flush=True)

    # Like every vallum process, the proxy hands its decisions to the audit log (and metrics);
    # an audit log that cannot be opened is an error: no unaudited proxy.
    from vallum.audit.factory import build_decision_sink

    try:
        sink = build_decision_sink(cfg, component="proxy")
    except Exception as exc:  # AuditError, OSError, ValueError
        raise fail(f"cannot open the audit log: {exc}") from None
    try:
        asyncio.run(run_proxy(cfg, config_path=config, listen=addr, ready=ready, sink=sink))
    except CAError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot listen on {addr}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        pass


@tls_app.command("init")
def tls_init(
    config: Path | None = CONFIG_OPTION,
    force: bool = typer.Option(False, "--force", help="Replace an existing CA."),
) -> None:
    """Create the local CA for TLS interception (ca.pem, and ca.key with mode 0600)."""
    from vallum.egress.tlsca import CAError, init_ca

    cfg = config_or_exit(config)
    folder = Path(cfg.egress.tls.ca_dir or Path(cfg.data_dir) / "tls")
    try:
        cert, key = init_ca(folder, force=force)
    except CAError as exc:
        raise fail(str(exc), 1) from None
    except OSError as exc:
        raise fail(f"cannot write the CA to {folder}: {exc.strerror or exc}") from None
    typer.echo(f"CA certificate: {cert}\nCA key: {key} (mode 0600)\n"
               "Trust the certificate in your agent (e.g. SSL_CERT_FILE / REQUESTS_CA_BUNDLE) and set "
               "egress.tls.intercept: true.")


def register(app: typer.Typer) -> None:
    app.command("proxy")(proxy)
    app.add_typer(tls_app, name="tls")
