"""Projections stated per event type, one trigger each; ``gen_state.parse_failed`` says a parse failed.

Until now what an event does to the projections was assembled by migrations: 0002 rewrote its
statements with a ``guard()`` helper into one trigger, 0004 lifted that trigger's body out of
``sqlite_master`` with a regex, 0008 appended statements to it with another. Now
``daydream/ledger/projections.py`` states per event type the statements that apply it, and this
revision installs a frozen copy of them (``PROJECTION_TRIGGERS`` below, copied verbatim: a
migration never imports code that may change; a test fails when the newest revision's copy and
the module differ):

- ``project_feed`` (one trigger running every statement, each guarded by its event type) is
  replaced by one INSTEAD OF trigger per event type on ``projection_feed``,
  ``project_<EventType>`` with ``WHEN NEW.type = '<EventType>'``. The appends feed the view as
  before (``daydream.ledger.store.PROJECT_EVENTS``). Faster too: an event runs its own statements
  only, where the single trigger set up all 22 for each event and let their type tests skip them;
  appending a run's events in batches of 1,000 takes about 0.6x the time (bench/projection_feed.py).
  ``projected_types`` is set to the listed types (the same fourteen).
- The statements are those of 0002 and 0008 grouped by type, with the same effect on every table
  (tests/test_projection_statements.py replays every branch through both and compares every table
  and view). 0008's follow-up statements are folded into the statement they followed (a score and
  its scale are set together, a failure or a retry clears the score itself), but for the re-parse
  one; inserts say ``ON CONFLICT DO NOTHING`` with the NOT NULL fields they need instead of
  ``INSERT OR IGNORE``, and flags are tested with ``IS 1`` (SQL closer to what PostgreSQL runs,
  issue 17).
- ``gen_state.parse_failed`` (new, 0 or 1): 1 while the generation's ``error`` is a parse failure
  (``ParseFailed: <reason>``, written by ``ParseFailed``). The views that told a parse failure by
  the prefix of ``error`` read the column: ``scores`` (``parse_status``, ``parse_error``),
  ``failures`` (``kind``) and ``evaluator_agreement`` (``parse_failure_rate``). Same rows, same
  columns, same values. A column rather than a new ``status``: ``status = 'failed'`` drives pending
  work, blocked children, the cohort counters, ``rerun --failed`` and ``failures``; a fifth status
  would change each of those.

Existing rows get ``parse_failed`` from their ``error`` once, as the views read it until now.

Revision ID: 0011_projections_per_type
Revises: 0010_read_side
Create Date: 2026-12-04
"""

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = "0011_projections_per_type"
down_revision = "0010_read_side"
branch_labels = None
depends_on = None

