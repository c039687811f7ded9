"""Re-parse recorded answers: new parse events from a cohort's raw responses, without an LLM call.

After a parser changes (a fix in its code, another parser named in the catalog) or a rubric's scale
changes, ``reparse`` runs each generation's stage outcome again over the answer it already has —
exactly what the runner would do with that answer today — and appends the result where it differs
from the current one: ``ResponseParsed`` (+ ``ScoreRecorded``) or ``ParseFailed``, marked
``reparsed: true`` with the template hash and parser used. The old parse stays in the history, and
a second reparse appends nothing. Replaying the ledger (``run --replay-from``) with the same catalog
derives the same scores, since the runner parses the replayed answers the same way.

Scales and parser names come from the catalog the cohort was planned with, read again from its
folder (so an edited ``scale:`` applies), or from ``catalog``; a template whose text changed since
keeps what its generations recorded, since their answers answered the old text.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daydream.ledger import events as ev
from daydream import plugins
from daydream.contracts import Generation
from daydream.design.catalog import DEFAULT_PARSERS, Catalog, Template, catalog_from_ledger, load_catalog
from daydream.errors import DaydreamError, NotFound, UsageError
from daydream.ledger.store import Ledger, NewEvent
from daydream.run.pending import STAGE_ORDER
from daydream.design.scales import DEFAULT_SCALE, Scale, bind_scale, scale_label

BATCH = 2000  # generations decided and appended per transaction

_ROWS = """
SELECT g.gen_id, g.stage, g.status, g.attempt, g.template_id, g.template_hash, g.parser, g.generator,
       g.raw_hash, g.parsed_hash, g.score, g.scale_min, g.scale_max, g.error, g.finish_reason,
       g.imported, g.parent_gen_id, g.model_id, g.replicate, g.updated_seq,
       (SELECT json_extract(e.payload, '$.text_hash') FROM events e
         WHERE e.stream = 'gen:' || g.gen_id AND e.type = 'LLMCallCompleted'
           AND CAST(json_extract(e.payload, '$.attempt') AS INTEGER) = g.attempt
           AND COALESCE(CAST(json_extract(e.payload, '$.superseded') AS TEXT), '') NOT IN ('1', 'true')
         ORDER BY e.version DESC LIMIT 1) AS answered_hash
FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id
WHERE m.cohort_id = ? {filters}
ORDER BY g.planned_seq, g.gen_id"""
_COLUMNS = ("gen_id", "stage", "status", "attempt", "template_id", "template_hash", "parser", "generator",
            "raw_hash", "parsed_hash", "score", "scale_min", "scale_max", "error", "finish_reason",
            "imported", "parent_gen_id", "model_id", "replicate", "updated_seq", "answered_hash")


@dataclass
class StageCounts:
    """What reparse found for one stage; ``examined`` = the sum of the other counts."""

    examined: int = 0
    unchanged: int = 0
    rescored: int = 0  # scored before and after, another score or scale
    now_parsed: int = 0  # failed before, parsed now
    now_failed: int = 0  # parsed before, fails now
    other: int = 0  # another parsed text, failure reason or template hash; the score unchanged
    skipped: int = 0  # nothing to re-parse (see the report's notes)


@dataclass(frozen=True)
class Change:
    """One generation whose parse changed: what it was and what it is now (one line each)."""

    gen_id: str
    stage: str
    kind: str  # rescored, now_parsed, now_failed, other
    before: str
    after: str


@dataclass
class ReparseReport:
    """What a reparse did (or, with ``dry_run``, would do)."""

    cohort_id: str
    catalog: str
    dry_run: bool
    stages: dict[str, StageCounts] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    catalog_recorded: bool = False
    events_appended: int = 0

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


class _Skip(Exception):
    """A generation that cannot be re-parsed; the message says why."""


@dataclass
class _Decision:
    row: dict[str, Any]
    events: list[ev.DomainEvent]
    texts: list[str]
    change: Change


# ----------------------------------------------------------------------------- the catalog to use
def _cohort_catalog_hash(ledger: Ledger, cohort_id: str) -> str | None:
    found = [e.payload.get("catalog_hash") for e in ledger.events(
        stream=ev.cohort_stream(cohort_id), type=[ev.COHORT_PLANNED, ev.SPEC_COMPILED])]
    found = [h for h in found if h]
    return found[-1] if found else None


def _resolve_catalog(ledger: Ledger, cohort_id: str, catalog: Catalog | str | Path | None,
                     report: ReparseReport) -> Catalog | None:
    if isinstance(catalog, Catalog):
        report.catalog = catalog.source
        return catalog
    if catalog is not None:
        loaded = load_catalog(catalog)
        report.catalog = loaded.source
        return loaded
    recorded = _cohort_catalog_hash(ledger, cohort_id)
    if recorded is None:
        report.catalog = "none recorded for the cohort (the generations' recorded parsers and scales)"
        return None
    snapshot = ledger.events(stream=ev.catalog_stream(recorded), type=ev.CATALOG_IMPORTED)
    source = snapshot[0].payload.get("source") if snapshot else None
    if source and Path(source).is_dir():
        loaded = load_catalog(source)  # an edited catalog that no longer loads is an error to fix
        report.catalog = loaded.source
        return loaded
    report.catalog = f"the snapshot recorded in the ledger ({recorded[:16]})"
    report.note(f"the cohort's catalog folder {source!r} is not there: its recorded snapshot is used "
                "(pass --catalog DIR to apply a changed catalog)")
    return catalog_from_ledger(ledger, recorded) if snapshot else None


def _recorded_templates(ledger: Ledger) -> dict[str, dict[str, Any]]:
    """Catalog snapshot entries of every template the ledger knows, by template hash."""
    found: dict[str, dict[str, Any]] = {}
    for event in ledger.events(type=ev.CATALOG_IMPORTED):
        found.update((t["hash"], t) for t in event.payload.get("templates", []) if t.get("hash"))
    return found


# ----------------------------------------------------------------------------- deciding
def _describe(status: str, parsed_hash: str | None, score: float | None, scale: Scale | None,
              error: str | None) -> str:
    if status != "completed":
        return f"failed: {(error or '?')[:160]}"
    if score is not None:
        return f"score {score:g} on {scale_label(scale or DEFAULT_SCALE)}"
    return f"parsed ({(parsed_hash or '')[:12]})"


class _Reparser:
    """One reparse: the catalog, what the ledger recorded, and the registered stages and parsers."""

    def __init__(self, ledger: Ledger, catalog: Catalog | None, report: ReparseReport) -> None:
        self.ledger = ledger
        self.catalog = catalog
        self.report = report
        self.recorded = _recorded_templates(ledger)
        self.stages = plugins.stages()
        self.parsers = plugins.parsers()

    def _template(self, row: dict[str, Any]) -> tuple[str, Scale | None, str | None]:
        """(parser name, scale, template hash) to re-parse ``row`` with.

        The catalog's template when its text is the one the answer was made from (or the answer was
        imported, whose template text is not recorded); otherwise what the generation recorded.
        """
        stage, scored = row["stage"], self.stages.get(row["stage"]).scored
        current: Template | None = None
        if self.catalog is not None:
            current = self.catalog.templates.get(stage, {}).get(row["template_id"])
        entry = self.recorded.get(row["template_hash"] or "", {})
        used_text = entry.get("text_hash") or row["template_hash"]
        if current is not None and (row["imported"] or current.text_hash == used_text):
            scale = (current.score_scale or DEFAULT_SCALE) if scored else None
            return current.parser or DEFAULT_PARSERS.get(stage, "identity"), scale, \
                (None if row["imported"] else current.hash)
        if current is not None:
            self.report.note(f"{stage} template {row['template_id']!r}: its text changed since these answers "
                             "were made; they keep the parser and scale they were recorded with")
        scale = None
        if scored:
            recorded_scale = entry.get("scale")
            if recorded_scale:
                scale = (int(recorded_scale[0]), int(recorded_scale[1]))
            elif row["scale_min"] is not None:
                scale = (int(row["scale_min"]), int(row["scale_max"]))
            else:
                scale = DEFAULT_SCALE
        return row["parser"] or DEFAULT_PARSERS.get(stage, "identity"), scale, row["template_hash"]

    def eligible(self, row: dict[str, Any]) -> str | None:
        """Why ``row`` cannot be re-parsed, or None."""
        if row["stage"] not in self.stages.items:
            return f"stage {row['stage']!r} is not registered"
        if row["generator"] == "copy":
            return "copy-mode generations have no answer to parse"
        if row["status"] not in ("completed", "failed"):
            return "not finished"
        if row["raw_hash"] is None:
            return "no recorded answer"
        # The answer of the current attempt: a completed call's, or an import's. A failed call's
        # error body (kept on GenerationFailed) is not an answer.
        from_import = row["imported"] and row["attempt"] == 1
        if row["answered_hash"] != row["raw_hash"] and not from_import:
            return "no recorded answer"
        return None

    def decide(self, row: dict[str, Any], raw: str) -> _Decision | None:
        """The events that record ``row``'s parse of ``raw`` today, or None when nothing changes."""
        stage = self.stages.get(row["stage"])
        parser_name, scale, template_hash = self._template(row)
        try:
            parse = self.parsers.get(parser_name)
        except DaydreamError:
            raise _Skip(f"parser {parser_name!r} is not registered") from None
        if stage.scored:
            parse = bind_scale(parse, scale or DEFAULT_SCALE)
        gen = Generation(*(row[k] for k in ("gen_id", "stage", "parent_gen_id", "template_id", "model_id",
                                            "replicate")))
        events, texts = stage.outcome(gen, row["attempt"], raw, row["finish_reason"], parse, parser_name)
        events = [self._mark(e, template_hash) for e in events]
        types = {e.TYPE: e.to_payload() for e in events}
        parsed = types.get(ev.RESPONSE_PARSED)
        scored = types.get(ev.SCORE_RECORDED)
        new_score = scored["score"] if scored else None
        new_scale = tuple(scored["scale"]) if scored and scored.get("scale") else None
        old_scale = (int(row["scale_min"]), int(row["scale_max"])) if row["scale_min"] is not None else None
        if parsed is not None:
            status, error = "completed", None
        else:
            failed = types.get(ev.PARSE_FAILED) or types.get(ev.GENERATION_FAILED) or {}
            status = "failed"
            error = (f"ParseFailed: {failed.get('reason')}" if ev.PARSE_FAILED in types else failed.get("reason"))
        same_identity = template_hash is None or template_hash == row["template_hash"]
        if status == "completed":
            same = (row["status"] == "completed" and row["parsed_hash"] == parsed["parsed_hash"]
                    and row["score"] == new_score and (new_score is None or old_scale == new_scale))
        else:
            same = row["status"] == "failed" and row["error"] == error
        if same and same_identity:
            return None
        before_ok, after_ok = row["status"] == "completed", status == "completed"
        if after_ok and not before_ok:
            kind = "now_parsed"
        elif before_ok and not after_ok:
            kind = "now_failed"
        elif after_ok and (row["score"] != new_score or (new_score is not None and old_scale != new_scale)):
            kind = "rescored"
        else:
            kind = "other"
        before = _describe(row["status"], row["parsed_hash"], row["score"], old_scale, row["error"])
        after = _describe(status, parsed["parsed_hash"] if parsed else None, new_score, new_scale, error)
        if after == before and template_hash is not None:
            after = f"the same, under template {template_hash[:12]} (was {(row['template_hash'] or '-')[:12]})"
        change = Change(row["gen_id"], row["stage"], kind, before, after)
        return _Decision(row, events, texts, change)

    @staticmethod
    def _mark(event: ev.DomainEvent, template_hash: str | None) -> ev.DomainEvent:
        if template_hash is not None and isinstance(event, (ev.ResponseParsed, ev.ParseFailed)):
            return event.but(reparsed=True, template_hash=template_hash)
        return event.but(reparsed=True)


