"""`vallum serve`, `vallum keys create/list/revoke`, `vallum rules test/backtest/list`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from vallum.cli.common import CONFIG_OPTION, config_or_exit, ensure_can_listen, fail
from vallum.config import Config

keys_app = typer.Typer(help="API keys for the HTTP API (stored hashed; shown once).", no_args_is_help=True)
rules_app = typer.Typer(help="Behaviour rules: test embedded examples, backtest over history.",
                        no_args_is_help=True)
STORE_OPTION = typer.Option(None, "--store", help="Store URL (default: store.url, or SQLite under data_dir).")


def _config(config: Path | None, store: str | None) -> Config:
    cfg = config_or_exit(config)
    if store:
        cfg.store.url = store
    return cfg


def _open_store(cfg: Config):  # type: ignore[no-untyped-def]
    from vallum.storage.store import StoreError, open_store

    try:
        return open_store(cfg.store_url(), migrate=cfg.store.migrate_on_start, pool_size=cfg.store.pool_size)
    except StoreError as exc:
        raise fail(str(exc)) from None


@keys_app.command("create")
def keys_create(
    name: str = typer.Option("", "--name", "-n", help="A label for the key."),
    config: Path | None = CONFIG_OPTION,
    store: str | None = STORE_OPTION,
    as_json: bool = typer.Option(False, "--json", help='Print {"key": …, "id": …}.'),
) -> None:
    """Create an API key. The key itself is printed once, alone on the last line."""
    cfg = _config(config, store)
    st = _open_store(cfg)
    kid, key = st.create_key(name)
    st.close()
    if as_json:
        typer.echo(json.dumps({"key": key, "id": kid, "name": name}))
        return
    print(f"created API key id {kid}" + (f" ({name})" if name else "") + "; it is shown only once:",
          file=sys.stderr)
    typer.echo(key)


@keys_app.command("list")
def keys_list(
    config: Path | None = CONFIG_OPTION,
    store: str | None = STORE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List API keys (id, name, prefix, state). Keys themselves are never shown again."""
    from vallum.behaviour.events import format_ts

    st = _open_store(_config(config, store))
    keys = st.list_keys()
    st.close()
    if as_json:
        typer.echo(json.dumps([k.to_dict() for k in keys]))
        return
    if not keys:
        typer.echo("no API keys; create one with: vallum keys create --name NAME")
        return
    for k in keys:
        state = "revoked " + format_ts(k.revoked_at) if k.revoked_at else "active"
        typer.echo(f"{k.id}  {k.prefix}…  {state:<32}  {format_ts(k.created_at)}  {k.name}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., help="The key id (from `vallum keys list`) or the key itself."),
    config: Path | None = CONFIG_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    st = _open_store(_config(config, store))
    ok = st.revoke_key(key_id)
    st.close()
    if not ok:
        raise fail(f"no active key {key_id!r}", 1)
    typer.echo(f"revoked {key_id}")


def serve(
    listen: str | None = typer.Option(None, "--listen", "-l", help="HOST:PORT (default: console.listen)."),
    store: str | None = STORE_OPTION,
    config: Path | None = CONFIG_OPTION,
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
) -> None:
    """Run the HTTP API (and the console, when installed) alone."""
    import uvicorn

    from vallum.api.app import create_app
    from vallum.storage.store import StoreError

    cfg = _config(config, store)
    addr = listen or cfg.console.listen
    host, _, port_s = addr.rpartition(":")
    try:
        port = int(port_s)
    except ValueError:
        raise fail(f"--listen {addr!r}: expected HOST:PORT") from None
    host = host.strip("[]") or "127.0.0.1"
    ensure_can_listen(host, port)
    from vallum.runtime.sinks import build_decision_sink, close_sink

    try:
        # behavioural decisions (and scan API verdicts) go to the audit log, as under `vallum run`
        sink = build_decision_sink(cfg, "serve")
    except Exception as exc:
        raise fail(f"cannot open the audit log: {exc}") from None
    try:
        app = create_app(cfg, sink=sink, extra_routes=_optional_routes(cfg), lifespan_hooks=[_warm_inspector(cfg)])
    except StoreError as exc:
        close_sink(sink)
        raise fail(str(exc)) from None
    typer.echo(f"vallum API listening on http://{addr}  (store: {app.state.behaviour.store.dialect})")
    _print_console_login(app, addr)
    typer.echo(f"  send events:  curl -H 'Authorization: Bearer KEY' -d @event.json http://{addr}/api/v1/events")
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
    finally:
        close_sink(sink)  # drains the queue and writes the closing checkpoint


def _print_console_login(app, addr: str) -> None:  # type: ignore[no-untyped-def]
    """Create the console's first admin on first start and print its credentials once."""
    try:
        from vallum.console import ensure_admin
    except ImportError:
        return
    creds = ensure_admin(app.state.behaviour.store)
    typer.echo(f"  console:      http://{addr}/")
    if creds is not None:
        typer.echo(f"  console first login (shown once): user {creds.username}  password {creds.password}")


def _warm_inspector(cfg: Config):  # type: ignore[no-untyped-def]
    """Compile the detection rule set in the background so the first POST /api/v1/scan is fast."""
    import contextlib
    import threading

    @contextlib.asynccontextmanager
    async def hook(app):  # type: ignore[no-untyped-def]
        def warm() -> None:
            from vallum.detection.pipeline import get_inspector

            with contextlib.suppress(Exception):  # a bad rule file is reported by the scan route itself
                get_inspector(cfg)

        threading.Thread(target=warm, name="vallum-inspector-warmup", daemon=True).start()
        yield

    return lambda app: hook(app)


def _optional_routes(cfg: Config) -> list:  # type: ignore[type-arg]
    """`/metrics` when the metrics module is present (it is written by another area), and the console."""
    from starlette.routing import Route

    routes = []
    try:
        from vallum.console import console_routes, default_paths
    except ImportError:
        pass
    else:
        routes.extend(console_routes(cfg, **default_paths(cfg)))
    try:
        from vallum.metrics import metrics_endpoint  # type: ignore[attr-defined]

        routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    except ImportError:
        pass
    return routes


@rules_app.command("test")
def rules_test(
    file: Path = typer.Argument(..., help="A behaviour rule file (YAML) with embedded examples."),
    config: Path | None = CONFIG_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON results."),
) -> None:
    """Run a rule file's embedded examples with the built-in features. Exit 0 pass, 1 fail, 2 file errors."""
    from vallum.behaviour.rules import RuleFileError, load_rule_file, load_ruleset
    from vallum.behaviour.testing import run_examples

    cfg = config_or_exit(config)
    try:
        own = load_rule_file(file)
    except RuleFileError as exc:
        raise fail(str(exc)) from None
    base = load_ruleset(builtin=True, disable=cfg.behaviour.disable)
    # the file's rules replace built-in ones with the same id; its features join the built-in ones
    ids = {r.id for r in own.rules}
    base.rules = [r for r in base.rules if r.id not in ids]
    base.extend(own)
    problems = own.problems
    outcomes = run_examples(base, rule_ids=ids)
    failed = [o for o in outcomes if not o.ok]
    if as_json:
        typer.echo(json.dumps({"problems": [p.to_dict() for p in problems],
                               "examples": [{"rule": o.rule, "example": o.example, "expected": o.expected,
                                             "fired": o.fired, "entities": o.entities, "error": o.error,
                                             "ok": o.ok} for o in outcomes]}))
    else:
        for p in problems:
            typer.echo(f"ERROR {p}")
        for o in outcomes:
            mark = "ok  " if o.ok else "FAIL"
            want = "fire" if o.expected else "no fire"
            got = f"fired on {', '.join(o.entities[:5])}" if o.fired else "did not fire"
            typer.echo(f"{mark} {o.rule}: {o.example} (expected {want}, {got})" + (f" - {o.error}" if o.error else ""))
        no_examples = [r.id for r in own.rules if not r.examples]
        for rid in no_examples:
            typer.echo(f"note {rid}: no examples")
        typer.echo(f"{len(outcomes) - len(failed)}/{len(outcomes)} examples passed, {len(problems)} problems")
    if problems:
        raise typer.Exit(2)
    raise typer.Exit(1 if failed else 0)


@rules_app.command("backtest")
def rules_backtest(
    rule_id: str | None = typer.Option(None, "--rule", "-r", help="A loaded rule's id (or one in --file)."),
    file: Path | None = typer.Option(None, "--file", "-f", help="A rule file holding the candidate rule."),
    since: str | None = typer.Option(None, "--since", help="RFC 3339 start of the history to replay."),
    until: str | None = typer.Option(None, "--until", help="RFC 3339 end of the history to replay."),
    config: Path | None = CONFIG_OPTION,
    store: str | None = STORE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Replay stored events through one rule: which entities it would have fired on."""
    from vallum.behaviour.events import EventError, event_from_stored, parse_ts
    from vallum.behaviour.rules import RuleFileError, load_rule_file, load_ruleset
    from vallum.behaviour.testing import backtest

    cfg = _config(config, store)
    base = load_ruleset(cfg.behaviour.rule_files, cfg.behaviour.disable)
    extra = None
    if file is not None:
        try:
            extra = load_rule_file(file)
        except RuleFileError as exc:
            raise fail(str(exc)) from None
        if extra.problems:
            for p in extra.problems:
                print(f"error: {p}", file=sys.stderr)
            raise typer.Exit(2)
        rule = extra.rule(rule_id) if rule_id else (extra.rules[0] if extra.rules else None)
    else:
        if not rule_id:
            raise fail("give --rule ID and/or --file F")
        rule = base.rule(rule_id)
    if rule is None:
        raise fail(f"no rule {rule_id!r}")
    try:
        since_ms = int(parse_ts(since) * 1000) if since else None
        until_ms = int(parse_ts(until) * 1000) if until else None
    except EventError as exc:
        raise fail(str(exc)) from None
    st = _open_store(cfg)
    evs = (event_from_stored(d) for d in st.iter_events(since_ms=since_ms, until_ms=until_ms))
    res = backtest(rule, base, evs, extra_features=extra).to_dict()
    st.close()
    if as_json:
        typer.echo(json.dumps(res))
        return
    typer.echo(f"{rule.id}: replayed {res['events_replayed']} events; would fire on {res['would_fire_on']} entities")
    for row in res["entities"][:50]:
        e = row["entity"]
        typer.echo(f"  {e['type']}:{e['id']}  hits={row['hits']}  first={row['first']}  {row['detail']}")
    for rid, err in res["errors"].items():
        typer.echo(f"  rule error {rid}: {err}")


@rules_app.command("list")
def rules_list(config: Path | None = CONFIG_OPTION) -> None:
    """List the loaded behaviour rules (built-in pack plus behaviour.rule_files) and any problems."""
    from vallum.behaviour.rules import load_ruleset

    cfg = config_or_exit(config)
    rs = load_ruleset(cfg.behaviour.rule_files, cfg.behaviour.disable)
    for r in rs.rules:
        state = "" if r.enabled else " (disabled)"
        typer.echo(f"{r.id:<40} {r.scope:<8} w={r.weight:<5g} {r.severity:<8}{state} {r.description}")
    for p in rs.problems:
        typer.echo(f"ERROR {p}")
    if rs.problems:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
    app.add_typer(rules_app, name="rules")
