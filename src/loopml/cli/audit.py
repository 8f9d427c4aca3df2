"""``loopml audit``: read, export and verify the hash-chained audit log.

$ loopml audit list --since 2026-12-01 --actor ana --target model:churn
$ loopml audit export > audit.jsonl
$ loopml audit verify                 # exit 1 when an entry was edited or deleted
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from loopml.cli._common import JsonOption
from loopml.cli.users import governance
from loopml.errors import IntegrityError, InvalidInput

app = typer.Typer(help="The audit log: who changed what, refusals and failed logins.", no_args_is_help=True)

Since = Annotated[
    str | None, typer.Option(help="From this time: ISO date/time (UTC unless given) or epoch milliseconds.")
]
Actor = Annotated[str | None, typer.Option(help="Only this user.")]
Target = Annotated[str | None, typer.Option(help="Only targets starting with this, e.g. model:churn.")]


def parse_since(text: str | None) -> int | None:
    """Epoch milliseconds from an ISO date/time or a number."""
    if not text:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--since {text!r} is neither an ISO date/time nor epoch milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@app.command("list")
def list_entries(
    since: Since = None,
    actor: Actor = None,
    target: Target = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many entries.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List audit entries, oldest first."""
    from loopml.cli import render

    with governance() as svc:
        found = svc.audit_entries(parse_since(since), actor, target, limit)
    if as_json:
        render.print_json(found)
        return
    table = render._table("Seq", "Time", "Actor", "Action", "Target", "Outcome", "Client")
    for e in found:
        table.add_row(
            str(e["seq"]),
            render.fmt_time(e["time"]),
            e["actor"],
            e["action"],
            e["target"],
            e["outcome"],
            e["client"],
        )
    render.print_table(table)


@app.command()
def export(since: Since = None, actor: Actor = None, target: Target = None) -> None:
    """Write every matching entry as JSON lines to stdout."""
    import orjson

    after, batch = 0, 5000
    with governance() as svc:
        while True:
            page = svc.audit_entries(parse_since(since), actor, target, batch, after)
            for entry in page:
                sys.stdout.buffer.write(orjson.dumps(entry) + b"\n")
            if len(page) < batch:
                break
            after = int(page[-1]["seq"])
    sys.stdout.flush()


@app.command()
def verify(
    anchor: Annotated[
        str | None, typer.Option(help="SEQ:HASH of a head noted earlier: catches deleted newest entries.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute the hash chain; exit 1 naming every edited or deleted entry."""
    from loopml.cli import render

    if anchor is not None:
        found = _verify_local_anchor(anchor)
    else:
        with governance() as svc:
            found = svc.audit_verify()
    if as_json:
        render.print_json(found)
    if not found["ok"]:
        problems = [str(p) for p in found["problems"]]
        raise IntegrityError("audit log verification failed: " + "; ".join(problems))
    if not as_json:
        typer.echo(
            f"audit log intact: {found['checked']} entries, head {found['head_seq']}:{found['head_hash']}"
        )


def _verify_local_anchor(anchor: str) -> dict[str, Any]:
    from loopml.config import Settings
    from loopml.governance import audit
    from loopml.store.db import Database

    seq, _, digest = anchor.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise InvalidInput(f"--anchor {anchor!r} must be SEQ:HASH as `loopml audit verify` prints it")
    settings = Settings.load()
    if settings.is_remote:
        raise InvalidInput("--anchor works on the store directly; run it where the database is reachable")
    db = Database(settings.database_url)
    try:
        return audit.verify(db, (int(seq), digest)).to_dict()
    finally:
        db.dispose()
