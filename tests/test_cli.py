"""CLI conventions: help everywhere, one-line errors, bad --db paths leave the disk untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from daydream.cli import cli


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((prefix + (name,), command))
        if isinstance(command, click.Group):
            found.extend(all_commands(command, prefix + (name,)))
    return found


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, command in all_commands(cli):
        if not (command.help or "").strip():
            missing.append(" ".join(path))
        for param in command.params:
            if isinstance(param, click.Option) and not (param.help or "").strip() and "--help" not in param.opts:
                missing.append(f"{' '.join(path)} {param.opts[0]}")
    assert not missing, f"commands/options without help: {missing}"


@pytest.mark.parametrize("path", [name for name, _ in all_commands(cli)])
def test_help_runs(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def run(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("DAYDREAM_DEBUG", "DAYDREAM_DB")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "daydream", *args], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=120)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("kind", ["directory", "missing_folder", "not_sqlite", "unwritable"])
@pytest.mark.parametrize("command", [["init"], ["events"], ["verify"]])
def test_bad_db_path_is_one_line_error_and_touches_nothing(tmp_path: Path, kind: str, command: list[str]) -> None:
    if kind == "directory":
        target = tmp_path / "adir"
        target.mkdir()
    elif kind == "missing_folder":
        target = tmp_path / "no" / "such" / "ledger.db"
    elif kind == "not_sqlite":
        target = tmp_path / "notes.txt"
        target.write_text("just some notes, definitely not a database\n" * 10)
    else:
        target = Path("/proc/daydream-cannot-write-here.db")
    before = snapshot(tmp_path)
    result = run(*command, "--db", str(target))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(target) in lines[0]
    assert "Traceback" not in result.stderr
    assert snapshot(tmp_path) == before


def test_missing_ledger_is_not_created_by_read_commands(tmp_path: Path) -> None:
    target = tmp_path / "absent.db"
    result = run("events", "--db", str(target))
    assert result.returncode == 1
    assert "daydream init" in result.stderr
    assert not target.exists()


def test_default_db_comes_from_environment(tmp_path: Path) -> None:
    target = tmp_path / "env.db"
    result = run("init", env={"DAYDREAM_DB": str(target)})
    assert result.returncode == 0, result.stderr
    assert target.exists()
    assert run("events", env={"DAYDREAM_DB": str(target)}).returncode == 0


def test_debug_shows_traceback(tmp_path: Path) -> None:
    result = run("events", "--db", str(tmp_path / "nope.db"), env={"DAYDREAM_DEBUG": "1"})
    assert result.returncode == 1
    assert "Traceback" in result.stderr


def test_usage_error_exits_2(tmp_path: Path) -> None:
    result = run("events", "--limit", "zero")
    assert result.returncode == 2


def test_events_lists_json_lines(ledger_path: Path) -> None:
    from daydream.ledger.store import Ledger, NewEvent
    Ledger.open(ledger_path).append([NewEvent("s", "ThingHappened", {"k": "v"})])
    result = CliRunner().invoke(cli, ["events", "--db", str(ledger_path), "--json", "--type", "ThingHappened"])
    assert result.exit_code == 0
    assert '"type": "ThingHappened"' in result.output
    result = CliRunner().invoke(cli, ["events", "--db", str(ledger_path), "--type", "ScoreRecorded"])
    assert result.exit_code == 0 and "no events" in result.output  # a known type, none recorded yet


def test_output_into_a_closed_pipe_stops_quietly(ledger_path: Path) -> None:
    from daydream.ledger.store import Ledger, NewEvent
    Ledger.open(ledger_path).append([NewEvent(f"s{i}", "ThingHappened", {"i": i}) for i in range(3000)])
    env = {k: v for k, v in os.environ.items() if k != "DAYDREAM_DEBUG"}
    proc = subprocess.Popen([sys.executable, "-m", "daydream", "events", "--db", str(ledger_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, like `| head -1`
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "internal error" not in err and "BrokenPipe" not in err


@pytest.mark.parametrize("args", [["events", "--limit", "zero"], ["cohort", "plan"], ["nosuch"],
                                  ["run", "--concurrency", "0"], ["rerun"]])
def test_usage_errors_are_one_line_with_exit_2(args: list[str], tmp_path: Path) -> None:
    result = run(*args, "--db", str(tmp_path / "x.db")) if args[0] in ("run", "rerun") else run(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
