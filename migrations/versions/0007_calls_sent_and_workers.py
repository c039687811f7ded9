"""Requests that left the building, and the workers that sent them.

Two things a runner did not record before:

* **Which requests were sent.** A runner now claims a call (``LLMCallStarted`` with
  ``sends_marked``) only right before its first request leaves, and appends ``LLMCallSent`` before
  each retry, so every request is on record before it is made; a takeover of a dead worker's claim records each of its sent-but-unanswered
  requests as ``LLMCallLost`` (outcome unknown, cost estimated). The views count them:
  ``llm_calls`` shows lost requests as outcome ``unknown`` with ``estimated_cost_usd``, and an
  ``open`` row is a request that was sent and has no answer yet; ``cohort_progress`` and ``spend`` gain ``lost_calls`` and ``estimated_cost_usd``
  (kept apart from ``cost_usd``, which stays money the provider reported or the catalog priced).
  Lost calls are rare, so they are summed straight from the events through the type index: no
  projection changes.
* **Which workers are alive.** ``workers`` holds one row per ``daydream run``: where it runs, its
  last heartbeat and the grace after which its claims may be taken over. This is operational
  state, not history: a row is updated in place every few seconds, so it is a plain table, not
  events (a heartbeat as an event would add thousands of hash-chained facts per run that say
  nothing about the experiment). Times are the database's own clock, so runners on several
  machines agree on "how long ago" whatever their clocks say.

``failures`` gains ``error_class`` (the failing event's class, for grouping by reason) and finds
the failing event through the generation's stream instead of the type index.

Revision ID: 0007_calls_sent_and_workers
Revises: 0006_chain_head
Create Date: 2026-12-01
"""

import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007_calls_sent_and_workers"
down_revision = "0006_chain_head"
branch_labels = None
depends_on = None

# The views this revision wraps keep their previous definition inside these markers, so the
# downgrade gives back exactly what was there (whichever revision wrote it).
BEGIN, END = "/* the view before 0007 */", "/* end of the view before 0007 */"
_WRAPPED = re.compile(re.escape(BEGIN) + r"\n(?P<inner>.*)\n" + re.escape(END), re.S)

# Lost calls by generation: LLMCallLost events (few) through the type index, with the stage and
# model of their generation. A lost call answered after all (a late answer to a worker whose claim
# was taken over, recorded as superseded) still counts here: spend has no other trace of its cost.
LOST = """SELECT substr(x.stream, 5) AS gen_id, g.stage, g.model_id, COUNT(*) AS lost_calls,
              ROUND(SUM(json_extract(x.payload, '$.estimated_cost_usd')), 6) AS estimated_cost_usd
       FROM events x JOIN gen_state g ON g.gen_id = substr(x.stream, 5)
       WHERE x.type = 'LLMCallLost' GROUP BY x.stream"""

WRAPPERS = {
    "cohort_progress": f"""
-- One row per cohort and stage: how many generations are planned, done, failed, still pending.
SELECT p.*, COALESCE(l.lost_calls, 0) AS lost_calls, l.estimated_cost_usd
FROM (
{{inner}}
) p LEFT JOIN (
  SELECT m.cohort_id, x.stage, SUM(x.lost_calls) AS lost_calls,
         ROUND(SUM(x.estimated_cost_usd), 6) AS estimated_cost_usd
  FROM ({LOST}) x JOIN cohort_members m ON m.gen_id = x.gen_id
  GROUP BY m.cohort_id, x.stage
) l ON l.cohort_id = p.cohort_id AND l.stage = p.stage""",
    "spend": f"""
-- One row per cohort, stage and model: calls, tokens and money (a reused generation counts in each).
SELECT s.*, COALESCE(l.lost_calls, 0) AS lost_calls, l.estimated_cost_usd
FROM (
{{inner}}
) s LEFT JOIN (
  SELECT m.cohort_id, x.stage, x.model_id, SUM(x.lost_calls) AS lost_calls,
         ROUND(SUM(x.estimated_cost_usd), 6) AS estimated_cost_usd
  FROM ({LOST}) x JOIN cohort_members m ON m.gen_id = x.gen_id
  GROUP BY m.cohort_id, x.stage, x.model_id
) l ON l.cohort_id = s.cohort_id AND l.stage = s.stage AND l.model_id IS s.model_id""",
}

