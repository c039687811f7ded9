"""The read side on a large ledger, and scores of different scales kept apart.

What 0003's read projections kept, and what changes here (issues 12 and 15):

- ``cohort_totals`` gains ``unpriced``: generations that made calls whose cost was never recorded.
  ``daydream status`` counted them by walking every membership of the cohort (130 ms at 1,000,000
  events); now it sums a few rows of this table.
- ``cohort_essay_scores`` gains ``total_norm_e9`` (the sum of the scores' ``score_norm``, in
  billionths: an integer, so its running sums are exact) with ``mean_norm``, and the essay's lineage (combo, draft, templates and models), filled once when the
  row is created: ``essay_rankings`` no longer looks every essay and draft up in ``gen_state``
  (35 ms of its 50 at 1,000,000 events, paid again by Datasette's row count).
- ``cohort_scales`` (new) counts each cohort's scored evaluations per rubric scale, so a view can
  tell at once whether a cohort's rubrics mix scales.
- ``essay_rankings`` ranks a cohort whose rubrics mix scales on ``mean_norm`` (the mean of
  ``score_norm``, 0-1), as ``daydream compare`` and ``evaluation_design`` (0009) compare such a
  cohort; a cohort on one scale keeps its raw mean. Its new ``scale`` column says which.
  ``essay_scores`` and ``evaluator_agreement`` do the same for their groups (an essay's or an
  evaluator's scores on one rubric), with a ``scale`` column too; ``cohort_progress`` and ``spend``
  gain ``unpriced``. Every other column keeps its place and meaning.

The triggers of 0003 that keep ``cohort_totals`` and ``cohort_essay_scores`` are replaced by the
same triggers extended to the new columns and to ``cohort_scales`` (same names, same events, same
transaction as the change behind them). Views replaced: ``essay_rankings``, ``essay_scores`` and
``evaluator_agreement`` (no other view is touched).

Revision ID: 0010_read_side
Revises: 0009_comparisons
Create Date: 2026-12-03
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0010_read_side"
down_revision = "0009_comparisons"
branch_labels = None
depends_on = None

TOTALS = ("generations", "completed", "failed", "running", "calls", "failed_calls", "prompt_tokens",
          "completion_tokens", "cost_usd", "unpriced")
# A generation that made calls (not only failed ones) but has no recorded cost.
UNPRICED = "(COALESCE({g}.calls, 0) > COALESCE({g}.failed_calls, 0) AND {g}.cost_usd IS NULL)"
# A score's position on its rubric's scale (the scores view's score_norm), and the scale as text.
NORM = ("CASE WHEN {g}.scale_max > {g}.scale_min THEN ({g}.score - {g}.scale_min) * 1.0 "
        "/ ({g}.scale_max - {g}.scale_min) END")
SCALE = "COALESCE({g}.scale_min || '-' || {g}.scale_max, '')"
# score_norm kept as an integer count of billionths: running sums of integers are exact whatever
# the order of additions and removals, so the counters equal a recomputation bit for bit.
NORM_E9 = "COALESCE(CAST(ROUND((" + NORM + ") * 1e9) AS INTEGER), 0)"
# A score counts once its scale is known: the feed sets a score, then (0008's statements) its scale,
# so the read counters move once per score rather than twice.
SCORED = ("{g}.stage = 'evaluation' AND {g}.score IS NOT NULL AND {g}.scale_min IS NOT NULL "
          "AND {g}.parent_gen_id IS NOT NULL")


def _totals_values(g: str, sign: str) -> str:
    parts = [sign, f"({g}.status = 'completed')", f"({g}.status = 'failed')", f"({g}.status = 'running')",
             f"COALESCE({g}.calls, 0)", f"COALESCE({g}.failed_calls, 0)", f"COALESCE({g}.prompt_tokens, 0)",
             f"COALESCE({g}.completion_tokens, 0)", f"COALESCE({g}.cost_usd, 0)", UNPRICED.format(g=g)]
    return ", ".join([parts[0]] + [f"{sign} * {p}" for p in parts[1:]])


UPSERT_TOTALS = ("ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET "
                 + ", ".join(f"{c} = {c} + excluded.{c}" for c in TOTALS))
UPSERT_ESSAY = ("ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = n + excluded.n, "
                "total = total + excluded.total, total_norm_e9 = total_norm_e9 + excluded.total_norm_e9")
UPSERT_SCALE = "ON CONFLICT (cohort_id, scale) DO UPDATE SET n = n + excluded.n"


def _totals_from_gen(g: str, sign: str) -> str:
    return (f"INSERT INTO cohort_totals (cohort_id, stage, model_key, {', '.join(TOTALS)}) "
            f"SELECT m.cohort_id, {g}.stage, COALESCE({g}.model_id, ''), {_totals_values(g, sign)} "
            f"FROM cohort_members m WHERE m.gen_id = {g}.gen_id {UPSERT_TOTALS};")


def _totals_from_member(m: str, sign: str) -> str:
    return (f"INSERT INTO cohort_totals (cohort_id, stage, model_key, {', '.join(TOTALS)}) "
            f"SELECT {m}.cohort_id, g.stage, COALESCE(g.model_id, ''), {_totals_values('g', sign)} "
            f"FROM gen_state g WHERE g.gen_id = {m}.gen_id {UPSERT_TOTALS};")


def _scores_from_gen(g: str, sign: str) -> str:
    """A scored evaluation's share of its essay's sums and of its scale's count, in every cohort."""
    return (f"INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) "
            f"SELECT m.cohort_id, {g}.parent_gen_id, {sign}, {sign} * {g}.score, "
            f"{sign} * {NORM_E9.format(g=g)} "
            f"FROM cohort_members m WHERE m.gen_id = {g}.gen_id AND {SCORED.format(g=g)} {UPSERT_ESSAY};"
            f"INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, {SCALE.format(g=g)}, {sign} "
            f"FROM cohort_members m WHERE m.gen_id = {g}.gen_id AND {SCORED.format(g=g)} {UPSERT_SCALE};")


