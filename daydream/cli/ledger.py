"""Commands that look after the ledger itself: init/migrate, events, verify, projections, backup."""

from __future__ import annotations

import difflib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from daydream.cli.common import (db_option, echo_json, echo_table, init_ledger, json_option, open_ledger,
                                 open_ledger_for_check)
from daydream.errors import LedgerIntegrityError, UsageError

if TYPE_CHECKING:
    from daydream.ledger.store import Event, Ledger


def _init(db_path: str, force: bool, as_json: bool) -> None:
    _ledger, before, after = init_ledger(db_path, force=force)
    action = "unchanged" if before == after else "created" if before is None else "upgraded"
    if as_json:
        echo_json({"db": db_path, "action": action, "schema_before": before, "schema": after})
    elif action == "unchanged":
        click.echo(f"{db_path}: ledger already at schema {after}")
    elif action == "created":
        click.echo(f"{db_path}: created ledger (schema {after})")
    else:
        click.echo(f"{db_path}: upgraded ledger from schema {before} to {after}")


INIT_JSON = "one JSON document: db, action (created, upgraded or unchanged), schema_before, schema"


@click.command()
@db_option
@click.option("--force", is_flag=True,
              help="Also add a ledger's tables to a SQLite file of another application (refused without it).")
@json_option(INIT_JSON)
def init(db_path: str, force: bool, as_json: bool) -> None:
    """Create a ledger, or upgrade an existing one to the current schema (idempotent)."""
    _init(db_path, force, as_json)


@click.command("migrate")
@db_option
@json_option(INIT_JSON)
def migrate_cmd(db_path: str, as_json: bool) -> None:
    """Alias of init: bring the ledger schema up to date."""
    _init(db_path, False, as_json)


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
@json_option("JSON lines, one event per line (seq, stream, version, type, payload, recorded_at, "
             "causation_seq, prev_hash, hash)")
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


def _verify_failed(as_json: bool, found: dict[str, Any], problems: list[str], hint: str = "") -> None:
    """Report the flaws (a JSON document, or one line each on stderr) and exit 1."""
    if as_json:
        echo_json({**found, "ok": False, "problems": problems})
    else:
        for problem in problems:
            click.echo(f"verify failed: {problem}", err=True)
        if hint:
            click.echo(hint, err=True)
    sys.exit(1)


@click.command()
@db_option
@click.option("--full", is_flag=True,
              help="Also compare the schema with the migrations' and run 'projections check'.")
@json_option("one JSON document: ok, events, texts, referenced_texts, head {seq, hash}, and with --full "
             "schema_ok and projections_ok; problems lists each flaw (exit 1 when there is one)")
def verify(db_path: str, full: bool, as_json: bool) -> None:
    """Prove the ledger unaltered; exit 1 naming the first flaw.

    Recomputes the hash chain (no seq missing, every hash matching its event), checks that the last
    event is the stored chain head (so removed events at the end show), that every text an event
    refers to is stored, and every stored text against its hash. With --full, also that the schema
    (append-only and projection triggers, views) is what the migrations create and that the
    projections match a rebuild from the events. Never changes the ledger.
    """
    from daydream.ledger import db

    ledger = open_ledger(db_path, readonly=True)
    found: dict[str, Any] = {"db": db_path}
    try:
        report = ledger.check_integrity()
    except LedgerIntegrityError as exc:
        _verify_failed(as_json, found, [str(exc)])
    found.update({"events": report.events, "texts": report.texts, "referenced_texts": report.referenced_texts,
                  "head": ({"seq": report.head[0], "hash": report.head[1]} if report.head is not None else None)})
    head = (f"the chain ends at the stored head: seq {report.head[0]}, hash {report.head[1]}"
            if report.head is not None else "no stored head to compare (schema older than 0006: "
            "'daydream init' upgrades it)")
    if not as_json:
        click.echo(f"ok: {report.events} events verified, {head}; {report.texts} texts verified "
                   f"({report.referenced_texts} referenced by events, all present)")
    if not full:
        if as_json:
            echo_json({**found, "ok": True, "problems": []})
        return
    drift = db.schema_drift(ledger.backend)
    if drift:
        _verify_failed(as_json, {**found, "schema_ok": False}, [f"schema: {problem}" for problem in drift])
    if not as_json:  # on PostgreSQL too: functions, triggers, views against a scratch migration (issue 17)
        click.echo("ok: schema is what the migrations create (append-only guards, projection triggers, views)")
    from daydream.ledger import projections as proj

    outcome = proj.check(ledger)
    if outcome.drift:
        _verify_failed(as_json, {**found, "schema_ok": True, "projections_ok": False},
                       [f"projections: {d.describe()}" for d in outcome.drift],
                       "run 'daydream projections rebuild' to recompute them from the events")
    if as_json:
        echo_json({**found, "ok": True, "schema_ok": True, "projections_ok": True,
                   "projected_events": outcome.events, "problems": []})
    else:
        click.echo(f"ok: projections match a rebuild from {outcome.events:,} projected events")


@click.group()
def projections() -> None:
    """Check or rebuild the tables derived from the events (gen_state, cohort_members, combos, totals)."""


@projections.command("check")
@db_option
@json_option("one JSON document: ok, events, rows per table, drift (table, missing, unexpected)")
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
@json_option("one JSON document: events, rows per table, repaired (table, missing, unexpected)")
def projections_rebuild(db_path: str, as_json: bool) -> None:
    """Recompute every projection from the events in one transaction (events are not touched).

    Refused when the events fail verification or the projection trigger was altered: the rebuild
    would adopt the altered data. A projection table edited by hand is repaired.
    """
    from daydream.ledger import projections as proj

    outcome = proj.rebuild(open_ledger(db_path))
    if as_json:
        echo_json({"events": outcome.events, "rows": outcome.rows,
                   "repaired": [{"table": d.table, "missing": d.missing, "unexpected": d.unexpected}
                                for d in outcome.drift]})
        return
    for d in outcome.drift:
        click.echo(f"repaired {d.describe()}")
    counts = ", ".join(f"{table} {n:,}" for table, n in outcome.rows.items())
    click.echo(f"rebuilt from {outcome.events:,} projected events: {counts} rows")


@click.command()
@db_option
@click.argument("dest", type=click.Path(dir_okay=False))
@json_option("one JSON document: db, backup (the path written), bytes")
def backup(db_path: str, dest: str, as_json: bool) -> None:
    """Write a consistent copy of the ledger to DEST (safe while others are writing)."""
    target = open_ledger(db_path, readonly=True).backup(dest)
    if as_json:
        echo_json({"db": db_path, "backup": str(target), "bytes": os.path.getsize(target)})
        return
    click.echo(f"backup written to {target}")


# Added to the ``daydream`` group by daydream.cli.
COMMANDS = (init, migrate_cmd, events, verify, projections, backup)