# ------------------------------------------------------------------------------------------------
# Frozen copy of daydream.ledger.projections (PROJECTED_TYPES and trigger_sql() of each type) as of
# this revision. Do not edit: a change to the projections is a new revision with a new copy
# (daydream.ledger.projections.frozen_copy() prints it).
PROJECTED_TYPES = (
    "GenerationPlanned",
    "GenerationLinked",
    "GenerationImported",
    "PromptRendered",
    "LLMCallStarted",
    "LLMCallCompleted",
    "LLMCallFailed",
    "ClaimReleased",
    "ResponseParsed",
    "ScoreRecorded",
    "ParseFailed",
    "GenerationFailed",
    "GenerationRetried",
    "ComboDefined",
)
PROJECTION_TRIGGERS = {
    "GenerationPlanned": """CREATE TRIGGER project_GenerationPlanned INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'GenerationPlanned'
BEGIN
-- A new generation: its row in gen_state (attempt 1, planned, no calls yet), and its membership of the
-- cohort that planned it. A generation already there stays as it is.
INSERT INTO gen_state (gen_id, stage, parent_gen_id, combo_id, template_id, template_hash,
    generator, parser, model_id, replicate, origin_cohort_id, planned_seq, imported, attempt, status,
    calls, failed_calls, updated_seq)
SELECT json_extract(NEW.payload, '$.gen_id'), json_extract(NEW.payload, '$.stage'), json_extract(NEW.payload, '$.parent_gen_id'), json_extract(NEW.payload, '$.combo_id'), json_extract(NEW.payload, '$.template_id'),
    json_extract(NEW.payload, '$.template_hash'), json_extract(NEW.payload, '$.generator'), json_extract(NEW.payload, '$.parser'), json_extract(NEW.payload, '$.model_id'), json_extract(NEW.payload, '$.replicate'),
    json_extract(NEW.payload, '$.cohort_id'), NEW.seq, 0, 1, 'planned', 0, 0, NEW.seq
WHERE json_extract(NEW.payload, '$.stage') IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO cohort_members (cohort_id, gen_id, stage, seq)
SELECT json_extract(NEW.payload, '$.cohort_id'), json_extract(NEW.payload, '$.gen_id'), json_extract(NEW.payload, '$.stage'), NEW.seq
WHERE json_extract(NEW.payload, '$.stage') IS NOT NULL
ON CONFLICT DO NOTHING;
END""",
    "GenerationLinked": """CREATE TRIGGER project_GenerationLinked INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'GenerationLinked'
BEGIN
-- An existing generation joins another cohort (reused work): a membership.
INSERT INTO cohort_members (cohort_id, gen_id, stage, seq)
SELECT json_extract(NEW.payload, '$.cohort_id'), json_extract(NEW.payload, '$.gen_id'), json_extract(NEW.payload, '$.stage'), NEW.seq
WHERE json_extract(NEW.payload, '$.stage') IS NOT NULL
ON CONFLICT DO NOTHING;
END""",
    "GenerationImported": """CREATE TRIGGER project_GenerationImported INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'GenerationImported'
BEGIN
-- A generation brought in from the previous pipeline, with its results: its row as imported (completed
-- or failed), its score's scale, its membership when it came with a cohort. A second import that
-- completes one imported as failed fills in its results.
INSERT INTO gen_state (gen_id, stage, parent_gen_id, combo_id, template_id, template_hash,
    generator, parser, model_id, replicate, origin_cohort_id, planned_seq, imported, attempt, status,
    prompt_hash, raw_hash, parsed_hash, score, scale_min, scale_max, finish_reason, prompt_tokens,
    completion_tokens, cost_usd, latency_s, calls, failed_calls, error, updated_seq)
SELECT json_extract(NEW.payload, '$.gen_id'), json_extract(NEW.payload, '$.stage'), json_extract(NEW.payload, '$.parent_gen_id'), json_extract(NEW.payload, '$.combo_id'), json_extract(NEW.payload, '$.template_id'),
    json_extract(NEW.payload, '$.template_hash'), json_extract(NEW.payload, '$.generator'), json_extract(NEW.payload, '$.parser'), json_extract(NEW.payload, '$.model_id'), json_extract(NEW.payload, '$.replicate'),
    json_extract(NEW.payload, '$.cohort_id'), NEW.seq, 1, 1, json_extract(NEW.payload, '$.status'), json_extract(NEW.payload, '$.prompt_hash'), json_extract(NEW.payload, '$.raw_hash'),
    json_extract(NEW.payload, '$.parsed_hash'), json_extract(NEW.payload, '$.score'),
    CASE WHEN json_extract(NEW.payload, '$.score') IS NOT NULL THEN COALESCE(json_extract(NEW.payload, '$.scale[0]'), 0) END,
    CASE WHEN json_extract(NEW.payload, '$.score') IS NOT NULL THEN COALESCE(json_extract(NEW.payload, '$.scale[1]'), 9) END,
    json_extract(NEW.payload, '$.finish_reason'), json_extract(NEW.payload, '$.prompt_tokens'), json_extract(NEW.payload, '$.completion_tokens'), json_extract(NEW.payload, '$.cost_usd'),
    json_extract(NEW.payload, '$.latency_s'), CASE WHEN json_extract(NEW.payload, '$.raw_hash') IS NULL THEN 0 ELSE 1 END, 0, json_extract(NEW.payload, '$.error'), NEW.seq
WHERE json_extract(NEW.payload, '$.stage') IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO cohort_members (cohort_id, gen_id, stage, seq)
SELECT json_extract(NEW.payload, '$.cohort_id'), json_extract(NEW.payload, '$.gen_id'), json_extract(NEW.payload, '$.stage'), NEW.seq
WHERE json_extract(NEW.payload, '$.stage') IS NOT NULL AND json_extract(NEW.payload, '$.cohort_id') IS NOT NULL
ON CONFLICT DO NOTHING;
UPDATE gen_state SET status = 'completed', prompt_hash = json_extract(NEW.payload, '$.prompt_hash'),
    raw_hash = json_extract(NEW.payload, '$.raw_hash'), parsed_hash = json_extract(NEW.payload, '$.parsed_hash'), score = json_extract(NEW.payload, '$.score'),
    scale_min = CASE WHEN json_extract(NEW.payload, '$.score') IS NOT NULL THEN COALESCE(json_extract(NEW.payload, '$.scale[0]'), 0) END,
    scale_max = CASE WHEN json_extract(NEW.payload, '$.score') IS NOT NULL THEN COALESCE(json_extract(NEW.payload, '$.scale[1]'), 9) END,
    finish_reason = json_extract(NEW.payload, '$.finish_reason'), prompt_tokens = json_extract(NEW.payload, '$.prompt_tokens'),
    completion_tokens = json_extract(NEW.payload, '$.completion_tokens'), cost_usd = json_extract(NEW.payload, '$.cost_usd'),
    latency_s = json_extract(NEW.payload, '$.latency_s'), parser = COALESCE(json_extract(NEW.payload, '$.parser'), parser),
    calls = CASE WHEN json_extract(NEW.payload, '$.raw_hash') IS NULL THEN 0 ELSE 1 END, error = NULL, parse_failed = 0,
    updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND imported = 1 AND status = 'failed' AND planned_seq < NEW.seq
    AND json_extract(NEW.payload, '$.status') = 'completed';
END""",
    "PromptRendered": """CREATE TRIGGER project_PromptRendered INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'PromptRendered'
BEGIN
-- The prompt of the current attempt, and the template version that rendered it.
UPDATE gen_state SET prompt_hash = json_extract(NEW.payload, '$.prompt_hash'),
    template_hash = COALESCE(json_extract(NEW.payload, '$.template_hash'), template_hash), updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt');
END""",
    "LLMCallStarted": """CREATE TRIGGER project_LLMCallStarted INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'LLMCallStarted'
BEGIN
-- A worker claimed the call: the generation is running, under that worker's lease.
UPDATE gen_state SET status = 'running', lease_until = json_extract(NEW.payload, '$.lease_until'),
    worker = json_extract(NEW.payload, '$.worker'), updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt');
END""",
    "LLMCallCompleted": """CREATE TRIGGER project_LLMCallCompleted INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'LLMCallCompleted'
BEGIN
-- An answer: its text, and the call's tokens, cost and latency added to the generation's (it stays
-- running until the answer is parsed).
UPDATE gen_state SET raw_hash = json_extract(NEW.payload, '$.text_hash'), finish_reason = json_extract(NEW.payload, '$.finish_reason'),
    prompt_tokens = COALESCE(prompt_tokens, 0) + COALESCE(json_extract(NEW.payload, '$.prompt_tokens'), 0),
    completion_tokens = COALESCE(completion_tokens, 0) + COALESCE(json_extract(NEW.payload, '$.completion_tokens'), 0),
    cost_usd = CASE WHEN json_extract(NEW.payload, '$.cost_usd') IS NULL THEN cost_usd
                    ELSE COALESCE(cost_usd, 0) + json_extract(NEW.payload, '$.cost_usd') END,
    latency_s = json_extract(NEW.payload, '$.latency_s'), resolved_model = json_extract(NEW.payload, '$.resolved_model'), calls = calls + 1,
    updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt') AND NOT (json_extract(NEW.payload, '$.superseded') IS 1);
END""",
    "LLMCallFailed": """CREATE TRIGGER project_LLMCallFailed INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'LLMCallFailed'
BEGIN
-- A failed try: counted, and its error kept. When the claim is given up with it (released: the model
-- was stopped) the generation is pending again.
UPDATE gen_state SET failed_calls = failed_calls + 1, calls = calls + 1,
    error = json_extract(NEW.payload, '$.error_class') || ': ' || json_extract(NEW.payload, '$.message'), parse_failed = 0,
    status = CASE WHEN (json_extract(NEW.payload, '$.released') IS 1) THEN 'planned' ELSE status END,
    lease_until = CASE WHEN (json_extract(NEW.payload, '$.released') IS 1) THEN NULL ELSE lease_until END,
    worker = CASE WHEN (json_extract(NEW.payload, '$.released') IS 1) THEN NULL ELSE worker END,
    updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt') AND NOT (json_extract(NEW.payload, '$.superseded') IS 1);
END""",
    "ClaimReleased": """CREATE TRIGGER project_ClaimReleased INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'ClaimReleased'
BEGIN
-- A claim given back (stopped, interrupted, out of budget): the running generation is pending again.
UPDATE gen_state SET status = 'planned', lease_until = NULL, worker = NULL,
    updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt') AND status = 'running';
END""",
    "ResponseParsed": """CREATE TRIGGER project_ResponseParsed INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'ResponseParsed'
BEGIN
-- The answer parsed: the generation is completed, with its parsed text. A re-parse (daydream reparse)
-- also records the template and parser it used.
UPDATE gen_state SET parsed_hash = json_extract(NEW.payload, '$.parsed_hash'), status = 'completed', error = NULL,
    parse_failed = 0, lease_until = NULL, updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt');
UPDATE gen_state SET template_hash = COALESCE(json_extract(NEW.payload, '$.template_hash'), template_hash),
    parser = COALESCE(json_extract(NEW.payload, '$.parser'), parser)
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt') AND (json_extract(NEW.payload, '$.reparsed') IS 1);
END""",
    "ScoreRecorded": """CREATE TRIGGER project_ScoreRecorded INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'ScoreRecorded'
BEGIN
-- An evaluation's score, with the scale it was read on.
UPDATE gen_state SET score = json_extract(NEW.payload, '$.score'), scale_min = COALESCE(json_extract(NEW.payload, '$.scale[0]'), 0), scale_max = COALESCE(json_extract(NEW.payload, '$.scale[1]'), 9),
    updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt');
END""",
    "ParseFailed": """CREATE TRIGGER project_ParseFailed INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'ParseFailed'
BEGIN
-- The answer did not parse: the attempt failed, parse_failed says why (error keeps 'ParseFailed: ' and
-- the parser's reason), and no older score stays. A re-parse also records the template and parser it
-- used.
UPDATE gen_state SET status = 'failed', error = 'ParseFailed: ' || json_extract(NEW.payload, '$.reason'),
    parse_failed = 1, score = NULL, scale_min = NULL, scale_max = NULL, lease_until = NULL,
    updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt');
UPDATE gen_state SET template_hash = COALESCE(json_extract(NEW.payload, '$.template_hash'), template_hash),
    parser = COALESCE(json_extract(NEW.payload, '$.parser'), parser)
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt') AND (json_extract(NEW.payload, '$.reparsed') IS 1);
END""",
    "GenerationFailed": """CREATE TRIGGER project_GenerationFailed INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'GenerationFailed'
BEGIN
-- The attempt failed for another reason than parsing (the stage refused the answer, the calls gave up
-- …): its reason, the answer if there was one, no score.
UPDATE gen_state SET status = 'failed', error = json_extract(NEW.payload, '$.reason'), parse_failed = 0,
    raw_hash = COALESCE(json_extract(NEW.payload, '$.raw_hash'), raw_hash), score = NULL, scale_min = NULL, scale_max = NULL,
    lease_until = NULL, updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt');
END""",
    "GenerationRetried": """CREATE TRIGGER project_GenerationRetried INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'GenerationRetried'
BEGIN
-- A forced new attempt: the generation is planned again with nothing of the old attempt's results (its
-- calls, tokens and cost stay counted).
UPDATE gen_state SET attempt = json_extract(NEW.payload, '$.attempt'), status = 'planned', prompt_hash = NULL,
    raw_hash = NULL, parsed_hash = NULL, score = NULL, scale_min = NULL, scale_max = NULL,
    finish_reason = NULL, error = NULL, parse_failed = 0, lease_until = NULL, worker = NULL,
    latency_s = NULL, updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id');
END""",
    "ComboDefined": """CREATE TRIGGER project_ComboDefined INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'ComboDefined'
BEGIN
-- A concept combination: its row in combos.
INSERT INTO combos (combo_id, concept_ids, level, k, seq)
SELECT json_extract(NEW.payload, '$.combo_id'), json_extract(NEW.payload, '$.concept_ids'), json_extract(NEW.payload, '$.level'), json_extract(NEW.payload, '$.k'), NEW.seq
WHERE json_extract(NEW.payload, '$.concept_ids') IS NOT NULL
ON CONFLICT DO NOTHING;
END""",
}
# ------------------------------------------------------------------------------------------------

