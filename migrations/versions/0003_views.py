"""Read-side SQL views: generations, cohorts, scores, rankings, LLM calls, spend and failures.

Every view reads the projection tables of 0002 (``gen_state``, ``cohort_members``, ``combos``) or
the ``events`` log itself, so it is always in step with the ledger. Each view starts with a SQL
comment saying what one row is (SQLite keeps it in ``sqlite_master``); the column-level
descriptions live in ``daydream.read.views`` and are shown by Datasette.

Revision ID: 0003_views
Revises: 0002_projections
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_views"
down_revision = "0002_projections"
branch_labels = None
depends_on = None

# A generation waits on its parent: it counts as blocked while its parent has failed, or while its
# parent is itself blocked (an evaluation of an essay whose draft failed). Chains are at most
# draft -> essay -> evaluation, so two steps up cover them.
BLOCKED = ("(g.status = 'planned' AND g.parent_gen_id IS NOT NULL AND EXISTS ("
           "SELECT 1 FROM gen_state p WHERE p.gen_id = g.parent_gen_id AND (p.status = 'failed' OR ("
           "p.status = 'planned' AND p.parent_gen_id IS NOT NULL AND EXISTS ("
           "SELECT 1 FROM gen_state q WHERE q.gen_id = p.parent_gen_id AND q.status = 'failed')))))")


# --------------------------------------------------------------------------------------------------
# Two small projection tables keep the cohort-level views fast on large ledgers (measured on
# 1,000,000 events: cohort_progress 290 ms and essay_rankings 240 ms when aggregated from gen_state,
# a few ms from these). They hold running sums per (cohort, stage, model) and per (cohort, essay),
# kept by triggers on gen_state and cohort_members, so they change in the same transaction as the
# event behind them. Each (generation, membership) pair contributes once: inserts and deletes of
# either side add or remove it, whichever order a rebuild uses, and an update of a generation
# swaps its old contribution for its new one.

TOTALS_COLUMNS = ("generations", "completed", "failed", "running", "calls", "failed_calls",
                  "prompt_tokens", "completion_tokens", "cost_usd")


def _totals_values(g: str, sign: str) -> str:
    """The contribution of generation row ``g`` to cohort_totals, times ``sign``."""
    return (f"{sign}, {sign} * ({g}.status = 'completed'), {sign} * ({g}.status = 'failed'), "
            f"{sign} * ({g}.status = 'running'), {sign} * COALESCE({g}.calls, 0), "
            f"{sign} * COALESCE({g}.failed_calls, 0), {sign} * COALESCE({g}.prompt_tokens, 0), "
            f"{sign} * COALESCE({g}.completion_tokens, 0), {sign} * COALESCE({g}.cost_usd, 0)")


UPSERT_TOTALS = ("ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET "
                 + ", ".join(f"{c} = {c} + excluded.{c}" for c in TOTALS_COLUMNS))
UPSERT_ESSAY = ("ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = n + excluded.n, "
                "total = total + excluded.total")


def _totals_from_gen(g: str, sign: str) -> str:
    """Apply generation row ``g`` (OLD or NEW in a gen_state trigger) to every cohort it is in."""
    return (f"INSERT INTO cohort_totals (cohort_id, stage, model_key, {', '.join(TOTALS_COLUMNS)}) "
            f"SELECT m.cohort_id, {g}.stage, COALESCE({g}.model_id, ''), {_totals_values(g, sign)} "
            f"FROM cohort_members m WHERE m.gen_id = {g}.gen_id {UPSERT_TOTALS};")


def _totals_from_member(m: str, sign: str) -> str:
    """Apply membership row ``m`` (OLD or NEW in a cohort_members trigger) with its generation."""
    return (f"INSERT INTO cohort_totals (cohort_id, stage, model_key, {', '.join(TOTALS_COLUMNS)}) "
            f"SELECT {m}.cohort_id, g.stage, COALESCE(g.model_id, ''), {_totals_values('g', sign)} "
            f"FROM gen_state g WHERE g.gen_id = {m}.gen_id {UPSERT_TOTALS};")


def _essay_from_gen(g: str, sign: str) -> str:
    return (f"INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total) "
            f"SELECT m.cohort_id, {g}.parent_gen_id, {sign}, {sign} * {g}.score "
            f"FROM cohort_members m WHERE m.gen_id = {g}.gen_id AND {g}.stage = 'evaluation' "
            f"AND {g}.score IS NOT NULL AND {g}.parent_gen_id IS NOT NULL {UPSERT_ESSAY};")


def _essay_from_member(m: str, sign: str) -> str:
    return (f"INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total) "
            f"SELECT {m}.cohort_id, g.parent_gen_id, {sign}, {sign} * g.score "
            f"FROM gen_state g WHERE g.gen_id = {m}.gen_id AND g.stage = 'evaluation' "
            f"AND g.score IS NOT NULL AND g.parent_gen_id IS NOT NULL {UPSERT_ESSAY};")


def _totals_delta() -> str:
    """Apply the change from OLD to NEW of one generation (same stage and model) in one upsert."""
    def d(expr: str) -> str:
        return f"{expr.format(g='NEW')} - {expr.format(g='OLD')}"

    deltas = ", ".join([
        "0", d("({g}.status = 'completed')"), d("({g}.status = 'failed')"), d("({g}.status = 'running')"),
        d("COALESCE({g}.calls, 0)"), d("COALESCE({g}.failed_calls, 0)"), d("COALESCE({g}.prompt_tokens, 0)"),
        d("COALESCE({g}.completion_tokens, 0)"), d("COALESCE({g}.cost_usd, 0)")])
    return (f"INSERT INTO cohort_totals (cohort_id, stage, model_key, {', '.join(TOTALS_COLUMNS)}) "
            f"SELECT m.cohort_id, NEW.stage, COALESCE(NEW.model_id, ''), {deltas} "
            f"FROM cohort_members m WHERE m.gen_id = NEW.gen_id {UPSERT_TOTALS};")


_TOTALS_CHANGED = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in (
    "status", "calls", "failed_calls", "prompt_tokens", "completion_tokens", "cost_usd"))
_KEY_SAME = "OLD.model_id IS NEW.model_id AND OLD.stage IS NEW.stage"
_SCORED = "{g}.stage = 'evaluation' AND {g}.score IS NOT NULL"

# Appends pay for these triggers, so each fires only when it has something to do, and the common
# update (a status or usage change) costs one upsert per cohort the generation is in.
READ_TRIGGERS = {
    "read_gen_inserted": ("AFTER INSERT ON gen_state", _totals_from_gen("NEW", "1")),
    "read_gen_inserted_scored": (f"AFTER INSERT ON gen_state WHEN {_SCORED.format(g='NEW')}",
                                 _essay_from_gen("NEW", "1")),
    "read_gen_deleted": ("AFTER DELETE ON gen_state",
                         _totals_from_gen("OLD", "-1") + _essay_from_gen("OLD", "-1")),
    "read_gen_totals_changed": (
        "AFTER UPDATE OF status, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd "
        f"ON gen_state WHEN ({_TOTALS_CHANGED}) AND {_KEY_SAME}", _totals_delta()),
    "read_gen_key_changed": (
        f"AFTER UPDATE OF model_id, stage ON gen_state WHEN NOT ({_KEY_SAME})",
        _totals_from_gen("OLD", "-1") + _totals_from_gen("NEW", "1")),
    "read_gen_score_changed": (
        "AFTER UPDATE OF score, parent_gen_id, stage ON gen_state WHEN (OLD.score IS NOT NEW.score "
        "OR OLD.parent_gen_id IS NOT NEW.parent_gen_id OR OLD.stage IS NOT NEW.stage) AND ("
        f"{_SCORED.format(g='OLD')} OR {_SCORED.format(g='NEW')})",
        _essay_from_gen("OLD", "-1") + _essay_from_gen("NEW", "1")),
    "read_member_inserted": ("AFTER INSERT ON cohort_members", _totals_from_member("NEW", "1")),
    "read_member_inserted_evaluation": ("AFTER INSERT ON cohort_members WHEN NEW.stage = 'evaluation'",
                                        _essay_from_member("NEW", "1")),
    "read_member_deleted": ("AFTER DELETE ON cohort_members",
                            _totals_from_member("OLD", "-1") + _essay_from_member("OLD", "-1")),
}

# Recomputes both tables from gen_state and cohort_members (used when upgrading a ledger that
# already holds work; daydream.read.views.refresh_read_projections runs the same SQL).
FILL_TOTALS = f"""
INSERT INTO cohort_totals (cohort_id, stage, model_key, {', '.join(TOTALS_COLUMNS)})
SELECT m.cohort_id, g.stage, COALESCE(g.model_id, ''), COUNT(*), SUM(g.status = 'completed'),
       SUM(g.status = 'failed'), SUM(g.status = 'running'), SUM(COALESCE(g.calls, 0)),
       SUM(COALESCE(g.failed_calls, 0)), SUM(COALESCE(g.prompt_tokens, 0)),
       SUM(COALESCE(g.completion_tokens, 0)), SUM(COALESCE(g.cost_usd, 0))
FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id
GROUP BY m.cohort_id, g.stage, COALESCE(g.model_id, '')"""
FILL_ESSAYS = """
INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total)
SELECT m.cohort_id, g.parent_gen_id, COUNT(*), SUM(g.score)
FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id
WHERE g.stage = 'evaluation' AND g.score IS NOT NULL AND g.parent_gen_id IS NOT NULL
GROUP BY m.cohort_id, g.parent_gen_id"""

VIEWS: dict[str, str] = {
    "generations": f"""
-- One row per generation (current attempt), with its prompt, raw response and parsed text.
SELECT g.gen_id, g.stage, g.status, {BLOCKED} AS blocked, g.attempt,
       g.template_id, g.template_hash, g.model_id, g.resolved_model, g.generator, g.parser,
       g.parent_gen_id, g.combo_id, g.replicate, g.origin_cohort_id, g.imported, g.score,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.prompt_hash) AS prompt,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.raw_hash) AS response,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.parsed_hash) AS parsed,
       g.prompt_tokens, g.completion_tokens, g.cost_usd, g.latency_s, g.calls, g.failed_calls,
       g.finish_reason, g.error, g.prompt_hash, g.raw_hash, g.parsed_hash, g.planned_seq,
       g.updated_seq
FROM gen_state g""",
    "cohort_membership": f"""
