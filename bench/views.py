"""Benchmark: the read-side views on a ledger of about a million events.

Builds (or reuses, with ``--keep PATH``) a ledger holding one large cohort and one small cohort that
reuses part of it, appended through ``Ledger.append`` in batches so every trigger runs as in a real
run; then times the queries people run most (``cohort_progress``, ``essay_rankings`` and a few
others), each the median of several runs on a fresh connection. The budget for ``cohort_progress``
and ``essay_rankings`` is 200 ms.

Then it times the Datasette pages a reader opens (``daydream browse``): each page and its JSON,
served in-process by the same Datasette ``daydream browse`` builds (no network), row count
included; the budget for the essay_rankings page and its JSON is also 200 ms.

    uv run python bench/views.py                 # ~1,000,000 events in a temporary file
    uv run python bench/views.py --events 200000 --keep /tmp/bench.db
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from daydream.ledger.store import Ledger, NewEvent, text_hash

RUBRICS = ("originality", "coherence", "insight", "style")
EVALUATORS = ("judge_a", "judge_b")
REPLICATES = (1, 2)
# Events per draft: draft 5, essay 5, 16 evaluations × 6.
EVENTS_PER_DRAFT = 5 + 5 + len(RUBRICS) * len(EVALUATORS) * len(REPLICATES) * 6
BUDGET_MS = 200.0


def _gen_events(gen_id: str, stage: str, cohort: str, template: str, model: str, parent: str | None,
                combo: str, replicate: int, text: str, score: float | None, fail: bool) -> list[NewEvent]:
    stream = f"gen:{gen_id}"
    h = text_hash(text)
    out = [
        NewEvent(stream, "GenerationPlanned", {
            "gen_id": gen_id, "stage": stage, "parent_gen_id": parent, "combo_id": combo,
            "template_id": template, "template_hash": None, "generator": "llm", "parser": None,
            "model_id": model, "replicate": replicate, "cohort_id": cohort, "catalog_hash": None}),
        NewEvent(stream, "PromptRendered", {
            "gen_id": gen_id, "attempt": 1, "prompt_hash": h, "chars": len(text), "template_id": template,
            "template_hash": None}),
        NewEvent(stream, "LLMCallStarted", {
            "gen_id": gen_id, "attempt": 1, "call": 1, "model_id": model, "provider": "offline",
            "provider_model": model, "lease_until": "2026-11-30T00:00:00Z", "worker": {"pid": 1}}),
        NewEvent(stream, "LLMCallCompleted", {
            "gen_id": gen_id, "attempt": 1, "call": 1, "text_hash": h, "chars": len(text),
            "finish_reason": "stop", "prompt_tokens": 400, "completion_tokens": 300, "cost_usd": 0.0004,
            "latency_s": 1.5, "model_id": model, "provider": "offline", "requested_model": model,
            "resolved_model": model, "request_id": None, "offline": True}),
    ]
    if fail:
        out.append(NewEvent(stream, "ParseFailed", {
            "gen_id": gen_id, "attempt": 1, "parser": "score", "reason": "no score", "preview": text[:40]}))
        return out
    out.append(NewEvent(stream, "ResponseParsed", {
        "gen_id": gen_id, "attempt": 1, "parser": "p", "parsed_hash": h, "chars": len(text),
        "copied_from": None}))
    if score is not None:
        out.append(NewEvent(stream, "ScoreRecorded", {
            "gen_id": gen_id, "attempt": 1, "essay_gen_id": parent, "score": score, "rubric": template,
            "evaluator": model, "replicate": replicate}))
    return out


def build(path: Path, target_events: int, seed: int = 7) -> Ledger:
    """Create a ledger at ``path`` with about ``target_events`` events; returns it."""
    rng = random.Random(seed)
    ledger, _, _ = Ledger.init(path)
    drafts = max(1, target_events // EVENTS_PER_DRAFT)
    texts = [f"shared text {i}" for i in range(50)]
    ledger.put_texts(texts)
    batch: list[NewEvent] = []
    started = time.perf_counter()
    for d in range(drafts):
        cohort = "big"
        combo = f"combo_{d % 997}"
        draft_id, essay_id = f"d_{d}", f"e_{d}"
        batch += _gen_events(draft_id, "draft", cohort, "links", "writer", None, combo, 1,
                             texts[d % 50], None, False)
        batch += _gen_events(essay_id, "essay", cohort, "essay_v1", "writer", draft_id, combo, 1,
                             texts[(d + 1) % 50], None, False)
        for rubric in RUBRICS:
            for evaluator in EVALUATORS:
                for rep in REPLICATES:
                    fail = rng.random() < 0.02
                    batch += _gen_events(f"v_{d}_{rubric}_{evaluator}_{rep}", "evaluation", cohort, rubric,
                                         evaluator, essay_id, combo, rep, texts[(d + 2) % 50],
                                         float(rng.randint(0, 9)), fail)
        if d % 10 == 0:  # one draft in ten (with its essay and evaluations) also joins the small cohort
            members = [(draft_id, "draft"), (essay_id, "essay")] + [
                (f"v_{d}_{r}_{e}_{p}", "evaluation") for r in RUBRICS for e in EVALUATORS for p in REPLICATES]
            batch += [NewEvent(f"gen:{g}", "GenerationLinked", {"gen_id": g, "stage": s, "cohort_id": "small"})
                      for g, s in members]
        if len(batch) >= 20000:
            ledger.append(batch)
            batch = []
    if batch:
        ledger.append(batch)
    n = ledger.count()
    print(f"built {n:,} events ({drafts:,} drafts) in {time.perf_counter() - started:.1f} s")
    return ledger


QUERIES = {
    "cohort_progress (one cohort)": ("SELECT * FROM cohort_progress WHERE cohort_id = 'big'", True),
    "cohort_progress (all cohorts)": ("SELECT * FROM cohort_progress", True),
    "essay_rankings (one cohort, top 20)": (
        "SELECT * FROM essay_rankings WHERE cohort_id = 'big' ORDER BY rank LIMIT 20", True),
    "essay_rankings (small cohort, all)": (
        "SELECT * FROM essay_rankings WHERE cohort_id = 'small' ORDER BY rank", True),
    "essay_rankings (every cohort, all rows)": ("SELECT * FROM essay_rankings", True),
    "essay_scores (one essay)": ("SELECT * FROM essay_scores WHERE essay_gen_id = 'e_5'", False),
    "spend (one cohort)": ("SELECT * FROM spend WHERE cohort_id = 'big'", False),
    "failures (count)": ("SELECT COUNT(*) FROM failures", False),
    "llm_calls (one generation)": ("SELECT * FROM llm_calls WHERE gen_id = 'e_5'", False),
    "llm_calls (one stream)": ("SELECT * FROM llm_calls WHERE stream = 'gen:e_5'", False),
    "llm_calls (first page)": ("SELECT * FROM llm_calls LIMIT 51", False),
    "generations (first page)": ("SELECT * FROM generations LIMIT 51", False),
    "generations (one essay)": ("SELECT * FROM generations WHERE gen_id = 'e_5'", False),
}


def time_query(path: Path, sql: str, runs: int = 5) -> tuple[float, float, int]:
    """Median wall and CPU time in ms over ``runs`` (fresh read-only connection each), and rows.

    CPU time is what the query costs this process; wall time also counts waiting for a busy
    machine, so the two differ when other work shares the cores.
    """
    walls, cpus, count = [], [], 0
    for _ in range(runs):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        t0, c0 = time.perf_counter(), time.process_time()
        count = len(conn.execute(sql).fetchall())
        walls.append((time.perf_counter() - t0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
        conn.close()
    return statistics.median(walls), statistics.median(cpus), count


# Datasette pages: (path, budgeted). Paths are relative to the ledger database page.
PAGES = {
    "home page": ("", False),
    "essay_rankings": ("/essay_rankings", True),
    "essay_rankings.json": ("/essay_rankings.json", True),
    "essay_rankings, one cohort by rank": ("/essay_rankings?cohort_id=big&_sort=rank", True),
    "essay_rankings.json, one cohort by rank": ("/essay_rankings.json?cohort_id=big&_sort=rank", True),
    "generation page (one essay)": ("/generations?gen_id=e_5", False),
    "generations (first page)": ("/generations", False),
    "events (first page)": ("/events", False),
}


def time_pages(path: Path, runs: int = 5) -> dict[str, tuple[float, float, int]]:
    """Median wall and CPU time in ms, and HTTP status, of each page in ``PAGES`` (one warm-up each).

    CPU time covers every thread of this process (Datasette runs SQL in its own threads), so it
    stays honest when other work shares the machine and stretches the wall time.
    """
    from daydream.read.browse import DATABASE, build_datasette

    async def measure() -> dict[str, tuple[float, float, int]]:
        ds = build_datasette(path)
        found = {}
        for name, (page, _) in PAGES.items():
            url = f"/{DATABASE}{page}"
            await ds.client.get(url)  # first use opens connections and fills caches
            walls, cpus, status = [], [], 0
            for _ in range(runs):
                t0, c0 = time.perf_counter(), time.process_time()
                response = await ds.client.get(url)
                walls.append((time.perf_counter() - t0) * 1000)
                cpus.append((time.process_time() - c0) * 1000)
                status = response.status_code
            found[name] = (statistics.median(walls), statistics.median(cpus), status)
        return found

    return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="approximate ledger size")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the ledger at this path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.db"
        if path.exists():
            ledger = Ledger.open(path)
            print(f"reusing {path}: {ledger.count():,} events")
        else:
            build(path, args.events)
        failed = []
        print(f"{'query':42s} {'wall':>8s}    {'cpu':>8s}")
        for name, (sql, budgeted) in QUERIES.items():
            ms, cpu, n = time_query(path, sql)
            mark = ""
            if budgeted:
                mark = "ok" if ms < BUDGET_MS else f"OVER {BUDGET_MS:.0f} ms"
                if ms >= BUDGET_MS:
                    failed.append(name)
            print(f"{name:42s} {ms:8.1f} ms {cpu:8.1f} ms  {n:7,} rows  {mark}")
        print(f"\n{'Datasette page (daydream browse)':42s} {'wall':>8s}    {'cpu':>8s}")
        for name, (ms, cpu, status) in time_pages(path).items():
            mark = ""
            if PAGES[name][1]:
                mark = "ok" if ms < BUDGET_MS else f"OVER {BUDGET_MS:.0f} ms"
                if ms >= BUDGET_MS:
                    failed.append(name)
            print(f"{name:42s} {ms:8.1f} ms {cpu:8.1f} ms  HTTP {status}  {mark}")
        if failed:
            raise SystemExit(f"over budget: {', '.join(failed)}")


if __name__ == "__main__":
    main()