def _scores_from_member(m: str, sign: str) -> str:
    return (f"INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) "
            f"SELECT {m}.cohort_id, g.parent_gen_id, {sign}, {sign} * g.score, "
            f"{sign} * {NORM_E9.format(g='g')} "
            f"FROM gen_state g WHERE g.gen_id = {m}.gen_id AND {SCORED.format(g='g')} {UPSERT_ESSAY};"
            f"INSERT INTO cohort_scales (cohort_id, scale, n) SELECT {m}.cohort_id, {SCALE.format(g='g')}, {sign} "
            f"FROM gen_state g WHERE g.gen_id = {m}.gen_id AND {SCORED.format(g='g')} {UPSERT_SCALE};")


def _totals_delta() -> str:
    """Apply the change from OLD to NEW of one generation (same stage and model) in one upsert."""
    def d(expr: str) -> str:
        return f"{expr.format(g='NEW')} - {expr.format(g='OLD')}"

    deltas = ", ".join([
        "0", d("({g}.status = 'completed')"), d("({g}.status = 'failed')"), d("({g}.status = 'running')"),
        d("COALESCE({g}.calls, 0)"), d("COALESCE({g}.failed_calls, 0)"), d("COALESCE({g}.prompt_tokens, 0)"),
        d("COALESCE({g}.completion_tokens, 0)"), d("COALESCE({g}.cost_usd, 0)"), d(UNPRICED)])
    return (f"INSERT INTO cohort_totals (cohort_id, stage, model_key, {', '.join(TOTALS)}) "
            f"SELECT m.cohort_id, NEW.stage, COALESCE(NEW.model_id, ''), {deltas} "
            f"FROM cohort_members m WHERE m.gen_id = NEW.gen_id {UPSERT_TOTALS};")


_TOTALS_CHANGED = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in (
    "status", "calls", "failed_calls", "prompt_tokens", "completion_tokens", "cost_usd"))
_KEY_SAME = "OLD.model_id IS NEW.model_id AND OLD.stage IS NEW.stage"
_SCORE_CHANGED = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in (
    "score", "parent_gen_id", "stage", "scale_min", "scale_max"))
_SCORED_EVAL = "{g}.stage = 'evaluation' AND {g}.score IS NOT NULL AND {g}.scale_min IS NOT NULL"

# The lineage an essay's row shows in essay_rankings, read once from gen_state: when the row is
# created, and when the essay itself arrives after its scores (a projection rebuilt out of order).
LINEAGE = ("UPDATE cohort_essay_scores SET combo_id = e.combo_id, draft_gen_id = d.gen_id, "
           "draft_template = d.template_id, draft_model = d.model_id, essay_template = e.template_id, "
           "essay_model = e.model_id "
           "FROM gen_state e LEFT JOIN gen_state d ON d.gen_id = e.parent_gen_id "
           "WHERE e.gen_id = cohort_essay_scores.essay_gen_id AND {where};")

