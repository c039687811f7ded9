"""What each event does to the projections, and rebuilding them from the events.

``gen_state`` (one row per generation, at its current attempt), ``cohort_members`` (the
generations each cohort uses) and ``combos`` are a function of the events. ``PROJECTIONS`` below
states, per event type, the SQL that applies one event of that type to them, with a sentence on
what the event changes: to learn what ``LLMCallStarted`` does, read its entry. Event types without
an entry change no projection. The read-side counters (``cohort_totals``, ``cohort_essay_scores``)
are not written here: triggers on ``gen_state`` and ``cohort_members`` keep them in step with
every row these statements insert or update (migration 0003 and its successors).

How the statements run: every append inserts its batch's projected events, in seq order, into the
always-empty view ``projection_feed``; one INSTEAD OF trigger per event type
(``project_<EventType>``, ``WHEN NEW.type = '<EventType>'``) runs that type's statements, in the
same transaction as the append. Migrations install a frozen copy of these triggers (a migration
never imports code that may change): a test fails when the newest revision's copy differs from
``trigger_sql()``, so changing a statement here means adding a revision that installs the change.

Statements read the event through ``EventFields`` (``e("gen_id")`` is the payload's ``gen_id``,
``e.seq`` the event's seq), so another database can render the same statements with its own JSON
access (PostgreSQL: issue 17); they use ``INSERT … ON CONFLICT DO NOTHING``, which both know.

``rebuild`` empties the tables and feeds every projected event through ``projection_feed`` — the
very path each append uses — in one write transaction. ``check`` does the same inside a
transaction it then rolls back, and says which rows differ from what is stored: a projection that
drifted (hand edits, a bug since fixed) shows up there, and ``rebuild`` repairs it. Events are
never touched, and a rebuild is refused when the events fail verification or the schema (a
projection trigger among it) was altered: it would otherwise adopt tampered data as the truth.
"""

from __future__ import annotations

import sqlite3
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daydream.errors import LedgerIntegrityError
from daydream.ledger import db
from daydream.ledger import events as ev
from daydream.ledger.store import PROJECT_EVENTS, Ledger


class EventFields:
    """How a statement reads the event it applies (SQLite: the row inserted into ``projection_feed``).

    ``e("gen_id")`` is a payload field (a path below the payload's root: ``e("scale[0]")`` is the
    first element of ``scale``); ``e.json("worker")`` a field kept as JSON text (an object or a
    list); ``e.true("released")`` says a flag is true (false when absent or null); ``e.seq`` is the
    event's position in the ledger. Another dialect subclasses this.
    """

    seq = "NEW.seq"

    def __call__(self, path: str) -> str:
        return f"json_extract(NEW.payload, '$.{path}')"

    def json(self, path: str) -> str:
        # SQLite's json_extract gives objects and arrays back as their JSON text already.
        return self(path)

    def true(self, path: str) -> str:
        # JSON true reads as 1; IS (not =) makes an absent flag false rather than NULL.
        return f"({self(path)} IS 1)"

    # The integer type of a CAST.
    integer = "INTEGER"

    def flag(self, condition: str) -> str:
        """A condition as 0 or 1, to be summed (SQLite's comparisons are integers already)."""
        return f"({condition})"


@dataclass(frozen=True)
class Projection:
    """What events of one type do to the projections: ``changes`` in words, ``statements`` in SQL.

    The statements run in order, each on the tables as the previous one left them.
    """

    event_type: str
    changes: str
    statements: tuple[str, ...]


