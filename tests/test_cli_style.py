"""One CLI style: --json on every data command, --db and -v before or after the command, the same
exit codes everywhere, and `report` refusing a cohort with nothing scored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from daydream.cli import cli
from daydream.ledger.store import Ledger
from tests.read_fixtures import demo_ledger
from tests.runner_fixtures import REPO, run_cli
from tests.test_cli import all_commands

DEMO_SPEC = str(REPO / "specs" / "cohorts" / "demo.yaml")
# Commands that print no data, and why (every other command must take --json).
NOT_DATA = {"browse": "a server: prints the URL it serves and runs until stopped"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The finished demo ledger (built once per session)."""
    return demo_ledger(tmp_path_factory)


@pytest.fixture
def demo_db(finished: Path, tmp_path: Path) -> Path:
    """A copy of the finished demo ledger this test may change."""
    copy = tmp_path / "demo.db"
    shutil.copy(finished, copy)
    return copy


def an_essay(db: Path) -> str:
    return Ledger.open(db, readonly=True).query("SELECT gen_id FROM gen_state WHERE stage = 'essay' LIMIT 1")[0][0]


def json_cases(db: Path, tmp: Path, request: pytest.FixtureRequest
               ) -> tuple[dict[str, tuple[list[str], str]], Any]:
    """Arguments that make each data command print data, and whether it prints one JSON document
    ('doc') or JSON lines ('lines'); and a builder of the data root 'import dagster' reads (ROOT)."""
    answer = tmp / "answer.txt"
    answer.write_text("An answer.\nSCORE: 7\n")

    def dagster_root() -> str:
        from tests.dagster_root import build_dagster_root

        seed = request.getfixturevalue("seed_data")
        return str(build_dagster_root(tmp / "root", seed_raw=seed / "1_raw", n_combos=1).root)

    d = str(db)
    return {
        "backup": (["backup", "--db", d, str(tmp / "copy.db")], "doc"),
        "copy": (["copy", d, str(tmp / "copied.db")], "doc"),
        "cohort list": (["cohort", "list", "--db", d], "doc"),
        "cohort plan": (["cohort", "plan", DEMO_SPEC, "--cohort-id", "again", "--dry-run", "--db", d], "doc"),
        "cohort show": (["cohort", "show", "demo", "--db", d], "doc"),
        "compare": (["compare", "demo", "--by", "draft_template", "--resamples", "50", "--db", d], "lines"),
        "demo": (["demo", "--db", d], "doc"),
        "events": (["events", "--limit", "3", "--db", d], "lines"),
        "failures": (["failures", "--cohort", "demo", "--db", d], "doc"),
        "import dagster": (["import", "dagster", "ROOT", "--dry-run", "--db", d], "doc"),
        "init": (["init", "--db", d], "doc"),
        "migrate": (["migrate", "--db", d], "doc"),
        "parse": (["parse", "score", str(answer)], "doc"),
        "plugins": (["plugins"], "doc"),
        "projections check": (["projections", "check", "--db", d], "doc"),
        "projections rebuild": (["projections", "rebuild", "--db", d], "doc"),
        "reparse": (["reparse", "--cohort", "demo", "--dry-run", "--db", d], "doc"),
        "report": (["report", "demo", "--out", str(tmp / "report"), "--resamples", "50", "--db", d], "doc"),
        "rerun": (["rerun", "--cohort", "demo", "--failed", "--db", d], "doc"),
        "run": (["run", "--quiet", "--db", d], "doc"),
        "show": (["show", an_essay(db), "--db", d], "doc"),
        "spec compile": (["spec", "compile", DEMO_SPEC, "--limit", "3"], "doc"),
        "status": (["status", "--db", d], "doc"),
        "verify": (["verify", "--full", "--db", d], "doc"),
    }, dagster_root


LEAVES = [" ".join(path) for path, command in all_commands(cli) if not isinstance(command, click.Group)]


