"""The ledger: the append-only, hash-chained ``events`` table and the content-addressed ``texts``.

Revision ID: 0001_ledger
Revises:
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_ledger"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = "{table} is append-only: {verb} is not allowed (record a correcting event instead)"


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        _upgrade_postgresql()
        return
    op.create_table(
        "events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False,
                  comment="Global position of the event in the ledger, 1, 2, 3 … with no gaps"),
        sa.Column("stream", sa.Text, nullable=False,
                  comment="What the event is about: gen:<gen_id>, cohort:<id>, catalog:<hash>, combo:<id>"),
        sa.Column("version", sa.Integer, nullable=False,
                  comment="Position of the event within its stream, 1, 2, 3 …"),
        sa.Column("type", sa.Text, nullable=False,
                  comment="Past-tense fact name, e.g. GenerationPlanned, LLMCallCompleted"),
        sa.Column("payload", sa.Text, nullable=False,
                  comment="Canonical JSON (sorted keys) with everything a reader needs; large texts by sha256"),
        sa.Column("recorded_at", sa.Text, nullable=False,
                  comment="UTC ISO-8601 time the event was appended"),
        sa.Column("causation_seq", sa.Integer, nullable=True,
                  comment="seq of the event this one answers, if any"),
        sa.Column("prev_hash", sa.Text, nullable=False,
                  comment="hash of the previous event (64 zeros for the first)"),
        sa.Column("hash", sa.Text, nullable=False,
                  comment="sha256(prev_hash + canonical JSON of this event): the chain daydream verify checks"),
        sa.UniqueConstraint("stream", "version", name="uq_events_stream_version"),
    )
    op.create_index("ix_events_type_seq", "events", ["type", "seq"])
    # (stream, version) is already indexed by the unique constraint; reads by stream use it.
    # No CHECK(json_valid(payload)): it costs a quarter of the append rate, payloads are written by
    # json.dumps only, and `daydream verify` parses every payload anyway.

    op.create_table(
        "texts",
        sa.Column("sha256", sa.Text, primary_key=True,
                  comment="Hex sha256 of the UTF-8 text: its identity"),
        sa.Column("text", sa.Text, nullable=False,
                  comment="The text itself: prompt, response, parsed output, template, spec …"),
        sa.Column("chars", sa.Integer, nullable=False, comment="Length of the text in characters"),
    )

    for table in ("events", "texts"):
        for verb in ("UPDATE", "DELETE"):
            message = APPEND_ONLY.format(table=table, verb=verb)
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )


# PostgreSQL (issue 17): the same tables and constraints. Integers are BIGINT (SQLite's are 64-bit),
# text keys COLLATE "C" so they sort and compare bytewise as SQLite's do (reports order by them).
# Append-only: statement-level triggers, so a DELETE matching no row and TRUNCATE (which fires no
# row trigger) are refused too; ENABLE ALWAYS keeps them firing under session_replication_role =
# replica. They refuse the tables' owner and superusers alike; SQLSTATE 23001 makes the driver
# raise an IntegrityError, as SQLite's RAISE(ABORT) does.
_POSTGRESQL = """
CREATE TABLE events (
    seq           BIGINT PRIMARY KEY,
    stream        TEXT COLLATE "C" NOT NULL,
    version       BIGINT NOT NULL,
    type          TEXT COLLATE "C" NOT NULL,
    payload       TEXT NOT NULL,
    recorded_at   TEXT COLLATE "C" NOT NULL,
    causation_seq BIGINT,
    prev_hash     TEXT COLLATE "C" NOT NULL,
    hash          TEXT COLLATE "C" NOT NULL,
    CONSTRAINT uq_events_stream_version UNIQUE (stream, version)
);
CREATE INDEX ix_events_type_seq ON events (type, seq);
CREATE TABLE texts (
    sha256 TEXT COLLATE "C" PRIMARY KEY,
    text   TEXT NOT NULL,
    chars  BIGINT NOT NULL
);
CREATE FUNCTION daydream_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed (record a correcting event instead)',
        TG_TABLE_NAME, TG_OP USING ERRCODE = 'restrict_violation';
END
$fn$;
"""


def _upgrade_postgresql() -> None:
    op.execute(_POSTGRESQL)
    for table in ("events", "texts"):
        for verb in ("UPDATE", "DELETE", "TRUNCATE"):
            name = f"{table}_no_{verb.lower()}"
            op.execute(f"CREATE TRIGGER {name} BEFORE {verb} ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION daydream_append_only()")
            op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only; there is no way back from its creation")