def render_projections(e: EventFields) -> dict[str, Projection]:
    """Every projected event type's statements, reading the event through ``e``."""
    # Most events concern the generation's current attempt: an event of an older attempt (a late
    # answer after a forced retry) is recorded and changes nothing.
    this_attempt = f"gen_id = {e('gen_id')} AND attempt = {e('attempt')}"
    # A call whose claim had been taken over by another worker is recorded (it was paid) but the
    # generation belongs to the new claimant: it does not touch the projection.
    not_superseded = f"NOT {e.true('superseded')}"
    # Rubrics declare their scale; scores recorded before scales existed were all on 0-9.
    scale_min, scale_max = f"COALESCE({e('scale[0]')}, 0)", f"COALESCE({e('scale[1]')}, 9)"
    # daydream reparse re-reads a recorded answer (reparsed: true) with the template version and
    # parser of now: the generation records which.
    reparsed = (f"UPDATE gen_state SET template_hash = COALESCE({e('template_hash')}, template_hash),\n"
                f"    parser = COALESCE({e('parser')}, parser)\n"
                f"WHERE {this_attempt} AND {e.true('reparsed')}")
    # ON CONFLICT DO NOTHING keeps the row already there (a generation planned again, a cohort
    # joined twice). Unlike SQLite's INSERT OR IGNORE it raises on a NOT NULL column left empty,
    # so each insert says which fields its row needs, and an event lacking one inserts nothing.

    def member(condition: str = "") -> str:
        """The generation joins the event's cohort."""
        return (f"INSERT INTO cohort_members (cohort_id, gen_id, stage, seq)\n"
                f"SELECT {e('cohort_id')}, {e('gen_id')}, {e('stage')}, {e.seq}\n"
                f"WHERE {e('stage')} IS NOT NULL{condition}\n"
                f"ON CONFLICT DO NOTHING")

    # A plan appended in several transactions (PlanStarted) stages its rows: they carry its
    # plan_id, and while the plan is in open_plans every reader filters them out and the counters
    # behind status and the report skip them (migration 0013). Its CohortPlanned deletes it from
    # open_plans: everything it staged is visible at once, and the counters get what it adds in
    # a statement per table (its new generations were counted in plan_totals as they came, its
    # links are listed in plan_links). A membership staged by a plan that died is taken over by
    # the plan that links the generation again.
    plan = e("plan_id")
    is_open = f"{plan} IN (SELECT plan_id FROM open_plans)"
    membership = (f"INSERT INTO cohort_members (cohort_id, gen_id, stage, seq, plan_id)\n"
                  f"SELECT {e('cohort_id')}, {e('gen_id')}, {e('stage')}, {e.seq}, {plan}\n"
                  f"WHERE {e('stage')} IS NOT NULL\n"
                  f"ON CONFLICT (cohort_id, gen_id) DO UPDATE SET plan_id = excluded.plan_id, seq = excluded.seq\n"
                  f"WHERE excluded.plan_id IS NOT NULL AND cohort_members.plan_id IN (SELECT plan_id FROM open_plans)")
    counted = (f"INSERT INTO plan_totals (plan_id, cohort_id, stage, model_key, generations)\n"
               f"SELECT {plan}, {e('cohort_id')}, {e('stage')}, COALESCE({e('model_id')}, ''), 1\n"
               f"WHERE {is_open} AND EXISTS (SELECT 1 FROM gen_state WHERE gen_id = {e('gen_id')} AND plan_id = {plan})\n"
               f"ON CONFLICT (plan_id, cohort_id, stage, model_key) DO UPDATE SET generations = "
               f"plan_totals.generations + 1")
    listed_link = (f"INSERT INTO plan_links (plan_id, cohort_id, gen_id)\n"
                   f"SELECT {plan}, {e('cohort_id')}, {e('gen_id')}\n"
                   f"WHERE {is_open} AND {e('stage')} IS NOT NULL\n"
                   f"ON CONFLICT DO NOTHING")
    # Linked outside an open plan, a generation that an open plan staged becomes visible (its
    # plan died, or has yet to finish: another cohort uses the generation now).
    adopt = (f"UPDATE gen_state SET plan_id = NULL\n"
             f"WHERE gen_id = {e('gen_id')} AND plan_id IN (SELECT plan_id FROM open_plans)\n"
             f"    AND ({plan} IS NULL OR {plan} NOT IN (SELECT plan_id FROM open_plans))")
    linked_rows = (f"FROM plan_links l JOIN gen_state g ON g.gen_id = l.gen_id\n"
                   f"WHERE l.plan_id = {plan}")
    scored = ("g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL "
              "AND g.parent_gen_id IS NOT NULL")
    completed = [
        f"""INSERT INTO cohort_totals (cohort_id, stage, model_key, generations)
SELECT cohort_id, stage, model_key, generations FROM plan_totals WHERE plan_id = {plan} AND {is_open}
ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations""",
        f"""INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running,
    calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced)
SELECT l.cohort_id, g.stage, COALESCE(g.model_id, ''), COUNT(*), SUM({e.flag("g.status = 'completed'")}),
    SUM({e.flag("g.status = 'failed'")}), SUM({e.flag("g.status = 'running'")}), SUM(COALESCE(g.calls, 0)),
    SUM(COALESCE(g.failed_calls, 0)), SUM(COALESCE(g.prompt_tokens, 0)), SUM(COALESCE(g.completion_tokens, 0)),
    SUM(COALESCE(g.cost_usd, 0)),
    SUM({e.flag("COALESCE(g.calls, 0) > COALESCE(g.failed_calls, 0) AND g.cost_usd IS NULL")})
{linked_rows} AND {is_open}
GROUP BY l.cohort_id, g.stage, COALESCE(g.model_id, '')
ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations,
    completed = cohort_totals.completed + excluded.completed, failed = cohort_totals.failed + excluded.failed,
    running = cohort_totals.running + excluded.running, calls = cohort_totals.calls + excluded.calls,
    failed_calls = cohort_totals.failed_calls + excluded.failed_calls,
    prompt_tokens = cohort_totals.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = cohort_totals.completion_tokens + excluded.completion_tokens,
    cost_usd = cohort_totals.cost_usd + excluded.cost_usd, unpriced = cohort_totals.unpriced + excluded.unpriced""",
        f"""INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9)
SELECT l.cohort_id, g.parent_gen_id, COUNT(*), SUM(g.score),
    SUM(COALESCE(CAST(ROUND((CASE WHEN g.scale_max > g.scale_min THEN (g.score - g.scale_min) * 1.0
        / (g.scale_max - g.scale_min) END) * 1e9) AS {e.integer}), 0))
{linked_rows} AND {is_open} AND {scored}
GROUP BY l.cohort_id, g.parent_gen_id
ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = cohort_essay_scores.n + excluded.n,
    total = cohort_essay_scores.total + excluded.total,
    total_norm_e9 = cohort_essay_scores.total_norm_e9 + excluded.total_norm_e9""",
        f"""INSERT INTO cohort_scales (cohort_id, scale, n)
SELECT l.cohort_id, COALESCE(g.scale_min || '-' || g.scale_max, ''), COUNT(*)
{linked_rows} AND {is_open} AND {scored}
GROUP BY l.cohort_id, COALESCE(g.scale_min || '-' || g.scale_max, '')
ON CONFLICT (cohort_id, scale) DO UPDATE SET n = cohort_scales.n + excluded.n""",
        # The generations it links that a plan which never finished had staged become visible.
        f"""UPDATE gen_state SET plan_id = NULL
WHERE gen_id IN (SELECT gen_id FROM plan_links WHERE plan_id = {plan}) AND {is_open}
    AND plan_id IN (SELECT plan_id FROM open_plans WHERE plan_id != {plan})""",
        f"DELETE FROM plan_totals WHERE plan_id = {plan}",
        f"DELETE FROM plan_links WHERE plan_id = {plan}",
        f"DELETE FROM open_plans WHERE plan_id = {plan}",
    ]
    listed = [
        Projection(ev.GENERATION_PLANNED,
                   "A new generation: its row in gen_state (attempt 1, planned, no calls yet), and "
                   "its membership of the cohort that planned it. A generation already there stays "
                   "as it is.", (
                       f"""INSERT INTO gen_state (gen_id, stage, parent_gen_id, combo_id, template_id, template_hash,
    generator, parser, model_id, replicate, origin_cohort_id, planned_seq, imported, attempt, status,
    calls, failed_calls, updated_seq, plan_id)
SELECT {e('gen_id')}, {e('stage')}, {e('parent_gen_id')}, {e('combo_id')}, {e('template_id')},
    {e('template_hash')}, {e('generator')}, {e('parser')}, {e('model_id')}, {e('replicate')},
    {e('cohort_id')}, {e.seq}, 0, 1, 'planned', 0, 0, {e.seq}, {e('plan_id')}
WHERE {e('stage')} IS NOT NULL
ON CONFLICT DO NOTHING""",
                       membership, counted)),
        Projection(ev.GENERATION_LINKED,
                   "An existing generation joins another cohort (reused work): a membership. Linked "
                   "outside an open plan, a generation an open plan staged becomes visible.", (
                       adopt, membership, listed_link)),
        Projection(ev.GENERATION_IMPORTED,
                   "A generation brought in from the previous pipeline, with its results: its row "
                   "as imported (completed or failed), its score's scale, its membership when it "
                   "came with a cohort. A second import that completes one imported as failed "
                   "fills in its results.", (
                       f"""INSERT INTO gen_state (gen_id, stage, parent_gen_id, combo_id, template_id, template_hash,
    generator, parser, model_id, replicate, origin_cohort_id, planned_seq, imported, attempt, status,
    prompt_hash, raw_hash, parsed_hash, score, scale_min, scale_max, finish_reason, prompt_tokens,
    completion_tokens, cost_usd, latency_s, calls, failed_calls, error, updated_seq)
SELECT {e('gen_id')}, {e('stage')}, {e('parent_gen_id')}, {e('combo_id')}, {e('template_id')},
    {e('template_hash')}, {e('generator')}, {e('parser')}, {e('model_id')}, {e('replicate')},
    {e('cohort_id')}, {e.seq}, 1, 1, {e('status')}, {e('prompt_hash')}, {e('raw_hash')},
    {e('parsed_hash')}, {e('score')},
    CASE WHEN {e('score')} IS NOT NULL THEN {scale_min} END,
    CASE WHEN {e('score')} IS NOT NULL THEN {scale_max} END,
    {e('finish_reason')}, {e('prompt_tokens')}, {e('completion_tokens')}, {e('cost_usd')},
    {e('latency_s')}, CASE WHEN {e('raw_hash')} IS NULL THEN 0 ELSE 1 END, 0, {e('error')}, {e.seq}
WHERE {e('stage')} IS NOT NULL
ON CONFLICT DO NOTHING""",
                       member(f" AND {e('cohort_id')} IS NOT NULL"),
                       f"""UPDATE gen_state SET status = 'completed', prompt_hash = {e('prompt_hash')},
    raw_hash = {e('raw_hash')}, parsed_hash = {e('parsed_hash')}, score = {e('score')},
    scale_min = CASE WHEN {e('score')} IS NOT NULL THEN {scale_min} END,
    scale_max = CASE WHEN {e('score')} IS NOT NULL THEN {scale_max} END,
    finish_reason = {e('finish_reason')}, prompt_tokens = {e('prompt_tokens')},
    completion_tokens = {e('completion_tokens')}, cost_usd = {e('cost_usd')},
    latency_s = {e('latency_s')}, parser = COALESCE({e('parser')}, parser),
    calls = CASE WHEN {e('raw_hash')} IS NULL THEN 0 ELSE 1 END, error = NULL, parse_failed = 0,
    updated_seq = {e.seq}
WHERE gen_id = {e('gen_id')} AND imported = 1 AND status = 'failed' AND planned_seq < {e.seq}
    AND {e('status')} = 'completed'""")),
        Projection(ev.PROMPT_RENDERED,
                   "The prompt of the current attempt, and the template version that rendered it.", (
                       f"""UPDATE gen_state SET prompt_hash = {e('prompt_hash')},
    template_hash = COALESCE({e('template_hash')}, template_hash), updated_seq = {e.seq}
WHERE {this_attempt}""",)),
        Projection(ev.LLM_CALL_STARTED,
                   "A worker claimed the call: the generation is running, under that worker's "
                   "lease.", (
                       f"""UPDATE gen_state SET status = 'running', lease_until = {e('lease_until')},
    worker = {e.json('worker')}, updated_seq = {e.seq}
WHERE {this_attempt}""",)),
        Projection(ev.LLM_CALL_COMPLETED,
                   "An answer: its text, and the call's tokens, cost and latency added to the "
                   "generation's (it stays running until the answer is parsed).", (
                       f"""UPDATE gen_state SET raw_hash = {e('text_hash')}, finish_reason = {e('finish_reason')},
    prompt_tokens = COALESCE(prompt_tokens, 0) + COALESCE({e('prompt_tokens')}, 0),
    completion_tokens = COALESCE(completion_tokens, 0) + COALESCE({e('completion_tokens')}, 0),
    cost_usd = CASE WHEN {e('cost_usd')} IS NULL THEN cost_usd
                    ELSE COALESCE(cost_usd, 0) + {e('cost_usd')} END,
    latency_s = {e('latency_s')}, resolved_model = {e('resolved_model')}, calls = calls + 1,
    updated_seq = {e.seq}
WHERE {this_attempt} AND {not_superseded}""",)),
        Projection(ev.LLM_CALL_FAILED,
                   "A failed try: counted, and its error kept. When the claim is given up with it "
                   "(released: the model was stopped) the generation is pending again.", (
                       f"""UPDATE gen_state SET failed_calls = failed_calls + 1, calls = calls + 1,
    error = {e('error_class')} || ': ' || {e('message')}, parse_failed = 0,
    status = CASE WHEN {e.true('released')} THEN 'planned' ELSE status END,
    lease_until = CASE WHEN {e.true('released')} THEN NULL ELSE lease_until END,
    worker = CASE WHEN {e.true('released')} THEN NULL ELSE worker END,
    updated_seq = {e.seq}
WHERE {this_attempt} AND {not_superseded}""",)),
        Projection(ev.CLAIM_RELEASED,
                   "A claim given back (stopped, interrupted, out of budget): the running "
                   "generation is pending again.", (
                       f"""UPDATE gen_state SET status = 'planned', lease_until = NULL, worker = NULL,
    updated_seq = {e.seq}
WHERE {this_attempt} AND status = 'running'""",)),
        Projection(ev.RESPONSE_PARSED,
                   "The answer parsed: the generation is completed, with its parsed text. A "
                   "re-parse (daydream reparse) also records the template and parser it used.", (
                       f"""UPDATE gen_state SET parsed_hash = {e('parsed_hash')}, status = 'completed', error = NULL,
    parse_failed = 0, lease_until = NULL, updated_seq = {e.seq}
WHERE {this_attempt}""",
                       reparsed)),
        Projection(ev.SCORE_RECORDED,
                   "An evaluation's score, with the scale it was read on.", (
                       f"""UPDATE gen_state SET score = {e('score')}, scale_min = {scale_min}, scale_max = {scale_max},
    updated_seq = {e.seq}
WHERE {this_attempt}""",)),
        Projection(ev.PARSE_FAILED,
                   "The answer did not parse: the attempt failed, parse_failed says why (error "
                   "keeps 'ParseFailed: ' and the parser's reason), and no older score stays. A "
                   "re-parse also records the template and parser it used.", (
                       f"""UPDATE gen_state SET status = 'failed', error = 'ParseFailed: ' || {e('reason')},
    parse_failed = 1, score = NULL, scale_min = NULL, scale_max = NULL, lease_until = NULL,
    updated_seq = {e.seq}
WHERE {this_attempt}""",
                       reparsed)),
        Projection(ev.GENERATION_FAILED,
                   "The attempt failed for another reason than parsing (the stage refused the "
                   "answer, the calls gave up …): its reason, the answer if there was one, no "
                   "score.", (
                       f"""UPDATE gen_state SET status = 'failed', error = {e('reason')}, parse_failed = 0,
    raw_hash = COALESCE({e('raw_hash')}, raw_hash), score = NULL, scale_min = NULL, scale_max = NULL,
    lease_until = NULL, updated_seq = {e.seq}
WHERE {this_attempt}""",)),
        Projection(ev.GENERATION_RETRIED,
                   "A forced new attempt: the generation is planned again with nothing of the "
                   "old attempt's results (its calls, tokens and cost stay counted).", (
                       f"""UPDATE gen_state SET attempt = {e('attempt')}, status = 'planned', prompt_hash = NULL,
    raw_hash = NULL, parsed_hash = NULL, score = NULL, scale_min = NULL, scale_max = NULL,
    finish_reason = NULL, error = NULL, parse_failed = 0, lease_until = NULL, worker = NULL,
    latency_s = NULL, updated_seq = {e.seq}
WHERE gen_id = {e('gen_id')}""",)),
        Projection(ev.PLAN_STARTED,
                   "A plan appended in several transactions is open: what it stages stays invisible.", (
                       f"INSERT INTO open_plans (plan_id, cohort_id)\nSELECT {plan}, {e('cohort_id')}\n"
                       f"WHERE {plan} IS NOT NULL\nON CONFLICT DO NOTHING",)),
        Projection(ev.COHORT_PLANNED,
                   "A plan appended in several transactions is complete (its plan_id): its new "
                   "generations and its links count in the cohort's totals, scores and scales, and "
                   "everything it staged is visible, all at once. A plan appended in one "
                   "transaction has no plan_id and changes nothing here.",
                   tuple(completed)),
        Projection(ev.COMBO_DEFINED,
                   "A concept combination: its row in combos.", (
                       f"""INSERT INTO combos (combo_id, concept_ids, level, k, seq)
SELECT {e('combo_id')}, {e.json('concept_ids')}, {e('level')}, {e('k')}, {e.seq}
WHERE {e.json('concept_ids')} IS NOT NULL
ON CONFLICT DO NOTHING""",)),
    ]
    return {p.event_type: p for p in listed}


