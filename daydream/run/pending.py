"""Finding work: which generations are ready to run, which claims may be taken over, and counts.

Everything here reads the ``gen_state`` projection. Ready work of a stage is taken in ``gen_id``
order, walking the ``ix_gen_state_pending`` index (migration 0014) and stopping at the limit: the
generations that share a commit are then neighbours in every B-tree keyed by ``gen_id`` (the
events' stream index, ``gen_state`` and its indexes), so a commit rewrites a few pages, not one
scattered page per generation in each (bench/run_stub.py --scale). Rows staged by a plan still
being appended (their ``plan_id`` in ``open_plans``, migration 0013) are not work yet:
every query here leaves them out until the plan's ``CohortPlanned`` completes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from daydream.contracts import PIPELINE_STAGES, Generation
from daydream.ledger.store import Ledger
from daydream.run.claims import CLAIM_LIVENESS, LEASE_EXPIRED, STALE

# Position of each stage in the pipeline (parents before children), for sorting.
STAGE_ORDER = {name: i for i, name in enumerate(PIPELINE_STAGES)}
# A gen_state (g) or cohort_members (m) row that no open plan staged.
VISIBLE = "({0}.plan_id IS NULL OR {0}.plan_id NOT IN (SELECT plan_id FROM open_plans))"

_GEN_LIST = """g.gen_id, g.stage, g.parent_gen_id, g.combo_id, g.template_id, g.template_hash, g.generator,
       g.parser, g.model_id, g.replicate, g.attempt, g.status, g.worker, g.lease_until,
       p.parsed_hash, g.planned_seq"""
_FROM_GEN = """
FROM gen_state g
LEFT JOIN gen_state p ON p.gen_id = g.parent_gen_id"""
_SELECT_GEN = f"SELECT {_GEN_LIST}{_FROM_GEN}"
# Ready work of one stage in gen_id order after a gen_id (:after, '' for the first page): walks
# ix_gen_state_pending (status, stage, gen_id) and stops at the limit.
PENDING_SQL = _SELECT_GEN + """
WHERE g.status = 'planned' AND g.stage = :stage AND g.gen_id > :after
  AND {visible}
  AND (g.parent_gen_id IS NULL OR p.status = 'completed') {cohort}
ORDER BY g.gen_id
LIMIT :limit
""".replace("{visible}", VISIBLE.format("g"))
# Claims that may be abandoned: the worker's heartbeat stopped (or, for a claim without a worker
# row, its lease ran out), or held by a process on this machine (alive or not: the caller checks).
# Two more columns after GEN_COLUMNS: the worker's heartbeat is stale, the (row-less) lease expired.
RECLAIM_SQL = f"SELECT {_GEN_LIST}, {STALE}, {LEASE_EXPIRED}{_FROM_GEN}{CLAIM_LIVENESS}" + f"""
WHERE g.status = 'running' AND json_extract(g.worker, '$.run') IS DISTINCT FROM :run
  AND ({STALE} OR {LEASE_EXPIRED} OR g.worker LIKE :local) {{cohort}} {{stage}}