def _children_in_use(ledger: Ledger, gen_ids: list[str]) -> set[str]:
    """Those of ``gen_ids`` whose parsed text a child has already been made from."""
    used: set[str] = set()
    for i in range(0, len(gen_ids), 500):
        chunk = gen_ids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        used.update(r[0] for r in ledger.query(
            f"SELECT DISTINCT parent_gen_id FROM gen_state WHERE parent_gen_id IN ({marks}) "
            "AND (status != 'planned' OR prompt_hash IS NOT NULL)", chunk))
    return used


# ----------------------------------------------------------------------------- the command
def reparse(ledger: Ledger, cohort_id: str, *, stage: str | None = None, template: str | None = None,
            catalog: Catalog | str | Path | None = None, dry_run: bool = False,
            batch: int = BATCH) -> ReparseReport:
    """Re-parse the recorded answers of ``cohort_id``'s generations and record what changed.

    ``stage`` and ``template`` narrow the generations (all stages, draft first, by default);
    ``catalog`` replaces the cohort's own catalog as the source of parsers and scales. A generation
    whose parsed text a child was already made from is left alone (re-parsing it would make the
    child's prompt untraceable); so are generations still pending or without a recorded answer.
    With ``dry_run`` nothing is appended. Returns counts per stage and every change.
    """
    stages = plugins.stages()
    if stage is not None and stage not in stages.items:
        raise UsageError(f"--stage {stage!r} is not a stage (known: {', '.join(sorted(stages.items))})")
    members = ledger.query("SELECT COUNT(*) FROM cohort_members WHERE cohort_id = ?", (cohort_id,))[0][0]
    if not members:
        raise NotFound(f"cohort {cohort_id!r} has no generations in ledger {ledger.path} "
                       "(see 'daydream cohort list')")
    report = ReparseReport(cohort_id, "", dry_run)
    cat = _resolve_catalog(ledger, cohort_id, catalog, report)
    reparser = _Reparser(ledger, cat, report)

    filters, params = "", [cohort_id]
    if stage is not None:
        filters += " AND g.stage = ?"
        params.append(stage)
    if template is not None:
        filters += " AND g.template_id = ?"
        params.append(template)
    rows = [dict(zip(_COLUMNS, r)) for r in ledger.query(_ROWS.format(filters=filters), params)]
    if template is not None and not rows:
        raise NotFound(f"cohort {cohort_id!r} has no {stage or ''}{' ' if stage else ''}generations of "
                       f"template {template!r}")
    rows.sort(key=lambda r: STAGE_ORDER.get(r["stage"], 9))  # parents first: a stable sort keeps plan order

    snapshot = _new_snapshot(ledger, cat)
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        decisions = _decide(reparser, chunk, report)
        if decisions and not dry_run:
            _append(ledger, decisions, snapshot if not report.catalog_recorded else None, report)
        elif decisions:
            report.events_appended += sum(len(d.events) for d in decisions) + \
                (1 if snapshot is not None and not report.catalog_recorded else 0)
            report.catalog_recorded = report.catalog_recorded or snapshot is not None
    return report


