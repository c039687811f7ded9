"""``daydream parse`` and ``daydream reparse``: parsers on one saved answer, or over a cohort's answers.

``parse`` runs one registered parser on a file (or stdin) and prints what it extracted — for
``score``, the number alone — or exits 1 with the parser's reason on one line: for checking a
rubric's answers by hand and for scripts. ``reparse`` re-parses a cohort's recorded answers
(``daydream.run.reparse``) and prints what changed.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, BinaryIO

import click

from daydream import plugins
from daydream.cli.common import CommandFailed, db_option, echo_json, echo_table, json_option, open_ledger
from daydream.contracts import ParseFailure
from daydream.design.scales import bind_scale, parse_scale_option, takes_scale
from daydream.errors import UsageError

if TYPE_CHECKING:
    from daydream.run.reparse import ReparseReport

# Changes listed one per line after the summary table (the JSON output has them all).
SHOWN_CHANGES = 20


def _read_answer(source: BinaryIO) -> str:
    name = getattr(source, "name", "-")
    where = "stdin" if not isinstance(name, str) or name in ("-", "<stdin>") else name
    try:
        return source.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{where}: the answer is not UTF-8 text (byte {exc.start})") from None


@click.command("parse")
@click.argument("parser_name", metavar="PARSER")
@click.argument("source", metavar="[FILE|-]", default="-", type=click.File("rb"))
@click.option("--scale", metavar="MIN-MAX",
              help="The rubric's scale for a score parser, like 0-10 or 1-5 (default 0-9).")
@json_option("one JSON document: parser, ok, text, score and scale (min, max), or ok false and the reason "
             "(exit 1)")
def parse_cmd(parser_name: str, source: BinaryIO, scale: str | None, as_json: bool) -> None:
    """Run parser PARSER on one saved answer (FILE, or stdin) and print what it extracts.

    For `score` the number alone is printed, on the rubric's --scale. When the parser refuses the
    answer, the reason is printed on one line and the exit code is 1. `daydream plugins` lists the
    parsers.
    """
    parse = plugins.parsers().get(parser_name)
    if scale is not None:
        if not takes_scale(parse):
            raise UsageError(f"--scale: parser {parser_name!r} does not read scores on a scale")
        parse = bind_scale(parse, parse_scale_option(scale))
    answer = _read_answer(source)
    try:
        parsed = parse(answer)
    except ParseFailure as failure:
        reason = " ".join(failure.reason.split())
        if as_json:
            echo_json({"parser": parser_name, "ok": False, "reason": reason})
            sys.exit(1)
        raise CommandFailed(reason, 1) from None
    if as_json:
        echo_json({"parser": parser_name, "ok": True, "text": parsed.text, "score": parsed.score,
                   "scale": list(parsed.scale) if parsed.scale else None})
        return
    click.echo(f"{parsed.score:g}" if parsed.score is not None else parsed.text)


def _print_report(report: ReparseReport) -> None:
    head = "dry run, nothing appended: " if report.dry_run else ""
    click.echo(f"{head}reparse of cohort {report.cohort_id} (catalog: {report.catalog})")
    rows = [[stage, c.examined, c.unchanged, c.rescored, c.now_parsed, c.now_failed, c.other, c.skipped]
            for stage, c in report.stages.items()]
    echo_table(["stage", "examined", "unchanged", "rescored", "now parsed", "now failed", "other change",
                "skipped"], rows)
    for change in report.changes[:SHOWN_CHANGES]:
        click.echo(f"  {change.gen_id}: {change.before} -> {change.after}")
    if len(report.changes) > SHOWN_CHANGES:
        click.echo(f"  … and {len(report.changes) - SHOWN_CHANGES} more (--json lists them all)")
    for note in report.notes:
        click.echo(f"note: {note}")
    verb = "would append" if report.dry_run else "appended"
    recorded = " (with the catalog snapshot they refer to)" if report.catalog_recorded else ""
    click.echo(f"{verb} {report.events_appended} events{recorded}")


@click.command("reparse")
@db_option
@click.option("--cohort", "cohort_id", required=True, metavar="ID", help="The cohort whose answers to re-parse.")
@click.option("--stage", metavar="S", help="Only this stage (draft, essay, evaluation); default all.")
@click.option("--template", metavar="T", help="Only generations of this template (e.g. a rubric).")
@click.option("--catalog", type=click.Path(file_okay=False), metavar="DIR",
              help="Take parsers and scales from this catalog (default: the cohort's own catalog folder).")
@click.option("--dry-run", is_flag=True, help="Show what would change; append nothing.")
@json_option("one JSON document: cohort_id, catalog, dry_run, counts per stage, every change (gen_id, "
             "before, after), notes, events_appended")
def reparse_cmd(db_path: str, cohort_id: str, stage: str | None, template: str | None, catalog: str | None,
                dry_run: bool, as_json: bool) -> None:
    """Re-parse a cohort's recorded answers after a parser or scale change: no LLM call.

    Each finished generation's answer goes through its stage's parser again, with the parser and
    rubric scale its catalog names now (the cohort's catalog folder, read again, or --catalog);
    what changed is recorded as new parse events (the old ones stay in the history). Running it
    again appends nothing. A draft or essay whose parsed text a child was already made from is left
    alone; so is a template whose text changed since (it keeps its recorded parser and scale).
    """
    from daydream.run.reparse import reparse

    report = reparse(open_ledger(db_path), cohort_id, stage=stage, template=template, catalog=catalog,
                     dry_run=dry_run)
    if as_json:
        echo_json({"cohort_id": report.cohort_id, "catalog": report.catalog, "dry_run": report.dry_run,
                   "stages": {s: vars(c) for s, c in report.stages.items()},
                   "changes": [vars(c) for c in report.changes], "notes": report.notes,
                   "catalog_recorded": report.catalog_recorded, "events_appended": report.events_appended})
        return
    _print_report(report)


# Added to the ``daydream`` group by daydream.cli.
COMMANDS = (parse_cmd, reparse_cmd)