def test_every_data_command_has_json_documented_in_its_help() -> None:
    for path, command in all_commands(cli):
        if isinstance(command, click.Group) or " ".join(path) in NOT_DATA:
            continue
        option = next((p for p in command.params if isinstance(p, click.Option) and "--json" in p.opts), None)
        assert option is not None, f"'daydream {' '.join(path)}' prints data but has no --json"
        assert "JSON" in (option.help or "") and ("document" in option.help or "lines" in option.help), \
            f"'daydream {' '.join(path)} --json' does not say whether it prints one document or JSON lines"


@pytest.mark.parametrize("path", LEAVES)
def test_every_data_command_prints_parseable_json(path: str, demo_db: Path, tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    if path in NOT_DATA:
        return
    cases, dagster_root = json_cases(demo_db, tmp_path, request)
    assert path in cases, f"new command 'daydream {path}': add it to json_cases (or NOT_DATA, saying why)"
    args, kind = cases[path]
    args = [dagster_root() if a == "ROOT" else a for a in args]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    if kind == "doc":
        parsed: Any = json.loads(out)
        assert isinstance(parsed, (dict, list))
    else:
        lines = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert lines and all(isinstance(line, dict) for line in lines)


def test_spec_compile_format_json_is_one_document_and_cohort_plan_format_json_still_works(demo_db: Path) -> None:
    doc = CliRunner().invoke(cli, ["spec", "compile", DEMO_SPEC, "--format", "json", "--limit", "2"])
    assert [row["draft_template"] for row in json.loads(doc.stdout)] == ["bridge-essay-draft"] * 2
    old = CliRunner().invoke(cli, ["cohort", "plan", DEMO_SPEC, "--db", str(demo_db), "--format", "json"])
    assert old.exit_code == 0 and json.loads(old.stdout)["events"] == 0


def test_db_is_accepted_before_the_subcommand(demo_db: Path, tmp_path: Path) -> None:
    before = run_cli("--db", str(demo_db), "status", "demo")
    after = run_cli("status", "demo", "--db", str(demo_db))
    assert before.returncode == 0, before.stderr
    assert before.stdout == after.stdout and "cohort demo" in before.stdout
    # --db before a group's subcommand too, and before a writing command.
    assert run_cli("--db", str(demo_db), "cohort", "list").stdout.startswith("cohort ")
    fresh = tmp_path / "fresh.db"
    assert run_cli("--db", str(fresh), "init").returncode == 0 and fresh.exists()


def test_db_given_twice_differently_is_a_usage_error(demo_db: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    result = run_cli("--db", str(demo_db), "status", "--db", str(other))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "given twice" in result.stderr
    assert not other.exists()
    assert run_cli("--db", str(demo_db), "status", "--db", str(demo_db)).returncode == 0  # the same: fine


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_says_which_ledger_and_how_long_on_stderr(demo_db: Path, where: str) -> None:
    args = ["-v", "status", "--db", str(demo_db)] if where == "before" else ["status", "--db", str(demo_db), "-v"]
    result = run_cli(*args)
    assert result.returncode == 0
    assert f"daydream: ledger {demo_db} (from --db) read-only" in result.stderr
    assert "daydream: status done in " in result.stderr
    quiet = run_cli("status", "--db", str(demo_db))
    assert quiet.stderr == "" and quiet.stdout == result.stdout  # stdout is the same either way


def test_verbose_names_the_source_of_the_ledger(demo_db: Path) -> None:
    from tests.runner_fixtures import subprocess_env

    env = subprocess_env(DAYDREAM_DB=str(demo_db))
    assert "(from $DAYDREAM_DB)" in run_cli("status", "-v", env=env).stderr
    assert "(from --db before the command)" in run_cli("--db", str(demo_db), "-v", "status").stderr


@pytest.mark.parametrize("args", [
    ["status", "nope"],
    ["report", "nope"],
    ["compare", "nope", "--by", "draft_template"],
    ["cohort", "show", "nope"],
    ["run", "--cohort", "nope"],
    ["run", "--cohort", "nope", "--dry-run"],
    ["rerun", "--cohort", "nope"],
    ["reparse", "--cohort", "nope"],
    ["failures", "--cohort", "nope"],
    ["show", "e_nosuchgeneration"],
    ["rerun", "e_nosuchgeneration"],
    ["compare", "demo", "--by", "draft_template", "--rubric", "no-such-rubric"],
])
def test_an_unknown_cohort_gen_id_or_rubric_exits_1_everywhere(args: list[str], demo_db: Path) -> None:
    before = Ledger.open(demo_db).count()
    result = run_cli(*args, "--db", str(demo_db))
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "nope" in result.stderr or "nosuch" in result.stderr or "no-such-rubric" in result.stderr
    assert Ledger.open(demo_db).count() == before


@pytest.mark.parametrize("args", [["run", "--stage", "drafts"], ["rerun"], ["status", "--colour"],
                                  ["compare", "demo", "--by", "draft_temp"]])
def test_usage_errors_exit_2(args: list[str], demo_db: Path) -> None:
    result = run_cli(*args, "--db", str(demo_db))
    assert result.returncode == 2 and result.stderr.startswith("error: ")


def test_report_on_a_cohort_with_nothing_scored_exits_1_and_writes_nothing(ledger: Ledger, tmp_path: Path) -> None:
    assert run_cli("cohort", "plan", DEMO_SPEC, "--db", str(ledger.path)).returncode == 0
    out = tmp_path / "report"
    result = run_cli("report", "demo", "--db", str(ledger.path), "--out", str(out))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "nothing scored: 0 of 88 generations done (0 of 64 evaluations scored" in result.stderr
    assert not out.exists()


def test_a_partly_finished_cohorts_report_says_so_at_the_top(demo_db: Path, tmp_path: Path) -> None:
    evaluation = Ledger.open(demo_db).query(
        "SELECT gen_id FROM gen_state WHERE stage = 'evaluation' ORDER BY gen_id LIMIT 1")[0][0]
    assert run_cli("rerun", evaluation, "--db", str(demo_db)).returncode == 0  # now 87 of 88 are done
    out = tmp_path / "report"
    result = run_cli("report", "demo", "--db", str(demo_db), "--out", str(out), "--resamples", "50")
    assert result.returncode == 0, result.stderr
    expected = "Partial report: 87 of 88 generations done (1 still to run, 0 failed)"
    assert result.stdout.splitlines()[0].startswith(f"note: {expected}")
    lines = (out / "report.md").read_text().splitlines()
    assert lines[0] == "# Report: cohort demo" and lines[2].startswith(f"**{expected}")
    assert expected in (out / "report.html").read_text().split("<h2>", 1)[0]
    done = run_cli("report", "demo", "--db", str(demo_db), "--out", str(out), "--json", "--resamples", "50")
    assert json.loads(done.stdout)["partial"].startswith(expected)


def test_a_finished_cohorts_report_has_no_partial_note(demo_db: Path, tmp_path: Path) -> None:
    result = run_cli("report", "demo", "--db", str(demo_db), "--out", str(tmp_path / "r"), "--resamples", "50")
    assert result.returncode == 0 and "Partial" not in result.stdout
    assert "Partial" not in (tmp_path / "r" / "report.md").read_text()


def test_the_cli_copies_of_compares_constants_agree_with_the_library() -> None:
    from daydream.cli import compare as cli_compare
    from daydream.read import compare

    assert cli_compare.AXIS_NAMES == compare.AXIS_NAMES
    assert (cli_compare.DEFAULT_SEED, cli_compare.DEFAULT_RESAMPLES) == (compare.DEFAULT_SEED,
                                                                         compare.DEFAULT_RESAMPLES)
