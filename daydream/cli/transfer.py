"""``daydream import …``: bring data from other pipelines into the ledger; ``daydream copy``: a ledger
copied between SQLite and PostgreSQL (the work is ``daydream.transfer.copy``'s).

Only the Dagster data root of the previous DayDreaming pipeline is supported so far
(``daydream import dagster DATA_ROOT``); the work is done by ``daydream.transfer.importer`` and this module
only prints its report.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from daydream.cli.common import db_option, echo_json, echo_table, init_ledger, json_option, open_ledger

if TYPE_CHECKING:
    from daydream.transfer.importer import ImportReport


@click.group("import")
def import_group() -> None:
    """Import generations, catalogs and cohorts from other pipelines."""


def _report_dict(report: ImportReport) -> dict:
    return {
        "root": str(report.root), "dry_run": report.dry_run, "catalog": report.catalog,
        "catalog_hash": report.catalog_hash,
        "combos": {"defined": report.combos_defined, "present": report.combos_present},
        "cohorts": {"specs_recorded": report.specs_recorded, "specs_present": report.specs_present,
                    "links_added": report.links_added, "links_present": report.links_present},
        "stages": {stage: {"imported": c.imported, "skipped": c.skipped, "incomplete": c.incomplete,
                           "unreadable": c.unreadable} for stage, c in report.stages.items()},
        "problems": [{"path": p.path, "stage": p.stage, "gen_id": p.gen_id, "reason": p.reason,
                      "imported": p.imported} for p in report.problems],
        "events_appended": report.events_appended, "seconds": round(report.seconds, 3),
    }


def _print_report(report: ImportReport) -> None:
    head = "dry run, nothing appended: " if report.dry_run else ""
    click.echo(f"{head}{report.root}")
    click.echo(f"catalog: {report.catalog}")
    click.echo(f"combos: {report.combos_defined} new, {report.combos_present} already present")
    click.echo(f"cohorts: {report.specs_recorded} specs recorded ({report.specs_present} already present), "
               f"{report.links_added} memberships linked ({report.links_present} already present)")
    rows = [[stage, c.imported, c.skipped, c.incomplete, c.unreadable]
            for stage, c in report.stages.items()]
    echo_table(["stage", "imported", "skipped (already present)", "incomplete", "unreadable"], rows)
    if report.problems:
        click.echo(f"{len(report.problems)} problem(s):")
        for p in report.problems:
            click.echo(f"  {p.path}: {p.reason}")
    verb = "would append" if report.dry_run else "appended"
    click.echo(f"{verb} {report.events_appended} events in {report.seconds:.2f} s")


@import_group.command("dagster")
@click.argument("data_root", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Read and check everything, append nothing, print the summary.")
@json_option("one JSON document: root, dry_run, catalog, combos, cohorts, counts per stage, problems (path, "
             "stage, gen_id, reason), events_appended, seconds")
@db_option
def import_dagster_cmd(data_root: Path, dry_run: bool, as_json: bool, db_path: str) -> None:
    """Import a DayDreaming Dagster DATA_ROOT (1_raw/, combo_mappings.csv, gens/, cohorts/).

    Keeps every gen_id, text, metadata file and score; re-running appends only what is new.
    Damaged generations are listed with their path and reason and the rest is imported.
    Creates the ledger when --db names no file yet (moving in is one command).
    """
    from daydream.ledger.store import Ledger
    from daydream.transfer.importer import check_root, import_dagster

    check_root(data_root)  # an unusable root is reported before the ledger is even opened
    if Path(db_path).exists():
        ledger = open_ledger(db_path, readonly=dry_run)  # a dry run cannot write, by construction
        report = import_dagster(ledger, data_root, dry_run=dry_run)
    elif dry_run:
        # Nothing may be created: check against an empty ledger that is thrown away afterwards.
        with tempfile.TemporaryDirectory(prefix="daydream-dry-run-") as scratch:
            empty, _before, _after = Ledger.init(Path(scratch) / "empty.db")
            report = import_dagster(empty, data_root, dry_run=True)
            empty.close()
    else:
        ledger, _before, _after = init_ledger(db_path)
        report = import_dagster(ledger, data_root)
    if as_json:
        echo_json(_report_dict(report))
    else:
        _print_report(report)


# Added to the ``daydream`` group by daydream.cli.
@click.command("copy")
@click.argument("src")
@click.argument("dest")
@json_option("one JSON document: src, dest, events, texts (copied), dest_was, dest_seq, dest_hash")
def copy_command(src: str, dest: str, as_json: bool) -> None:
    """Copy the ledger SRC into DEST: a SQLite file or a postgresql:// URL, either way round.

    Events and texts are copied verbatim and in order, every event's hash checked on the way.
    DEST is created when absent (a new file, or an empty PostgreSQL database). Into a ledger that
    already has events, only what DEST lacks is appended, and only when DEST is a prefix of SRC;
    otherwise nothing is copied.
    """
    from daydream.cli.common import note
    from daydream.transfer.copy import copy_ledger

    result = copy_ledger(src, dest, progress=note)
    if as_json:
        echo_json({"src": result.src, "dest": result.dest, "events": result.events, "texts": result.texts,
                   "dest_was": result.dest_was, "dest_seq": result.dest_seq, "dest_hash": result.dest_hash})
        return
    click.echo(f"copied {result.events:,} events and {result.texts:,} texts from {result.src} to {result.dest} "
               f"(DEST had {result.dest_was:,} events, now {result.dest_seq:,}; head {result.dest_hash[:16]}…)")


COMMANDS = (import_group, copy_command)
