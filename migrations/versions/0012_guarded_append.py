"""PostgreSQL: the runner's guarded append as one server-side function (issue 17).

A runner's write is a compare-and-set: "append these events only while the generation is still
planned (a claim), or still claimed by me (a sent mark, a result)". Until now a PostgreSQL ledger
ran it as SQLite does, from the client: lock the chain head, read the generations' ``gen_state``
rows, decide, chain the events (hash each on the previous one), insert, move the head, commit.
Each of those steps is a round trip to the server made while holding the chain lock that every
other writer on every host waits for: at 50 ms to the server, ~150 ms of lock per transaction,
so four runners were slower than one.

``daydream_append(...)`` does all of it on the server, in the statement's own transaction: the
lock is held for the server's work only, never for a round trip. It takes the events as arrays
(stream, type, payload as its stored canonical JSON, causation, expected version, and the JSON
spellings of stream and type, which the client makes so that no escaping rule lives twice) in
groups, each group with an optional expectation on one ``gen_state`` row (gen_id, attempt, the
statuses allowed, and the worker required while it is running). It then:

1. locks ``chain_head`` (as every write does) and refuses (SQLSTATE DD001) when the head is not
   the last event: the compare-and-set that notices a removed or added tail;
2. checks every group's expectation against ``gen_state`` before anything is inserted, and skips
   the groups that fail (the caller learns which);
3. numbers, versions and hash-chains the kept events exactly as ``daydream.ledger.store
   .chain_events`` does: ``sha256(prev_hash || canonical JSON of the event)``, so ``verify``
   recomputes the same hashes in Python; an event whose expected version is not the stream's
   refuses the whole call (SQLSTATE DD002, detail "stream expected actual");
4. stores the kept groups' texts (deduplicated), feeds the events to the projections through
   ``projection_feed`` (as ``daydream.ledger.store.PROJECT_EVENTS``), and moves the head.

It returns the seq and hash it chained onto, which groups were kept, and the version and hash of
each kept event. SQLite ledgers do the same from the client (a write there costs no round trip),
so this revision changes nothing on SQLite.

Revision ID: 0012_guarded_append
Revises: 0011_projections_per_type
Create Date: 2026-12-03
"""

from alembic import op

revision = "0012_guarded_append"
down_revision = "0011_projections_per_type"
branch_labels = None
depends_on = None

_GENESIS_HASH = "0" * 64

_POSTGRESQL = f"""
CREATE FUNCTION daydream_append(
    p_recorded_at text, p_recorded_json text,
    p_group int[], p_stream text[], p_stream_json text[], p_type text[], p_type_json text[],
    p_payload text[], p_causation bigint[], p_expected bigint[],
    p_gen text[], p_attempt bigint[], p_statuses text[], p_worker text[],
    p_text_group int[], p_sha256 text[], p_text text[], p_chars bigint[],
    OUT before_seq bigint, OUT before_hash text, OUT accepted boolean[], OUT versions bigint[],
    OUT hashes text[])
LANGUAGE plpgsql AS $fn$
DECLARE
    head_seq bigint;
    head_hash text;
    last_seq bigint;
    last_hash text;
    at_seq bigint;
    prev text;
    ver bigint;
    h text;
    i int;
    n_groups int := COALESCE(array_length(p_gen, 1), 0);
BEGIN
    SELECT c.seq, c.hash INTO head_seq, head_hash FROM chain_head c WHERE c.id = 1 FOR UPDATE;
    SELECT e.seq, e.hash INTO last_seq, last_hash FROM events e ORDER BY e.seq DESC LIMIT 1;
    last_seq := COALESCE(last_seq, 0);
    last_hash := COALESCE(last_hash, '{_GENESIS_HASH}');
    IF head_seq IS DISTINCT FROM last_seq OR head_hash IS DISTINCT FROM last_hash THEN
        RAISE EXCEPTION 'the stored chain head is not the last event' USING ERRCODE = 'DD001',
            DETAIL = last_seq || ' ' || last_hash;
    END IF;
    accepted := array_fill(true, ARRAY[n_groups]);
    FOR i IN 1 .. n_groups LOOP
        IF p_gen[i] IS NOT NULL THEN
            accepted[i] := EXISTS (
                SELECT 1 FROM gen_state s
                WHERE s.gen_id = p_gen[i] AND s.attempt = p_attempt[i]
                  AND s.status = ANY (string_to_array(p_statuses[i], ','))
                  AND (s.status <> 'running' OR s.worker IS NOT DISTINCT FROM p_worker[i]));
        END IF;
    END LOOP;
    before_seq := last_seq;
    before_hash := last_hash;
    at_seq := last_seq;
    prev := last_hash;
    versions := '{{}}';
    hashes := '{{}}';
    FOR i IN 1 .. COALESCE(array_length(p_stream, 1), 0) LOOP
        CONTINUE WHEN p_group[i] IS NOT NULL AND NOT accepted[p_group[i]];
        SELECT COALESCE(MAX(e.version), 0) INTO ver FROM events e WHERE e.stream = p_stream[i];
        IF p_expected[i] IS NOT NULL AND p_expected[i] <> ver THEN
            RAISE EXCEPTION 'stream % is at version %, not %', p_stream[i], ver, p_expected[i]
                USING ERRCODE = 'DD002', DETAIL = p_stream[i] || ' ' || p_expected[i] || ' ' || ver;
        END IF;
        ver := ver + 1;
        at_seq := at_seq + 1;
        h := encode(sha256(convert_to(
            prev || '{{"causation_seq":' || COALESCE(p_causation[i]::text, 'null') || ',"payload":' || p_payload[i]
                 || ',"recorded_at":' || p_recorded_json || ',"seq":' || at_seq || ',"stream":' || p_stream_json[i]
                 || ',"type":' || p_type_json[i] || ',"version":' || ver || '}}', 'UTF8')), 'hex');
        INSERT INTO events (seq, stream, version, type, payload, recorded_at, causation_seq, prev_hash, hash)
            VALUES (at_seq, p_stream[i], ver, p_type[i], p_payload[i], p_recorded_at, p_causation[i], prev, h);
        versions := versions || ver;
        hashes := hashes || h;
        prev := h;
    END LOOP;
    INSERT INTO texts (sha256, text, chars)
        SELECT t.sha256, t.body, t.chars
        FROM unnest(p_text_group, p_sha256, p_text, p_chars) AS t(grp, sha256, body, chars)
        WHERE t.grp IS NULL OR accepted[t.grp]
        ON CONFLICT (sha256) DO NOTHING;
    IF at_seq > last_seq THEN
        INSERT INTO projection_feed
            SELECT e.seq, e.stream, e.version, e.type, e.payload, e.recorded_at, e.causation_seq
            FROM events e WHERE e.seq > last_seq AND e.type IN (SELECT type FROM projected_types)
            ORDER BY e.seq;
        UPDATE chain_head SET seq = at_seq, hash = prev WHERE id = 1;
    END IF;
END
$fn$;
"""


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(_POSTGRESQL)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS daydream_append")
