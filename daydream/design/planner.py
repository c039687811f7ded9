"""Cohort planning: turn a compiled spec into ``GenerationPlanned`` events in the ledger.

Each design row becomes a chain draft → essay → evaluation (or a shorter one: single-stage essays
straight from a combo, or evaluations of existing essays). Generations are deduplicated across rows
and across cohorts: before planning an id we look for the same id or the same signature in
``gen_state`` (imported generations keep their legacy ids) and link that one instead.

Memory stays flat in the size of the cohort (a million generations plan in well under 250 MB): the
design rows are made one at a time (``spec_compile.DesignRows``), validated in one pass, then
turned into generations batch by batch; what must be remembered across batches (ids already seen,
the plan's events in order) waits in a private scratch database on disk, not in Python objects.

A plan of up to ``TRANSACTION_EVENTS`` events is appended in ONE write transaction (in batches of
``CHUNK_EVENTS``, ``Ledger.append_batches``). A bigger one would hold the ledger's write lock for
longer than other writers wait (a million generations: two minutes), so it is *staged*: a
``PlanStarted``, then its events in transactions of ``TRANSACTION_EVENTS`` (a few seconds each),
each carrying its plan id, then the ``CohortPlanned`` that completes it. Until then every row it
staged is invisible (runner, views, status, report: migration 0013), and completing it makes all
of it visible at once in a few set-based statements. Either way a plan is all or nothing to
readers: one that fails or is killed part way shows nothing, and planning the same spec again
resumes it (what it appended is counted, not appended again) or, for another spec, supersedes it.
"""

from __future__ import annotations

import json
import itertools
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from daydream.ledger import events as ev
from daydream.design import ids
from daydream import plugins
from daydream.contracts import PIPELINE_STAGES
from daydream.design.catalog import (Catalog, Template, check_template, describe_identity, load_catalog, model_identity,
                              model_settings, recorded_models)
from daydream.errors import CatalogError, ConcurrencyConflict, PlanTakenOver, SpecError
from daydream.ledger.store import Ledger, NewEvent, text_hash
from daydream.design.spec_compile import design_rows
from daydream.design.spec_dsl import Spec, load_spec

# progress(phase, done, total): see plan_cohort.
Progress = Callable[[str, int, int], None]
_CHUNK = 900
# Events per batch of the final append, and design rows per planning batch: big enough that SQL
# round trips do not dominate, small enough that a batch's Python objects stay a few MB.
CHUNK_EVENTS = 5000
ROWS_PER_BATCH = 4000
# Events per write transaction of a plan too big for one: a few seconds of the write lock each
# (other writers wait up to the busy timeout, 120 s, for it), about 30 MB of events in memory.
TRANSACTION_EVENTS = 20_000


@dataclass
class PlanResult:
    """What a plan did (or, with ``dry_run``, would do): counts per stage and the events appended."""

    cohort_id: str
    spec_path: str
    spec_hash: str
    spec_version: int
    catalog_hash: str
    rows: int
    counts: dict[str, dict[str, int]]
    events: int
    new_spec_version: bool
    dry_run: bool = False
    catalog_imported: bool = False
    combos_defined: int = 0
    plan_id: str | None = None  # set when the plan was staged (appended in several transactions)
    transactions: int = 0  # write transactions the events were appended in
    resumed: bool = False  # it finished a plan of the same spec that had stopped part way

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return dict(self.__dict__)


@dataclass
class _Design:
    """What one pass over the design rows found (the generations themselves are made later, in batches)."""

    combos: set[str] = field(default_factory=set)
    existing_parents: dict[str, set[str]] = field(default_factory=lambda: {"draft": set(), "essay": set()})
    missing: dict[str, set[str]] = field(default_factory=dict)  # kind -> names not in the catalog
    combo_defs: dict[str, dict] = field(default_factory=dict)  # combos to define (not yet in the ledger)
    models: set[str] = field(default_factory=set)  # model ids of the llm-mode generations
    templates: dict[int, Template] = field(default_factory=dict)  # templates the generations use, by id()


