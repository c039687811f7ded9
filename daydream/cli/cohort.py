"""CLI commands for specs and cohorts: ``daydream spec compile`` and ``daydream cohort …``.

They are thin wrappers over ``daydream.design.spec_dsl``, ``daydream.design.planner`` and
``daydream.run.estimate``: parse options, call the library, print a table, CSV or JSON. Errors are
``DaydreamError``s, which ``daydream.cli.main`` turns into one line on stderr and exit code 1.
"""

from __future__ import annotations

import csv
import json
import sys

import click

from daydream.cli.common import db_option, echo_json, echo_json_line, echo_table, json_option, open_ledger

FORMATS = click.Choice(["table", "csv", "jsonl", "json"])
STAGES = ("draft", "essay", "evaluation")


def _print_rows(rows: list[dict], fmt: str, limit: int | None) -> None:
    shown = rows[:limit] if limit is not None else rows
    # Headers from the first row (every row has the same keys), so --limit 0 still prints them.
    headers = list(rows[0]) if rows else []
    if fmt == "json":
        click.echo(json.dumps(shown, indent=2, ensure_ascii=False))
    elif fmt == "jsonl":
        for row in shown:
            echo_json_line(row)
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=headers, lineterminator="\n")
        writer.writeheader()
        writer.writerows(shown)
    else:
        echo_table(headers, [[row.get(h) for h in headers] for row in shown])
        if limit is not None and len(rows) > limit:
            click.echo(f"… {len(rows) - limit} more rows ({len(rows)} in all)")


@click.group()
def spec() -> None:
    """Compile cohort specs (YAML axes and rules) into design rows."""


@spec.command("compile")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=True))
@click.option("--catalog", "catalog_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Also validate the rows against this catalog (daydream or 1_raw layout).")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True,
              help="Output format of the rows: an aligned table, CSV with a header, JSON lines (one "
                   "object per row) or one JSON document (a list of rows).")
@json_option("one JSON document, a list of rows (same as --format json)")
@click.option("--limit", type=click.IntRange(min=0), default=None, metavar="N",
              help="Print at most N rows.")
def spec_compile(spec_path: str, catalog_dir: str | None, fmt: str, as_json: bool, limit: int | None) -> None:
    """Print the design rows SPEC compiles to (validated against a catalog when one is given)."""
    from daydream.design.catalog import load_catalog
    from daydream.design.planner import validate_spec
    from daydream.design.spec_compile import compile_spec
    from daydream.design.spec_dsl import load_spec

    if as_json:
        fmt = "json"
    loaded = load_spec(spec_path)
    rows = compile_spec(loaded)
    if catalog_dir is not None or loaded.catalog is not None:
        validate_spec(loaded, rows, load_catalog(catalog_dir or loaded.catalog))
    _print_rows(rows, fmt, limit)


@click.group()
def cohort() -> None:
    """Plan cohorts into the ledger and inspect them."""


@cohort.command("plan")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=True))
@click.option("--cohort-id", metavar="ID", help="Cohort id (default: the spec file's stem, or its "
              "folder name for …/config.yaml).")
@click.option("--catalog", "catalog_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Catalog folder (default: the spec's 'catalog:' key, else the repo's specs/catalog).")
@click.option("--dry-run", is_flag=True,
              help="Validate, count and estimate, but append nothing (the estimate is worked out on a "
                   "temporary copy of the ledger).")
@json_option("one JSON document: the plan's counts (as without --json) and 'estimate', the pending calls, "
             "tokens and cost per stage and model")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default=None, hidden=True,
              help="Old spelling: --format json is --json.")
@db_option
def cohort_plan(spec_path: str, cohort_id: str | None, catalog_dir: str | None, dry_run: bool,
                as_json: bool, fmt: str | None, db_path: str) -> None:
    """Validate SPEC against its catalog, append its generations to the ledger, and estimate them.

    The estimate is that of 'daydream run --cohort ID --dry-run': per stage and model, the pending
    calls, expected and worst-case tokens and the cost range (see 'daydream run --help').
    """
    from daydream.cli.run import print_estimate
    from daydream.design.planner import plan_cohort
    from daydream.run.estimate import estimate_pending, scratch_copy

    ledger = open_ledger(db_path)
    result = plan_cohort(ledger, spec_path, catalog_dir, cohort_id=cohort_id, dry_run=dry_run)
    if dry_run and result.events:
        with scratch_copy(ledger) as copy:  # the plan as it would be, without touching the ledger
            plan_cohort(copy, spec_path, catalog_dir, cohort_id=cohort_id)
            estimate = estimate_pending(copy, cohort=result.cohort_id)
    else:
        estimate = estimate_pending(ledger, cohort=result.cohort_id)
    if as_json or fmt == "json":
        echo_json({**result.as_dict(), "estimate": estimate.as_dict()})
        return
    verb = "would append" if dry_run else "appended"
    click.echo(f"cohort {result.cohort_id}: spec v{result.spec_version} ({result.spec_hash[:12]}), "
               f"{result.rows} rows; {verb} {result.events} events")
    echo_table(["stage", "new", "linked", "existing"],
               [[s, c["new"], c["linked"], c["existing"]] for s, c in result.counts.items()])
    click.echo("")
    print_estimate(estimate)


@cohort.command("list")
@db_option
@json_option("one JSON document, a list of cohorts (cohort_id, spec_version, spec_hash, planned_at, members "
             "per stage)")
def cohort_list(db_path: str, as_json: bool) -> None:
    """List planned cohorts with their spec version and members per stage."""
    from daydream.design.planner import list_cohorts

    cohorts = list_cohorts(open_ledger(db_path, readonly=True))
    if as_json:
        echo_json(cohorts)
        return
    if not cohorts:
        click.echo("no cohorts")
        return
    echo_table(["cohort", "spec", "version", "planned_at", *STAGES],
               [[c["cohort_id"], c["spec_hash"][:12], c["spec_version"], c["planned_at"][:19],
                 *[c.get("members", {}).get(s, 0) for s in STAGES]] for c in cohorts])


@cohort.command("show")
@click.argument("cohort_id", metavar="ID")
@db_option
@json_option("one JSON document: the cohort's spec, catalog, plan times and members per stage and status")
def cohort_show(cohort_id: str, db_path: str, as_json: bool) -> None:
    """Show one cohort: spec hash and version, when planned, members per stage and status."""
    from daydream.design.planner import show_cohort

    info = show_cohort(open_ledger(db_path, readonly=True), cohort_id)
    if as_json:
        echo_json(info)
        return
    click.echo(f"cohort {info['cohort_id']}")
    click.echo(f"  spec: v{info['spec_version']} {info['spec_hash']} ({info['spec_path']})")
    click.echo(f"  catalog: {info['catalog_hash']}")
    click.echo(f"  planned at: {info['planned_at']} (first {info['first_planned_at']})")
    statuses = sorted({k for v in info["stages"].values() for k in v if k != "total"})
    echo_table(["stage", "total", *statuses],
               [[s, v["total"], *[v.get(k, 0) for k in statuses]] for s, v in info["stages"].items()])


# Added to the ``daydream`` group by daydream.cli.
COMMANDS = (spec, cohort)