PROJECTIONS: dict[str, Projection] = render_projections(EventFields())
# The event types that change a projection: the ledger feeds only these (table projected_types).
PROJECTED_TYPES: tuple[str, ...] = tuple(PROJECTIONS)


def trigger_name(event_type: str) -> str:
    """The trigger on ``projection_feed`` that applies events of ``event_type``."""
    return f"project_{event_type}"


def trigger_sql(event_type: str) -> str:
    """The SQLite ``CREATE TRIGGER`` that runs ``event_type``'s statements for each event fed."""
    p = PROJECTIONS[event_type]
    words = "\n".join(f"-- {line}" for line in textwrap.wrap(p.changes, 100))
    body = "\n".join(f"{statement};" for statement in p.statements)
    return (f"CREATE TRIGGER {trigger_name(event_type)} INSTEAD OF INSERT ON projection_feed "
            f"WHEN NEW.type = '{event_type}'\nBEGIN\n{words}\n{body}\nEND")


def frozen_copy() -> str:
    """Python source of ``PROJECTED_TYPES`` and ``PROJECTION_TRIGGERS`` as a revision freezes them.

    A revision that changes the projections pastes this into its file (and installs it); the test
    comparing the newest revision with this module prints it when they differ.
    """
    types = "".join(f'    "{t}",\n' for t in PROJECTED_TYPES)
    triggers = "".join(f'    "{t}": """{trigger_sql(t)}""",\n' for t in PROJECTED_TYPES)
    return f"PROJECTED_TYPES = (\n{types})\nPROJECTION_TRIGGERS = {{\n{triggers}}}\n"