# ----------------------------------------------------------------------------- rows -> generations
def design_generations(rows: Iterable[dict[str, Any]], catalog: Catalog, spec: Spec) -> _Design:
    """Check every row's axes and names in one pass; unknown template and model names are collected, not raised.

    Raises ``SpecError`` for the first row whose axes cannot make generations (a draft without a
    combo, an evaluation without an essay …).
    """
    design = _Design()
    missing: dict[str, set[str]] = {"draft template": set(), "essay template": set(),
                                    "evaluation template": set(), "model": set()}
    problems: list[str] = []
    templates = catalog.templates
    models = catalog.models

    def template(stage: str, tid: str) -> Template | None:
        found = templates.get(stage, {}).get(tid)
        if found is None:
            missing[f"{stage} template"].add(tid)
        return found

    def use(stage: str, t: Template, mid: str | None) -> None:
        design.templates[id(t)] = t
        if t.generator == "copy":
            return
        if mid is None:
            problems.append(f"{stage} template {t.id!r} is llm-mode but the spec has no {stage}_llm axis")
        else:
            design.models.add(mid)

    for row in rows:
        _check_axes(row, problems)
        if problems:
            break
        # Look up every name of the row first, so that all unknown names are reported together.
        known_names = True
        for stage in PIPELINE_STAGES:
            tid = row.get(f"{stage}_template")
            if tid is None:
                continue
            found = template(stage, tid)
            mid = row.get(f"{stage}_llm")
            # Copy-mode templates ignore their model; an unknown template may be either kind.
            if mid is not None and mid not in models and (found is None or found.generator == "llm"):
                missing["model"].add(mid)
                known_names = False
            if found is None:
                known_names = False
        combo = row.get("combo_id")
        if combo is not None:
            design.combos.add(combo)
        if not known_names:
            continue
        has_parent = False
        if "draft_template" in row:
            t = templates["draft"][row["draft_template"]]
            if combo is None:
                problems.append("draft rows need a combo (add a combo_id axis or a combos generator)")
                break
            if t.generator != "llm":
                problems.append(f"draft template {t.id!r} is {t.generator}-mode; drafts need an llm template")
                break
            use("draft", t, row.get("draft_llm"))
            has_parent = True
        elif "draft_gen_id" in row:
            has_parent = True
            design.existing_parents["draft"].add(row["draft_gen_id"])

        if "essay_template" in row:
            t = templates["essay"][row["essay_template"]]
            if not has_parent:
                if combo is None:
                    problems.append("essay rows need a draft (draft_template or draft_gen_id) or a combo")
                    break
                if t.generator == "copy":
                    problems.append(f"essay template {t.id!r} is copy-mode but the spec has no draft to copy")
                    break
            use("essay", t, row.get("essay_llm"))
            has_parent = True
        elif "essay_gen_id" in row:
            has_parent = True
            design.existing_parents["essay"].add(row["essay_gen_id"])
        else:
            has_parent = False  # a draft alone cannot be evaluated

        if "evaluation_template" in row:
            t = templates["evaluation"][row["evaluation_template"]]
            if not has_parent:
                problems.append("evaluation rows need an essay (essay_template or essay_gen_id)")
                break
            if t.generator != "llm":
                problems.append(f"evaluation template {t.id!r} is {t.generator}-mode; expected llm")
                break
            use("evaluation", t, row.get("evaluation_llm"))

    if problems:
        raise SpecError(f"{spec.path}: {problems[0]}")
    design.missing.update(missing)
    return design


_NEEDS = {
    "draft_llm": "draft_template", "draft_replicate": "draft_template",
    "essay_llm": "essay_template", "essay_replicate": "essay_template",
    "evaluation_llm": "evaluation_template", "evaluation_replicate": "evaluation_template",
}
_CONFLICTS = {"draft_gen_id": ("draft_template", "combo_id"),
              "essay_gen_id": ("essay_template", "draft_template", "draft_gen_id", "combo_id")}


def _check_axes(row: dict[str, Any], problems: list[str]) -> None:
    for axis, needed in _NEEDS.items():
        if axis in row and needed not in row:
            problems.append(f"axis {axis!r} is given without {needed!r}")
            return
    for axis, clashes in _CONFLICTS.items():
        if axis in row:
            for other in clashes:
                if other in row:
                    problems.append(f"axis {axis!r} selects existing generations; it cannot be combined "
                                    f"with {other!r}")
                    return