-- One row per (cohort, generation): which generations a cohort uses, planned or linked (reused).
SELECT m.cohort_id, m.stage, m.gen_id, g.status, {BLOCKED} AS blocked, g.template_id, g.model_id,
       g.replicate, CASE WHEN g.origin_cohort_id = m.cohort_id THEN 'planned' ELSE 'linked' END
       AS joined_as, m.seq
FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id""",
    "cohort_progress": f"""
-- One row per cohort and stage: how many generations are planned, done, failed, still pending.
SELECT t.cohort_id, t.stage, t.planned, t.completed, t.failed, t.running,
       t.planned - t.completed - t.failed AS pending,
       -- blocked: planned children of failed generations, plus their planned children in turn.
       -- CROSS JOIN fixes the loop order: start from the few failed generations (status index),
       -- then follow ix_gen_state_parent; left to itself SQLite scans every planned generation.
       (SELECT COUNT(*) FROM gen_state p CROSS JOIN gen_state g CROSS JOIN cohort_members m
        WHERE p.status = 'failed' AND g.parent_gen_id = p.gen_id AND g.status = 'planned'
          AND g.stage = t.stage AND m.cohort_id = t.cohort_id AND m.gen_id = g.gen_id)
       + (SELECT COUNT(*) FROM gen_state f CROSS JOIN gen_state c CROSS JOIN gen_state g
            CROSS JOIN cohort_members m
          WHERE f.status = 'failed' AND c.parent_gen_id = f.gen_id AND c.status = 'planned'
            AND g.parent_gen_id = c.gen_id AND g.status = 'planned' AND g.stage = t.stage
            AND m.cohort_id = t.cohort_id AND m.gen_id = g.gen_id) AS blocked,
       t.calls, t.tokens, t.cost_usd
FROM (SELECT cohort_id, stage, SUM(generations) AS planned, SUM(completed) AS completed,
             SUM(failed) AS failed, SUM(running) AS running, SUM(calls) AS calls,
             SUM(prompt_tokens) + SUM(completion_tokens) AS tokens,
             ROUND(SUM(cost_usd), 6) AS cost_usd
      FROM cohort_totals GROUP BY cohort_id, stage HAVING SUM(generations) > 0) t""",
    "scores": """
