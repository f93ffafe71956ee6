"""`vallum audit verify` and `vallum audit show`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from vallum.cli.common import CONFIG_OPTION, config_or_exit

if TYPE_CHECKING:
    from vallum.audit.verify import VerifyReport

audit_app = typer.Typer(help="Verify and read the hash-chained, signed audit log.", no_args_is_help=True)


@audit_app.command("verify")
def verify(
    path: Path = typer.Argument(..., help="An audit log directory or one audit-NNNNNN.jsonl file."),
    key: list[Path] = typer.Option(
        None,
        "--key",
        "-k",
        help="Trusted public key (PEM or base64). Repeat for logs signed by several keys. "
        "Default: audit.pub beside the log.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check hashes, chain, checkpoint signatures and file boundaries.

    Exit 0 intact, 1 tampered or truncated (names the first bad file and sequence number),
    2 unreadable.
    """
    from vallum.audit.verify import verify_tree

    results = verify_tree(path, key or None)
    codes = {r.exit_code for _, r in results}
    code = 1 if 1 in codes else max(codes)  # a tampered chain outranks an unreadable one
    if as_json:
        if len(results) == 1:
            print(json.dumps(results[0][1].to_dict(), ensure_ascii=False))
        else:
            worst = next(r.status for _, r in results if r.exit_code == code)
            logs = [{"dir": str(d), **r.to_dict()} for d, r in results]
            print(json.dumps({"status": worst, "logs": logs}, ensure_ascii=False))
        raise typer.Exit(code)
    for d, report in results:
        prefix = "" if d == path else f"{d.relative_to(path)}/"
        if len(results) > 1:
            print(f"== {d}")
        _print_report(report, prefix)
    raise typer.Exit(code)


def _print_report(report: VerifyReport, prefix: str) -> None:
    out = sys.stdout
    if report.key_source:
        print(f"public key: {report.key_source}", file=out)
    if report.status == "unreadable":
        for n in report.notes:
            print(f"error: {n}", file=sys.stderr)
        return
    if report.problem is not None:
        p = report.problem
        print(f"TAMPERED: {prefix}{p}", file=out)
        print(f"first bad file: {prefix}{p.file}", file=out)
        print(f"first bad seq: {p.seq if p.seq is not None else '?'}", file=out)
        print(f"entries verified before it: {report.entries}", file=out)
        print(f"error: audit log tampered or truncated: {prefix}{p}", file=sys.stderr)
    else:
        signed = "none" if report.signed_through is None else f"through seq {report.signed_through}"
        print(
            f"OK: {report.entries} entries (seq {report.first_seq}..{report.last_seq}) in {len(report.files)} "
            f"file(s), {report.checkpoints} checkpoints verified, signed {signed}",
            file=out,
        )
    for n in report.notes:
        print(f"note: {n}", file=out)


@audit_app.command("show")
def show(
    path: Path = typer.Argument(None, help="Log directory or file (default: the configured audit directory)."),
    since: str = typer.Option(None, "--since", help="RFC 3339 time, date, epoch seconds, or 15m/2h/7d ago."),
    until: str = typer.Option(None, "--until", help="Same forms as --since."),
    rule: str = typer.Option(None, "--rule", help="Rule id; '*' wildcards allowed (dlp.*)."),
    principal: str = typer.Option(None, "--principal", help="A user, session, agent, API key or IP; or field:value."),
    action: str = typer.Option(None, "--action", help="allow, warn, block, …"),
    kind: str = typer.Option(None, "--kind", help="decision, checkpoint, start, recovery, rotate, dropped, refused"),
    as_json: bool = typer.Option(False, "--json", help="Print matching entries as JSON Lines."),
    config: Path = CONFIG_OPTION,
) -> None:
    """Print the entries that match every given filter (this does not verify; use `verify`)."""
    from vallum.audit.factory import audit_dir
    from vallum.audit.show import EntryFilter, format_entry, iter_entries, parse_time

    if path is None:
        path = audit_dir(config_or_exit(config))
    if not path.exists():
        print(f"error: {path} does not exist", file=sys.stderr)
        raise typer.Exit(2)
    now = time.time()
    try:
        flt = EntryFilter(
            since=parse_time(since, now) if since else None,
            until=parse_time(until, now) if until else None,
            rule=rule,
            principal=principal,
            action=action,
            kind=kind,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    shown = 0
    try:
        for _, entry in iter_entries(path):
            if flt.matches(entry):
                shown += 1
                print(json.dumps(entry, ensure_ascii=False) if as_json else format_entry(entry))
    except BrokenPipeError:  # `vallum audit show | head`
        sys.stderr.close()
        raise typer.Exit(0) from None
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror}", file=sys.stderr)
        raise typer.Exit(2) from None
    if not as_json:
        print(f"{shown} entries", file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
