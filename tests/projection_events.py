"""A seeded mix of events that takes every branch of every projection statement.

``mixed_events`` builds many generations' lives — plain runs, failed tries kept and released,
claims given back, calls answered after their claim was taken over, parse failures, generation
failures, forced retries with late answers of the old attempt, re-parses that turn a score into a
failure and back, imports (completed, failed and completed later, without a cohort), links into a
second cohort, combos, and events that lack a field a projection row needs — and interleaves them
the way concurrent workers would, with unrelated events in between. Payloads have the fields of
``daydream.ledger.events``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from daydream.ledger.store import NewEvent

STAGES = ("draft", "essay", "evaluation")


def _h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class _Gen:
    """One generation's events, in the order its life appends them."""

    def __init__(self, gen_id: str, stage: str, model: str, rng: random.Random) -> None:
        self.gen_id, self.stage, self.model, self.rng = gen_id, stage, model, rng
        self.stream = f"gen:{gen_id}"
        self.events: list[NewEvent] = []
        self.attempt, self.call = 1, 0

    def add(self, type_: str, **payload: object) -> None:
        self.events.append(NewEvent(self.stream, type_, {"gen_id": self.gen_id, **payload}))

    def claim(self, worker: str = "w1") -> None:
        self.call += 1
        self.add("LLMCallStarted", attempt=self.attempt, call=self.call, model_id=self.model, provider="stub",
                 lease_until=f"2026-12-0{self.call % 9 + 1}T00:00:00Z",
                 worker={"host": "h", "pid": 1, "run": worker}, sends_marked=True)

    def prompt(self) -> None:
        self.add("PromptRendered", attempt=self.attempt, prompt_hash=_h(f"p{self.gen_id}{self.attempt}"),
                 chars=10, template_id="t", template_hash=self.rng.choice([None, _h("t1"), _h("t2")]))

    def fail_try(self, released: bool = False, superseded: bool = False) -> None:
        self.add("LLMCallFailed", attempt=self.attempt, call=self.call, model_id=self.model, provider="stub",
                 error_class=self.rng.choice(["RateLimited", "ServerError"]), message="try again",
                 retryable=not released, released=released, **({"superseded": True} if superseded else {}))

    def answer(self, superseded: bool = False, attempt: int | None = None) -> None:
        cost = self.rng.choice([None, 0.001, 0.0025, 0.5])
        self.add("LLMCallCompleted", attempt=attempt or self.attempt, call=self.call,
                 text_hash=_h(f"a{self.gen_id}{self.call}"), chars=5,
                 finish_reason=self.rng.choice(["stop", "length", None]),
                 prompt_tokens=self.rng.choice([None, 12, 40]), completion_tokens=self.rng.choice([None, 7]),
                 cost_usd=cost, latency_s=round(self.rng.uniform(0.1, 3), 3), model_id=self.model,
                 provider="stub", resolved_model=self.rng.choice([None, self.model + "-x"]),
                 **{"try": 1}, **({"superseded": True} if superseded else {}))

    def parsed(self, reparsed: bool = False) -> None:
        extra = {"reparsed": True, "template_hash": _h("t3")} if reparsed else {}
        self.add("ResponseParsed", attempt=self.attempt, parser="p", parsed_hash=_h(f"x{self.gen_id}"),
                 chars=3, **extra)
        if self.stage == "evaluation":
            scale = self.rng.choice([None, [0, 9], [0, 10], [1, 5]])
            self.add("ScoreRecorded", attempt=self.attempt, essay_gen_id="e", score=self.rng.choice([1, 4.5, 7]),
                     rubric="r", evaluator=self.model, replicate=1,
                     **({"scale": scale} if scale else {}), **({"reparsed": True} if reparsed else {}))

    def parse_failed(self, reparsed: bool = False) -> None:
        extra = {"reparsed": True, "template_hash": _h("t4"), "parser": "p2"} if reparsed else {"parser": "p"}
        self.add("ParseFailed", attempt=self.attempt, reason="no SCORE line", preview="…", **extra)

    def failed(self) -> None:
        self.add("GenerationFailed", attempt=self.attempt, reason="the stage refused the answer",
                 error_class="EmptyDraft", raw_hash=self.rng.choice([None, _h("raw")]))

    def retried(self) -> None:
        self.attempt += 1
        self.add("GenerationRetried", attempt=self.attempt, previous_attempt=self.attempt - 1, reason="forced")

    def run(self) -> None:
        """A random life after planning."""
        rng = self.rng
        life = rng.choice(["pending", "ok", "ok", "tries", "parse_failed", "failed", "released", "given_back",
                           "taken_over", "retried", "reparsed"])
        if life == "pending":
            return
        self.prompt()
        self.claim()
        if life == "given_back":
            self.add("ClaimReleased", attempt=self.attempt, call=self.call, reason="interrupted")
            self.add("ClaimReleased", attempt=self.attempt, call=self.call, reason="again: not running")
            if rng.random() < 0.5:
                return
            self.claim()
        if life == "released":
            self.fail_try(released=True)
            if rng.random() < 0.5:
                return
            self.claim()
        if life == "tries":
            for _ in range(rng.randint(1, 3)):
                self.fail_try()
        if life == "taken_over":
            self.claim("w2")
            self.answer(superseded=True)
            self.fail_try(superseded=True)
        self.answer()
        if life == "parse_failed":
            self.parse_failed()
        elif life == "failed":
            self.failed()
        elif life == "retried":
            self.parse_failed()
            self.retried()
            self.answer(attempt=self.attempt - 1)  # a late answer to the old attempt: changes nothing
            self.prompt()
            self.claim()
            self.answer()
            self.parsed()
        elif life == "reparsed":
            self.parsed()
            self.parse_failed(reparsed=True)
            self.parsed(reparsed=True)
            if rng.random() < 0.5:
                self.failed()
        else:
            self.parsed()


