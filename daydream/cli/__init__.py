"""The ``daydream`` command line: the only layer that prints or exits.

The group is defined here and every command is added to it explicitly below; the commands live in
one module per area (``ledger``, ``cohort``, ``run``, ``parse``, ``read``, ``compare``,
``transfer``) and share ``common``. ``main()`` turns a ``DaydreamError`` into one line on stderr
and an exit code (1, or 2 for usage errors); ``DAYDREAM_DEBUG=1`` shows the traceback instead.

Start-up matters (every command is a fresh process): the command modules import only click and
light daydream modules at the top; SQLAlchemy, Alembic, httpx, Jinja2, Datasette, numpy, YAML and
markdown-it are imported inside the commands that use them (tests/test_cli_startup.py checks it).
"""

from __future__ import annotations

import sys

import click

from daydream import __version__, plugins
from daydream.cli import cohort, compare, ledger, parse, read, run, transfer
from daydream.cli.common import DaydreamGroup, debug_enabled, echo_json, group_options, json_option, print_traceback
from daydream.errors import DaydreamError


@click.group(cls=DaydreamGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="daydream")
@group_options
def cli() -> None:
    """daydream: run structured LLM experiments as an append-only SQLite ledger.

    Plan a cohort from a YAML spec, run it (draft → essay → evaluation), and read the results
    through SQL views, reports and Datasette. Every prompt, call and score is an event.

    --db and -v/--verbose may be given before the command or after it. Every command that prints
    data takes --json. Exit codes: 0 done, 1 error (including an unknown cohort, gen id or rubric),
    2 usage error, 3 finished with failed generations, 130 interrupted.
    """


@click.command("plugins")
@json_option("one JSON document, a list of plugins with their module, hooks and what they registered")
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


for command in (*ledger.COMMANDS, plugins_cmd, *cohort.COMMANDS, *run.COMMANDS, *parse.COMMANDS, *read.COMMANDS,
                *compare.COMMANDS, *transfer.COMMANDS):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``daydream`` console script."""
    try:
        plugins.add_commands(cli)
    except DaydreamError as exc:
        if debug_enabled():
            print_traceback()
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    cli.main(args=argv, prog_name="daydream")