# The same triggers as 0003 (names, events, conditions), each extended to the new columns.
READ_TRIGGERS = {
    "read_gen_inserted": ("AFTER INSERT ON gen_state", _totals_from_gen("NEW", "1")),
    "read_gen_inserted_scored": (f"AFTER INSERT ON gen_state WHEN {_SCORED_EVAL.format(g='NEW')}",
                                 _scores_from_gen("NEW", "1")),
    "read_gen_deleted": ("AFTER DELETE ON gen_state",
                         _totals_from_gen("OLD", "-1") + _scores_from_gen("OLD", "-1")),
    "read_gen_totals_changed": (
        "AFTER UPDATE OF status, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd "
        f"ON gen_state WHEN ({_TOTALS_CHANGED}) AND {_KEY_SAME}", _totals_delta()),
    "read_gen_key_changed": (
        f"AFTER UPDATE OF model_id, stage ON gen_state WHEN NOT ({_KEY_SAME})",
        _totals_from_gen("OLD", "-1") + _totals_from_gen("NEW", "1")),
    "read_gen_score_changed": (
        f"AFTER UPDATE OF score, parent_gen_id, stage, scale_min, scale_max ON gen_state WHEN ({_SCORE_CHANGED}) "
        f"AND ({_SCORED_EVAL.format(g='OLD')} OR {_SCORED_EVAL.format(g='NEW')})",
        _scores_from_gen("OLD", "-1") + _scores_from_gen("NEW", "1")),
    "read_member_inserted": ("AFTER INSERT ON cohort_members", _totals_from_member("NEW", "1")),
    "read_member_inserted_evaluation": ("AFTER INSERT ON cohort_members WHEN NEW.stage = 'evaluation'",
                                        _scores_from_member("NEW", "1")),
    "read_member_deleted": ("AFTER DELETE ON cohort_members",
                            _totals_from_member("OLD", "-1") + _scores_from_member("OLD", "-1")),
}
NEW_TRIGGERS = {
    "read_essay_scores_lineage": ("AFTER INSERT ON cohort_essay_scores",
                                  LINEAGE.format(where="cohort_essay_scores.rowid = NEW.rowid")),
    "read_gen_inserted_essay": ("AFTER INSERT ON gen_state WHEN NEW.stage = 'essay'",
                                LINEAGE.format(where="cohort_essay_scores.essay_gen_id = NEW.gen_id")),
}

FILL_TOTALS = f"""
INSERT INTO cohort_totals (cohort_id, stage, model_key, {', '.join(TOTALS)})
SELECT m.cohort_id, g.stage, COALESCE(g.model_id, ''), COUNT(*), SUM(g.status = 'completed'),
       SUM(g.status = 'failed'), SUM(g.status = 'running'), SUM(COALESCE(g.calls, 0)),
       SUM(COALESCE(g.failed_calls, 0)), SUM(COALESCE(g.prompt_tokens, 0)),
       SUM(COALESCE(g.completion_tokens, 0)), SUM(COALESCE(g.cost_usd, 0)), SUM({UNPRICED.format(g='g')})
FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id
GROUP BY m.cohort_id, g.stage, COALESCE(g.model_id, '')"""
FILL_ESSAYS = f"""
INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9, combo_id, draft_gen_id,
                                 draft_template, draft_model, essay_template, essay_model)
SELECT s.cohort_id, s.essay_gen_id, s.n, s.total, s.total_norm_e9, e.combo_id, d.gen_id, d.template_id, d.model_id,
       e.template_id, e.model_id
FROM (SELECT m.cohort_id, g.parent_gen_id AS essay_gen_id, COUNT(*) AS n, SUM(g.score) AS total,
             SUM({NORM_E9.format(g='g')}) AS total_norm_e9
      FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id
      WHERE {SCORED.format(g='g')}
      GROUP BY m.cohort_id, g.parent_gen_id) s
LEFT JOIN gen_state e ON e.gen_id = s.essay_gen_id
LEFT JOIN gen_state d ON d.gen_id = e.parent_gen_id"""
FILL_SCALES = f"""
INSERT INTO cohort_scales (cohort_id, scale, n)
SELECT m.cohort_id, {SCALE.format(g='g')}, COUNT(*)
FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id
WHERE {SCORED.format(g='g')}
GROUP BY m.cohort_id, {SCALE.format(g='g')}"""

