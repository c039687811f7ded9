"""``llm_calls`` answers for one generation or one stream in a millisecond, not half a second.

0003's view took ``gen_id`` from each call's payload, so ``WHERE gen_id = ?`` parsed the JSON of
every call in the ledger (425 ms at 1M events), and ``WHERE stream = ?`` walked every
LLMCallStarted through the type index (98 ms). Calls live on their generation's stream
(``gen:<gen_id>``), so the view now joins ``gen_state`` on the stream and takes ``gen_id`` from it
(the planner then goes gen_state -> the (stream, version) index), and the open-call branch's type
test is kept off the type index with a unary ``+``. Same rows, same columns; bench/views.py at 1M
events: one generation 425 ms -> 1.1 ms, one stream 98 ms -> 1.1 ms, first page and full count
unchanged.

Revision ID: 0005_llm_calls_by_stream
Revises: 0004_projection_feed
Create Date: 2026-11-30
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0005_llm_calls_by_stream"
down_revision = "0004_projection_feed"
branch_labels = None
depends_on = None

LLM_CALLS = """-- One row per LLM call try: its outcome (completed, failed, or open while no answer is recorded).
SELECT o.seq, o.stream, g.gen_id AS gen_id, g.stage,
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
FROM events o LEFT JOIN gen_state g ON g.gen_id = substr(o.stream, 5) AND o.stream = 'gen:' || g.gen_id
WHERE o.type IN ('LLMCallCompleted', 'LLMCallFailed')
UNION ALL
SELECT s.seq, s.stream, g.gen_id, g.stage, json_extract(s.payload, '$.attempt'),
       json_extract(s.payload, '$.call'), NULL, json_extract(s.payload, '$.model_id'),
       json_extract(s.payload, '$.provider'), NULL, 'open', NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, s.recorded_at
FROM events s LEFT JOIN gen_state g ON g.gen_id = substr(s.stream, 5) AND s.stream = 'gen:' || g.gen_id
WHERE +s.type = 'LLMCallStarted' AND NOT EXISTS (
    -- answered, or given back unsent (ClaimReleased: no call was made, nothing is in flight)
    SELECT 1 FROM events o WHERE o.stream = s.stream AND o.version > s.version
      AND o.type IN ('LLMCallCompleted', 'LLMCallFailed', 'ClaimReleased')
      AND json_extract(o.payload, '$.attempt') = json_extract(s.payload, '$.attempt')
      AND json_extract(o.payload, '$.call') = json_extract(s.payload, '$.call'))"""


def _view_0003() -> str:
    """0003's definition (for downgrade), read from that migration rather than copied here."""
    path = Path(__file__).with_name("0003_views.py")
    spec = importlib.util.spec_from_file_location("daydream_migration_0003", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.VIEWS["llm_calls"].strip()


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        return  # not yet on PostgreSQL (issue 17): see the README's PostgreSQL section
    op.execute("DROP VIEW IF EXISTS llm_calls")
    op.execute(f"CREATE VIEW llm_calls AS {LLM_CALLS}")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS llm_calls")
    op.execute(f"CREATE VIEW llm_calls AS {_view_0003()}")