# ----------------------------------------------------------------------------- ledger lookups
def _select(ledger: Ledger, sql: str, values: list[Any], extra: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    for i in range(0, len(values), _CHUNK):
        chunk = values[i:i + _CHUNK]
        out.extend(ledger.query(sql.format(marks=",".join("?" * len(chunk))), (*extra, *chunk)))
    return out


class _Scratch:
    """The plan's memory between batches: a private SQLite database on disk, not Python objects.

    ``sqlite3.connect("")`` makes a temporary database that SQLite deletes when it is closed (the
    file is unlinked as soon as it is opened, so even a killed process leaves nothing behind); its
    page cache is capped, the rest lives on disk. It holds the generation ids already seen (by
    their computed id, ``keys``; by the id they resolved to, ``done``) and, per stage, the
    generations to plan and to link, in the order the plan appends them.
    """

    def __init__(self) -> None:
        self.conn = sqlite3.connect("", isolation_level=None)
        self.conn.execute("PRAGMA cache_size = -16000")  # KiB: 16 MB of pages at most
        self.conn.execute("PRAGMA journal_mode = OFF")
        self.conn.execute("PRAGMA synchronous = OFF")
        for name in ("keys", "done"):
            self.conn.execute(f"CREATE TABLE {name} (id TEXT PRIMARY KEY) WITHOUT ROWID")
        for stage in PIPELINE_STAGES:
            self.conn.execute(f"CREATE TABLE planned_{stage} (n INTEGER PRIMARY KEY, gen_id TEXT, parent TEXT, "
                              "combo TEXT, template TEXT, model TEXT, replicate)")
            self.conn.execute(f"CREATE TABLE linked_{stage} (n INTEGER PRIMARY KEY, gen_id TEXT)")
        self.conn.execute("BEGIN")  # one transaction, never committed: the database dies with the plan

    def first_seen(self, table: str, ids_: list[str]) -> list[str]:
        """The ids (unique, in order) not in ``table`` yet, which are added to it."""
        if not ids_:
            return []
        fresh = [r[0] for r in self.conn.execute(
            f"SELECT value FROM json_each(?) WHERE value NOT IN {table} ORDER BY key", (json.dumps(ids_),))]
        self.conn.executemany(f"INSERT INTO {table} VALUES (?)", [(i,) for i in fresh])
        return fresh

    def add(self, table: str, rows: list[tuple]) -> None:
        if rows:
            marks = ", ".join("?" * (len(rows[0]) + 1))
            self.conn.executemany(f"INSERT INTO {table} VALUES ({marks})", [(None, *r) for r in rows])

    def read(self, table: str) -> Iterator[tuple]:
        """The rows of ``table`` in the order added, without their number."""
        cur = self.conn.execute(f"SELECT * FROM {table} ORDER BY n")
        while batch := cur.fetchmany(CHUNK_EVENTS):
            for row in batch:
                yield row[1:]

    def close(self) -> None:
        self.conn.close()


class _Cand(NamedTuple):
    """One generation a row asks for, before its id is resolved against the ledger."""

    computed: str  # the id its signature gives
    parent: str | None  # the parent's resolved id
    combo: str | None  # the combo it descends from (payload), known through its parent
    sig_combo: str | None  # the combo of its signature: only without a parent
    template: Template
    model_id: str | None
    replicate: int


_STATE_COLS = "gen_id, stage, parent_gen_id, combo_id, template_id, model_id, replicate"
# A membership a plan still being appended staged is not the cohort's yet (migration 0013).
_VISIBLE_MEMBER = "(m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans))"


def _resolve(ledger: Ledger, stage: str, cands: dict[str, _Cand],
             resume: str | None = None) -> tuple[dict[str, tuple[str, bool]], set[str]]:
    """Give each generation its id: an existing one (same id or same signature) or its own.

    Returns {computed id: (id, exists)} and the ids that the plan being resumed (``resume``)
    staged before it stopped: those count as planned by this plan (not existing), their events
    are in the ledger already.
    """
    by_id = {r[0]: r[1] for r in _select(ledger, "SELECT gen_id, plan_id FROM gen_state WHERE gen_id IN ({marks})",
                                         list(cands))}
    staged = {c for c, plan in by_id.items() if resume is not None and plan == resume}
    out = {c: (c, c not in staged) for c in cands if c in by_id}
    rest = [g for c, g in cands.items() if c not in by_id]
    by_sig: dict[tuple, str] = {}
    if rest:
        # Signature lookup: drafts (and single-stage essays) by combo, children by parent.
        with_parent = sorted({g.parent for g in rest if g.parent})
        combos = sorted({g.sig_combo for g in rest if not g.parent and g.sig_combo})
        rows = _select(ledger, f"SELECT {_STATE_COLS} FROM gen_state WHERE stage = ? AND parent_gen_id IN "
                               "({marks})", with_parent, (stage,))
        rows += _select(ledger, f"SELECT {_STATE_COLS} FROM gen_state WHERE stage = ? AND parent_gen_id IS "
                                "NULL AND combo_id IN ({marks})", combos, (stage,))
        for gen_id, _stage, parent, combo, template_id, model_id, replicate in rows:
            # A child's parent fixes its combo, so children match on the parent alone (imports may
            # leave combo_id empty on essays and evaluations).
            sig = (parent, None if parent else combo, template_id, model_id, replicate)
            by_sig.setdefault(sig, gen_id)
    for g in rest:
        sig = (g.parent, None if g.parent else g.sig_combo, g.template.id, g.model_id, g.replicate)
        found = by_sig.get(sig)
        out[g.computed] = (found, True) if found is not None else (g.computed, False)
    return out, staged


class _Planning:
    """Turns validated design rows into the plan's generations, batch by batch, into a ``_Scratch``.

    Generations go in the order the rows first ask for them, all drafts before all essays before
    all evaluations; each batch resolves its new ids against the ledger in a few queries. Across
    batches only the ids that resolved to another one (reused legacy generations) stay in memory.
    """

    def __init__(self, ledger: Ledger, catalog: Catalog, cohort: str, parent_combos: dict[str, str | None],
                 scratch: _Scratch, resume: str | None = None) -> None:
        self.ledger = ledger
        # The plan this one resumes: what it staged before it stopped is counted, not appended again.
        self.resume = resume
        self.to_append = 0  # events the generations and links need (those of ``resume`` are in)
        self.templates = catalog.templates
        self.cohort = cohort
        self.parent_combos = parent_combos
        self.scratch = scratch
        self.counts = {s: {"new": 0, "linked": 0, "existing": 0} for s in PIPELINE_STAGES}
        self.renamed: dict[str, str] = {}  # computed id -> the existing id it resolved to
        # (stage, template id) -> [generations, first old template hash]: reused work planned on
        # another text of the template (see _raise_on_stale_templates).
        self.stale: dict[tuple[str, str], list] = {}

    def link_existing_parents(self, existing_parents: dict[str, set[str]]) -> None:
        """Existing generations named by draft_gen_id / essay_gen_id axes join the cohort too, so the
        cohort's views show the essays it evaluates."""
        for stage in PIPELINE_STAGES:
            wanted = sorted(existing_parents.get(stage, ()))
            self.scratch.first_seen("done", wanted)
            self._join(stage, wanted)

    def _join(self, stage: str, gen_ids: list[str]) -> None:
        """Count existing generations as members already, or link them to the cohort.

        A membership staged by the plan being resumed is a link made already; one staged by
        another plan that never completed is linked again (the new link takes it over).
        """
        # {gen_id: the open plan that staged its membership, or None when it is visible}
        members = {r[0]: r[1] for r in _select(
            self.ledger, "SELECT m.gen_id, CASE WHEN m.plan_id IN (SELECT plan_id FROM open_plans) THEN m.plan_id END "
                         "FROM cohort_members m WHERE m.cohort_id = ? AND m.gen_id IN ({marks})", gen_ids, (self.cohort,))}
        visible = sum(1 for g in gen_ids if g in members and members[g] is None)
        linked = [(g,) for g in gen_ids if g not in members or members[g] not in (None, self.resume)]
        self.counts[stage]["existing"] += visible
        self.counts[stage]["linked"] += len(gen_ids) - visible
        self.to_append += len(linked)
        self.scratch.add(f"linked_{stage}", linked)

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        """Plan the generations a batch of rows asks for that no earlier batch did."""
        templates, renamed, parent_combos = self.templates, self.renamed, self.parent_combos
        # Per row: (parent id, the combo it carries) for the next stage; None when there is none.
        parents: list[tuple[str, str | None] | None] = []
        cands: dict[str, _Cand] = {}
        for row in rows:
            combo = row.get("combo_id")
            tid = row.get("draft_template")
            if tid is not None:
                t = templates["draft"][tid]
                model_id, replicate = row.get("draft_llm"), row.get("draft_replicate", 1)
                computed = ids.gen_id_for("draft", combo, t.id, model_id, replicate)
                if computed not in cands:
                    cands[computed] = _Cand(computed, None, combo, combo, t, model_id, replicate)
                parents.append((computed, combo))
            elif "draft_gen_id" in row:
                parents.append((row["draft_gen_id"], parent_combos.get(row["draft_gen_id"])))
            else:
                parents.append(None)
        self._plan_stage("draft", cands)

        cands = {}
        for i, row in enumerate(rows):
            parent = parents[i]
            if parent is not None and "draft_template" in row:
                parent = (renamed.get(parent[0], parent[0]), parent[1])
            tid = row.get("essay_template")
            if tid is not None:
                t = templates["essay"][tid]
                model_id = None if t.generator == "copy" else row.get("essay_llm")
                replicate = row.get("essay_replicate", 1)
                combo = row.get("combo_id")
                if parent is None:
                    computed = ids.gen_id_for("essay", combo, t.id, model_id, replicate)
                    cand = _Cand(computed, None, combo, combo, t, model_id, replicate)
                else:
                    computed = ids.gen_id_for("essay", parent[0], t.id, model_id, replicate)
                    cand = _Cand(computed, parent[0], parent[1], None, t, model_id, replicate)
                cands.setdefault(computed, cand)
                parents[i] = (computed, cand.combo)
            elif "essay_gen_id" in row:
                parents[i] = (row["essay_gen_id"], parent_combos.get(row["essay_gen_id"]))
            else:
                parents[i] = None  # a draft alone cannot be evaluated
        self._plan_stage("essay", cands)

        cands = {}
        for i, row in enumerate(rows):
            tid = row.get("evaluation_template")
            parent = parents[i]
            if tid is None or parent is None:
                continue
            if "essay_template" in row:
                parent = (renamed.get(parent[0], parent[0]), parent[1])
            t = templates["evaluation"][tid]
            model_id, replicate = row.get("evaluation_llm"), row.get("evaluation_replicate", 1)
            computed = ids.gen_id_for("evaluation", parent[0], t.id, model_id, replicate)
            if computed not in cands:
                cands[computed] = _Cand(computed, parent[0], parent[1], None, t, model_id, replicate)
        self._plan_stage("evaluation", cands)

    def _plan_stage(self, stage: str, cands: dict[str, _Cand]) -> None:
        new = self.scratch.first_seen("keys", list(cands))
        if not new:
            return
        fresh = {c: cands[c] for c in new}
        resolved, staged_here = _resolve(self.ledger, stage, fresh, self.resume)
        for computed, (gen_id, _) in resolved.items():
            if gen_id != computed:
                self.renamed[computed] = gen_id
        self._note_stale_templates(stage, [(resolved[c][0], g) for c, g in fresh.items() if resolved[c][1]])
        # Two signatures may resolve to one existing generation: it joins the plan once.
        by_id = {}
        for c, g in fresh.items():
            by_id.setdefault(resolved[c][0], (g, resolved[c][1]))
        planned, existing, staged = [], [], 0
        for gen_id in self.scratch.first_seen("done", list(by_id)):
            g, exists = by_id[gen_id]
            if exists:
                existing.append(gen_id)
            elif gen_id in staged_here:
                staged += 1  # planned by the resumed plan: its event is in the ledger
            else:
                planned.append((gen_id, g.parent, g.combo, g.template.id, g.model_id, g.replicate))
        self.counts[stage]["new"] += len(planned) + staged
        self.to_append += len(planned)
        self.scratch.add(f"planned_{stage}", planned)
        self._join(stage, existing)

    def _note_stale_templates(self, stage: str, existing: list[tuple[str, _Cand]]) -> None:
        """Note reused generations planned with another text of the same template id.

        Ids do not include the template text, so an edited template would otherwise link the old
        results into the cohort as if they came from the new text. Imported generations are exempt:
        the previous pipeline edited templates in place, and reusing its results is the point.
        """
        hashed = {gen_id: g for gen_id, g in existing if g.template.hash is not None}
        for gen_id, template_hash, imported in _select(
                self.ledger, "SELECT gen_id, template_hash, imported FROM gen_state WHERE gen_id IN ({marks})",
                sorted(hashed)):
            g = hashed[gen_id]
            if template_hash and not imported and template_hash != g.template.hash:
                seen = self.stale.setdefault((stage, g.template.id), [0, template_hash])
                seen[0] += 1

    def raise_on_stale_templates(self, catalog: Catalog) -> None:
        """Refuse to reuse generations planned with another text of the same template id."""
        if not self.stale:
            return
        (stage, tid), (n_old, old_hash) = sorted(self.stale.items())[0]
        new = catalog.templates[stage][tid].hash or ""
        others = f" (and {len(self.stale) - 1} more template(s))" if len(self.stale) > 1 else ""
        raise CatalogError(f"catalog {catalog.source}: {stage} template {tid!r} changed since {n_old} "
                           f"planned generation(s) used it (text {old_hash[:12]} -> {new[:12]}){others}; "
                           f"give the edited template a new id (e.g. {tid}-v2) so old and new results "
                           "stay apart (if only a rubric's scale changed, 'daydream reparse --cohort ID' "
                           "first re-scores the recorded answers on it)")


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _check_existing_parents(ledger: Ledger, design: _Design, spec: Spec) -> dict[str, str | None]:
    """Existing generations named by draft_gen_id / essay_gen_id axes: must exist at that stage."""
    combo_of: dict[str, str | None] = {}
    problems = []
    for stage, wanted in design.existing_parents.items():
        if not wanted:
            continue
        found = {r[0]: r for r in _select(
            ledger, f"SELECT {_STATE_COLS} FROM gen_state WHERE gen_id IN ({{marks}})", sorted(wanted))}
        absent = sorted(w for w in wanted if w not in found or found[w][1] != stage)
        if absent:
            problems.append(f"unknown {stage} generation(s) {', '.join(repr(a) for a in absent)}")
        combo_of.update({gid: r[3] for gid, r in found.items()})
    if problems:
        raise SpecError(f"{spec.path}: {'; '.join(problems)} (ledger {ledger.path})")
    return combo_of


def _model_events(ledger: Ledger, design: _Design, catalog: Catalog, cohort: str,
                  catalog_hash: str) -> tuple[dict[str, str], list[NewEvent]]:
    """Fix what each model id of the plan means; refuse a catalog that redefines one.

    A model id's identity (provider, model name, base URL, output-changing parameters) is fixed by
    the first plan that uses it (``ModelDefined`` on ``model:<id>``): generations are planned, and
    later called, as that model. A catalog defining the id otherwise is refused, so that no run
    ever sends work planned under one definition to another endpoint. Prices, limits and the key
    variable may change: a ``ModelSettingsChanged`` records it. Returns ({model_id: identity_hash}
    for the plan's models, the events to append with the plan).
    """
    used = sorted(design.models)
    if not used:
        return {}, []
    recorded = recorded_models(ledger)
    hashes: dict[str, str] = {}
    events: list[NewEvent] = []
    for model_id in used:
        model = catalog.model(model_id)
        identity, digest = model.identity(), model.identity_hash
        hashes[model_id] = digest
        known = recorded.get(model_id)
        if known is not None and known.binding:
            if known.identity_hash != digest:
                old = model_identity(known.definition)
                differs = [k for k in old if old[k] != identity.get(k)]
                raise CatalogError(
                    f"catalog {catalog.source}: model {model_id!r} is already planned in ledger {ledger.path} "
                    f"as {describe_identity(old)}; this catalog defines it as {describe_identity(identity)} "
                    f"(differs in {', '.join(differs)}): work planned on the first definition must not be "
                    f"sent to another; give the new definition a new id (e.g. {model_id}-2)")
            if known.version > 0:
                old_settings, new_settings = model_settings(known.definition), model_settings(model.as_dict())
                if old_settings != new_settings:
                    events.append(ev.ModelSettingsChanged(
                        model_id=model_id, identity_hash=digest, settings=new_settings, previous=old_settings,
                        catalog_hash=catalog_hash, cohort_id=cohort).new(expected_version=known.version))
                continue
        # First plan on this id (or on a ledger that has not recorded it yet): record what it is.
        events.append(ev.ModelDefined(
            model_id=model_id, identity_hash=digest, identity=identity, definition=model.as_dict(),
            catalog_hash=catalog_hash, cohort_id=cohort).new(expected_version=0))
    return hashes, events


# ----------------------------------------------------------------------------- planning
def _resolve_catalog(catalog: Catalog | str | Path | None, spec: Spec) -> Catalog:
    if isinstance(catalog, Catalog):
        return catalog
    if catalog is not None:
        return load_catalog(catalog)
    return load_catalog(spec.catalog)


def _stage_variables(stage_name: str) -> set[str] | None:
    """Names a stage's templates may use: its variables with and without a parent text.

    Found by asking the registered stage with a sample input; None (no check) if it cannot say.
    """
    from daydream.contracts import StageInput
    from daydream.errors import PluginError

    try:
        stage = plugins.stages().get(stage_name)
    except PluginError:
        return None
    concepts = [{"id": "c", "name": "C", "content": "text"}]
    names: set[str] = set()
    for parent, parent_stage in (("text", stage.parent_stage), (None, None)):
        try:
            names |= set(stage.variables(StageInput("g", concepts, parent, parent_stage)))
        except Exception:  # noqa: BLE001 - a plugin stage may insist on a real input; then skip
            return None
    return names


def validate_spec(spec: Spec, rows: Iterable[dict[str, Any]], catalog: Catalog,
                  ledger: Ledger | None = None) -> _Design:
    """Check rows against a catalog (and the ledger's combos, when given) and compile the templates.

    Every unknown template, model, combo and concept is listed in one ``CatalogError``. ``rows`` is
    read once (a ``DesignRows`` is made row by row).
    """
    design = design_generations(rows, catalog, spec)
    known: dict[str, dict] = {}
    if ledger is not None:
        for cid, concept_ids, level, k in _select(
                ledger, "SELECT combo_id, concept_ids, level, k FROM combos WHERE combo_id IN ({marks})",
                sorted(design.combos)):
            known[cid] = {"concept_ids": json.loads(concept_ids), "level": level, "k": k}
    missing = design.missing
    missing["combo"] = set()
    concepts_needed: set[str] = set()
    for cid in sorted(design.combos):
        definition = known.get(cid) or spec.combos.get(cid) or catalog.combos.get(cid)
        if definition is None:
            # Without a ledger an id may still be defined there; only planning can tell.
            if ledger is not None:
                missing["combo"].add(cid)
            continue
        concepts_needed.update(definition["concept_ids"])
        if cid not in known:
            design.combo_defs[cid] = definition
    missing["concept"] = {c for c in concepts_needed if c not in catalog.concepts}
    parts = [f"unknown {kind}(s) {', '.join(repr(n) for n in sorted(names))}"
             for kind, names in missing.items() if names]
    # A misspelt parser would only show up after the calls were paid for, so check it here.
    registered = plugins.parsers().items
    used = design.templates
    bad_parsers = sorted(f"{t.parser!r} ({t.stage} template {t.id!r})" for t in used.values()
                         if t.parser not in registered)
    if bad_parsers:
        parts.append(f"unknown parser(s) {', '.join(bad_parsers)}; registered: {', '.join(sorted(registered))}")
    if parts:
        raise CatalogError(f"{spec.path}: {'; '.join(parts)} (catalog {catalog.source}; combos come from "
                           "the spec, the catalog or the ledger)")
    for t in sorted(used.values(), key=lambda t: (t.stage, t.id)):
        check_template(t, _stage_variables(t.stage))
    return design


def plan_cohort(ledger: Ledger, spec_path: str | Path, catalog: Catalog | str | Path | None = None,
                cohort_id: str | None = None, dry_run: bool = False, *,
                chunk_events: int = CHUNK_EVENTS, transaction_events: int = TRANSACTION_EVENTS,
                progress: Progress | None = None) -> PlanResult:
    """Validate a spec against its catalog and append its plan to the ledger, all or nothing to readers.

    Re-planning an unchanged spec appends nothing; a changed one appends a new spec version and
    only the generations that are new. Existing generations (any cohort, or imported) are linked.
    When another process appends the same things first (two plans at once), the plan is simply
    worked out again against what is now in the ledger.

    A plan of at most ``transaction_events`` events is appended in one transaction. A bigger one
    is staged: ``PlanStarted``, then its events in transactions of ``transaction_events``, then
    the ``CohortPlanned`` that makes all of it visible at once (migration 0013); until then no
    runner, view, status or report sees any of it, and a plan that dies part way is resumed by
    planning the same spec again. ``chunk_events`` is how many events each batch of a transaction
    holds; ``progress(phase, done, total)``, when given, is called as design rows are planned
    (phase "planning") and events appended ("appending").
    """
    for attempt in range(5):
        try:
            return _plan_once(ledger, spec_path, catalog, cohort_id, dry_run, chunk_events, transaction_events,
                              progress)
        except ConcurrencyConflict:
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _plan_once(ledger: Ledger, spec_path: str | Path, catalog: Catalog | str | Path | None,
               cohort_id: str | None, dry_run: bool, chunk_events: int, transaction_events: int,
               progress: Progress | None) -> PlanResult:
    """Validate a spec against its catalog and append its plan to the ledger (see ``plan_cohort``).

    Re-planning an unchanged spec appends nothing; a changed one appends a new spec version and
    only the generations that are new. Existing generations (any cohort, or imported) are linked.
    """
    spec = load_spec(spec_path)
    cat = _resolve_catalog(catalog, spec)
    rows = design_rows(spec)
    cohort = (cohort_id if cohort_id is not None else spec.default_cohort_id).strip()
    if not cohort or any(ch.isspace() for ch in cohort):
        origin = ""
        if cohort_id is None and not spec.cohort_id:
            origin = " (it comes from the spec's file name; pass --cohort-id ID or set cohort_id: in the spec)"
        raise SpecError(f"{spec.path}: cohort id {cohort!r} must be non-empty and without spaces{origin}")
    design = validate_spec(spec, rows, cat, ledger)
    parent_combos = _check_existing_parents(ledger, design, spec)
    new_combos = design.combo_defs

    cohort_stream = ev.cohort_stream(cohort)
    open_plan = _open_plan(ledger, cohort_stream)
    snapshot, catalog_texts = cat.snapshot()
    catalog_hash = snapshot["catalog_hash"]
    # A new spec version when the spec, an included file or the catalog changed since the last one.
    last = ledger.events(stream=cohort_stream, type=ev.SPEC_COMPILED)
    last_payload = last[-1].payload if last else None
    includes = {k: v for k, v in sorted(spec.includes.items())}
    include_hashes = {k: text_hash(v) for k, v in includes.items()}
    changed = (last_payload is None or last_payload.get("spec_hash") != spec.spec_hash
               or last_payload.get("catalog_hash") != catalog_hash
               or last_payload.get("includes", {}) != include_hashes)
    spec_version = (last_payload or {}).get("spec_version", 0) + (1 if changed else 0)
    # A plan of this very spec that stopped part way is resumed; another one is superseded (what
    # it staged and this plan wants again is linked again, the rest stays invisible for good).
    resume = None
    if open_plan is not None and not changed and (open_plan.get("spec_hash"), open_plan.get("catalog_hash"),
                                                  open_plan.get("spec_version")) == (
            spec.spec_hash, catalog_hash, spec_version):
        resume = open_plan["plan_id"]

    scratch = _Scratch()
    try:
        planning = _Planning(ledger, cat, cohort, parent_combos, scratch, resume)
        planning.link_existing_parents(design.existing_parents)
        done = 0
        for batch in _batches(rows, ROWS_PER_BATCH):
            planning.add_rows(batch)
            done += len(batch)
            if progress is not None:
                progress("planning", done, len(rows))
        planning.raise_on_stale_templates(cat)
        counts = planning.counts

        model_hashes, model_events = _model_events(ledger, design, cat, cohort, catalog_hash)
        cohort_version = ledger.stream_version(cohort_stream)
        n_planned = sum(c["new"] for c in counts.values())
        n_linked = sum(c["linked"] for c in counts.values())

        catalog_new = ledger.stream_version(ev.catalog_stream(catalog_hash)) == 0
        head: list[NewEvent] = []
        texts: list[str] = []
        n_events = 0
        if changed or n_planned or n_linked:
            if catalog_new:
                head.append(ev.CatalogImported.from_payload(snapshot).new(expected_version=0))
                texts.extend(catalog_texts)
            head.extend(model_events)
            for cid, d in sorted(new_combos.items()):
                head.append(ev.ComboDefined(combo_id=cid, concept_ids=sorted(d["concept_ids"]), level=d["level"],
                                            k=int(d["k"])).new(expected_version=0))
            if changed:
                texts.append(spec.text)
                texts.extend(includes.values())
                head.append(ev.SpecCompiled(
                    cohort_id=cohort, spec_hash=spec.spec_hash, spec_path=str(spec.path), catalog_hash=catalog_hash,
                    rows=len(rows), spec_version=spec_version, includes=include_hashes,
                ).new(expected_version=cohort_version))
            n_events = len(head) + planning.to_append + 1
        # More than one transaction's worth (or a plan to resume or supersede): staged under a plan
        # id, in transactions of ``transaction_events``, invisible until its CohortPlanned.
        staged = n_events > 0 and (open_plan is not None or n_events > transaction_events)
        plan_id = (resume or uuid.uuid4().hex[:16]) if staged else None
        n_transactions = 0
        if staged:
            n_events += 1
            n_transactions = -(-n_events // transaction_events)
            started = ev.PlanStarted(cohort_id=cohort, plan_id=plan_id, spec_hash=spec.spec_hash,
                                     catalog_hash=catalog_hash, spec_version=spec_version, events=n_events - 1,
                                     transactions=n_transactions, resumed=resume is not None)
            # The plan's first event on the cohort stream carries the optimistic check.
            head = [started.new(expected_version=cohort_version)] + [
                e if e.stream != cohort_stream else NewEvent(e.stream, e.type, e.payload) for e in head]

        def plan_events() -> Iterator[NewEvent]:
            """The plan's events in order, made from the scratch database as they are appended."""
            yield from head
            templates = cat.templates
            for stage in PIPELINE_STAGES:
                for gen_id, parent_id, combo, template_id, model_id, replicate in scratch.read(f"planned_{stage}"):
                    t = templates[stage][template_id]
                    yield ev.GenerationPlanned(
                        gen_id=gen_id, stage=stage, parent_gen_id=parent_id, combo_id=combo, template_id=t.id,
                        template_hash=t.hash, generator=t.generator, parser=t.parser, model_id=model_id,
                        model_hash=model_hashes.get(model_id or ""), replicate=replicate, cohort_id=cohort,
                        catalog_hash=catalog_hash, plan_id=plan_id).new(expected_version=0)
            # The cohort's first event of this plan says which version of the cohort it builds on.
            first_on_cohort = not changed and not staged
            for stage in PIPELINE_STAGES:
                for (gen_id,) in scratch.read(f"linked_{stage}"):
                    yield ev.GenerationLinked(cohort_id=cohort, gen_id=gen_id, stage=stage, plan_id=plan_id).new(
                        expected_version=cohort_version if first_on_cohort else None)
                    first_on_cohort = False
            yield ev.CohortPlanned(
                cohort_id=cohort, spec_hash=spec.spec_hash, catalog_hash=catalog_hash, spec_version=spec_version,
                planned={s: c["new"] for s, c in counts.items()}, linked={s: c["linked"] for s, c in counts.items()},
                models=model_hashes, plan_id=plan_id,
            ).new(expected_version=cohort_version if first_on_cohort else None)

        appended = 0

        def report(n: int) -> None:
            nonlocal appended
            appended += n
            if progress is not None:
                progress("appending", appended, n_events)

        if n_events and not dry_run and not staged:
            def batches() -> Iterator[tuple[list[NewEvent], list[str]]]:
                for events, batch_texts in _chunked(plan_events(), chunk_events, texts):
                    yield events, batch_texts
                    report(len(events))
            ledger.append_batches(batches)
        elif n_events and not dry_run:
            _append_staged(ledger, plan_events(), texts, cohort, cohort_version, chunk_events,
                           transaction_events, report)
    finally:
        scratch.close()
    return PlanResult(cohort, str(spec.path), spec.spec_hash, spec_version, catalog_hash, len(rows), counts,
                      n_events, changed, dry_run, bool(n_events) and catalog_new, len(new_combos),
                      plan_id=plan_id, transactions=n_transactions if staged else int(bool(n_events)),
                      resumed=resume is not None and bool(n_events))


def _open_plan(ledger: Ledger, cohort_stream: str) -> dict[str, Any] | None:
    """The payload of the cohort's last PlanStarted whose CohortPlanned is not in the ledger, or None."""
    started = ledger.events(stream=cohort_stream, type=ev.PLAN_STARTED)
    if not started:
        return None
    last = started[-1].payload
    completed = ledger.events(stream=cohort_stream, type=ev.COHORT_PLANNED, after=started[-1].seq)
    if any(e.payload.get("plan_id") == last["plan_id"] for e in completed):
        return None
    return last


def _append_staged(ledger: Ledger, events: Iterator[NewEvent], texts: list[str], cohort: str,
                   cohort_version: int, chunk_events: int, transaction_events: int,
                   report: Callable[[int], None]) -> None:
    """Append a staged plan in transactions of at most ``transaction_events`` events each.

    Each transaction's events are made before it starts (a few tens of MB at most) so that it can
    start over when the backend retries it; each after the first checks that the cohort stream is
    where this plan left it, so a plan that another process took over stops instead of racing it.
    """
    cohort_stream = ev.cohort_stream(cohort)
    guard: tuple[str, int] | None = None
    version = cohort_version
    while True:
        part = list(itertools.islice(events, transaction_events))
        if not part:
            return
        try:
            ledger.append_batches(lambda part=part, texts=texts: _chunked(iter(part), chunk_events, texts),
                                  guard=guard)
        except ConcurrencyConflict as exc:
            if guard is not None and exc.stream == cohort_stream:
                raise PlanTakenOver(f"the plan of cohort {cohort!r} was taken over by "
                                    "another 'daydream cohort plan' after this one had appended part of it; "
                                    "that one finishes it (nothing is lost)") from None
            raise
        texts = []
        version += sum(1 for e in part if e.stream == cohort_stream)
        guard = (cohort_stream, version)
        report(len(part))


def _chunked(events: Iterator[NewEvent], size: int, texts: list[str]) -> Iterator[tuple[list[NewEvent], list[str]]]:
    """Batches of at most ``size`` events; the texts go with the first batch."""
    batch: list[NewEvent] = []
    for e in events:
        batch.append(e)
        if len(batch) >= size:
            yield batch, texts
            batch, texts = [], []
    if batch or texts:
        yield batch, texts


# ----------------------------------------------------------------------------- reading cohorts
def list_cohorts(ledger: Ledger) -> list[dict[str, Any]]:
    """Every planned cohort with its spec version, plan time and member counts per stage."""
    latest: dict[str, dict[str, Any]] = {}
    for e in ledger.events(type=ev.COHORT_PLANNED):
        latest[e.payload["cohort_id"]] = {"cohort_id": e.payload["cohort_id"],
                                          "spec_version": e.payload["spec_version"],
                                          "spec_hash": e.payload["spec_hash"], "planned_at": e.recorded_at}
    # Memberships staged by a plan still being appended (plan_id) are not the cohort's yet.
    counts = ledger.query("SELECT cohort_id, stage, COUNT(*) FROM cohort_members m WHERE "
                          f"{_VISIBLE_MEMBER} "
                          "GROUP BY cohort_id, stage")
    for cohort_id, stage, n in counts:
        if cohort_id in latest:
            latest[cohort_id].setdefault("members", {})[stage] = n
    return [latest[k] for k in sorted(latest)]


def show_cohort(ledger: Ledger, cohort_id: str) -> dict[str, Any]:
    """One cohort: spec hash and version, when planned, and members per stage and status."""
    from daydream.errors import NotFound

    stream = ev.cohort_stream(cohort_id)
    plans = ledger.events(stream=stream, type=ev.COHORT_PLANNED)
    if not plans:
        raise NotFound(f"cohort {cohort_id!r} not found in ledger {ledger.path}: plan it with "
                       "'daydream cohort plan SPEC'")
    specs = ledger.events(stream=stream, type=ev.SPEC_COMPILED)
    last = plans[-1]
    stages: dict[str, dict[str, int]] = {}
    for stage, status, n in ledger.query(
            "SELECT m.stage, COALESCE(g.status, 'unknown'), COUNT(*) FROM cohort_members m "
            f"LEFT JOIN gen_state g ON g.gen_id = m.gen_id WHERE m.cohort_id = ? AND {_VISIBLE_MEMBER} "
            "GROUP BY m.stage, g.status", (cohort_id,)):
        stages.setdefault(stage, {})[status] = n
    return {
        "cohort_id": cohort_id,
        "spec_hash": last.payload["spec_hash"],
        "spec_version": last.payload["spec_version"],
        "spec_path": specs[-1].payload.get("spec_path") if specs else None,
        "catalog_hash": last.payload["catalog_hash"],
        "planned_at": last.recorded_at,
        "first_planned_at": plans[0].recorded_at,
        "rows": specs[-1].payload.get("rows") if specs else None,
        "stages": {s: {"total": sum(v.values()), **v} for s, v in sorted(
            stages.items(), key=lambda kv: PIPELINE_STAGES.index(kv[0]) if kv[0] in PIPELINE_STAGES else 9)},
    }