def _planned(gen_id: str, stage: str, cohort: str, model: str | None, parent: str | None) -> NewEvent:
    return NewEvent(f"gen:{gen_id}", "GenerationPlanned", {
        "gen_id": gen_id, "stage": stage, "parent_gen_id": parent, "combo_id": "combo_a" if stage == "draft" else None,
        "template_id": f"{stage}-t", "template_hash": _h(stage), "generator": "llm" if model else "copy",
        "parser": "p", "model_id": model, "replicate": 1, "cohort_id": cohort, "catalog_hash": _h("cat")})


def _imported(gen_id: str, status: str, cohort: str | None, **results: object) -> NewEvent:
    payload: dict[str, object] = {
        "gen_id": gen_id, "stage": "evaluation", "parent_gen_id": "e_imp", "combo_id": None,
        "template_id": "rubric", "model_id": "m_old", "replicate": 1, "generator": "llm", "parser": "score",
        "cohort_id": cohort, "status": status, "prompt_hash": _h("ip"), "raw_hash": None, "parsed_hash": None,
        "score": None, "finish_reason": None, "prompt_tokens": None, "completion_tokens": None,
        "cost_usd": None, "latency_s": None, "error": None if status == "completed" else "parsed.txt missing",
        "source": "test", "metadata": {}}
    payload.update(results)
    return NewEvent(f"gen:{gen_id}", "GenerationImported", payload)


