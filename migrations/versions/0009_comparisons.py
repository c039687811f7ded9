"""Views behind ``daydream compare``: every scored evaluation with its design, and the matched pairs.

``evaluation_design`` is one row per cohort and scored evaluation with every design axis of its
lineage (combo; draft template, model, replicate; essay template, model, replicate; rubric,
evaluator, evaluation replicate) and the unit it belongs to (its draft, or its essay when there is
no draft). ``comparisons`` pairs those rows the way ``daydream compare`` does: for each factor, two
scored evaluations of the same cohort at levels ``a < b`` that are equal on every other axis (a
copy-mode generation's missing model matches any model). Filter it on cohort_id, factor, a and b
to see the rows behind one comparison and recompute n_pairs, wins, ties and losses, or the mean
difference per unit, in SQL. New views only; nothing is replaced.

Revision ID: 0009_comparisons
Revises: 0008_scores_scale
Create Date: 2026-11-30
"""

from alembic import op

revision = "0009_comparisons"
down_revision = "0008_scores_scale"
branch_labels = None
depends_on = None

EVALUATION_DESIGN = """-- One row per cohort and scored evaluation: its score and the design of its whole lineage.
SELECT m.cohort_id, s.evaluation_gen_id, s.essay_gen_id, d.gen_id AS draft_gen_id,
       COALESCE(d.gen_id, s.essay_gen_id) AS unit_gen_id,
       COALESCE(e.combo_id, d.combo_id) AS combo,
       d.template_id AS draft_template, d.model_id AS draft_llm, d.replicate AS draft_replicate,
       COALESCE(d.generator = 'copy', 0) AS draft_copy,
       e.template_id AS essay_template, e.model_id AS essay_llm, e.replicate AS essay_replicate,
       COALESCE(e.generator = 'copy', 0) AS essay_copy,
       s.rubric AS evaluation_template, s.evaluator AS evaluation_llm,
       s.replicate AS evaluation_replicate,
       CASE WHEN k.scales > 1 THEN s.score_norm ELSE s.score END AS score,
       s.scale_min, s.scale_max
FROM cohort_members m
JOIN scores s ON s.evaluation_gen_id = m.gen_id
JOIN gen_state e ON e.gen_id = s.essay_gen_id
LEFT JOIN gen_state d ON d.gen_id = e.parent_gen_id AND d.stage != 'essay'
-- A cohort whose rubrics use different scales is compared on score_norm (0-1), as daydream compare does.
JOIN (SELECT m2.cohort_id, COUNT(DISTINCT s2.scale_min || '-' || s2.scale_max) AS scales
      FROM cohort_members m2 JOIN scores s2 ON s2.evaluation_gen_id = m2.gen_id
      WHERE m2.stage = 'evaluation' AND s2.score IS NOT NULL GROUP BY m2.cohort_id) k
  ON k.cohort_id = m.cohort_id
WHERE m.stage = 'evaluation' AND s.score IS NOT NULL"""

AXES = ("combo", "draft_template", "draft_llm", "draft_replicate", "essay_template", "essay_llm",
        "essay_replicate", "evaluation_template", "evaluation_llm", "evaluation_replicate")
# A copy-mode generation has no model: on its stage's model axis it matches any model.
COPY_FLAG = {"draft_llm": "draft_copy", "essay_llm": "essay_copy"}


def _branch(factor: str) -> str:
    """The matched pairs of one factor: equal on every other axis, levels a < b."""
    same = []
    for axis in AXES:
        if axis == factor:
            continue
        if axis in COPY_FLAG:
            flag = COPY_FLAG[axis]
            same.append(f"(b.{axis} IS a.{axis} OR a.{flag} OR b.{flag})")
        else:
            same.append(f"b.{axis} IS a.{axis}")
    design = ", ".join(f"a.{axis}" for axis in AXES)
    return (f"SELECT a.cohort_id, '{factor}' AS factor, a.{factor} AS a, b.{factor} AS b,\n"
            f"       CASE WHEN a.unit_gen_id = b.unit_gen_id THEN a.unit_gen_id\n"
            f"            ELSE a.unit_gen_id || '+' || b.unit_gen_id END AS unit,\n"
            f"       {design},\n"
            f"       a.evaluation_gen_id AS evaluation_a, b.evaluation_gen_id AS evaluation_b,\n"
            f"       a.score AS score_a, b.score AS score_b, a.score - b.score AS diff\n"
            f"FROM design a JOIN design b\n"
            f"  ON b.cohort_id = a.cohort_id AND b.{factor} > a.{factor}\n"
            f"  AND " + "\n  AND ".join(same))


# The design rows are materialised once per query so each self-join can build an automatic index on
# the axes it matches (read through the view directly, every row of ``a`` would scan every row of
# ``b``: minutes at 100,000 evaluations instead of about a second).
COMPARISONS = ("-- One row per matched pair of scored evaluations: a factor, two of its levels a < b, and\n"
               "-- two evaluations of one cohort equal on every other design axis (as daydream compare pairs them).\n"
               "WITH design AS MATERIALIZED (SELECT * FROM evaluation_design)\n"
               + "\nUNION ALL\n".join(_branch(axis) for axis in AXES))


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        return  # not yet on PostgreSQL (issue 17): see the README's PostgreSQL section
    op.execute(f"CREATE VIEW evaluation_design AS {EVALUATION_DESIGN}")
    op.execute(f"CREATE VIEW comparisons AS {COMPARISONS}")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS comparisons")
    op.execute("DROP VIEW IF EXISTS evaluation_design")
