"""Projections, read-side counters and views on PostgreSQL equal SQLite's (issue 17).

The same events go into a SQLite ledger and a PostgreSQL ledger: a seeded mix taking every branch
of every projection statement (tests/projection_events.py), appended in the same batches, and the
committed demo ledger copied over. Every projection table (``gen_state``, ``cohort_members``,
``combos``, the counters ``cohort_totals``, ``cohort_essay_scores``, ``cohort_scales``) must hold
the same rows on both, floats compared to 9 decimals (sums kept in another order differ in their
last bits), and every view the same rows; ``projections check`` finds no drift on either and
``projections rebuild`` gives the same rows again on both.

(Cross-backend by nature: each test holds one ledger of each kind side by side. check and rebuild
on each backend alone, with drift to find and repair, are tests/test_projections.py.)"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from daydream.ledger import projections
from daydream.ledger.store import Ledger
from daydream.transfer.copy import copy_ledger
from tests.projection_events import mixed_events, replay

REPO = Path(__file__).resolve().parent.parent
TABLES = {"gen_state": "gen_id", "cohort_members": "cohort_id, gen_id", "combos": "combo_id",
          "cohort_totals": "cohort_id, stage, model_key", "cohort_essay_scores": "cohort_id, essay_gen_id",
          "cohort_scales": "cohort_id, scale", "projected_types": "type"}


def table_rows(path: str, url: str) -> dict[str, tuple[list, list]]:
    import psycopg

    def norm(row):
        return tuple(round(v, 9) if isinstance(v, float) else v for v in row)

    out = {}
    with sqlite3.connect(path) as lite, psycopg.connect(url) as pg:
        for table, key in TABLES.items():
            columns = ", ".join(r[1] for r in lite.execute(f"PRAGMA table_info({table})"))
            sql = f"SELECT {columns} FROM {table} ORDER BY {key}"
            out[table] = ([norm(r) for r in lite.execute(sql)], [norm(r) for r in pg.execute(sql).fetchall()])
    return out


def assert_same(path: str, url: str) -> None:
    for table, (lite, pg) in table_rows(path, url).items():
        assert len(lite) == len(pg), table
        for a, b in zip(lite, pg):
            assert a == b, (table, a, b)
    assert_views_same(path, url)


def assert_views_same(path: str, url: str) -> None:
    """Every read-side view gives the same rows (floats to 6 decimals, the views' own rounding).

    One difference on purpose: in ``comparisons`` the levels of the replicate factors come out
    as text on PostgreSQL (columns a and b hold every factor's levels; PostgreSQL needs one type)."""
    from daydream.ledger.pg_backend import PgBackend

    def norm(view, row):
        row = tuple(round(v, 6) if isinstance(v, float) else v for v in row)
        if view == "comparisons":
            row = row[:2] + (str(row[2]), str(row[3])) + row[4:]
        return row

    pg = PgBackend(url)
    with sqlite3.connect(path) as lite:
        views = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'view' "
                                            "AND name <> 'projection_feed' ORDER BY name")]
        assert len(views) == 12
        for view in views:
            a = sorted((norm(view, r) for r in lite.execute(f"SELECT * FROM {view}")), key=repr)
            b = sorted((norm(view, r) for r in pg.query(f"SELECT * FROM {view}")), key=repr)
            assert len(a) == len(b), view
            for x, y in zip(a, b):
                assert x == y, (view, x, y)
    pg.close()


@pytest.mark.parametrize("batch", [1, 37])
def test_every_projection_branch_gives_the_same_rows_on_both(pg_url: str, tmp_path: Path, batch: int) -> None:
    events = mixed_events()
    path = str(tmp_path / "ledger.db")
    lite, pg = Ledger.init(path)[0], Ledger.open(pg_url)
    lite.clock = pg.clock = lambda: "2026-12-01T00:00:00.000000Z"  # so that recorded_at (and hashes) agree
    replay(events, lite.append, batch)
    replay(events, pg.append, batch)
    assert lite.count() == pg.count() == len(events)
    assert lite.events()[-1].hash == pg.events()[-1].hash  # the same chain, byte for byte
    rows = table_rows(path, pg_url)
    assert len(rows["gen_state"][0]) > 100 and len(rows["cohort_totals"][0]) > 3
    assert_same(path, pg_url)
    # A replay of the events (what check compares with) agrees on both. (These events name texts
    # they do not store, so verify, and with it a rebuild, refuses them: rebuild is tried below.)
    assert projections.check(lite).drift == [] and projections.check(pg).drift == []


def assert_rebuilt_the_same(lite: Ledger, pg: Ledger) -> None:
    """A rebuild from the events finds nothing to repair on either backend and leaves them equal."""
    for ledger in (lite, pg):
        assert projections.check(ledger).drift == []
        outcome = projections.rebuild(ledger)
        assert outcome.drift == [] and outcome.rows["gen_state"] > 0
    assert_same(str(lite.path), str(pg.path))


def test_a_copied_ledger_projects_as_its_source(pg_empty_url: str, tmp_path: Path) -> None:
    example = tmp_path / "example.db"
    shutil.copyfile(REPO / "ledger.db.example", example)
    copy_ledger(str(example), pg_empty_url)
    assert_same(str(example), pg_empty_url)
    assert_rebuilt_the_same(Ledger.open(example), Ledger.open(pg_empty_url))
