"""Cohort planning: turn a compiled spec into ``GenerationPlanned`` events in the ledger.

Each design row becomes a chain draft → essay → evaluation (or a shorter one: single-stage essays
straight from a combo, or evaluations of existing essays). Generations are deduplicated across rows
and across cohorts: before planning an id we look for the same id or the same signature in
``gen_state`` (imported generations keep their legacy ids) and link that one instead. The whole plan
is validated against the catalog first and appended in one atomic ``ledger.append``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from daydream.ledger import events as ev
from daydream.design import ids
from daydream import plugins
from daydream.contracts import PIPELINE_STAGES
from daydream.design.catalog import (Catalog, Template, check_template, describe_identity, load_catalog, model_identity,
                              model_settings, recorded_models)
from daydream.errors import CatalogError, ConcurrencyConflict, SpecError
from daydream.ledger.store import Ledger, NewEvent, text_hash
from daydream.design.spec_compile import compile_spec
from daydream.design.spec_dsl import Spec, load_spec

STAGE_ORDER = PIPELINE_STAGES
_CHUNK = 900


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

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return dict(self.__dict__)


@dataclass
class _Gen:
    """One planned generation before ids are resolved against the ledger."""

    stage: str
    parent: Any  # key of the parent _Gen, ("gen", gen_id) for an existing one, or None
    combo_id: str | None
    template: Template
    model_id: str | None
    replicate: int
    gen_id: str = ""
    existing: bool = False


@dataclass
class _Design:
    gens: dict[str, dict[tuple, _Gen]] = field(default_factory=lambda: {s: {} for s in STAGE_ORDER})
    combos: set[str] = field(default_factory=set)
    existing_parents: dict[str, set[str]] = field(default_factory=lambda: {"draft": set(), "essay": set()})
    missing: dict[str, set[str]] = field(default_factory=dict)  # kind -> names not in the catalog
    combo_defs: dict[str, dict] = field(default_factory=dict)  # combos to define (not yet in the ledger)


# ----------------------------------------------------------------------------- rows -> generations
def design_generations(rows: list[dict[str, Any]], catalog: Catalog, spec: Spec) -> _Design:
    """Map rows to unique generations; unknown template and model names are collected, not raised."""
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

    def model(mid: str | None, stage: str, t: Template) -> str | None:
        if t.generator == "copy":
            return None
        if mid is None:
            problems.append(f"{stage} template {t.id!r} is llm-mode but the spec has no {stage}_llm axis")
        return mid

    drafts, essays, evals = design.gens["draft"], design.gens["essay"], design.gens["evaluation"]
    seen_rows: set[tuple] = set()
    for row in rows:
        signature = tuple(row.items())
        if signature in seen_rows:
            continue
        seen_rows.add(signature)
        _check_axes(row, problems)
        if problems:
            break
        # Look up every name of the row first, so that all unknown names are reported together.
        known_names = True
        for stage in STAGE_ORDER:
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
        parent: Any = None
        if "draft_template" in row:
            t = templates["draft"][row["draft_template"]]
            if combo is None:
                problems.append("draft rows need a combo (add a combo_id axis or a combos generator)")
                break
            if t.generator != "llm":
                problems.append(f"draft template {t.id!r} is {t.generator}-mode; drafts need an llm template")
                break
            design.combos.add(combo)
            mid = model(row.get("draft_llm"), "draft", t)
            key = (combo, t.id, mid, row.get("draft_replicate", 1))
            if key not in drafts:
                drafts[key] = _Gen("draft", None, combo, t, mid, key[3])
            parent = ("draft", key)
        elif "draft_gen_id" in row:
            parent = ("gen", row["draft_gen_id"])
            design.existing_parents["draft"].add(row["draft_gen_id"])

        if "essay_template" in row:
            t = templates["essay"][row["essay_template"]]
            if parent is None:
                if combo is None:
                    problems.append("essay rows need a draft (draft_template or draft_gen_id) or a combo")
                    break
                if t.generator == "copy":
                    problems.append(f"essay template {t.id!r} is copy-mode but the spec has no draft to copy")
                    break
                design.combos.add(combo)
            mid = model(row.get("essay_llm"), "essay", t)
            key = (parent or ("combo", combo), t.id, mid, row.get("essay_replicate", 1))
            if key not in essays:
                essays[key] = _Gen("essay", parent, combo if parent is None else None, t, mid, key[3])
            parent = ("essay", key)
        elif "essay_gen_id" in row:
            parent = ("gen", row["essay_gen_id"])
            design.existing_parents["essay"].add(row["essay_gen_id"])
        else:
            parent = None  # a draft alone cannot be evaluated

        if "evaluation_template" in row:
            t = templates["evaluation"][row["evaluation_template"]]
            if parent is None:
                problems.append("evaluation rows need an essay (essay_template or essay_gen_id)")
                break
            if t.generator != "llm":
                problems.append(f"evaluation template {t.id!r} is {t.generator}-mode; expected llm")
                break
            mid = model(row.get("evaluation_llm"), "evaluation", t)
            key = (parent, t.id, mid, row.get("evaluation_replicate", 1))
            if key not in evals:
                evals[key] = _Gen("evaluation", parent, None, t, mid, key[3])

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


_STATE_COLS = "gen_id, stage, parent_gen_id, combo_id, template_id, model_id, replicate"


def _resolve_stage(ledger: Ledger, gens: dict[tuple, _Gen], resolved: dict[tuple, str]) -> None:
    """Give each generation its id: an existing one (same id or same signature) or a fresh one."""
    if not gens:
        return
    stage = next(iter(gens.values())).stage
    for key, g in gens.items():
        parent_id = _parent_id(g, resolved)
        g.gen_id = ids.gen_id_for(stage, parent_id if parent_id else g.combo_id, g.template.id,
                                  g.model_id, g.replicate)
    by_id = {r[0]: r for r in _select(
        ledger, f"SELECT {_STATE_COLS} FROM gen_state WHERE gen_id IN ({{marks}})",
        [g.gen_id for g in gens.values()])}
    # Signature lookup: drafts (and single-stage essays) by combo, children by parent.
    with_parent = sorted({p for g in gens.values() if (p := _parent_id(g, resolved))})
    combos = sorted({g.combo_id for g in gens.values() if not _parent_id(g, resolved) and g.combo_id})
    by_sig: dict[tuple, str] = {}
    rows = _select(ledger, f"SELECT {_STATE_COLS} FROM gen_state WHERE stage = ? AND parent_gen_id IN "
                           "({marks})", with_parent, (stage,))
    rows += _select(ledger, f"SELECT {_STATE_COLS} FROM gen_state WHERE stage = ? AND parent_gen_id IS "
                            "NULL AND combo_id IN ({marks})", combos, (stage,))
    for gen_id, _stage, parent, combo, template_id, model_id, replicate in rows:
        # A child's parent fixes its combo, so children match on the parent alone (imports may
        # leave combo_id empty on essays and evaluations).
        sig = (parent, None if parent else combo, template_id, model_id, replicate)
        by_sig.setdefault(sig, gen_id)
    for key, g in gens.items():
        parent_id = _parent_id(g, resolved)
        if g.gen_id in by_id:
            g.existing = True
        else:
            sig = (parent_id, None if parent_id else g.combo_id, g.template.id, g.model_id, g.replicate)
            if sig in by_sig:
                g.gen_id, g.existing = by_sig[sig], True
        resolved[(stage, key)] = g.gen_id


def _parent_id(g: _Gen, resolved: dict[tuple, str]) -> str | None:
    if g.parent is None:
        return None
    kind, value = g.parent
    if kind == "gen":
        return value
    return resolved[(kind, value)]


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


def _check_template_hashes(ledger: Ledger, design: _Design, catalog: Catalog) -> None:
    """Refuse to reuse generations planned with another text of the same template id.

    Ids do not include the template text, so an edited template would otherwise link the old
    results into the cohort as if they came from the new text. Imported generations are exempt:
    the previous pipeline edited templates in place, and reusing its results is the point.
    """
    existing = {g.gen_id: g for stage in design.gens.values() for g in stage.values()
                if g.existing and g.template.hash is not None}
    stale: dict[tuple[str, str], list[str]] = {}
    for gen_id, template_hash, imported in _select(
            ledger, "SELECT gen_id, template_hash, imported FROM gen_state WHERE gen_id IN ({marks})",
            sorted(existing)):
        g = existing[gen_id]
        if template_hash and not imported and template_hash != g.template.hash:
            stale.setdefault((g.stage, g.template.id), []).append(template_hash)
    if stale:
        (stage, tid), old = sorted(stale.items())[0]
        new = catalog.templates[stage][tid].hash or ""
        others = f" (and {len(stale) - 1} more template(s))" if len(stale) > 1 else ""
        raise CatalogError(f"catalog {catalog.source}: {stage} template {tid!r} changed since {len(old)} "
                           f"planned generation(s) used it (text {old[0][:12]} -> {new[:12]}){others}; "
                           f"give the edited template a new id (e.g. {tid}-v2) so old and new results "
                           "stay apart (if only a rubric's scale changed, 'daydream reparse --cohort ID' "
                           "first re-scores the recorded answers on it)")


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
    used = sorted({g.model_id for stage in design.gens.values() for g in stage.values() if g.model_id})
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


def validate_spec(spec: Spec, rows: list[dict[str, Any]], catalog: Catalog,
                  ledger: Ledger | None = None) -> _Design:
    """Check rows against a catalog (and the ledger's combos, when given) and compile the templates.

    Every unknown template, model, combo and concept is listed in one ``CatalogError``.
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
    used = {id(g.template): g.template for stage in design.gens.values() for g in stage.values()}
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
                cohort_id: str | None = None, dry_run: bool = False) -> PlanResult:
    """Validate a spec against its catalog and append its plan to the ledger in one transaction.

    Re-planning an unchanged spec appends nothing; a changed one appends a new spec version and
    only the generations that are new. Existing generations (any cohort, or imported) are linked.
    When another process appends the same things first (two plans at once), the plan is simply
    worked out again against what is now in the ledger.
    """
    for attempt in range(5):
        try:
            return _plan_once(ledger, spec_path, catalog, cohort_id, dry_run)
        except ConcurrencyConflict:
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _plan_once(ledger: Ledger, spec_path: str | Path, catalog: Catalog | str | Path | None = None,
                cohort_id: str | None = None, dry_run: bool = False) -> PlanResult:
    """Validate a spec against its catalog and append its plan to the ledger in one transaction.

    Re-planning an unchanged spec appends nothing; a changed one appends a new spec version and
    only the generations that are new. Existing generations (any cohort, or imported) are linked.
    """
    spec = load_spec(spec_path)
    cat = _resolve_catalog(catalog, spec)
    rows = compile_spec(spec)
    cohort = (cohort_id if cohort_id is not None else spec.default_cohort_id).strip()
    if not cohort or any(ch.isspace() for ch in cohort):
        origin = ""
        if cohort_id is None and not spec.cohort_id:
            origin = " (it comes from the spec's file name; pass --cohort-id ID or set cohort_id: in the spec)"
        raise SpecError(f"{spec.path}: cohort id {cohort!r} must be non-empty and without spaces{origin}")
    design = validate_spec(spec, rows, cat, ledger)
    parent_combos = _check_existing_parents(ledger, design, spec)
    new_combos = design.combo_defs

    resolved: dict[tuple, str] = {}
    for stage in STAGE_ORDER:
        _resolve_stage(ledger, design.gens[stage], resolved)
    _check_template_hashes(ledger, design, cat)

    snapshot, catalog_texts = cat.snapshot()
    catalog_hash = snapshot["catalog_hash"]
    model_hashes, model_events = _model_events(ledger, design, cat, cohort, catalog_hash)
    members = {r[0] for r in ledger.query("SELECT gen_id FROM cohort_members WHERE cohort_id = ?", (cohort,))}
    cohort_stream = ev.cohort_stream(cohort)
    cohort_version = ledger.stream_version(cohort_stream)

    planned_events: list[NewEvent] = []
    linked_events: list[NewEvent] = []
    counts = {s: {"new": 0, "linked": 0, "existing": 0} for s in STAGE_ORDER}
    seen: set[str] = set()
    combo_of: dict[str, str | None] = dict(parent_combos)
    for stage in STAGE_ORDER:
        # Existing generations named by draft_gen_id / essay_gen_id join the cohort too, so the
        # cohort's views show the essays it evaluates.
        for gen_id in sorted(design.existing_parents.get(stage, ())):
            seen.add(gen_id)
            if gen_id in members:
                counts[stage]["existing"] += 1
            else:
                counts[stage]["linked"] += 1
                linked_events.append(ev.GenerationLinked(cohort_id=cohort, gen_id=gen_id, stage=stage).new())
        for g in design.gens[stage].values():
            parent_id = _parent_id(g, resolved)
            combo = g.combo_id if g.parent is None else combo_of.get(parent_id)
            combo_of[g.gen_id] = combo
            if g.gen_id in seen:
                continue
            seen.add(g.gen_id)
            if g.existing:
                if g.gen_id in members:
                    counts[stage]["existing"] += 1
                else:
                    counts[stage]["linked"] += 1
                    linked_events.append(ev.GenerationLinked(cohort_id=cohort, gen_id=g.gen_id, stage=stage).new())
                continue
            counts[stage]["new"] += 1
            planned_events.append(ev.GenerationPlanned(
                gen_id=g.gen_id, stage=stage, parent_gen_id=parent_id, combo_id=combo, template_id=g.template.id,
                template_hash=g.template.hash, generator=g.template.generator, parser=g.template.parser,
                model_id=g.model_id, model_hash=model_hashes.get(g.model_id or ""), replicate=g.replicate,
                cohort_id=cohort, catalog_hash=catalog_hash).new(expected_version=0))

    # A new spec version when the spec, an included file or the catalog changed since the last one.
    last = ledger.events(stream=cohort_stream, type=ev.SPEC_COMPILED)
    last_payload = last[-1].payload if last else None
    includes = {k: v for k, v in sorted(spec.includes.items())}
    include_hashes = {k: text_hash(v) for k, v in includes.items()}
    changed = (last_payload is None or last_payload.get("spec_hash") != spec.spec_hash
               or last_payload.get("catalog_hash") != catalog_hash
               or last_payload.get("includes", {}) != include_hashes)
    spec_version = (last_payload or {}).get("spec_version", 0) + (1 if changed else 0)

    catalog_new = ledger.stream_version(ev.catalog_stream(catalog_hash)) == 0
    events: list[NewEvent] = []
    texts: list[str] = []
    if changed or planned_events or linked_events:
        if catalog_new:
            events.append(ev.CatalogImported.from_payload(snapshot).new(expected_version=0))
            texts.extend(catalog_texts)
        events.extend(model_events)
        for cid, d in sorted(new_combos.items()):
            events.append(ev.ComboDefined(combo_id=cid, concept_ids=sorted(d["concept_ids"]), level=d["level"],
                                          k=int(d["k"])).new(expected_version=0))
        first_on_cohort = True
        if changed:
            texts.append(spec.text)
            texts.extend(includes.values())
            events.append(ev.SpecCompiled(
                cohort_id=cohort, spec_hash=spec.spec_hash, spec_path=str(spec.path), catalog_hash=catalog_hash,
                rows=len(rows), spec_version=spec_version, includes=include_hashes,
            ).new(expected_version=cohort_version))
            first_on_cohort = False
        events.extend(planned_events)
        if linked_events and first_on_cohort:
            linked_events[0] = replace(linked_events[0], expected_version=cohort_version)
            first_on_cohort = False
        events.extend(linked_events)
        events.append(ev.CohortPlanned(
            cohort_id=cohort, spec_hash=spec.spec_hash, catalog_hash=catalog_hash, spec_version=spec_version,
            planned={s: c["new"] for s, c in counts.items()}, linked={s: c["linked"] for s, c in counts.items()},
            models=model_hashes,
        ).new(expected_version=cohort_version if first_on_cohort else None))
    if events and not dry_run:
        ledger.append(events, texts=texts)
    return PlanResult(cohort, str(spec.path), spec.spec_hash, spec_version, catalog_hash, len(rows), counts,
                      len(events), changed, dry_run, bool(events) and catalog_new, len(new_combos))


# ----------------------------------------------------------------------------- reading cohorts
def list_cohorts(ledger: Ledger) -> list[dict[str, Any]]:
    """Every planned cohort with its spec version, plan time and member counts per stage."""
    latest: dict[str, dict[str, Any]] = {}
    for e in ledger.events(type=ev.COHORT_PLANNED):
        latest[e.payload["cohort_id"]] = {"cohort_id": e.payload["cohort_id"],
                                          "spec_version": e.payload["spec_version"],
                                          "spec_hash": e.payload["spec_hash"], "planned_at": e.recorded_at}
    counts = ledger.query("SELECT cohort_id, stage, COUNT(*) FROM cohort_members GROUP BY cohort_id, stage")
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
            "LEFT JOIN gen_state g ON g.gen_id = m.gen_id WHERE m.cohort_id = ? "
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
            stages.items(), key=lambda kv: STAGE_ORDER.index(kv[0]) if kv[0] in STAGE_ORDER else 9)},
    }
