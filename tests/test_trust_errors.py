"""Files daydream cannot or must not write, and bad input, each get one clear line (issue 10, point 7).

- a read-only ledger (read-only file, read-only folder) is readable by every read command; a command
  that writes says "read-only" and names itself;
- another application's SQLite file is never changed (no WAL switch, no tables) unless
  ``init --force``; a ledger from a newer daydream is refused by every command;
- ``events --type Bogus`` is a usage error listing the known types;
- a template ``file:`` outside the catalog folder, and YAML alias bombs, are refused.

Read-only cases run the CLI as a process without the capability to override file permissions
(``setpriv``), since tests often run as root, for whom ``chmod 444`` changes nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from daydream.ledger import db as ddb
from daydream.design.catalog import load_catalog
from daydream.errors import CatalogError, SpecError
from daydream.ledger.store import Ledger
from daydream.design.planner import plan_cohort
from daydream.design.spec_dsl import load_spec
from daydream.design.yaml_loading import YAMLTooLarge, load_yaml
from tests.runner_fixtures import (REPO, daydream_cmd, drafts_spec, pipeline_spec, run_cli, subprocess_env,
                                   write_spec)


def unprivileged(*args: str) -> subprocess.CompletedProcess:
    """Run ``daydream ARGS`` as a process that file permissions apply to, root or not."""
    cmd = daydream_cmd(*args)
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot drop CAP_DAC_OVERRIDE")
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=180)


def snapshot(folder: Path) -> dict[str, bytes]:
    # The -shm file is SQLite's shared memory between connections, not data: readers write their
    # read marks there. Everything else (the file, its log) must not change.
    # An empty -wal is the same: a reader of a read-only file in a writable folder opens the log
    # (creating it empty) and, unable to write the file, cannot checkpoint and remove it on close.
    return {p.name: p.read_bytes() for p in folder.iterdir()
            if p.is_file() and not p.name.endswith("-shm") and not (p.name.endswith("-wal") and not p.stat().st_size)}


def one_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
def finished(tmp_path: Path) -> tuple[Path, str]:
    """(path, a gen_id) of a small finished offline ledger in its own folder, closed cleanly."""
    folder = tmp_path / "ledgers"
    folder.mkdir()
    path = folder / "ledger.db"
    ledger = Ledger.init(path)[0]
    # Drafts, essays and scores: a report of a cohort with nothing scored is refused (exit 1).
    plan_cohort(ledger, write_spec(tmp_path, "c", pipeline_spec(2, model="offline")), cohort_id="c")
    ledger.close()
    assert run_cli("run", "--db", str(path)).returncode == 0
    with contextlib.closing(sqlite3.connect(path)) as conn:  # closed here, not whenever it is collected
        gen_id = conn.execute("SELECT gen_id FROM gen_state LIMIT 1").fetchone()[0]
    return path, gen_id


READS = [["status"], ["status", "c"], ["verify"], ["verify", "--full"], ["events", "--limit", "3"],
         ["cohort", "list"], ["projections", "check"]]


@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_read_only_ledger_can_be_read_and_writing_commands_say_read_only(
        finished: tuple[Path, str], tmp_path: Path, where: str) -> None:
    path, gen_id = finished
    folder = path.parent
    path.chmod(0o444)
    if where == "folder":
        folder.chmod(0o555)
    try:
        before = snapshot(folder)
        for args in [*READS, ["show", gen_id]]:
            result = unprivileged(*args, "--db", str(path))
            assert result.returncode == 0, (args, result.stderr)
            assert "read-only" not in result.stderr
        assert "ok: projections match" in unprivileged("verify", "--full", "--db", str(path)).stdout
        report = unprivileged("report", "c", "--out", str(tmp_path / "r"), "--db", str(path))
        assert report.returncode == 0, report.stderr
        assert "not recorded: the ledger is read-only" in report.stdout and (tmp_path / "r" / "scores.csv").is_file()
        for args in (["run"], ["rerun", "--cohort", "c", "--failed"], ["cohort", "plan", str(tmp_path / "c.yaml")]):
            result = unprivileged(*args, "--db", str(path))
            assert result.returncode == 1
            line = one_line(result)
            assert f"ledger {str(path)!r} is read-only" in line and f"'daydream {args[0]}" in line, line
        assert snapshot(folder) == before  # not a byte changed, no log or lock file left behind
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)


def test_a_read_only_folder_with_a_pending_log_is_one_clear_line(finished: tuple[Path, str]) -> None:
    path, _gen_id = finished
    folder = path.parent
    keep = sqlite3.connect(path)  # hold the log open so that it keeps transactions not yet checkpointed
    keep.execute("PRAGMA wal_autocheckpoint = 0")
    keep.execute("CREATE TABLE IF NOT EXISTS scratch (x)")
    keep.commit()
    shutil.copytree(folder, frozen := path.parent.parent / "frozen")  # a crashed writer's leftovers
    keep.close()
    assert (frozen / "ledger.db-wal").stat().st_size > 0
    frozen.chmod(0o555)
    try:  # with its shared-memory file, the log is read as it is: nothing recent is missed
        result = unprivileged("events", "--json", "--db", str(frozen / "ledger.db"))
        assert result.returncode == 0, result.stderr
    finally:
        frozen.chmod(0o755)
    (frozen / "ledger.db-shm").unlink()  # without it, SQLite cannot read the log from a read-only folder
    frozen.chmod(0o555)
    try:
        result = unprivileged("status", "--db", str(frozen / "ledger.db"))
        assert result.returncode == 1
        line = one_line(result)
        assert "write-ahead log" in line and "holds recent transactions" in line
    finally:
        frozen.chmod(0o755)


def foreign_file(path: Path, app_id: int = 0) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    if app_id:
        conn.execute(f"PRAGMA application_id = {app_id}")
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("app_id", [0, 0x4D504246])
def test_another_applications_database_is_never_changed(tmp_path: Path, app_id: int) -> None:
    folder = tmp_path / "app"
    folder.mkdir()
    path = foreign_file(folder / "app.sqlite", app_id)
    spec = write_spec(tmp_path, "c", drafts_spec(1, model="offline"))
    before = snapshot(folder)
    for args in (["run"], ["status"], ["verify"], ["events"], ["show", "d_x"], ["init"], ["migrate"],
                 ["cohort", "plan", str(spec)], ["projections", "rebuild"], ["report", "c"]):
        result = run_cli(*args, "--db", str(path))
        assert result.returncode == 1, args
        line = one_line(result)
        assert "is a SQLite database of another application" in line and "init --force" in line, line
        assert snapshot(folder) == before, args  # no WAL switch, no tables, no log files
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    forced = run_cli("init", "--force", "--db", str(path))
    assert forced.returncode == 0, forced.stderr
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM users").fetchall() == [("ada",)]
    assert run_cli("status", "--db", str(path)).returncode == 0


def test_an_empty_sqlite_file_is_left_alone_until_init(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    result = run_cli("run", "--db", str(path))
    assert result.returncode == 1 and "empty SQLite file" in one_line(result) and "daydream init" in result.stderr
    assert path.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    assert run_cli("init", "--db", str(path)).returncode == 0


def test_a_ledger_from_a_newer_daydream_is_refused_by_every_command(finished: tuple[Path, str],
                                                                    tmp_path: Path) -> None:
    path, gen_id = finished
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    before = snapshot(path.parent)
    spec = write_spec(tmp_path, "c2", drafts_spec(1, model="offline"))
    for args in (["status"], ["verify"], ["verify", "--full"], ["events"], ["show", gen_id], ["run"],
                 ["report", "c"], ["cohort", "list"], ["cohort", "plan", str(spec)], ["init"],
                 ["projections", "check"], ["projections", "rebuild"], ["backup", str(tmp_path / "b.db")]):
        result = run_cli(*args, "--db", str(path))
        assert result.returncode == 1, args
        line = one_line(result)
        assert "schema revision '0099_from_the_future'" in line, line
        assert f"knows up to '{ddb.head_revision()}'" in line and "upgrade daydream" in line
    assert snapshot(path.parent) == before
    assert not (tmp_path / "b.db").exists()


def test_events_with_an_unknown_type_lists_the_known_ones(finished: tuple[Path, str]) -> None:
    path, _ = finished
    result = run_cli("events", "--type", "Bogus", "--db", str(path))
    assert result.returncode == 2 and result.stdout == ""
    line = one_line(result)
    assert "unknown event type 'Bogus'" in line and "GenerationPlanned" in line and "ModelDefined" in line
    typo = run_cli("events", "--type", "generationplanned", "--db", str(path))
    assert typo.returncode == 2 and "did you mean GenerationPlanned?" in typo.stderr
    assert run_cli("events", "--type", "GenerationRetried", "--db", str(path)).stdout.strip() == "no events"


def catalog_copy(tmp: Path) -> Path:
    folder = tmp / "catalog"
    shutil.copytree(REPO / "specs" / "catalog", folder)
    return folder


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "id"])
def test_a_template_file_outside_the_catalog_folder_is_refused(tmp_path: Path, how: str) -> None:
    outside = tmp_path / "secret.j2"
    outside.write_text("the contents of some other file {{ concepts }}")
    folder = catalog_copy(tmp_path)
    templates = yaml.safe_load((folder / "templates.yaml").read_text())
    entry = {"id": "sneaky", "parser": "identity", "generator": "llm"}
    if how == "dotdot":
        entry["file"] = "../../../secret.j2"
    elif how == "absolute":
        entry["file"] = str(outside)
    elif how == "symlink":
        (folder / "templates" / "draft" / "link.j2").symlink_to(outside)
        entry["file"] = "link.j2"
    else:
        entry["id"] = "../../../secret"
    templates["draft"].append(entry)
    (folder / "templates.yaml").write_text(yaml.safe_dump(templates, sort_keys=False))
    with pytest.raises(CatalogError) as info:
        load_catalog(folder)
    message = str(info.value)
    assert "resolves outside the catalog folder" in message and "\n" not in message
    assert "the contents of some other file" not in message


def bomb(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_yaml_alias_bombs_are_refused_before_anything_walks_them(tmp_path: Path) -> None:
    with pytest.raises(YAMLTooLarge, match="aliases expand it to more than"):
        load_yaml(bomb(9))  # 9**10 strings once expanded: only counting it without walking returns
    with pytest.raises(YAMLTooLarge, match="recursive"):
        load_yaml("a: &a [1, *a]\n")
    data, _ = load_yaml("base: &b {temperature: 0.2}\nuse: *b\n")  # ordinary aliases still work
    assert data == {"base": {"temperature": 0.2}, "use": {"temperature": 0.2}}

    spec = tmp_path / "bomb.yaml"
    spec.write_text("axes:\n  draft_template: [link-brainstorm]\n" + bomb(9))
    with pytest.raises(SpecError, match="refused: aliases expand it"):
        load_spec(spec)
    result = run_cli("spec", "compile", str(spec), timeout=60)
    assert result.returncode == 1 and "refused: aliases expand it" in one_line(result)

    folder = catalog_copy(tmp_path)
    (folder / "models.yaml").write_text(bomb(9))
    with pytest.raises(CatalogError, match=r"models.yaml: refused: aliases expand it"):
        load_catalog(folder)


def test_a_read_only_file_mode_is_named_when_writing(finished: tuple[Path, str]) -> None:
    path, _ = finished
    path.chmod(0o444)
    try:
        result = unprivileged("run", "--db", str(path))
        assert "mode -r--r--r--" in one_line(result)
    finally:
        path.chmod(0o644)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_init_force_will_not_take_over_another_applications_alembic_table(tmp_path: Path) -> None:
    path = foreign_file(tmp_path / "app.sqlite")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        conn.execute("INSERT INTO alembic_version VALUES ('a1b2c3_their_schema')")
    conn.close()
    before = snapshot(tmp_path)
    result = run_cli("init", "--force", "--db", str(path))
    assert result.returncode == 1
    line = one_line(result)
    assert "its own alembic_version (revision 'a1b2c3_their_schema')" in line and "newer daydream" not in line
    assert snapshot(tmp_path) == before


def test_an_upgraded_old_ledger_has_exactly_the_schema_of_a_new_one(tmp_path: Path) -> None:
    from alembic import command

    from tests.read_fixtures import build_fixture

    path = tmp_path / "old.db"
    backend = ddb.create_backend(path, create=True)
    with ddb.schema_connection(backend) as conn:
        command.upgrade(ddb._alembic_config(conn), "0002_projections")
        conn.commit()
    build_fixture(Ledger(path, backend))
    backend.close()
    upgraded = Ledger.open(path)
    assert ddb.schema_drift(upgraded.backend) == []
    result = run_cli("verify", "--full", "--db", str(path))
    assert result.returncode == 0, result.stderr


def test_browse_serves_a_ledger_in_a_read_only_folder(finished: tuple[Path, str]) -> None:
    path, gen_id = finished
    folder = path.parent
    path.chmod(0o444)
    folder.chmod(0o555)
    before = snapshot(folder)
    cmd = daydream_cmd("browse", "--db", str(path), "-p", "0")
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot drop CAP_DAC_OVERRIDE")
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        import httpx

        line = proc.stdout.readline()  # the URL, printed once the port listens
        url = next((w for w in line.split() if w.startswith("http://")), None)
        assert url, (line, proc.stderr.read() if proc.poll() is not None else "")
        page = httpx.get(f"{url}/generations", params={"gen_id": gen_id}, timeout=30)
        assert page.status_code == 200 and gen_id in page.text, page.text[-1500:]
        rows = httpx.get(f"{url}/essay_rankings.json", params={"_shape": "array"}, timeout=30)
        assert rows.status_code == 200 and len(rows.json()) > 0
        assert snapshot(folder) == before
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        folder.chmod(0o755)
        path.chmod(0o644)