-- One row per evaluation generation: the essay it judged, rubric, evaluator and score (or why not).
SELECT v.gen_id AS evaluation_gen_id, v.parent_gen_id AS essay_gen_id, v.template_id AS rubric,
       v.model_id AS evaluator, v.replicate, v.attempt, v.status, v.score,
       CASE WHEN v.score IS NOT NULL THEN 'parsed'
            WHEN v.status = 'failed' AND v.error LIKE 'ParseFailed:%' THEN 'parse_failed'
            WHEN v.status = 'completed' THEN 'no_score'
            WHEN v.status = 'failed' THEN 'failed'
            ELSE 'pending' END AS parse_status,
       CASE WHEN v.error LIKE 'ParseFailed:%' THEN substr(v.error, 14) END AS parse_error,
       v.error, v.imported
FROM gen_state v
WHERE v.stage = 'evaluation'""",
    "essay_scores": """
-- One row per essay and rubric: statistics of its scores over evaluators and replicates.
SELECT v.parent_gen_id AS essay_gen_id, v.template_id AS rubric, COUNT(v.score) AS n,
       COUNT(DISTINCT v.model_id) AS evaluators,
       ROUND(AVG(v.score), 4) AS mean, MIN(v.score) AS min, MAX(v.score) AS max,
       CASE WHEN COUNT(v.score) > 1 THEN ROUND(sqrt(MAX(0.0,
            (SUM(v.score * v.score) - SUM(v.score) * SUM(v.score) / COUNT(v.score))
            / (COUNT(v.score) - 1))), 4) END AS stdev
FROM gen_state v
WHERE v.stage = 'evaluation' AND v.score IS NOT NULL
GROUP BY v.parent_gen_id, v.template_id""",
    "essay_rankings": """
-- One row per cohort and scored essay: the mean of all its scores in that cohort, rank 1 = best.
SELECT s.cohort_id, s.essay_gen_id, e.combo_id, d.gen_id AS draft_gen_id,
       d.template_id AS draft_template, d.model_id AS draft_model,
       e.template_id AS essay_template, e.model_id AS essay_model, s.mean, s.n, s.rank
FROM (SELECT cohort_id, essay_gen_id, n, mean,
             RANK() OVER (PARTITION BY cohort_id ORDER BY mean DESC) AS rank
      FROM cohort_essay_scores WHERE n > 0) s
JOIN gen_state e ON e.gen_id = s.essay_gen_id
LEFT JOIN gen_state d ON d.gen_id = e.parent_gen_id""",
    "llm_calls": """
-- One row per LLM call try: its outcome (completed, failed, or open while no answer is recorded).
SELECT o.seq, o.stream, json_extract(o.payload, '$.gen_id') AS gen_id, g.stage,
       json_extract(o.payload, '$.attempt') AS attempt, json_extract(o.payload, '$.call') AS call,
       json_extract(o.payload, '$.try') AS try,
       json_extract(o.payload, '$.model_id') AS model_id,
       json_extract(o.payload, '$.provider') AS provider,
       json_extract(o.payload, '$.resolved_model') AS resolved_model,
       CASE o.type WHEN 'LLMCallCompleted' THEN 'completed' ELSE 'failed' END AS outcome,
       json_extract(o.payload, '$.latency_s') AS latency_s,
       json_extract(o.payload, '$.prompt_tokens') AS prompt_tokens,
       json_extract(o.payload, '$.completion_tokens') AS completion_tokens,
       json_extract(o.payload, '$.cost_usd') AS cost_usd,
       json_extract(o.payload, '$.finish_reason') AS finish_reason,
       json_extract(o.payload, '$.error_class') AS error_class,
       json_extract(o.payload, '$.message') AS message,
       o.recorded_at
FROM events o LEFT JOIN gen_state g ON g.gen_id = json_extract(o.payload, '$.gen_id')
WHERE o.type IN ('LLMCallCompleted', 'LLMCallFailed')
UNION ALL
SELECT s.seq, s.stream, json_extract(s.payload, '$.gen_id'), g.stage, json_extract(s.payload, '$.attempt'),
       json_extract(s.payload, '$.call'), NULL, json_extract(s.payload, '$.model_id'),
       json_extract(s.payload, '$.provider'), NULL, 'open', NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, s.recorded_at
FROM events s LEFT JOIN gen_state g ON g.gen_id = json_extract(s.payload, '$.gen_id')
WHERE s.type = 'LLMCallStarted' AND NOT EXISTS (
    -- answered, or given back unsent (ClaimReleased: no call was made, nothing is in flight)
    SELECT 1 FROM events o WHERE o.stream = s.stream AND o.version > s.version
      AND o.type IN ('LLMCallCompleted', 'LLMCallFailed', 'ClaimReleased')
      AND json_extract(o.payload, '$.attempt') = json_extract(s.payload, '$.attempt')
      AND json_extract(o.payload, '$.call') = json_extract(s.payload, '$.call'))""",
    "spend": """
