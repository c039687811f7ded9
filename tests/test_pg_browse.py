"""`daydream browse` on a PostgreSQL ledger (issue 17): Datasette reads SQLite, so browse serves a
fresh SQLite snapshot made by `daydream copy`, says so, and a later browse copies only what is new.
A real browse process, a real Datasette, a real PostgreSQL server."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx

from daydream.ledger.store import Ledger, NewEvent
from daydream.transfer.copy import copy_ledger
from tests.pg_fixtures import pg_empty_url, pg_server  # noqa: F401
from tests.runner_fixtures import daydream_cmd, subprocess_env

REPO = Path(__file__).resolve().parent.parent
SNAPSHOT = re.compile(r"^serving a snapshot of (\S+) taken at seq ([\d,]+) \(a SQLite copy made by 'daydream copy': (.+)\)")
READY = re.compile(r"^Datasette on (http://127\.0\.0\.1:\d+/\S+) \(read-only\)")


def browse(url: str, cache: Path) -> tuple[re.Match, str]:
    proc = subprocess.Popen(daydream_cmd("browse", "-p", "0", "--db", url), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env(XDG_CACHE_HOME=str(cache)))
    try:
        first, second = proc.stdout.readline(), proc.stdout.readline()
        said, ready = SNAPSHOT.match(first), READY.match(second)
        assert said and ready, (first, second, proc.stderr.read() if proc.poll() is not None else "")
        page = httpx.get(ready.group(1), timeout=30)
        assert page.status_code == 200
        return said, page.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_browse_serves_a_fresh_sqlite_snapshot_and_says_so(pg_empty_url: str, tmp_path: Path) -> None:
    example = tmp_path / "example.db"
    shutil.copyfile(REPO / "ledger.db.example", example)
    copy_ledger(str(example), pg_empty_url)
    last = Ledger.open(example).last_seq()
    said, page = browse(pg_empty_url, tmp_path / "cache")
    assert int(said.group(2).replace(",", "")) == last and "demo" in page
    snapshot = Path(said.group(3))
    assert snapshot.is_file() and str(snapshot).startswith(str(tmp_path / "cache"))
    Ledger.open(pg_empty_url).append([NewEvent("note:1", "Noted", {"x": 1}, 0)])
    said, _page = browse(pg_empty_url, tmp_path / "cache")
    assert int(said.group(2).replace(",", "")) == last + 1 and Path(said.group(3)) == snapshot
    assert Ledger.open(snapshot).verify()[0] == last + 1
