"""Scores carry their rubric's scale: ``gen_state.scale_min/scale_max`` and ``scores.score_norm``.

Rubrics may now score on 0-10, 1-5 … (issue 12), so a score means nothing without its scale.
``ScoreRecorded`` (and ``GenerationImported``) carry ``scale: [min, max]``; events written before
carry none and were all on 0-9. This migration

- adds ``scale_min`` and ``scale_max`` to ``gen_state`` and fills them for the scores already there;
- appends statements to 0004's ``project_feed`` trigger (after all of its own, so they see the row
  its statements produced): a score's scale is kept with it; a parse that fails, or a generation
  failed by its stage, no longer leaves an older score in place (``daydream reparse`` can turn a
  scored answer into a parse failure); a retry clears the scale with the score; and a re-parse
  (``reparsed: true``) records the template hash and parser it used;
- replaces the ``scores`` view (only that view): the same columns, then ``scale_min``,
  ``scale_max`` and ``score_norm`` = (score - min) / (max - min), so cohorts that mix scales
  compare on 0-1.

Revision ID: 0008_scores_scale
Revises: 0007_calls_sent_and_workers
Create Date: 2026-12-01
"""

import importlib.util
import re
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0008_scores_scale"
down_revision = "0007_calls_sent_and_workers"
branch_labels = None
depends_on = None


def p(field: str) -> str:
    return f"json_extract(NEW.payload, '$.{field}')"


CURRENT = f"gen_id = {p('gen_id')} AND attempt = {p('attempt')}"
# Scores recorded before scales existed were all on 0-9.
SCALE_MIN = f"COALESCE({p('scale[0]')}, 0)"
SCALE_MAX = f"COALESCE({p('scale[1]')}, 9)"

MARK = "/* 0008_scores_scale */"
STATEMENTS = f"""{MARK}
UPDATE gen_state SET scale_min = {SCALE_MIN}, scale_max = {SCALE_MAX}
    WHERE NEW.type = 'ScoreRecorded' AND {CURRENT};
UPDATE gen_state SET scale_min = CASE WHEN score IS NULL THEN NULL ELSE {SCALE_MIN} END,
    scale_max = CASE WHEN score IS NULL THEN NULL ELSE {SCALE_MAX} END
    WHERE NEW.type = 'GenerationImported' AND gen_id = {p('gen_id')} AND updated_seq = NEW.seq;
UPDATE gen_state SET score = NULL, scale_min = NULL, scale_max = NULL
    WHERE NEW.type IN ('ParseFailed', 'GenerationFailed') AND {CURRENT}
      AND (score IS NOT NULL OR scale_min IS NOT NULL);
UPDATE gen_state SET scale_min = NULL, scale_max = NULL
    WHERE NEW.type = 'GenerationRetried' AND gen_id = {p('gen_id')};
UPDATE gen_state SET template_hash = COALESCE({p('template_hash')}, template_hash),
    parser = COALESCE({p('parser')}, parser)
    WHERE NEW.type IN ('ResponseParsed', 'ParseFailed') AND {p('reparsed')} = 1 AND {CURRENT};
{MARK}"""

_TRIGGER = re.compile(r"^CREATE TRIGGER project_feed INSTEAD OF INSERT ON projection_feed BEGIN (?P<body>.*) END$",
                      re.S)

# The latest event that set the generation's score carries its scale (none: 0-9).
FILL = """
UPDATE gen_state SET
    scale_min = COALESCE((SELECT json_extract(e.payload, '$.scale[0]') FROM events e
                          WHERE e.stream = 'gen:' || gen_state.gen_id
                            AND e.type IN ('ScoreRecorded', 'GenerationImported')
                          ORDER BY e.version DESC LIMIT 1), 0),
    scale_max = COALESCE((SELECT json_extract(e.payload, '$.scale[1]') FROM events e
                          WHERE e.stream = 'gen:' || gen_state.gen_id
                            AND e.type IN ('ScoreRecorded', 'GenerationImported')
                          ORDER BY e.version DESC LIMIT 1), 9)
WHERE score IS NOT NULL"""

SCORES = """-- One row per evaluation generation: the essay it judged, rubric, evaluator and score (or why not), with the score's scale and the score on 0-1.
SELECT v.gen_id AS evaluation_gen_id, v.parent_gen_id AS essay_gen_id, v.template_id AS rubric,
       v.model_id AS evaluator, v.replicate, v.attempt, v.status, v.score,
       CASE WHEN v.score IS NOT NULL THEN 'parsed'
            WHEN v.status = 'failed' AND v.error LIKE 'ParseFailed:%' THEN 'parse_failed'
            WHEN v.status = 'completed' THEN 'no_score'
            WHEN v.status = 'failed' THEN 'failed'
            ELSE 'pending' END AS parse_status,
       CASE WHEN v.error LIKE 'ParseFailed:%' THEN substr(v.error, 14) END AS parse_error,
       v.error, v.imported, v.scale_min, v.scale_max,
       CASE WHEN v.score IS NOT NULL AND v.scale_max > v.scale_min
            THEN (v.score - v.scale_min) * 1.0 / (v.scale_max - v.scale_min) END AS score_norm
FROM gen_state v
WHERE v.stage = 'evaluation'"""


def _trigger_body() -> str:
    row = op.get_bind().exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'project_feed'").first()
    match = _TRIGGER.match(row[0]) if row is not None else None
    if match is None:
        raise RuntimeError("trigger project_feed is missing or does not have the shape migration 0004 gave it")
    return match["body"]


def _set_trigger(body: str) -> None:
    op.execute("DROP TRIGGER project_feed")
    op.execute(f"CREATE TRIGGER project_feed INSTEAD OF INSERT ON projection_feed BEGIN {body} END")


def _view_0003() -> str:
    """0003's ``scores`` definition (for downgrade), read from that migration rather than copied."""
    path = Path(__file__).with_name("0003_views.py")
    spec = importlib.util.spec_from_file_location("daydream_migration_0003", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.VIEWS["scores"].strip()


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        return  # not yet on PostgreSQL (issue 17): see the README's PostgreSQL section
    op.add_column("gen_state", sa.Column("scale_min", sa.Integer, comment="Lowest score of the score's scale"))
    op.add_column("gen_state", sa.Column("scale_max", sa.Integer, comment="Highest score of the score's scale"))
    op.execute(FILL)
    body = _trigger_body()
    if MARK not in body:
        _set_trigger(f"{body.rstrip()}\n{STATEMENTS}\n")
    op.execute("DROP VIEW IF EXISTS scores")
    op.execute(f"CREATE VIEW scores AS {SCORES}")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS scores")
    op.execute(f"CREATE VIEW scores AS {_view_0003()}")
    body = _trigger_body()
    if STATEMENTS not in body:
        raise RuntimeError("trigger project_feed lacks the statements migration 0008 added")
    _set_trigger(body.replace(f"\n{STATEMENTS}\n", ""))
    op.drop_column("gen_state", "scale_max")
    op.drop_column("gen_state", "scale_min")