# ------------------------------------------------------------------------------ rebuild and check
# Base projections first: the read-side counters follow them through their own triggers.
TABLES = ("gen_state", "cohort_members", "combos", "cohort_totals", "cohort_essay_scores", "cohort_scales")
# What the open plans (migration 0013) stage: rebuilt with the rest.
PLAN_TABLES = ("open_plans", "plan_totals", "plan_links")
# Counter rows that say "nothing" (a generation that left a cohort leaves zeros behind): the same
# facts whether present or not.
_EMPTY = {"cohort_totals": "generations = 0 AND calls = 0", "cohort_essay_scores": "n = 0",
          "cohort_scales": "n = 0"}


@dataclass
class TableDrift:
    """How one projection table differs from a rebuild.

    ``missing``: rows the events give that were not stored; ``unexpected``: stored rows the events
    do not give. The ``*_sample`` lists hold the first few of each.
    """

    table: str
    columns: list[str]
    missing: int
    unexpected: int
    missing_sample: list[tuple[Any, ...]] = field(default_factory=list)
    unexpected_sample: list[tuple[Any, ...]] = field(default_factory=list)

    def describe(self, limit: int = 3) -> str:
        """One line: counts, and the key (first column) of the first differing rows."""
        keys = sorted({str(r[0]) for r in self.missing_sample + self.unexpected_sample})
        sampled = len(self.missing_sample) + len(self.unexpected_sample)
        more = len(keys) > limit or self.missing + self.unexpected > sampled
        shown = ", ".join(keys[:limit]) + (" …" if more else "")
        return (f"{self.table}: {self.missing} row(s) missing, {self.unexpected} row(s) that the "
                f"events do not give ({self.columns[0]} {shown})")