# Views that told a parse failure by the prefix of gen_state.error now read gen_state.parse_failed.
# Each is the previous definition (0008's scores, 0007's failures, 0010's evaluator_agreement) with
# only that test changed.
VIEWS = {
    "scores": """-- One row per evaluation generation: the essay it judged, rubric, evaluator and score (or why not), with the score's scale and the score on 0-1.
SELECT v.gen_id AS evaluation_gen_id, v.parent_gen_id AS essay_gen_id, v.template_id AS rubric,
       v.model_id AS evaluator, v.replicate, v.attempt, v.status, v.score,
       CASE WHEN v.score IS NOT NULL THEN 'parsed'
            WHEN v.status = 'failed' AND v.parse_failed = 1 THEN 'parse_failed'
            WHEN v.status = 'completed' THEN 'no_score'
            WHEN v.status = 'failed' THEN 'failed'
            ELSE 'pending' END AS parse_status,
       -- a parse failure's error is 'ParseFailed: ' and the parser's reason: the reason alone
       CASE WHEN v.parse_failed = 1 THEN substr(v.error, 14) END AS parse_error,
       v.error, v.imported, v.scale_min, v.scale_max,
       CASE WHEN v.score IS NOT NULL AND v.scale_max > v.scale_min
            THEN (v.score - v.scale_min) * 1.0 / (v.scale_max - v.scale_min) END AS score_norm
FROM gen_state v
WHERE v.stage = 'evaluation'""",
    "failures": """-- One row per generation whose current attempt failed: what, why, and the event that says so.
SELECT g.gen_id, g.stage, g.template_id, g.model_id, g.attempt, g.origin_cohort_id,
       CASE WHEN g.parse_failed = 1 THEN 'parse' ELSE 'generation' END AS kind,
       g.error AS reason, g.calls, g.failed_calls,
       (SELECT COUNT(*) FROM gen_state c WHERE c.parent_gen_id = g.gen_id) AS blocked_children,
       (SELECT x.seq FROM events x WHERE x.stream = 'gen:' || g.gen_id
          AND +x.type IN ('GenerationFailed', 'ParseFailed') ORDER BY x.version DESC LIMIT 1) AS failed_seq,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.raw_hash) AS response,
       COALESCE((SELECT CASE WHEN x.type = 'ParseFailed' THEN 'ParseFailed'
                             ELSE COALESCE(json_extract(x.payload, '$.error_class'), 'Unknown') END
                 FROM events x WHERE x.stream = 'gen:' || g.gen_id
          AND +x.type IN ('GenerationFailed', 'ParseFailed') ORDER BY x.version DESC LIMIT 1), 'Imported') AS error_class
FROM gen_state g
WHERE g.status = 'failed'""",
    "evaluator_agreement": """-- One row per rubric and evaluator model: how that evaluator scores (compare rows of one rubric), on the rubric's scale (score_norm if its scores mix scales).
SELECT rubric, evaluator, evaluations, scored, essays,
       CASE WHEN mixed THEN ROUND(s1n / scored, 6) ELSE ROUND(s1 / scored, 4) END AS mean,
       CASE WHEN scored > 1 AND mixed THEN ROUND(sqrt(MAX(0.0, (s2n - s1n * s1n / scored) / (scored - 1))), 6)
            WHEN scored > 1 THEN ROUND(sqrt(MAX(0.0, (s2 - s1 * s1 / scored) / (scored - 1))), 4) END AS stdev,
       parse_failure_rate,
       CASE WHEN mixed THEN '0-1 (score_norm)' ELSE low END AS scale
FROM (SELECT v.template_id AS rubric, v.model_id AS evaluator, COUNT(*) AS evaluations,
             COUNT(v.score) AS scored, COUNT(DISTINCT v.parent_gen_id) AS essays, SUM(v.score) AS s1,
             SUM(v.score * v.score) AS s2, SUM(v.norm) AS s1n, SUM(v.norm * v.norm) AS s2n,
             MIN(v.scale_min) || '-' || MIN(v.scale_max) AS low, (MIN(v.scale_min) != MAX(v.scale_min) OR MIN(v.scale_max) != MAX(v.scale_max)) AS mixed,
             ROUND(1.0 * SUM(v.status = 'failed' AND v.parse_failed = 1) / COUNT(*), 4)
             AS parse_failure_rate
      FROM (SELECT template_id, model_id, parent_gen_id, score, status, parse_failed, CASE WHEN g.scale_max > g.scale_min THEN (g.score - g.scale_min) * 1.0 / (g.scale_max - g.scale_min) END AS norm,
                   CASE WHEN g.score IS NOT NULL THEN scale_min END AS scale_min,
                   CASE WHEN g.score IS NOT NULL THEN scale_max END AS scale_max
            FROM gen_state g WHERE g.stage = 'evaluation') v
      GROUP BY v.template_id, v.model_id)""",
}

