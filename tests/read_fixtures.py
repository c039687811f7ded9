"""A tiny, fully known two-cohort experiment for the read-side tests (views, report, browse).

``build_fixture`` appends the events a real run would record (catalog, combos, plans, prompts,
calls, parses, scores, a failure, a retry, a reused generation) with exactly the payloads of
``daydream.ledger.events``. The scores are chosen so every mean, rank and alpha can be checked by hand.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from daydream.ledger.store import Ledger, NewEvent, text_hash
from tests.runner_fixtures import daydream_cmd

COHORT = "c-one"
COHORT2 = "c-two"
CATALOG_HASH = "f" * 64
# Every text an event refers to is stored, as a real plan stores its spec (verify checks it).
SPEC_TEXTS = {COHORT: "cohort_id: c-one\n", COHORT2: "cohort_id: c-two\n"}

# Scores chosen so that every mean is easy to check by hand:
# e_one:  rubric_a ev1 r1 = 8, ev2 r1 = 7, ev1 r2 = 9; rubric_b ev1 r1 = 9 (after one parse failure
#         and a retry)  → mean 33 / 4 = 8.25
# e_two:  rubric_a ev1 r1 = 5, ev2 r1 = 6; rubric_b ev1 r1 parse failed; rubric_b ev2 r1 pending
#         → mean 5.5
EVALUATIONS = [
    # gen_id, essay, rubric, evaluator, replicate, outcome
    ("v_1a1", "e_one", "rubric_a", "ev1", 1, 8),
    ("v_1a2", "e_one", "rubric_a", "ev2", 1, 7),
    ("v_1a3", "e_one", "rubric_a", "ev1", 2, 9),
    ("v_1b1", "e_one", "rubric_b", "ev1", 1, "retry:9"),
    ("v_2a1", "e_two", "rubric_a", "ev1", 1, 5),
    ("v_2a2", "e_two", "rubric_a", "ev2", 1, 6),
    ("v_2b1", "e_two", "rubric_b", "ev1", 1, "parse_failed"),
    ("v_2b2", "e_two", "rubric_b", "ev2", 1, "pending"),
]

ESSAY_ONE = "# Tide Lanterns\n\nA **bold** idea about tide pools that glow.\n\n- first point\n- second point"
# Long enough (over Datasette's default 2,000-character cut) to show that essays are not truncated.
ESSAY_TWO = ("# Honey Tides\n\nBees and tide pools, *briefly*.\n\n"
             + "The hive keeps time with the tide. " * 80 + "\n\nLast line: the swarm returns at dusk.")


def _planned(gen_id: str, stage: str, cohort: str, template: str, model: str | None,
             parent: str | None = None, combo: str | None = None, replicate: int = 1) -> NewEvent:
    payload = {"gen_id": gen_id, "stage": stage, "parent_gen_id": parent, "combo_id": combo,
               "template_id": template, "template_hash": text_hash(f"template {template}"),
               "generator": "llm", "parser": "score" if stage == "evaluation" else "identity",
               "model_id": model, "replicate": replicate, "cohort_id": cohort,
               "catalog_hash": CATALOG_HASH}
    return NewEvent(f"gen:{gen_id}", "GenerationPlanned", payload)


def _call(gen_id: str, attempt: int, model: str, text: str, cost: float,
          failures: int = 0) -> tuple[list[NewEvent], list[str]]:
    """Prompt, call start, optional failed tries, completion: what a provider run records."""
    prompt = f"Prompt for {gen_id} attempt {attempt}"
    stream = f"gen:{gen_id}"
    events = [
        NewEvent(stream, "PromptRendered", {
            "gen_id": gen_id, "attempt": attempt, "prompt_hash": text_hash(prompt), "chars": len(prompt),
            "template_id": "t", "template_hash": None}),
        NewEvent(stream, "LLMCallStarted", {
            "gen_id": gen_id, "attempt": attempt, "call": 1, "model_id": model, "provider": "offline",
            "provider_model": model, "lease_until": "2026-11-30T00:10:00Z", "worker": {"pid": 1}}),
    ]
    for n in range(failures):
        events.append(NewEvent(stream, "LLMCallFailed", {
            "gen_id": gen_id, "attempt": attempt, "call": 1, "try": n + 1, "model_id": model,
            "provider": "offline", "error_class": "RateLimited", "message": "429 slow down",
            "status": 429, "retryable": True, "latency_s": 0.5}))
    events.append(NewEvent(stream, "LLMCallCompleted", {
        "gen_id": gen_id, "attempt": attempt, "call": 1, "text_hash": text_hash(text),
        "chars": len(text), "finish_reason": "stop", "prompt_tokens": 100, "completion_tokens": 50,
        "cost_usd": cost, "latency_s": 2.0, "model_id": model, "provider": "offline",
        "requested_model": model, "resolved_model": model + "-v1", "request_id": None,
        "offline": True}))
    return events, [prompt, text]


def _parsed(gen_id: str, attempt: int, text: str) -> NewEvent:
    return NewEvent(f"gen:{gen_id}", "ResponseParsed", {
        "gen_id": gen_id, "attempt": attempt, "parser": "identity", "parsed_hash": text_hash(text),
        "chars": len(text), "copied_from": None})


def build_fixture(ledger: Ledger) -> None:
    """Append a tiny, fully known two-cohort experiment to ``ledger``."""
    concepts = {"c_tide": "Tide pools", "c_lantern": "Lanterns", "c_bee": "Bees"}
    concept_texts = {cid: f"{name} are a concept worth combining." for cid, name in concepts.items()}
    template_texts = {t: f"template {t}" for t in ("links", "essay_plain", "rubric_a", "rubric_b")}
    catalog = {
        "catalog_hash": CATALOG_HASH, "source": "fixture",
        "concepts": [{"id": cid, "name": name, "levels": {"sentence": text_hash(concept_texts[cid])}}
                     for cid, name in concepts.items()],
        "templates": [{"stage": stage, "id": tid, "hash": text_hash(template_texts[tid]),
                       "parser": "score" if stage == "evaluation" else "identity",
                       "generator": "llm", "description": f"{tid} template"}
                      for stage, tid in (("draft", "links"), ("essay", "essay_plain"),
                                         ("evaluation", "rubric_a"), ("evaluation", "rubric_b"))],
        "models": [{"id": m} for m in ("m1", "m2", "ev1", "ev2")],
    }
    ledger.append([NewEvent(f"catalog:{CATALOG_HASH[:16]}", "CatalogImported", catalog)],
                  texts=[*concept_texts.values(), *template_texts.values()])
    ledger.append([
        NewEvent("combo:combo_a", "ComboDefined",
                 {"combo_id": "combo_a", "concept_ids": ["c_lantern", "c_tide"], "level": "sentence", "k": 2}),
        NewEvent("combo:combo_b", "ComboDefined",
                 {"combo_id": "combo_b", "concept_ids": ["c_bee", "c_tide"], "level": "sentence", "k": 2}),
        NewEvent(f"cohort:{COHORT}", "CohortPlanned", {
            "cohort_id": COHORT, "spec_hash": text_hash(SPEC_TEXTS[COHORT]), "catalog_hash": CATALOG_HASH,
            "spec_version": 1, "planned": {"draft": 3, "essay": 3, "evaluation": 8}, "linked": {}}),
    ], texts=[SPEC_TEXTS[COHORT]])
    # Planning: three drafts, three essays, eight evaluations.
    plans = [
        _planned("d_one", "draft", COHORT, "links", "m1", combo="combo_a"),
        _planned("d_two", "draft", COHORT, "links", "m1", combo="combo_b"),
        _planned("d_three", "draft", COHORT, "links", "m2", combo="combo_b"),
        _planned("e_one", "essay", COHORT, "essay_plain", "m1", parent="d_one", combo="combo_a"),
        _planned("e_two", "essay", COHORT, "essay_plain", "m1", parent="d_two", combo="combo_b"),
        _planned("e_three", "essay", COHORT, "essay_plain", "m2", parent="d_three", combo="combo_b"),
    ]
    combo_of = {"e_one": "combo_a", "e_two": "combo_b"}
    for gen_id, essay, rubric, evaluator, replicate, _ in EVALUATIONS:
        plans.append(_planned(gen_id, "evaluation", COHORT, rubric, evaluator, parent=essay,
                              combo=combo_of[essay], replicate=replicate))
    ledger.append(plans)

    # Drafts: d_one and d_two complete (d_two after one rate-limited try), d_three fails.
    for gen_id, text, failures in (("d_one", "Draft one: lanterns in tide pools.", 0),
                                   ("d_two", "Draft two: bees at the shore.", 1)):
        events, texts = _call(gen_id, 1, "m1", text, 0.001, failures)
        ledger.append([*events, _parsed(gen_id, 1, text)], texts=texts)
    events, texts = _call("d_three", 1, "m2", "garbage", 0.001)
    ledger.append([*events, NewEvent("gen:d_three", "GenerationFailed", {
        "gen_id": "d_three", "attempt": 1, "reason": "draft has no <links> block",
        "error_class": "EmptyDraft", "raw_hash": text_hash("garbage")})], texts=texts)

    # Essays: e_one and e_two complete; e_three stays planned (blocked by its failed draft).
    for gen_id, text in (("e_one", ESSAY_ONE), ("e_two", ESSAY_TWO)):
        events, texts = _call(gen_id, 1, "m1", text, 0.002)
        ledger.append([*events, _parsed(gen_id, 1, text)], texts=texts)

    for gen_id, essay, rubric, evaluator, replicate, outcome in EVALUATIONS:
        stream = f"gen:{gen_id}"
        if outcome == "pending":
            continue
        if outcome in ("parse_failed", "retry:9"):
            raw = "I cannot decide."
            events, texts = _call(gen_id, 1, evaluator, raw, 0.0005)
            ledger.append([*events, NewEvent(stream, "ParseFailed", {
                "gen_id": gen_id, "attempt": 1, "parser": "score", "reason": "no SCORE line",
                "preview": raw})], texts=texts)
            if outcome == "parse_failed":
                continue
            ledger.append([NewEvent(stream, "GenerationRetried", {
                "gen_id": gen_id, "attempt": 2, "previous_attempt": 1, "reason": "forced"})])
            attempt, score = 2, 9
        else:
            attempt, score = 1, outcome
        raw = f"Reasoning.\nSCORE: {score}"
        events, texts = _call(gen_id, attempt, evaluator, raw, 0.0005)
        ledger.append([*events, _parsed(gen_id, attempt, str(score)), NewEvent(stream, "ScoreRecorded", {
            "gen_id": gen_id, "attempt": attempt, "essay_gen_id": essay, "score": float(score),
            "rubric": rubric, "evaluator": evaluator, "replicate": replicate})],
            texts=[*texts, str(score)])

    # A second cohort reuses e_one (with its draft) and one of its evaluations: score 8.
    ledger.append([NewEvent(f"cohort:{COHORT2}", "CohortPlanned", {
        "cohort_id": COHORT2, "spec_hash": text_hash(SPEC_TEXTS[COHORT2]), "catalog_hash": CATALOG_HASH,
        "spec_version": 1, "planned": {}, "linked": {"draft": 1, "essay": 1, "evaluation": 1}})],
        texts=[SPEC_TEXTS[COHORT2]])
    ledger.append([NewEvent(f"gen:{g}", "GenerationLinked", {"gen_id": g, "stage": s, "cohort_id": COHORT2})
                   for g, s in (("d_one", "draft"), ("e_one", "essay"), ("v_1a1", "evaluation"))])


def import_unpriced(ledger: Ledger) -> None:
    """An imported draft of cohort c-legacy whose call was made (tokens known) but never priced."""
    raw = "# Imported\n\nA draft from an older pipeline."
    ledger.append([NewEvent("gen:d_old", "GenerationImported", {
        "gen_id": "d_old", "stage": "draft", "parent_gen_id": None, "combo_id": None,
        "template_id": "legacy-draft", "model_id": "m_old", "replicate": 1, "generator": "llm",
        "parser": "identity", "cohort_id": "c-legacy", "status": "completed", "prompt_hash": None,
        "raw_hash": text_hash(raw), "parsed_hash": text_hash(raw), "score": None, "finish_reason": "stop",
        "prompt_tokens": 600, "completion_tokens": 1000, "cost_usd": None, "latency_s": 3.0,
        "error": None, "source": "test", "metadata": {}})], texts=[raw])


_DEMO: dict[str, Path] = {}


def demo_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ledger holding the finished ``daydream demo`` cohort, built once per test session."""
    if "path" not in _DEMO:
        path = tmp_path_factory.mktemp("demo") / "demo.db"
        run = subprocess.run(daydream_cmd("demo", "--db", str(path), "--quiet"),
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        _DEMO["path"] = path
    return _DEMO["path"]
