"""The ``daydream`` command line: the only layer that prints or exits.

Commands live here and in the ``cli_*`` modules beside it (one per area, to keep each file small);
all of them go through ``main()``, which turns a ``DaydreamError`` into one line on stderr and an
exit code (1, or 2 for usage errors). ``DAYDREAM_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import traceback
from typing import Any

import click

from daydream import __version__, plugins
from daydream.db import default_db_path
from daydream.errors import DaydreamError, LedgerIntegrityError, LedgerReadOnly, UsageError
from daydream.ledger import Event, Ledger


def debug_enabled() -> bool:
    """True when DAYDREAM_DEBUG asks for tracebacks."""
    return os.environ.get("DAYDREAM_DEBUG", "") not in ("", "0", "false", "no")


def db_option(func: Any) -> Any:
    """The ``--db PATH`` option every ledger command takes."""
    return click.option(
        "--db", "db_path", default=default_db_path, show_default="$DAYDREAM_DB or ./ledger.db",
        metavar="PATH", help="Ledger file to use.")(func)


def open_ledger(db_path: str, *, readonly: bool = False) -> Ledger:
    """Open an existing ledger for a command (errors are DaydreamErrors, printed by main).

    Read commands pass ``readonly``: they work on a read-only file or folder too. A command that
    writes, pointed at a ledger it cannot write, says so and names itself.
    """
    try:
        return Ledger.open(db_path, readonly=readonly)
    except LedgerReadOnly as exc:
        ctx = click.get_current_context(silent=True)
        command = f"'{ctx.command_path}'" if ctx is not None else "this command"
        raise LedgerReadOnly(f"{exc}: {command} writes to the ledger; make it writable, or work on a copy "
                             "('daydream backup')") from None


def open_ledger_for_check(db_path: str) -> Ledger:
    """A ledger to check: writable when the file allows it (checks then run in a rolled-back
    transaction), read-only otherwise (checks then run on a temporary copy)."""
    try:
        return Ledger.open(db_path)
    except LedgerReadOnly:
        return Ledger.open(db_path, readonly=True)


def echo_json(value: Any) -> None:
    """Print a value as indented JSON."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def echo_table(headers: list[str], rows: list[list[Any]]) -> None:
    """Print rows as a plain aligned table."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = min(max(widths[i], len(v)), 80)
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in cells:
        click.echo("  ".join(v[:80].ljust(w) for v, w in zip(row, widths)).rstrip())


class CommandFailed(click.ClickException):
    """A DaydreamError on its way out: one line on stderr and its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class DaydreamGroup(click.Group):
    """The top-level group: translates daydream errors into one-line CLI errors."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Like click's, but a usage error is one line too (click prints the usage block)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "daydream"
            message = " ".join(exc.format_message().split())
            click.echo(f"error: {message} (see '{where} --help')", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            # `daydream … | head`: the reader left. Stop quietly, as the SIGPIPE default would.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(141)
        except DaydreamError as exc:
            if debug_enabled():
                traceback.print_exc()
            raise CommandFailed(str(exc), exc.exit_code) from None
        except Exception as exc:  # an unexpected bug: still one line unless debugging
            if debug_enabled():
                traceback.print_exc()
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise CommandFailed(f"internal error {type(exc).__name__}: {first} "
                                "(set DAYDREAM_DEBUG=1 for the traceback)", 1) from None


@click.group(cls=DaydreamGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="daydream")
def cli() -> None:
    """daydream: run structured LLM experiments as an append-only SQLite ledger.

    Plan a cohort from a YAML spec, run it (draft → essay → evaluation), and read the results
    through SQL views, reports and Datasette. Every prompt, call and score is an event.
    """


@cli.command()
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


@cli.command("migrate")
@db_option
def migrate_cmd(db_path: str) -> None:
    """Alias of init: bring the ledger schema up to date."""
    click.get_current_context().invoke(init, db_path=db_path, force=False)


def _event_dict(e: Event) -> dict[str, Any]:
    return {"seq": e.seq, "stream": e.stream, "version": e.version, "type": e.type,
            "payload": e.payload, "recorded_at": e.recorded_at, "causation_seq": e.causation_seq,
            "prev_hash": e.prev_hash, "hash": e.hash}


@cli.command()
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
    from daydream.events import ALL_TYPES

    if type_ in ALL_TYPES or ledger.query("SELECT 1 FROM events WHERE type = ? LIMIT 1", (type_,)):
        return
    recorded = [r[0] for r in ledger.query("SELECT DISTINCT type FROM events")]
    known = sorted(set(ALL_TYPES) | set(recorded))
    close = difflib.get_close_matches(type_, known, n=1, cutoff=0.6) or \
        [k for k in known if k.lower() == type_.lower()]
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UsageError(f"unknown event type {type_!r}{hint}; known types: {', '.join(known)}")


@cli.command()
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
    from daydream import db

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
    drift = db.schema_drift(ledger.engine)
    if drift:
        for problem in drift:
            click.echo(f"verify failed: schema: {problem}", err=True)
        sys.exit(1)
    click.echo("ok: schema is what the migrations create (append-only guards, projection triggers, views)")
    from daydream import projections as proj

    outcome = proj.check(ledger)
    if outcome.drift:
        for d in outcome.drift:
            click.echo(f"verify failed: projections: {d.describe()}", err=True)
        click.echo("run 'daydream projections rebuild' to recompute them from the events", err=True)
        sys.exit(1)
    click.echo(f"ok: projections match a rebuild from {outcome.events:,} projected events")


@cli.group()
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
    from daydream import projections as proj

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
    from daydream import projections as proj

    outcome = proj.rebuild(open_ledger(db_path))
    for d in outcome.drift:
        click.echo(f"repaired {d.describe()}")
    counts = ", ".join(f"{table} {n:,}" for table, n in outcome.rows.items())
    click.echo(f"rebuilt from {outcome.events:,} projected events: {counts} rows")


@cli.command()
@db_option
@click.argument("dest", type=click.Path(dir_okay=False))
def backup(db_path: str, dest: str) -> None:
    """Write a consistent copy of the ledger to DEST (safe while others are writing)."""
    target = open_ledger(db_path, readonly=True).backup(dest)
    click.echo(f"backup written to {target}")


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_cmd(as_json: bool) -> None:
    """List loaded plugins, their hooks and what they registered."""
    rows = plugins.describe()
    registered = {
        "stages": plugins.stages().origin,
        "providers": plugins.providers().origin,
        "parsers": plugins.parsers().origin,
    }
    for row in rows:
        row["registers"] = {kind: sorted(n for n, who in names.items() if who == row["name"])
                            for kind, names in registered.items()}
        row["registers"] = {k: v for k, v in row["registers"].items() if v}
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']} ({row['module']})")
        click.echo(f"  hooks: {', '.join(row['hooks']) or '-'}")
        for kind, names in row["registers"].items():
            click.echo(f"  {kind}: {', '.join(names)}")


def _load_command_modules() -> None:
    # Each area's commands live in their own module; importing registers them on ``cli``.
    import importlib

    for name in ("cli_cohort", "cli_run", "cli_read", "cli_import", "cli_parse", "cli_compare"):
        try:
            importlib.import_module(f"daydream.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"daydream.{name}":
                raise


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``daydream`` console script."""
    try:
        _load_command_modules()
        plugins.add_commands(cli)
    except DaydreamError as exc:
        if debug_enabled():
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    cli.main(args=argv, prog_name="daydream")


_load_command_modules()
