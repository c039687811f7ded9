"""What every command shares: the ``--db`` and ``-v/--verbose`` options, opening a ledger, printing
tables and JSON, and the top-level group that turns a ``DaydreamError`` into one line on stderr and
its exit code.

This module is imported by ``daydream --help``: it must stay light. Nothing here imports SQLAlchemy
(the ledger), httpx, Jinja2 or Datasette at module level; the functions that need them import them
when called.

Exit codes, the same for every command: 0 done; 1 an error (a bad file, an unknown cohort, gen id
or rubric, a failed check); 2 a usage error (bad options); 3 a run finished, but some of its
generations failed; 130 interrupted (Ctrl-C); 141 the reader of the output went away.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from daydream.errors import DaydreamError, LedgerReadOnly

if TYPE_CHECKING:
    from daydream.ledger.store import Ledger

DB_ENV = "DAYDREAM_DB"
DEFAULT_DB = "ledger.db"
# Where the options given before the subcommand are kept (ctx.meta is shared by the whole chain).
META_DB = "daydream.ledger.db"
META_VERBOSE = "daydream.verbose"

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FAILURES, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

VERBOSE_HELP = ("On stderr: the ledger used and where that choice came from (--db, $DAYDREAM_DB or "
                "./ledger.db), what 'run' checked before starting, and the time the command took.")


def debug_enabled() -> bool:
    """True when DAYDREAM_DEBUG asks for tracebacks."""
    return os.environ.get("DAYDREAM_DEBUG", "") not in ("", "0", "false", "no")


def print_traceback() -> None:
    """The current exception's traceback on stderr (DAYDREAM_DEBUG); imported only when needed."""
    import traceback

    traceback.print_exc()


# ----------------------------------------------------------------------------- --db and --verbose
def _root_meta() -> dict[str, Any]:
    ctx = click.get_current_context(silent=True)
    return ctx.meta if ctx is not None else {}


def verbose() -> bool:
    """Whether ``-v/--verbose`` was given, before or after the subcommand."""
    return bool(_root_meta().get(META_VERBOSE))


def note(message: str) -> None:
    """A ``--verbose`` line on stderr (nothing without --verbose)."""
    if verbose():
        click.echo(f"daydream: {message}", err=True)


def _db_default() -> str:
    """--db when not given after the subcommand: the one given before it, else $DAYDREAM_DB, else ./ledger.db."""
    meta = _root_meta()
    if meta.get(META_DB):
        return str(meta[META_DB])
    return os.environ.get(DB_ENV) or DEFAULT_DB


def db_source(db_path: str) -> str:
    """How ``db_path`` was chosen, for --verbose."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        source = ctx.get_parameter_source("db_path")
        if source is not None and source.name == "COMMANDLINE":
            return "--db"
    if _root_meta().get(META_DB):
        return "--db before the command"
    return f"${DB_ENV}" if os.environ.get(DB_ENV) else "default"


def _check_db_twice(ctx: click.Context, param: click.Parameter, value: str) -> str:
    before = ctx.meta.get(META_DB)
    source = ctx.get_parameter_source(param.name or "db_path")
    if before and source is not None and source.name == "COMMANDLINE" and str(before) != value:
        raise click.BadParameter(f"given twice, as {before!r} before the command and {value!r} after it; "
                                 "give it once", ctx=ctx, param=param)
    return value


def db_option(func: Any) -> Any:
    """The ``--db PATH`` option every ledger command takes (also accepted before the command)."""
    return click.option(
        "--db", "db_path", default=_db_default, show_default="$DAYDREAM_DB or ./ledger.db",
        metavar="PATH", callback=_check_db_twice,
        help="Ledger file to use (may also be given before the command: daydream --db PATH …).")(func)


def _remember_db(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[META_DB] = value


def _remember_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[META_VERBOSE] = True


def group_options(func: Any) -> Any:
    """``--db`` and ``-v/--verbose`` on the top-level group (before the subcommand)."""
    func = click.option("--db", "group_db", metavar="PATH", expose_value=False, callback=_remember_db,
                        help="Ledger file for the command (same as its own --db).")(func)
    return click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_remember_verbose,
                        help=VERBOSE_HELP)(func)


def _verbose_param() -> click.Option:
    return click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, callback=_remember_verbose,
                        help=VERBOSE_HELP)


def attach_common_options(command: click.Command) -> None:
    """Give ``command`` (and, for a group, every subcommand) the ``-v/--verbose`` option."""
    if not any(isinstance(p, click.Option) and "--verbose" in p.opts for p in command.params):
        command.params.append(_verbose_param())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            attach_common_options(sub)


# ----------------------------------------------------------------------------- ledgers
def _where(db_path: str) -> str:
    """The ledger for --verbose: a file's absolute path, or a postgresql:// URL without its password."""
    if db_path.startswith(("postgresql://", "postgres://")):
        from daydream.ledger.pg_backend import redact

        return redact(db_path)
    return os.path.abspath(db_path)