# 0003's failures with two changes: the failing event is found through the generation's stream
# (0003's correlated MAX(seq) went through the type index and scanned every failure for each row:
# 1.2 s for 900 failures at 300k events, now a few ms), and error_class, the reason to group by.
_NEWEST_FAILURE = """FROM events x WHERE x.stream = 'gen:' || g.gen_id
          AND +x.type IN ('GenerationFailed', 'ParseFailed') ORDER BY x.version DESC LIMIT 1"""
FAILURES = f"""-- One row per generation whose current attempt failed: what, why, and the event that says so.
SELECT g.gen_id, g.stage, g.template_id, g.model_id, g.attempt, g.origin_cohort_id,
       CASE WHEN g.error LIKE 'ParseFailed:%' THEN 'parse' ELSE 'generation' END AS kind,
       g.error AS reason, g.calls, g.failed_calls,
       (SELECT COUNT(*) FROM gen_state c WHERE c.parent_gen_id = g.gen_id) AS blocked_children,
       (SELECT x.seq {_NEWEST_FAILURE}) AS failed_seq,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.raw_hash) AS response,
       COALESCE((SELECT CASE WHEN x.type = 'ParseFailed' THEN 'ParseFailed'
                             ELSE COALESCE(json_extract(x.payload, '$.error_class'), 'Unknown') END
                 {_NEWEST_FAILURE}), 'Imported') AS error_class
FROM gen_state g
WHERE g.status = 'failed'"""

# Calls live on their generation's stream; the joins on it keep "one generation" and "one stream"
# an index lookup (see 0005). A request is identified by (attempt, call, try) within its stream.
_SAME_TRY = """json_extract(o.payload, '$.attempt') = json_extract(s.payload, '$.attempt')
      AND json_extract(o.payload, '$.call') = json_extract(s.payload, '$.call')"""
LLM_CALLS = f"""-- One row per LLM request: completed, failed, unknown (sent; the worker stopped before its answer was recorded) or open (sent, no answer yet).
SELECT o.seq, o.stream, g.gen_id AS gen_id, g.stage,
       json_extract(o.payload, '$.attempt') AS attempt, json_extract(o.payload, '$.call') AS call,
       json_extract(o.payload, '$.try') AS try,
       json_extract(o.payload, '$.model_id') AS model_id,
       json_extract(o.payload, '$.provider') AS provider,
       json_extract(o.payload, '$.resolved_model') AS resolved_model,
       CASE o.type WHEN 'LLMCallCompleted' THEN 'completed' WHEN 'LLMCallLost' THEN 'unknown'
                   ELSE 'failed' END AS outcome,
       json_extract(o.payload, '$.latency_s') AS latency_s,
       json_extract(o.payload, '$.prompt_tokens') AS prompt_tokens,
       json_extract(o.payload, '$.completion_tokens') AS completion_tokens,
       json_extract(o.payload, '$.cost_usd') AS cost_usd,
       json_extract(o.payload, '$.finish_reason') AS finish_reason,
       json_extract(o.payload, '$.error_class') AS error_class,
       json_extract(o.payload, '$.message') AS message,
       o.recorded_at,
       json_extract(o.payload, '$.estimated_cost_usd') AS estimated_cost_usd
FROM events o LEFT JOIN gen_state g ON g.gen_id = substr(o.stream, 5) AND o.stream = 'gen:' || g.gen_id
WHERE o.type IN ('LLMCallCompleted', 'LLMCallFailed', 'LLMCallLost')
  AND (o.type <> 'LLMCallLost' OR NOT EXISTS (
    -- its answer reached the (superseded) worker after all: that row stands for the request
    SELECT 1 FROM events r WHERE r.stream = o.stream AND r.version > o.version
      AND json_extract(r.payload, '$.answers_lost_seq') = o.seq))
UNION ALL
SELECT s.seq, s.stream, g.gen_id, g.stage, json_extract(s.payload, '$.attempt'),
       json_extract(s.payload, '$.call'), json_extract(s.payload, '$.try'),
       json_extract(s.payload, '$.model_id'), json_extract(s.payload, '$.provider'), NULL, 'open',
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, s.recorded_at, NULL
FROM events s LEFT JOIN gen_state g ON g.gen_id = substr(s.stream, 5) AND s.stream = 'gen:' || g.gen_id
WHERE +s.type = 'LLMCallSent' AND NOT EXISTS (
    -- sent and not answered (yet); a release naming this try says it never left after all
    SELECT 1 FROM events o WHERE o.stream = s.stream AND o.version > s.version
      AND o.type IN ('LLMCallCompleted', 'LLMCallFailed', 'LLMCallLost', 'ClaimReleased')
      AND {_SAME_TRY}
      AND json_extract(o.payload, '$.try') = json_extract(s.payload, '$.try'))
UNION ALL
SELECT s.seq, s.stream, g.gen_id, g.stage, json_extract(s.payload, '$.attempt'),
       json_extract(s.payload, '$.call'),
       CASE WHEN json_extract(s.payload, '$.sends_marked') = 1 THEN 1 END,
       json_extract(s.payload, '$.model_id'), json_extract(s.payload, '$.provider'), NULL, 'open',
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, s.recorded_at, NULL
FROM events s LEFT JOIN gen_state g ON g.gen_id = substr(s.stream, 5) AND s.stream = 'gen:' || g.gen_id
WHERE +s.type = 'LLMCallStarted' AND NOT EXISTS (
    -- a claim is committed right before its first request leaves (sends_marked): open until that
    -- try is answered or the claim is given back; a claim of a runner before 0007, or of a local
    -- provider: open until anything answers it
    SELECT 1 FROM events o WHERE o.stream = s.stream AND o.version > s.version
      AND o.type IN ('LLMCallCompleted', 'LLMCallFailed', 'LLMCallLost', 'ClaimReleased')
      AND {_SAME_TRY}
      AND (json_extract(s.payload, '$.sends_marked') IS NOT 1 OR o.type = 'ClaimReleased'
           OR json_extract(o.payload, '$.try') = 1))"""