ORDER BY g.planned_seq
LIMIT :limit
"""
COHORT_FILTER = ("AND EXISTS (SELECT 1 FROM cohort_members m WHERE m.cohort_id = :cohort "
                 f"AND m.gen_id = g.gen_id AND {VISIBLE.format('m')})")

GEN_COLUMNS = ("gen_id", "stage", "parent_gen_id", "combo_id", "template_id", "template_hash", "generator",
               "parser", "model_id", "replicate", "attempt", "status", "worker", "lease_until", "parent_parsed_hash",
               "planned_seq")


@dataclass(frozen=True, slots=True)
class PendingGeneration:
    """A generation as the runner finds it in ``gen_state``: what to make, and who holds it now."""

    gen_id: str
    stage: str
    parent_gen_id: str | None
    combo_id: str | None
    template_id: str
    template_hash: str | None
    generator: str                 # "llm" or "copy"
    parser: str | None
    model_id: str | None
    replicate: int | None
    attempt: int | None            # the current attempt (None before the first)
    status: str                    # planned, running, completed, failed
    worker: str | None             # the claimant's identity (JSON) while running
    lease_until: str | None
    parent_parsed_hash: str | None  # the parent's parsed text, once it has one
    planned_seq: int

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> "PendingGeneration":
        """From a row whose first columns are ``GEN_COLUMNS`` (extra columns are ignored)."""
        return cls(*row[:len(GEN_COLUMNS)])

    def ref(self) -> Generation:
        """What a stage is told about this generation when it judges an answer."""
        return Generation(self.gen_id, self.stage, self.parent_gen_id, self.template_id, self.model_id,
                          self.replicate)


def pending_counts(ledger: Ledger, cohort: str | None = None, stage: str | None = None) -> dict[str, dict[str, int]]:
    """Per stage: planned (total), completed, failed, running, ready, blocked."""
    where, params = [VISIBLE.format("g")], []
    if cohort:
        where.append(f"g.gen_id IN (SELECT gen_id FROM cohort_members m WHERE m.cohort_id = ? AND {VISIBLE.format('m')})")
        params.append(cohort)
    if stage:
        where.append("g.stage = ?")
        params.append(stage)
    sql = f"""
        SELECT g.stage, g.status, (g.parent_gen_id IS NULL OR p.status = 'completed') AS ready, COUNT(*)
        FROM gen_state g LEFT JOIN gen_state p ON p.gen_id = g.parent_gen_id
        WHERE {' AND '.join(where)}
        GROUP BY 1, 2, 3"""
    out: dict[str, dict[str, int]] = {}
    for st, status, ready, n in ledger.query(sql, params):
        row = out.setdefault(st, {"total": 0, "completed": 0, "failed": 0, "running": 0, "ready": 0, "blocked": 0})
        row["total"] += n
        if status == "completed":
            row["completed"] += n
        elif status == "failed":
            row["failed"] += n
        elif status == "running":
            row["running"] += n
        elif ready:
            row["ready"] += n
        else:
            row["blocked"] += n
    return dict(sorted(out.items(), key=lambda kv: STAGE_ORDER.get(kv[0], 9)))


# ----------------------------------------------------------------------------- work still to do
# Work a run may still do: planned (ready or waiting for its parent), or claimed and not answered
# (a claim left by a crashed run is taken over). Failed and completed work needs a rerun first.
UNFINISHED = ("planned", "running")


def unfinished_scope(cohort: str | None = None, stage: str | None = None) -> tuple[str, list[str]]:
    """SQL conditions on ``gen_state g`` (to AND into a WHERE) for unfinished work in scope, and their
    parameters."""
    where = [f"g.status IN ({', '.join('?' * len(UNFINISHED))})", VISIBLE.format("g")]
    params: list[str] = list(UNFINISHED)
    if cohort:
        where.append(f"g.gen_id IN (SELECT gen_id FROM cohort_members m WHERE m.cohort_id = ? AND {VISIBLE.format('m')})")
        params.append(cohort)
    if stage:
        where.append("g.stage = ?")
        params.append(stage)
    return " AND ".join(where), params


def pending_calls_by_model(ledger: Ledger, cohort: str | None = None,
                           stage: str | None = None) -> dict[str | None, int]:
    """Model id → unfinished generations that need an LLM call, in scope (copy-mode work needs none).

    These are the models a run will call: what ``daydream run`` checks before claiming anything.
    """
    where, params = unfinished_scope(cohort, stage)
    rows = ledger.query(f"SELECT g.model_id, COUNT(*) FROM gen_state g WHERE {where} AND COALESCE(g.generator, 'llm') != 'copy' "
                        "GROUP BY g.model_id ORDER BY g.model_id", params)
    return {model_id: n for model_id, n in rows}