# The scales a cohort's scored evaluations use, and whether there is more than one.
SCALES_CTE = """scale_sets AS (
    SELECT cohort_id, COUNT(*) AS scales, group_concat(scale, ', ') AS shown
    FROM (SELECT cohort_id, scale FROM cohort_scales WHERE n > 0 AND scale != '' ORDER BY cohort_id, scale)
    GROUP BY cohort_id)"""

# A group's scale (from its scored rows) and whether they mix scales, without building text per row.
SCALE_OF_GROUP = ("MIN(v.scale_min) || '-' || MIN(v.scale_max) AS low, "
                  "(MIN(v.scale_min) != MAX(v.scale_min) OR MIN(v.scale_max) != MAX(v.scale_max)) AS mixed")

_RANKED = """SELECT c.cohort_id, c.essay_gen_id, c.combo_id, c.draft_gen_id, c.draft_template, c.draft_model,
             c.essay_template, c.essay_model, c.{mean} AS mean, c.n,
             RANK() OVER (PARTITION BY c.cohort_id ORDER BY c.{mean} DESC) AS rank, {scale} AS scale
      FROM cohort_essay_scores c {join} scale_sets k ON k.cohort_id = c.cohort_id
      WHERE c.n > 0 AND {which}"""

VIEWS = {
    "essay_rankings": f"""
-- One row per cohort and scored essay: the mean of all its scores in that cohort, rank 1 = best. A cohort whose rubrics mix scales is ranked on score_norm (0-1).
WITH {SCALES_CTE}
SELECT cohort_id, essay_gen_id, combo_id, draft_gen_id, draft_template, draft_model, essay_template,
       essay_model, mean, n, rank, scale
FROM ({_RANKED.format(mean="mean", scale="COALESCE(k.shown, '')", join="LEFT JOIN",
                      which="COALESCE(k.scales, 0) <= 1")}
      UNION ALL
      {_RANKED.format(mean="mean_norm", scale="'0-1 (score_norm; rubrics on ' || k.shown || ')'", join="JOIN",
                      which="k.scales > 1")})""",
    "essay_scores": f"""
-- One row per essay and rubric: statistics of its scores over evaluators and replicates, on the rubric's scale (score_norm if they mix scales).
SELECT essay_gen_id, rubric, n, evaluators,
       CASE WHEN mixed THEN ROUND(s1n / n, 6) ELSE ROUND(s1 / n, 4) END AS mean,
       CASE WHEN mixed THEN minn ELSE mn END AS min, CASE WHEN mixed THEN maxn ELSE mx END AS max,
       CASE WHEN n > 1 AND mixed THEN ROUND(sqrt(MAX(0.0, (s2n - s1n * s1n / n) / (n - 1))), 6)
            WHEN n > 1 THEN ROUND(sqrt(MAX(0.0, (s2 - s1 * s1 / n) / (n - 1))), 4) END AS stdev,
       CASE WHEN mixed THEN '0-1 (score_norm)' ELSE low END AS scale
FROM (SELECT v.parent_gen_id AS essay_gen_id, v.template_id AS rubric, COUNT(v.score) AS n,
             COUNT(DISTINCT v.model_id) AS evaluators, SUM(v.score) AS s1, SUM(v.score * v.score) AS s2,
             MIN(v.score) AS mn, MAX(v.score) AS mx, SUM(v.norm) AS s1n, SUM(v.norm * v.norm) AS s2n,
             MIN(v.norm) AS minn, MAX(v.norm) AS maxn, {SCALE_OF_GROUP}
      FROM (SELECT parent_gen_id, template_id, model_id, score, scale_min, scale_max, {NORM.format(g='g')} AS norm
            FROM gen_state g WHERE g.stage = 'evaluation' AND g.score IS NOT NULL) v
      GROUP BY v.parent_gen_id, v.template_id)""",
    "evaluator_agreement": f"""
-- One row per rubric and evaluator model: how that evaluator scores (compare rows of one rubric), on the rubric's scale (score_norm if its scores mix scales).
SELECT rubric, evaluator, evaluations, scored, essays,
       CASE WHEN mixed THEN ROUND(s1n / scored, 6) ELSE ROUND(s1 / scored, 4) END AS mean,
       CASE WHEN scored > 1 AND mixed THEN ROUND(sqrt(MAX(0.0, (s2n - s1n * s1n / scored) / (scored - 1))), 6)
            WHEN scored > 1 THEN ROUND(sqrt(MAX(0.0, (s2 - s1 * s1 / scored) / (scored - 1))), 4) END AS stdev,
       parse_failure_rate,
       CASE WHEN mixed THEN '0-1 (score_norm)' ELSE low END AS scale
FROM (SELECT v.template_id AS rubric, v.model_id AS evaluator, COUNT(*) AS evaluations,
             COUNT(v.score) AS scored, COUNT(DISTINCT v.parent_gen_id) AS essays, SUM(v.score) AS s1,
             SUM(v.score * v.score) AS s2, SUM(v.norm) AS s1n, SUM(v.norm * v.norm) AS s2n,
             {SCALE_OF_GROUP},
             ROUND(1.0 * SUM(v.status = 'failed' AND v.error LIKE 'ParseFailed:%') / COUNT(*), 4)
             AS parse_failure_rate
      FROM (SELECT template_id, model_id, parent_gen_id, score, status, error, {NORM.format(g='g')} AS norm,
                   CASE WHEN g.score IS NOT NULL THEN scale_min END AS scale_min,
                   CASE WHEN g.score IS NOT NULL THEN scale_max END AS scale_max
            FROM gen_state g WHERE g.stage = 'evaluation') v
      GROUP BY v.template_id, v.model_id)""",
}