def mixed_events(seed: int = 14, generations: int = 150) -> list[NewEvent]:
    """Every projected event type, every branch, interleaved as concurrent workers would append."""
    rng = random.Random(seed)
    head: list[NewEvent] = [
        NewEvent("combo:combo_a", "ComboDefined", {"combo_id": "combo_a", "concept_ids": ["a", "b"],
                                                    "level": "sentence", "k": 2}),
        NewEvent("combo:combo_a", "ComboDefined", {"combo_id": "combo_a", "concept_ids": ["a", "c"],
                                                    "level": "paragraph", "k": 2}),  # already there: ignored
        NewEvent("combo:combo_x", "ComboDefined", {"combo_id": "combo_x", "level": "sentence", "k": 0}),  # no concepts
        NewEvent("gen:d_nostage", "GenerationPlanned", {"gen_id": "d_nostage", "cohort_id": "c1"}),  # no stage
    ]
    gens: list[_Gen] = []
    for i in range(generations):
        stage = STAGES[i % 3]
        model = None if i % 17 == 4 else f"m{i % 4}"
        parent = None if stage == "draft" else f"{STAGES[i % 3 - 1][0]}_{i - 1}"
        gen = _Gen(f"{stage[0]}_{i}", stage, model or "copy", rng)
        head.append(_planned(gen.gen_id, stage, "c1", model, parent))
        gens.append(gen)
    head.append(_planned("d_0", "draft", "c2", "m9", None))  # planned again by another cohort: a membership
    links = [NewEvent(f"gen:{g.gen_id}", "GenerationLinked", {"gen_id": g.gen_id, "stage": g.stage, "cohort_id": "c2"})
             for g in gens[::7]]
    links.append(links[0])  # linked twice: one membership
    imports = [
        _imported("v_imp1", "completed", "c1", raw_hash=_h("r1"), parsed_hash=_h("p1"), score=6,
                  scale=[0, 10], cost_usd=0.01, prompt_tokens=5, completion_tokens=6, latency_s=1.5),
        _imported("v_imp2", "completed", None, raw_hash=_h("r2"), parsed_hash=_h("p2"), score=3),
        _imported("v_imp3", "failed", "c1"),
        _imported("v_imp4", "failed", "c2", error="score out of range"),
    ]
    later = [_imported("v_imp3", "completed", "c1", raw_hash=_h("r3"), parsed_hash=_h("p3"), score=8,
                       scale=[1, 5], completes_import=True),
             _imported("v_imp1", "failed", "c1"),  # a re-import of a completed one: ignored
             _imported("v_imp4", "completed", None, raw_hash=None, parsed_hash=_h("p4"), score=None)]
    for gen in gens:
        gen.run()
    queues = [list(g.events) for g in gens] + [links, later]
    body: list[NewEvent] = []
    n = 0
    while queues := [q for q in queues if q]:
        q = rng.choice(queues)
        body.append(q.pop(0))
        n += 1
        if n % 5 == 0:
            body.append(NewEvent(f"noise:{n % 3}", "NoiseRecorded", {"n": n}))
    # A plan appended in several transactions (migration 0013): staged under its plan id, then
    # completed: two new generations and links to finished (scored) work of cohort c1.
    staged = [NewEvent("cohort:c3", "PlanStarted", {"plan_id": "p3", "cohort_id": "c3", "spec_hash": _h("s3"),
                                                    "catalog_hash": _h("cat"), "spec_version": 1, "events": 6,
                                                    "transactions": 2, "resumed": False})]
    for gen_id, stage in (("d_p3a", "draft"), ("d_p3b", "draft")):
        staged.append(NewEvent(f"gen:{gen_id}", "GenerationPlanned", {**_planned(gen_id, stage, "c3", "m1", None).payload,
                                                                      "plan_id": "p3"}))
    staged += [NewEvent("cohort:c3", "GenerationLinked", {"gen_id": g.gen_id, "stage": g.stage, "cohort_id": "c3",
                                                         "plan_id": "p3"}) for g in gens[1::5]]
    staged.append(NewEvent("cohort:c3", "CohortPlanned", {
        "cohort_id": "c3", "spec_hash": _h("s3"), "catalog_hash": _h("cat"), "spec_version": 1,
        "planned": {"draft": 2}, "linked": {}, "models": {}, "plan_id": "p3"}))
    return head + imports + body + staged


def replay(events: list[NewEvent], append: Callable[[list[NewEvent]], object], batch: int) -> None:
    """Append ``events`` in batches of ``batch`` through ``append``."""
    for i in range(0, len(events), batch):
        append(events[i:i + batch])
