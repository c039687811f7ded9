"""Commands that look after the ledger itself: init/migrate, events, verify, projections, backup."""

from __future__ import annotations

import difflib
import json
import sys
from typing import Any

import click

from daydream.cli.common import db_option, echo_json, echo_table, open_ledger, open_ledger_for_check
from daydream.errors import LedgerIntegrityError, UsageError
from daydream.ledger.store import Event, Ledger


@click.command()
@db_option
@click.option("--force", is_flag=True,
              help="Also add a ledger's tables to a SQLite file of another application (refused without it).")
def init(db_path: str, force: bool) -> None:
    """Create a ledger, or upgrade an existing one to the current schema (idempotent)."""
    _ledger, before, after = Ledger.init(db_path, force=force)
    if before == after:
        click.echo(f"{db_path}: ledger already at schema {after}")
    elif before is None:
        click.echo(f"{db_path}: created ledger (schema {after})")
    else:
        click.echo(f"{db_path}: upgraded ledger from schema {before} to {after}")


@click.command("migrate")
@db_option
def migrate_cmd(db_path: str) -> None:
    """Alias of init: bring the ledger schema up to date."""
    click.get_current_context().invoke(init, db_path=db_path, force=False)


def _event_dict(e: Event) -> dict[str, Any]:
    return {"seq": e.seq, "stream": e.stream, "version": e.version, "type": e.type,
            "payload": e.payload, "recorded_at": e.recorded_at, "causation_seq": e.causation_seq,
            "prev_hash": e.prev_hash, "hash": e.hash}


@click.command()
@db_option
@click.option("--type", "type_", metavar="T", help="Only events of this type (e.g. GenerationPlanned).")
@click.option("--stream", metavar="S", help="Only events of this stream (e.g. gen:d_abc…).")
@click.option("--after", type=click.IntRange(min=0), default=0, metavar="SEQ",
              help="Only events after this seq.")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N", help="At most N events.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines (one event per line).")
def events(db_path: str, type_: str | None, stream: str | None, after: int, limit: int | None,
           as_json: bool) -> None:
    """List events in seq order."""
    ledger = open_ledger(db_path, readonly=True)
    if type_ is not None:
        check_event_type(ledger, type_)
    found = ledger.events(after=after, type=type_, stream=stream, limit=limit)
    if as_json:
        for e in found:
            click.echo(json.dumps(_event_dict(e), ensure_ascii=False, sort_keys=True))
        return
    if not found:
        click.echo("no events")
        return
    rows = [[e.seq, e.recorded_at[:19], e.stream, e.version, e.type,
             json.dumps(e.payload, ensure_ascii=False, sort_keys=True)[:70]] for e in found]
    echo_table(["seq", "recorded_at", "stream", "v", "type", "payload"], rows)


def check_event_type(ledger: Ledger, type_: str) -> None:
    """UsageError for an event type that is neither daydream's nor recorded in this ledger."""
    from daydream.ledger.events import ALL_TYPES

    if type_ in ALL_TYPES or ledger.query("SELECT 1 FROM events WHERE type = ? LIMIT 1", (type_,)):
        return
    recorded = [r[0] for r in ledger.query("SELECT DISTINCT type FROM events")]
    known = sorted(set(ALL_TYPES) | set(recorded))
    close = difflib.get_close_matches(type_, known, n=1, cutoff=0.6) or \
        [k for k in known if k.lower() == type_.lower()]
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UsageError(f"unknown event type {type_!r}{hint}; known types: {', '.join(known)}")


@click.command()
@db_option
@click.option("--full", is_flag=True,
              help="Also compare the schema with the migrations' and run 'projections check'.")
def verify(db_path: str, full: bool) -> None:
    """Prove the ledger unaltered; exit 1 naming the first flaw.

    Recomputes the hash chain (no seq missing, every hash matching its event), checks that the last
    event is the stored chain head (so removed events at the end show), that every text an event
    refers to is stored, and every stored text against its hash. With --full, also that the schema
    (append-only and projection triggers, views) is what the migrations create and that the
    projections match a rebuild from the events. Never changes the ledger.
    """
    from daydream.ledger import db

    ledger = open_ledger(db_path, readonly=True)
    try:
        report = ledger.check_integrity()
    except LedgerIntegrityError as exc:
        click.echo(f"verify failed: {exc}", err=True)
        sys.exit(1)
    head = (f"the chain ends at the stored head: seq {report.head[0]}, hash {report.head[1]}"
            if report.head is not None else "no stored head to compare (schema older than 0006: "
            "'daydream init' upgrades it)")
    click.echo(f"ok: {report.events} events verified, {head}; {report.texts} texts verified "
               f"({report.referenced_texts} referenced by events, all present)")
    if not full:
        return
    drift = db.schema_drift(ledger.backend)
    if drift:
        for problem in drift:
            click.echo(f"verify failed: schema: {problem}", err=True)
        sys.exit(1)
    click.echo("ok: schema is what the migrations create (append-only guards, projection triggers, views)")
    from daydream.ledger import projections as proj

    outcome = proj.check(ledger)
    if outcome.drift:
        for d in outcome.drift:
            click.echo(f"verify failed: projections: {d.describe()}", err=True)
        click.echo("run 'daydream projections rebuild' to recompute them from the events", err=True)
        sys.exit(1)
    click.echo(f"ok: projections match a rebuild from {outcome.events:,} projected events")


@click.group()
def projections() -> None:
    """Check or rebuild the tables derived from the events (gen_state, cohort_members, combos, totals)."""


@projections.command("check")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def projections_check(db_path: str, as_json: bool) -> None:
    """Rebuild the projections in a transaction that is rolled back and compare with what is stored.

    Exit 0 when they match, 1 naming each table that drifted. Nothing is changed; writers wait
    while it runs.
    """
    from daydream.ledger import projections as proj

    outcome = proj.check(open_ledger_for_check(db_path))
    if as_json:
        echo_json({"ok": not outcome.drift, "events": outcome.events, "rows": outcome.rows,
                   "drift": [{"table": d.table, "missing": d.missing, "unexpected": d.unexpected}
                             for d in outcome.drift]})
    elif outcome.drift:
        for d in outcome.drift:
            click.echo(f"drift: {d.describe()}", err=True)
        click.echo("run 'daydream projections rebuild' to recompute them from the events", err=True)
    else:
        click.echo(f"ok: projections match a rebuild from {outcome.events:,} projected events")
    if outcome.drift:
        sys.exit(1)


@projections.command("rebuild")
@db_option
def projections_rebuild(db_path: str) -> None:
    """Recompute every projection from the events in one transaction (events are not touched).

    Refused when the events fail verification or the projection trigger was altered: the rebuild
    would adopt the altered data. A projection table edited by hand is repaired.
    """
    from daydream.ledger import projections as proj

    outcome = proj.rebuild(open_ledger(db_path))
    for d in outcome.drift:
        click.echo(f"repaired {d.describe()}")
    counts = ", ".join(f"{table} {n:,}" for table, n in outcome.rows.items())
    click.echo(f"rebuilt from {outcome.events:,} projected events: {counts} rows")


@click.command()
@db_option
@click.argument("dest", type=click.Path(dir_okay=False))
def backup(db_path: str, dest: str) -> None:
    """Write a consistent copy of the ledger to DEST (safe while others are writing)."""
    target = open_ledger(db_path, readonly=True).backup(dest)
    click.echo(f"backup written to {target}")