INDEXES = {
    # essay_rankings of a cohort on mixed scales: its essays in score_norm order.
    "ix_cohort_essay_scores_rank_norm": "cohort_essay_scores (cohort_id, mean_norm DESC)",
    # An essay's standing in every cohort (a generation's page), and its lineage filled in later.
    "ix_cohort_essay_scores_essay": "cohort_essay_scores (essay_gen_id)",
}
ESSAY_COLUMNS = {
    "total_norm_e9": "INTEGER NOT NULL DEFAULT 0",
    "combo_id": "TEXT", "draft_gen_id": "TEXT", "draft_template": "TEXT", "draft_model": "TEXT",
    "essay_template": "TEXT", "essay_model": "TEXT",
    # Ranking reads a cohort's essays in this order straight from an index.
    "mean_norm": "REAL GENERATED ALWAYS AS (CASE WHEN n > 0 THEN ROUND(total_norm_e9 / 1e9 / n, 6) END) VIRTUAL",
}


def _migration_0003():
    """0003's triggers and views (for downgrade), read from that migration rather than copied here."""
    path = Path(__file__).with_name("0003_views.py")
    spec = importlib.util.spec_from_file_location("daydream_migration_0003", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        return  # not yet on PostgreSQL (issue 17): see the README's PostgreSQL section
    for name in READ_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("ALTER TABLE cohort_totals ADD COLUMN unpriced INTEGER NOT NULL DEFAULT 0")
    for name, kind in ESSAY_COLUMNS.items():
        op.execute(f"ALTER TABLE cohort_essay_scores ADD COLUMN {name} {kind}")
    op.execute("CREATE TABLE cohort_scales (cohort_id TEXT NOT NULL, scale TEXT NOT NULL, "
               "n INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (cohort_id, scale))")
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {columns}")
    # The counters recomputed from gen_state and cohort_members with their new columns.
    op.execute("DELETE FROM cohort_totals")
    op.execute("DELETE FROM cohort_essay_scores")
    op.execute(FILL_TOTALS)
    op.execute(FILL_ESSAYS)
    op.execute(FILL_SCALES)
    for name, (when, body) in {**READ_TRIGGERS, **NEW_TRIGGERS}.items():
        op.execute(f"CREATE TRIGGER {name} {when} BEGIN {body} END")
    for name, body in VIEWS.items():
        op.execute(f"DROP VIEW IF EXISTS {name}")
        op.execute(f"CREATE VIEW {name} AS {body.strip()}")


def downgrade() -> None:
    old = _migration_0003()
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for name in [*READ_TRIGGERS, *NEW_TRIGGERS]:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.execute("DROP TABLE cohort_scales")
    for name in reversed(list(ESSAY_COLUMNS)):
        op.execute(f"ALTER TABLE cohort_essay_scores DROP COLUMN {name}")
    op.execute("ALTER TABLE cohort_totals DROP COLUMN unpriced")
    for name, (when, body) in old.READ_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {when} BEGIN {body} END")
    for name in VIEWS:
        op.execute(f"CREATE VIEW {name} AS {old.VIEWS[name].strip()}")