@dataclass
class Outcome:
    """What a rebuild or a check found: rows per table after the rebuild, and the drift before it."""

    rows: dict[str, int]
    drift: list[TableDrift]
    events: int


class _RolledBack(Exception):
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


def _kept(cur: sqlite3.Cursor, table: str, source: str, backend: Any) -> str:
    """The rows of ``table`` (read from ``source``) that say something, floats to 9 decimals: a sum
    of costs kept event by event and the same sum refilled by a migration differ in their last bits."""
    columns = ", ".join(f"ROUND({name}, 9) AS {name}" if kind.upper() in ("FLOAT", "REAL", "DOUBLE PRECISION")
                        else name for name, kind in backend.column_types(cur, table))
    where = f" WHERE NOT ({_EMPTY[table]})" if table in _EMPTY else ""
    return f"SELECT {columns} FROM {source}{where}"


def _rows(cur: sqlite3.Cursor, sql: str) -> list[tuple[Any, ...]]:
    return sorted((tuple(r) for r in cur.execute(sql)), key=repr)


def _rebuild_in(cur: sqlite3.Cursor, backend: Any, sample: int = 20) -> Outcome:
    # The stored rows wait in temporary tables (SQLite's temp store, not Python memory: a 1M-event
    # ledger's projections are hundreds of MB as Python tuples), then SQL tells the differences.
    # The tables this ledger's schema has (a ledger before 0010 has no cohort_scales).
    tables = [t for t in TABLES + PLAN_TABLES if backend.has_table(cur, t)]
    temp = "temp." if backend.name == "sqlite" else ""  # PostgreSQL finds its temporary tables first
    for table in tables:  # all kept before any is emptied: emptying one moves the counters
        cur.execute(f"DROP TABLE IF EXISTS {temp}before_{table}")
        cur.execute(f"CREATE TEMP TABLE before_{table} AS {_kept(cur, table, table, backend)}")
    for table in tables:
        cur.execute(f"DELETE FROM {table}")
    cur.execute(PROJECT_EVENTS, (0,))  # what every append runs for its own events: here, all of them
    events = cur.execute("SELECT COUNT(*) FROM events WHERE type IN (SELECT type FROM projected_types)").fetchone()[0]
    drift, rows = [], {}
    try:
        for table in tables:
            after, before = _kept(cur, table, table, backend), _kept(cur, table, f"{temp}before_{table}", backend)
            rows[table] = cur.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            n_missing = cur.execute(f"SELECT COUNT(*) FROM ({after} EXCEPT {before}) AS d").fetchone()[0]
            n_unexpected = cur.execute(f"SELECT COUNT(*) FROM ({before} EXCEPT {after}) AS d").fetchone()[0]
            if n_missing or n_unexpected:
                columns = [name for name, _kind in backend.column_types(cur, table)]
                drift.append(TableDrift(table, columns, n_missing, n_unexpected,
                                        _rows(cur, f"{after} EXCEPT {before} LIMIT {sample}"),
                                        _rows(cur, f"{before} EXCEPT {after} LIMIT {sample}")))
    finally:
        for table in tables:
            cur.execute(f"DROP TABLE IF EXISTS {temp}before_{table}")
    return Outcome(rows, drift, events)


