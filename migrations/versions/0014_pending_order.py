"""``gen_state`` kept in ``gen_id`` order, and pending work found in that order (fewer pages per commit).

A run's commits each touch a handful of generations: their claims, then their answers. Every
page a commit touches is written whole to the write-ahead log, and then again to the database at
a checkpoint. The ``events`` (stream, version) index is in ``gen_id`` order (streams are
``gen:<gen_id>``), while ``gen_state`` kept its rows in plan order (a rowid table): so whichever
order the runner took work in, one of the two was hit at random pages, one or two per generation
per commit (bench/run_stub.py --scale: about 9.6 log pages per generation).

Now ``gen_state`` is a ``WITHOUT ROWID`` table: its rows live in its primary key, ``gen_id``, and
its indexes end in ``gen_id`` too. The runner takes ready work of a stage in ``gen_id`` order
(``daydream.run.pending.PENDING_SQL``), so the generations of one commit are neighbours in every
``gen_id``-keyed B-tree it writes: the events' stream index, ``gen_state`` and its status indexes.

- ``gen_state``: same columns, same rows, same constraints, ``WITHOUT ROWID``. Its table text is
  the one it had with `` WITHOUT ROWID`` appended (read from ``sqlite_master``, so columns added by
  any revision before this one come along); its indexes and the triggers on it are re-made from
  their own texts.
- ``ix_gen_state_pending (status, stage, gen_id)`` replaces three indexes, each rewritten at every
  change of status: ``ix_gen_state_status_stage_seq (status, stage, planned_seq)`` (ready work of a
  stage, now walked in ``gen_id`` order and cut at a limit), ``ix_gen_state_status (status)``
  (0003; a prefix of the new one) and ``ix_gen_state_stage_status (stage, status)`` (lookups by
  stage use ``ix_gen_state_signature``, which starts with ``stage``, the same way: the query plans
  of every view and of the runner's counts were compared; counts by stage and status read the new
  one). Each index fewer is about 0.3 log pages fewer per generation.

On PostgreSQL (no rowid, heap tables) only the indexes change, the same way; rows are the same.
Downgrading puts back the rowid table (rows in plan order), its three indexes, and the exact
table text it had.

Revision ID: 0014_pending_order
Revises: 0013_plan_chunks
Create Date: 2026-12-03
"""

import re

from alembic import op

revision = "0014_pending_order"
down_revision = "0013_plan_chunks"
branch_labels = None
depends_on = None

PENDING_INDEX = ("ix_gen_state_pending", "CREATE INDEX ix_gen_state_pending ON gen_state (status, stage, gen_id)")
OLD_INDEXES = (
    ("ix_gen_state_stage_status", "CREATE INDEX ix_gen_state_stage_status ON gen_state (stage, status)"),
    ("ix_gen_state_status", "CREATE INDEX ix_gen_state_status ON gen_state (status)"),
    ("ix_gen_state_status_stage_seq",
     "CREATE INDEX ix_gen_state_status_stage_seq ON gen_state (status, stage, planned_seq)"),
)
_WITHOUT_ROWID = re.compile(r"\s*WITHOUT\s+ROWID\s*$", re.IGNORECASE)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PENDING_INDEX[1])
        for name, _sql in OLD_INDEXES:
            op.execute(f"DROP INDEX {name}")
        return
    _rebuild_gen_state(clustered=True, drop=[name for name, _sql in OLD_INDEXES], create=[PENDING_INDEX[1]],
                       order="gen_id")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for _name, sql in OLD_INDEXES:
            op.execute(sql)
        op.execute(f"DROP INDEX {PENDING_INDEX[0]}")
        return
    _rebuild_gen_state(clustered=False, drop=[PENDING_INDEX[0]], create=[sql for _name, sql in OLD_INDEXES],
                       order="planned_seq, gen_id")


def _rebuild_gen_state(*, clustered: bool, drop: list[str], create: list[str], order: str) -> None:
    """Re-make ``gen_state`` from its own text, with or without rowids, keeping its rows, indexes and
    triggers (but ``drop``, plus ``create``).

    The rows wait in a temporary copy while the table is dropped and created again under its own
    name (no rename: a renamed table's text would name it in quotes, and SQLite would re-check every
    view and trigger that mentions it). Views and the projection triggers on ``events`` name
    ``gen_state`` and find the new table as they found the old one.
    """
    bind = op.get_bind()
    (table_sql,) = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'gen_state'").fetchone()
    dependents = bind.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'gen_state' AND type IN ('index', 'trigger') "
        "AND sql IS NOT NULL ORDER BY type, name").fetchall()
    table_sql = _WITHOUT_ROWID.sub("", table_sql) + (" WITHOUT ROWID" if clustered else "")
    for sql in ("DROP TABLE IF EXISTS temp.gen_state_copy",
                "CREATE TEMP TABLE gen_state_copy AS SELECT * FROM main.gen_state",
                "DROP TABLE main.gen_state",
                table_sql,
                f"INSERT INTO main.gen_state SELECT * FROM temp.gen_state_copy ORDER BY {order}",
                "DROP TABLE temp.gen_state_copy",
                *(sql for name, sql in dependents if name not in drop),
                *create):
        bind.exec_driver_sql(sql)