-- One row per cohort, stage and model: calls, tokens and money (a reused generation counts in each).
SELECT cohort_id, stage, NULLIF(model_key, '') AS model_id, generations, calls, failed_calls,
       prompt_tokens, completion_tokens, ROUND(cost_usd, 6) AS cost_usd
FROM cohort_totals
WHERE generations > 0""",
    "failures": """
-- One row per generation whose current attempt failed: what, why, and the event that says so.
SELECT g.gen_id, g.stage, g.template_id, g.model_id, g.attempt, g.origin_cohort_id,
       CASE WHEN g.error LIKE 'ParseFailed:%' THEN 'parse' ELSE 'generation' END AS kind,
       g.error AS reason, g.calls, g.failed_calls,
       (SELECT COUNT(*) FROM gen_state c WHERE c.parent_gen_id = g.gen_id) AS blocked_children,
       (SELECT MAX(f.seq) FROM events f WHERE f.stream = 'gen:' || g.gen_id
          AND f.type IN ('GenerationFailed', 'ParseFailed')) AS failed_seq,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.raw_hash) AS response
FROM gen_state g
WHERE g.status = 'failed'""",
    "evaluator_agreement": """
-- One row per rubric and evaluator model: how that evaluator scores (compare rows of one rubric).
SELECT v.template_id AS rubric, v.model_id AS evaluator, COUNT(*) AS evaluations,
       COUNT(v.score) AS scored, COUNT(DISTINCT v.parent_gen_id) AS essays,
       ROUND(AVG(v.score), 4) AS mean,
       CASE WHEN COUNT(v.score) > 1 THEN ROUND(sqrt(MAX(0.0,
            (SUM(v.score * v.score) - SUM(v.score) * SUM(v.score) / COUNT(v.score))
            / (COUNT(v.score) - 1))), 4) END AS stdev,
       ROUND(1.0 * SUM(v.status = 'failed' AND v.error LIKE 'ParseFailed:%') / COUNT(*), 4)
       AS parse_failure_rate
FROM gen_state v
WHERE v.stage = 'evaluation'
GROUP BY v.template_id, v.model_id""",
}

INDEXES = {
    # essay_rankings: each cohort's essays in score order.
    "ix_cohort_essay_scores_rank": "cohort_essay_scores (cohort_id, mean DESC)",
    # blocked counts start from the (few) failed generations.
    "ix_gen_state_status": "gen_state (status)",
}


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        return  # not yet on PostgreSQL (issue 17): see the README's PostgreSQL section
    op.create_table(
        "cohort_totals",
        sa.Column("cohort_id", sa.Text, primary_key=True, comment="Cohort id"),
        sa.Column("stage", sa.Text, primary_key=True, comment="Stage"),
        sa.Column("model_key", sa.Text, primary_key=True, comment="Model id ('' when none)"),
        *[sa.Column(c, sa.Float if c == "cost_usd" else sa.Integer, nullable=False, server_default="0",
                    comment=f"Sum of {c} over the cohort's generations of this stage and model")
          for c in TOTALS_COLUMNS],
    )
    op.create_table(
        "cohort_essay_scores",
        sa.Column("cohort_id", sa.Text, primary_key=True, comment="Cohort id"),
        sa.Column("essay_gen_id", sa.Text, primary_key=True, comment="Essay generation id"),
        sa.Column("n", sa.Integer, nullable=False, server_default="0",
                  comment="Scored evaluations of the essay in the cohort"),
        sa.Column("total", sa.Float, nullable=False, server_default="0", comment="Sum of their scores"),
        # Ranking reads the cohort's essays in score order straight from an index on this column.
        sa.Column("mean", sa.Float, sa.Computed("CASE WHEN n > 0 THEN ROUND(total / n, 4) END", persisted=False),
                  comment="Mean score (total / n, 4 decimals)"),
    )
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {columns}")
    op.execute(FILL_TOTALS)
    op.execute(FILL_ESSAYS)
    for name, (when, body) in READ_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {when} BEGIN {body} END")
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body.strip()}")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for name in READ_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.drop_table("cohort_essay_scores")
    op.drop_table("cohort_totals")