def ensure_trustworthy(ledger: Ledger) -> None:
    """Refuse to rebuild from a ledger whose events or projection machinery were altered.

    A rebuild replays the events through the projection trigger: events that fail verification
    (a score edited with the append-only triggers dropped) or an edited trigger would be adopted
    as the truth, and every report would publish them. Raises ``LedgerIntegrityError``.
    """
    try:
        ledger.check_integrity()
    except LedgerIntegrityError as exc:
        raise LedgerIntegrityError(exc.seq, f"{exc.reason}; refusing to rebuild the projections from events "
                                            "that fail verification (they would adopt the altered data): "
                                            "restore the ledger from a backup") from None
    drift = db.schema_drift(ledger.backend)
    if drift:
        more = f" (and {len(drift) - 1} more)" if len(drift) > 1 else ""
        raise LedgerIntegrityError(None, f"the schema was altered: {drift[0]}{more}; refusing to rebuild the "
                                         "projections through it: run 'daydream verify --full'")


def rebuild(ledger: Ledger) -> Outcome:
    """Recompute every projection from the events, in one transaction; return what changed.

    Only from a ledger that verifies (``ensure_trustworthy``): a projection that drifted is
    repaired, altered events are never adopted.
    """
    ensure_trustworthy(ledger)
    return ledger.backend.write(lambda cur: _rebuild_in(cur, ledger.backend))