# Before this revision, as the earlier migrations made it: the one feed trigger of 0004 (0002's
# statements with 0008's appended) and the three views above.
PREVIOUS_VIEWS = {"scores": ("0008_scores_scale", "SCORES"),
                  "failures": ("0007_calls_sent_and_workers", "FAILURES"),
                  "evaluator_agreement": ("0010_read_side", "VIEWS")}


def _migration(name: str) -> ModuleType:
    """An earlier revision's module (for downgrade), read from its file: those files never change."""
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"daydream_migration_{name}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _previous_view(name: str) -> str:
    revision_name, constant = PREVIOUS_VIEWS[name]
    value = getattr(_migration(revision_name), constant)
    return (value[name] if isinstance(value, dict) else value).strip()


def _replace_view(name: str, sql: str) -> None:
    op.execute(f"DROP VIEW IF EXISTS {name}")
    op.execute(f"CREATE VIEW {name} AS {sql}")


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        _upgrade_postgresql()
        return
    op.add_column("gen_state", sa.Column(
        "parse_failed", sa.Integer, nullable=False, server_default="0",
        comment="1 while error is a parse failure's (ParseFailed: reason): the answer did not parse"))
    # What the views read from error until now, once; from here on the projections set it.
    op.execute("UPDATE gen_state SET parse_failed = 1 WHERE error LIKE 'ParseFailed:%'")
    op.execute("DROP TRIGGER IF EXISTS project_feed")
    op.execute("DELETE FROM projected_types")
    op.bulk_insert(sa.table("projected_types", sa.column("type", sa.Text)),
                   [{"type": t} for t in PROJECTED_TYPES])
    for sql in PROJECTION_TRIGGERS.values():
        op.execute(sql)
    for name, sql in VIEWS.items():
        _replace_view(name, sql)


