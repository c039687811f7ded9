"""The chain's head is stored, so a ledger whose last events were removed fails ``verify``.

The hash chain proves every event against the one before it, but not that nothing came after the
last one: deleting the tail (with the append-only triggers dropped) left a ledger that verified.
``chain_head`` holds the seq and hash of the last event; every append updates it in the same
transaction, with a compare-and-set on the seq it read (``UPDATE … WHERE seq = :before``), and
refuses to append when the head and the last event disagree. ``daydream verify`` compares them.
On a database server with several hosts appending, the same row is the lock appends take
(``SELECT … FOR UPDATE``), so it costs no extra round of coordination.

The file header also gets daydream's application id ("dayd"), so daydream tells its ledgers from
other applications' SQLite files without reading their tables.

Revision ID: 0006_chain_head
Revises: 0005_llm_calls_by_stream
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_chain_head"
down_revision = "0005_llm_calls_by_stream"
branch_labels = None
depends_on = None

APPLICATION_ID = 0x64617964  # "dayd"
GENESIS_HASH = "0" * 64


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        _upgrade_postgresql()
        return
    op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False,
                  comment="Always 1: the table holds one row"),
        sa.Column("seq", sa.Integer, nullable=False,
                  comment="seq of the last event appended (0 before the first)"),
        sa.Column("hash", sa.Text, nullable=False,
                  comment="hash of that event (64 zeros before the first): what verify compares with the chain"),
        sa.CheckConstraint("id = 1", name="ck_chain_head_one_row"),
    )
    op.execute(f"""INSERT INTO chain_head (id, seq, hash)
        SELECT 1, COALESCE(MAX(seq), 0),
               COALESCE((SELECT hash FROM events ORDER BY seq DESC LIMIT 1), '{GENESIS_HASH}')
        FROM events""")
    # The head moves forward only, and is never removed: rewinding it would hide a deleted tail.
    op.execute("CREATE TRIGGER chain_head_no_delete BEFORE DELETE ON chain_head BEGIN "
               "SELECT RAISE(ABORT, 'chain_head cannot be deleted: it records the last event of the chain'); END")
    op.execute("CREATE TRIGGER chain_head_forward BEFORE UPDATE ON chain_head "
               "WHEN NEW.seq < OLD.seq OR NEW.id IS NOT OLD.id BEGIN "
               "SELECT RAISE(ABORT, 'chain_head only moves forward: appends advance it, nothing rewinds it'); END")
    op.execute(f"PRAGMA application_id = {APPLICATION_ID}")


# PostgreSQL (issue 17): the same row; every write transaction locks it first (SELECT … FOR UPDATE),
# which serialises appends from every process on every host into one chain. A file header does
# not exist there: a database is a ledger when it has alembic_version and events.
_POSTGRESQL = f"""
CREATE TABLE chain_head (
    id   SMALLINT PRIMARY KEY,
    seq  BIGINT NOT NULL,
    hash TEXT COLLATE "C" NOT NULL,
    CONSTRAINT ck_chain_head_one_row CHECK (id = 1)
);
INSERT INTO chain_head (id, seq, hash)
    SELECT 1, COALESCE(MAX(seq), 0),
           COALESCE((SELECT hash FROM events ORDER BY seq DESC LIMIT 1), '{GENESIS_HASH}')
    FROM events;
CREATE FUNCTION daydream_chain_head_refuse() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'chain_head only moves forward: appends advance it, nothing rewinds it'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RAISE EXCEPTION 'chain_head cannot be deleted: it records the last event of the chain'
        USING ERRCODE = 'restrict_violation';
END
$fn$;
CREATE TRIGGER chain_head_no_delete BEFORE DELETE ON chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION daydream_chain_head_refuse();
CREATE TRIGGER chain_head_no_truncate BEFORE TRUNCATE ON chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION daydream_chain_head_refuse();
CREATE TRIGGER chain_head_forward BEFORE UPDATE ON chain_head FOR EACH ROW
    WHEN (NEW.seq < OLD.seq OR NEW.id IS DISTINCT FROM OLD.id) EXECUTE FUNCTION daydream_chain_head_refuse();
ALTER TABLE chain_head ENABLE ALWAYS TRIGGER chain_head_no_delete;
ALTER TABLE chain_head ENABLE ALWAYS TRIGGER chain_head_no_truncate;
ALTER TABLE chain_head ENABLE ALWAYS TRIGGER chain_head_forward;
"""


def _upgrade_postgresql() -> None:
    op.execute(_POSTGRESQL)


def downgrade() -> None:
    op.execute("PRAGMA application_id = 0")
    op.execute("DROP TRIGGER IF EXISTS chain_head_forward")
    op.execute("DROP TRIGGER IF EXISTS chain_head_no_delete")
    op.drop_table("chain_head")
