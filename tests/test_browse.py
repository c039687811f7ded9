"""``daydream browse``: a real Datasette on 127.0.0.1, queried over HTTP.

One server (started as ``uv run daydream browse`` in a subprocess) serves the hand-built fixture
ledger for the whole module; the tests ask it for canned queries as JSON, try to write through it,
read an essay page with its Markdown rendered, and screenshot the top-essays page in Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daydream.read import browse, views
from daydream.ledger.store import Ledger
from tests.read_fixtures import COHORT, COHORT2, build_fixture, import_unpriced
from tests.runner_fixtures import daydream_cmd

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base: str, db: Path) -> None:
        self.base = base
        self.db = db

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.base + path, params=params, timeout=30)

    def rows(self, path: str, **params: Any) -> list[dict[str, Any]]:
        response = self.get(path, _shape="array", **params)
        assert response.status_code == 200, response.text[:500]
        return response.json()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = tmp_path_factory.mktemp("browse") / "ledger.db"
    ledger, _, _ = Ledger.init(db)
    build_fixture(ledger)
    import_unpriced(ledger)  # an imported draft with tokens but no recorded price
    ledger.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DAYDREAM_DB"}
    proc = subprocess.Popen(daydream_cmd("browse", "--db", str(db), "--port", str(port)),
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/-/versions.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out, err = proc.communicate(timeout=5) if proc.poll() is not None else ("", "timeout")
                pytest.fail(f"daydream browse did not start: {err[-800:]}")
            time.sleep(0.2)
        yield Server(base, db)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_top_essays_canned_query_answers_as_json(server: Server) -> None:
    got = server.rows("/ledger/top_essays.json", cohort=COHORT)
    assert [(r["rank"], r["essay_gen_id"], r["mean"], r["n"]) for r in got] == [
        (1, "e_one", 8.25, 4), (2, "e_two", 5.5, 2)]
    assert got[0]["essay"].startswith("# Tide Lanterns")
    assert [r["essay_gen_id"] for r in server.rows("/ledger/top_essays.json", cohort=COHORT2)] == ["e_one"]


def test_essay_with_evaluations_canned_query(server: Server) -> None:
    got = server.rows("/ledger/essay_with_evaluations.json", essay="e_two")
    assert got[0]["gen_id"] == "e_two" and got[0]["stage"] == "essay"
    assert [(r["gen_id"], r["score"], r["status"]) for r in got[1:]] == [
        ("v_2a1", 5.0, "completed"), ("v_2a2", 6.0, "completed"), ("v_2b1", None, "failed"),
        ("v_2b2", None, "planned")]


def test_spend_failures_and_pending_canned_queries(server: Server) -> None:
    spend = {(r["model_id"], r["stage"]): r for r in server.rows("/ledger/spend_by_model.json")}
    # ev1: v_1a1, v_1a3, v_1b1 (called twice), v_2a1, v_2b1 → 6 calls at $0.0005
    assert (spend[("ev1", "evaluation")]["generations"], spend[("ev1", "evaluation")]["calls"],
            spend[("ev1", "evaluation")]["cost_usd"]) == (5, 6, 0.003)
    assert spend[("m1", "draft")]["failed_calls"] == 1
    # Spend the ledger has no price for is counted, not passed off as $0.
    assert (spend[("m_old", "draft")]["cost_usd"], spend[("m_old", "draft")]["unpriced"]) == (0, 1)
    assert spend[("ev1", "evaluation")]["unpriced"] == 0
    failures = server.rows("/ledger/failures.json")
    assert {(r["gen_id"], r["kind"]) for r in failures} == {("d_three", "generation"), ("v_2b1", "parse")}
    pending = server.rows("/ledger/pending_work.json")
    assert {(r["gen_id"], r["blocked"]) for r in pending} == {("e_three", 1), ("v_2b2", 0)}
    assert server.rows("/ledger/pending_work.json", cohort=COHORT2) == []


def test_a_write_through_sql_is_refused_and_the_ledger_is_unchanged(server: Server) -> None:
    ledger = Ledger.open(server.db, readonly=True)
    before = (ledger.count(), ledger.query("SELECT COUNT(*) FROM texts")[0][0])
    for sql in ("INSERT INTO texts (sha256, text, chars) VALUES ('x', 'y', 1)",
                "DELETE FROM cohort_totals", "UPDATE gen_state SET score = 9"):
        response = server.get("/ledger.json", sql=sql)
        assert response.status_code == 400 and response.json()["ok"] is False, response.text
    post = httpx.post(server.base + "/ledger/top_essays", data={"cohort": COHORT}, timeout=30)
    assert post.status_code >= 400  # no canned query accepts a POST (none is writable)
    assert (ledger.count(), ledger.query("SELECT COUNT(*) FROM texts")[0][0]) == before


def test_no_cors_headers(server: Server) -> None:
    response = server.get("/ledger/essay_rankings.json", _shape="array")
    assert "access-control-allow-origin" not in response.headers


def test_essay_page_renders_markdown_without_truncating(server: Server) -> None:
    page = server.get("/ledger/generations", gen_id="e_one").text
    assert "<h1>Tide Lanterns</h1>" in page and "<strong>bold</strong>" in page
    assert "<li>first point</li>" in page
    long_page = server.get("/ledger/top_essays", cohort=COHORT).text
    assert "Last line: the swarm returns at dusk." in long_page  # past 2,000 characters
    assert "<h1>Honey Tides</h1>" in long_page


def test_every_view_and_column_is_titled_and_described(server: Server) -> None:
    meta = server.get("/-/metadata.json").json()
    tables = meta["databases"]["ledger"]["tables"]
    for name, doc in views.VIEWS.items():
        assert tables[name]["title"] and tables[name]["description"]
        columns = [r["name"] for r in server.rows("/ledger.json", sql=f"SELECT name FROM pragma_table_info('{name}')")]
        assert set(tables[name]["columns"]) == set(columns)
    every = {r["name"] for r in server.rows("/ledger.json", sql="SELECT name FROM sqlite_master "
                                            "WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'")}
    for name in every:  # every table and view is either explained or deliberately hidden
        assert tables[name].get("hidden") or (tables[name]["title"] and tables[name]["description"]), name
    page = server.get("/ledger/essay_rankings").text
    assert views.VIEWS["essay_rankings"].description in page.replace("&#39;", "'")
    queries = meta["databases"]["ledger"]["queries"]
    assert set(queries) == {"top_essays", "essay_with_evaluations", "spend_by_model", "failures", "pending_work"}
    assert not any(q.get("write") for q in queries.values())


def test_browse_refuses_a_file_that_is_not_a_ledger(tmp_path: Path) -> None:
    not_ledger = tmp_path / "plain.db"
    not_ledger.write_bytes(b"")
    import sqlite3

    sqlite3.connect(not_ledger).execute("CREATE TABLE t (x)").connection.commit()
    from daydream.errors import DaydreamError

    with pytest.raises(DaydreamError, match="not a daydream ledger"):
        browse.build_datasette(not_ledger)


def test_our_plugin_leaves_other_datasettes_alone(tmp_path: Path) -> None:
    # Datasette's plugin manager is global: once browse registered our plugin, a plain Datasette in
    # the same process must still show the same file exactly as Datasette would.
    import asyncio

    from datasette.app import Datasette

    path = tmp_path / "fixture.db"
    ledger, _, _ = Ledger.init(path)
    build_fixture(ledger)
    ledger.close()

    async def pages() -> tuple[str, str]:
        ours = browse.build_datasette(path)
        other = Datasette([str(path)])
        mine = (await ours.client.get("/ledger/generations?stage=essay")).text
        theirs = (await other.client.get("/fixture/generations?stage=essay")).text
        return mine, theirs

    mine, theirs = asyncio.run(pages())
    assert "<h1>Tide Lanterns</h1>" in mine and "daydream.css" in mine
    assert 'href="/ledger/generations?gen_id=d_one"' in mine
    assert "<h1>Tide Lanterns</h1>" not in theirs and "daydream.css" not in theirs
    assert "# Tide Lanterns" in theirs and "gen_id=d_one" not in theirs


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_top_essays_page_in_chromium_shows_title_and_score(server: Server, tmp_path: Path) -> None:
    url = f"{server.base}/ledger/top_essays?cohort={COHORT}"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
             "--disable-component-update", "--disable-sync"]
    shot = tmp_path / "top.png"
    run = subprocess.run([CHROMIUM, *flags, f"--user-data-dir={tmp_path / 'p1'}", f"--screenshot={shot}",
                          "--window-size=1280,1600", url], capture_output=True, text=True, timeout=90)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", run.stderr[-500:]
    assert shot.stat().st_size > 20_000
    dom = subprocess.run([CHROMIUM, *flags, f"--user-data-dir={tmp_path / 'p2'}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=90).stdout
    assert "<h1>Tide Lanterns</h1>" in dom
    assert ">8.25<" in dom
    json.loads(server.get("/ledger/top_essays.json", cohort=COHORT).text)


def test_browse_on_a_port_in_use_is_one_line_and_non_zero(server: Server) -> None:
    # The module's server holds its port; a second browse on it must say so in one line, not
    # announce itself and then print the web server's own error.
    port = server.base.rsplit(":", 1)[1]
    env = {k: v for k, v in os.environ.items() if k != "DAYDREAM_DB"}
    run = subprocess.run(daydream_cmd("browse", "--db", str(server.db), "--port", port),
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: ") and port in lines[0] and "in use" in lines[0]
    assert "Traceback" not in run.stderr


def _page(path: Path, url: str) -> tuple[int, str]:
    import asyncio

    async def get() -> tuple[int, str]:
        response = await browse.build_datasette(path).client.get(url)
        return response.status_code, response.text

    return asyncio.run(get())


def test_home_page_links_each_cohorts_comparisons(tmp_path: Path) -> None:
    path = tmp_path / "fixture.db"
    ledger, _, _ = Ledger.init(path)
    build_fixture(ledger)
    ledger.close()
    status, home = _page(path, "/ledger")
    link = f"/ledger/comparisons?cohort_id={COHORT}"
    assert status == 200 and f'href="{link}"' in home
    status, page = _page(path, link)
    assert status == 200 and "draft_template" in page


def test_home_page_of_an_empty_ledger(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    Ledger.init(path)
    status, home = _page(path, "/ledger")
    assert status == 200
    assert "No cohorts yet" in home and "daydream cohort plan" in home


def test_a_generation_page_for_an_unknown_id_is_the_empty_table(tmp_path: Path) -> None:
    path = tmp_path / "fixture.db"
    ledger, _, _ = Ledger.init(path)
    build_fixture(ledger)
    ledger.close()
    status, page = _page(path, "/ledger/generations?gen_id=e_nope")
    assert status == 200 and "0 rows" in page
    status, page = _page(path, "/ledger/generations?gen_id=e_one")
    assert status == 200 and 'rel="up" href="/ledger/generations?gen_id=d_one"' in page
    assert 'rel="down" href="/ledger/generations?gen_id=v_1a1"' in page