def _new_snapshot(ledger: Ledger, catalog: Catalog | None) -> tuple[NewEvent, list[str]] | None:
    """The catalog's ``CatalogImported`` event when the ledger does not have it yet.

    A re-parse may record template hashes of this catalog (a rubric's new scale); the runner and
    ``catalog_from_ledger`` look them up in the snapshots, so the snapshot goes in with them.
    """
    if catalog is None:
        return None
    snapshot, texts = catalog.snapshot_event()
    if ledger.stream_version(snapshot.stream) > 0:
        return None
    return snapshot.new(expected_version=0), texts


def _decide(reparser: _Reparser, rows: list[dict[str, Any]], report: ReparseReport) -> list[_Decision]:
    texts = reparser.ledger.get_texts({r["raw_hash"] for r in rows if r["raw_hash"]})
    decisions: list[_Decision] = []
    for row in rows:
        counts = report.stages.setdefault(row["stage"], StageCounts())
        counts.examined += 1
        why = reparser.eligible(row)
        raw = texts.get(row["raw_hash"]) if why is None else None
        if why is None and raw is None:
            why = "its answer's text is missing from the ledger"
        decision = None
        if why is None and raw is not None:
            try:
                decision = reparser.decide(row, raw)
            except _Skip as skip:
                why = str(skip)
        if why is not None:
            counts.skipped += 1
            if why not in ("not finished", "copy-mode generations have no answer to parse"):
                report.note(f"{row['stage']} generations skipped: {why}")
        elif decision is None:
            counts.unchanged += 1
        else:
            decisions.append(decision)
    # A parent whose parsed text already fed a child keeps it: the child's prompt came from it.
    parents = [d.row["gen_id"] for d in decisions if not reparser.stages.get(d.row["stage"]).scored]
    in_use = _children_in_use(reparser.ledger, parents) if parents else set()
    kept = []
    for d in decisions:
        counts = report.stages[d.row["stage"]]
        if d.row["gen_id"] in in_use:
            counts.skipped += 1
            report.note(f"{d.row['stage']} generations whose children were made from their current parse "
                        "were left alone (rerun the children after changing the parent)")
            continue
        setattr(counts, d.change.kind, getattr(counts, d.change.kind) + 1)
        report.changes.append(d.change)
        kept.append(d)
    return kept


def _append(ledger: Ledger, decisions: list[_Decision], snapshot: tuple[NewEvent, list[str]] | None,
            report: ReparseReport) -> None:
    """Append the decisions whose generation did not change meanwhile (a compare-and-set)."""
    dropped: list[_Decision] = []

    def build(cur: sqlite3.Cursor) -> tuple[list[NewEvent], list[str]]:
        dropped.clear()
        events: list[NewEvent] = []
        texts: list[str] = []
        for d in decisions:
            now = cur.execute("SELECT attempt, updated_seq FROM gen_state WHERE gen_id = ?",
                              (d.row["gen_id"],)).fetchone()
            if now is None or (now[0], now[1]) != (d.row["attempt"], d.row["updated_seq"]):
                dropped.append(d)
                continue
            events.extend(e.new() for e in d.events)
            texts.extend(d.texts)
        if events and snapshot is not None and cur.execute(
                "SELECT 1 FROM events WHERE stream = ? LIMIT 1", (snapshot[0].stream,)).fetchone() is None:
            events.insert(0, snapshot[0])
            texts.extend(snapshot[1])
        return events, texts

    stored = ledger.transact(build)
    report.events_appended += len(stored)
    if any(e.type == ev.CATALOG_IMPORTED for e in stored):
        report.catalog_recorded = True
    for d in dropped:
        counts = report.stages[d.row["stage"]]
        setattr(counts, d.change.kind, getattr(counts, d.change.kind) - 1)
        counts.skipped += 1
        report.changes.remove(d.change)
        report.note("generations that changed while reparse ran were left alone (run it again)")