def _upgrade_postgresql() -> None:
    """PostgreSQL (issue 17): revisions 0002-0010 do nothing there; this one installs what they and it
    create on SQLite, as of this revision, from the frozen script beside it (0011_postgresql.sql).
    No PostgreSQL ledger predates this revision, so there is nothing older to upgrade from."""
    script = Path(__file__).with_name("0011_postgresql.sql").read_text(encoding="utf-8")
    # Straight to the driver, without parameters: the script's % and : are SQL, not placeholders.
    op.get_bind().connection.driver_connection.cursor().execute(script)


def downgrade() -> None:
    for name in VIEWS:
        _replace_view(name, _previous_view(name))
    for event_type in PROJECTION_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS project_{event_type}")
    # 0004's feed trigger as 0008 left it: 0002's statements, each guarded by its type, then 0008's.
    first, scales = _migration("0002_projections"), _migration("0008_scores_scale")
    statements = "\n".join(first.guard(t, body) for t, body in first.TRIGGERS.items())
    op.execute("CREATE TRIGGER project_feed INSTEAD OF INSERT ON projection_feed "
               f"BEGIN {statements.rstrip()}\n{scales.STATEMENTS}\n END")
    op.execute("DELETE FROM projected_types")
    op.bulk_insert(sa.table("projected_types", sa.column("type", sa.Text)),
                   [{"type": t} for t in first.TRIGGERS])
    op.drop_column("gen_state", "parse_failed")
