"""What every command shares: the ``--db`` option, opening a ledger, printing tables and JSON, and the
top-level group that turns a ``DaydreamError`` into one line on stderr and its exit code."""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import click

from daydream.errors import DaydreamError, LedgerReadOnly
from daydream.ledger.db import default_db_path
from daydream.ledger.store import Ledger


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