def _view_sql(name: str) -> str:
    row = op.get_bind().exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?", (name,)).first()
    if row is None:
        raise RuntimeError(f"view {name} is missing: this ledger's schema is not the one expected")
    return re.sub(r"^CREATE VIEW \S+ AS\s*", "", row[0], count=1)


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        return  # not yet on PostgreSQL (issue 17): see the README's PostgreSQL section
    op.create_table(
        "workers",
        sa.Column("worker_id", sa.Text, primary_key=True,
                  comment="The run's id (the 'run' of the worker object in LLMCallStarted)"),
        sa.Column("host", sa.Text, nullable=False, comment="Host name the worker ran on"),
        sa.Column("pid", sa.Integer, comment="Process id on that host"),
        sa.Column("identity", sa.Text, nullable=False, comment="JSON of the worker as its claims record it"),
        sa.Column("started_at", sa.Text, nullable=False, comment="When the run began (database clock, UTC)"),
        sa.Column("heartbeat_at", sa.Text, nullable=False,
                  comment="Last sign of life (database clock, UTC): its claims are live while this is recent"),
        sa.Column("grace_s", sa.Float, nullable=False,
                  comment="Seconds without a heartbeat after which its claims may be taken over"),
        sa.Column("stopped_at", sa.Text, comment="When the run ended cleanly (NULL while running or after a crash)"),
    )
    for name, wrapper in WRAPPERS.items():
        inner = _view_sql(name)
        op.execute(f"DROP VIEW {name}")
        op.execute(f"CREATE VIEW {name} AS {wrapper.strip().format(inner=f'{BEGIN}{chr(10)}{inner}{chr(10)}{END}')}")
    for name, sql in (("llm_calls", LLM_CALLS), ("failures", FAILURES)):
        op.execute(f"DROP VIEW {name}")
        op.execute(f"CREATE VIEW {name} AS {sql}")


def _migration(name: str) -> Any:
    """An earlier migration module (for downgrade), read from its file rather than copied here."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"daydream_migration_{name}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def downgrade() -> None:
    previous = {"llm_calls": _migration("0005_llm_calls_by_stream").LLM_CALLS,
                "failures": _migration("0003_views").VIEWS["failures"].strip()}
    for name, sql in previous.items():
        op.execute(f"DROP VIEW {name}")
        op.execute(f"CREATE VIEW {name} AS {sql}")
    for name in WRAPPERS:
        found = _WRAPPED.search(_view_sql(name))
        if found is None:
            raise RuntimeError(f"view {name} does not have the shape migration 0007 gave it")
        op.execute(f"DROP VIEW {name}")
        op.execute(f"CREATE VIEW {name} AS {found['inner']}")
    op.drop_table("workers")