def open_ledger(db_path: str, *, readonly: bool = False) -> Ledger:
    """Open an existing ledger for a command (errors are DaydreamErrors, printed by main).

    Read commands pass ``readonly``: they work on a read-only file or folder too. A command that
    writes, pointed at a ledger it cannot write, says so and names itself.
    """
    from daydream.ledger.store import Ledger

    note(f"ledger {_where(db_path)} (from {db_source(db_path)}){' read-only' if readonly else ''}")
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
    from daydream.ledger.store import Ledger

    note(f"ledger {_where(db_path)} (from {db_source(db_path)})")
    try:
        return Ledger.open(db_path)
    except LedgerReadOnly:
        return Ledger.open(db_path, readonly=True)


def init_ledger(db_path: str, *, force: bool = False) -> tuple[Ledger, str | None, str]:
    """Create or upgrade a ledger (``Ledger.init``), saying which under --verbose."""
    from daydream.ledger.store import Ledger

    note(f"ledger {_where(db_path)} (from {db_source(db_path)}; created if absent)")
    return Ledger.init(db_path, force=force)


# ----------------------------------------------------------------------------- output
def json_option(what: str) -> Any:
    """The ``--json`` flag; ``what`` says what is printed: "one JSON document: …" or "JSON lines, …"."""
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what}.")


def echo_json(value: Any) -> None:
    """Print a value as one indented JSON document."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def echo_json_line(value: Any) -> None:
    """Print a value as one line of JSON (for row streams: JSON lines)."""
    click.echo(json.dumps(value, ensure_ascii=False, default=str))


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


# ----------------------------------------------------------------------------- errors and the group
class CommandFailed(click.ClickException):
    """A DaydreamError on its way out: one line on stderr and its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class DaydreamGroup(click.Group):
    """The top-level group: one-line errors with consistent exit codes, options shared by every
    command (``-v/--verbose`` after the subcommand, ``--db`` and ``-v`` before it)."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        attach_common_options(cmd)
        super().add_command(cmd, name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[Any, Any, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is not None:  # a subcommand added to a plugin's group after it joined ours
            attach_common_options(cmd)
        return name, cmd, rest

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
            sys.exit(EXIT_ERROR)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        started = time.perf_counter()
        outcome = "failed"
        try:
            result = super().invoke(ctx)
            outcome = "done"
            return result
        except click.exceptions.Exit as exc:
            outcome = f"exit {exc.exit_code}"
            raise
        except SystemExit as exc:
            outcome = f"exit {exc.code}"
            raise
        except (click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            outcome = "interrupted"
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            # `daydream … | head`: the reader left. Stop quietly, as the SIGPIPE default would.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(141)
        except DaydreamError as exc:
            if debug_enabled():
                print_traceback()
            raise CommandFailed(str(exc), exc.exit_code) from None
        except Exception as exc:  # an unexpected bug: still one line unless debugging
            if debug_enabled():
                print_traceback()
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise CommandFailed(f"internal error {type(exc).__name__}: {first} "
                                "(set DAYDREAM_DEBUG=1 for the traceback)", 1) from None
        finally:
            if ctx.meta.get(META_VERBOSE) and ctx.invoked_subcommand:
                click.echo(f"daydream: {ctx.invoked_subcommand} {outcome} in "
                           f"{time.perf_counter() - started:.2f} s", err=True)
