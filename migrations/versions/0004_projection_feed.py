"""Projections applied once per append, not by a trigger on every inserted event.

0002 kept ``gen_state``, ``cohort_members`` and ``combos`` current with one AFTER INSERT trigger on
``events``. Measured with ``bench/ledger_append.py``: that trigger cost 6 µs of the 13 µs SQLite spent
per event even for events it ignores, because (1) any INSERT trigger makes SQLite open a statement
journal for every row (each touched page copied before it is changed) and (2) the trigger's large
program sets up and releases all its registers on every call, before its WHEN test runs.

Now the ledger inserts a batch with no trigger in the way, then, in the same transaction, feeds
the batch's projected events to the always-empty view ``projection_feed`` in seq order:

    INSERT INTO projection_feed SELECT … FROM events
     WHERE seq > :before AND type IN (SELECT type FROM projected_types) ORDER BY seq

An INSTEAD OF trigger on the view runs exactly the statements 0002's trigger ran (moved over
verbatim from the ledger's own schema), so projections stay what they were, and no reader ever
sees an event without its projection (one transaction). ``projected_types`` lists the event types
the trigger handles; the ledger reads it to skip the feed entirely when a batch has none.

Revision ID: 0004_projection_feed
Revises: 0003_views
Create Date: 2026-11-30
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0004_projection_feed"
down_revision = "0003_views"
branch_labels = None
depends_on = None

FEED_COLUMNS = "seq, stream, version, type, payload, recorded_at, causation_seq"
_OLD = re.compile(r"^CREATE TRIGGER project_events AFTER INSERT ON events WHEN NEW\.type IN \((?P<types>[^)]*)\) "
                  r"BEGIN (?P<body>.*) END$", re.S)
_NEW = re.compile(r"^CREATE TRIGGER project_feed INSTEAD OF INSERT ON projection_feed BEGIN (?P<body>.*) END$",
                  re.S)


def _trigger_sql(name: str) -> str:
    row = op.get_bind().exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (name,)).first()
    if row is None:
        raise RuntimeError(f"trigger {name} is missing: this ledger's schema is not the one expected")
    return row[0]


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        return  # not yet on PostgreSQL (issue 17): see the README's PostgreSQL section
    old = _OLD.match(_trigger_sql("project_events"))
    if old is None:
        raise RuntimeError("trigger project_events does not have the shape migration 0002 gave it")
    types = re.findall(r"'([^']+)'", old["types"])
    op.execute("DROP TRIGGER project_events")

    op.create_table(
        "projected_types",
        sa.Column("type", sa.Text, primary_key=True,
                  comment="An event type the projection_feed trigger applies to the projections"),
        sqlite_with_rowid=False,
    )
    op.bulk_insert(sa.table("projected_types", sa.column("type", sa.Text)), [{"type": t} for t in types])
    op.execute(f"CREATE VIEW projection_feed AS\n-- Always empty: inserting an event row here applies it "
               f"to gen_state, cohort_members and combos (the ledger does, once per append).\n"
               f"SELECT {FEED_COLUMNS} FROM events WHERE 0")
    op.execute(f"CREATE TRIGGER project_feed INSTEAD OF INSERT ON projection_feed BEGIN {old['body']} END")


def downgrade() -> None:
    new = _NEW.match(_trigger_sql("project_feed"))
    if new is None:
        raise RuntimeError("trigger project_feed does not have the shape migration 0004 gave it")
    rows = op.get_bind().exec_driver_sql("SELECT type FROM projected_types").fetchall()
    types = ", ".join(f"'{r[0]}'" for r in rows)
    op.execute("DROP TRIGGER project_feed")
    op.execute("DROP VIEW projection_feed")
    op.drop_table("projected_types")
    op.execute(f"CREATE TRIGGER project_events AFTER INSERT ON events WHEN NEW.type IN ({types}) "
               f"BEGIN {new['body']} END")