def check(ledger: Ledger) -> Outcome:
    """Rebuild inside a transaction that is rolled back: the ledger is left exactly as it was.

    A SQLite ledger opened read-only is checked on a temporary copy instead (brought to the current
    schema there), since even a rolled-back transaction needs the write lock. A PostgreSQL one is
    checked on the server, in a writable session whose transaction is rolled back: its copy would be
    a SQLite file that projects the events afresh, and could never show the stored rows' drift.
    """
    if ledger.readonly and ledger.backend.name == "postgresql":
        from daydream.ledger.pg_backend import PgBackend

        writable = PgBackend(ledger.backend.url)
        try:
            return check(Ledger(ledger.path, writable))
        finally:
            writable.close()
    if ledger.readonly:
        return _check_copy(ledger)

    def work(cur: sqlite3.Cursor) -> None:
        raise _RolledBack(_rebuild_in(cur, ledger.backend))

    try:
        ledger.backend.write(work)
    except _RolledBack as done:
        return done.outcome
    raise AssertionError("unreachable: the check always rolls back")


def _check_copy(ledger: Ledger) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="daydream-check-") as folder:
        copy = Path(folder) / "ledger.db"
        ledger.backup(copy)
        scratch = Ledger.open(copy)
        try:
            return check(scratch)
        finally:
            scratch.close()
