"""Benchmark: the read side on a ledger of about a million events, against issue 15's targets.

Builds (or reuses, with ``--keep PATH``) a ledger holding one large cohort and one small cohort that
reuses part of it, appended through ``Ledger.append`` in batches so every trigger runs as in a real
run. Then, side by side in one run, each figure the median of several runs:

- the queries people run most (``cohort_progress``, ``essay_rankings`` and a few others), on a
  fresh connection each time;
- the Datasette pages a reader opens (``daydream browse``): each page and its JSON, served
  in-process by the same Datasette ``daydream browse`` builds (no network), row count included;
- ``daydream report big`` as a user runs it: a fresh process, its CPU time (user + system) and
  peak resident memory read from the kernel's accounting of the child;
- ``daydream status`` as a user runs it: a fresh process, wall time, with ``daydream --help`` and
  ``python -c pass`` beside it so the share of interpreter and CLI start-up is visible.

It ends with PASS or FAIL against each target of issue 15 (report under 2 s CPU and 150 MB;
essay_rankings and its JSON under 200 ms, row count included; status under 0.5 s) and exits 1 when
one fails.

    uv run python bench/views.py                 # ~1,000,000 events in a temporary file
    uv run python bench/views.py --events 200000 --keep /tmp/bench.db --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from daydream.ledger.store import Ledger, NewEvent, text_hash

RUBRICS = ("originality", "coherence", "insight", "style")
EVALUATORS = ("judge_a", "judge_b")
REPLICATES = (1, 2)
# Events per draft: draft 5, essay 5, 16 evaluations × 6.
EVENTS_PER_DRAFT = 5 + 5 + len(RUBRICS) * len(EVALUATORS) * len(REPLICATES) * 6
BUDGET_MS = 200.0  # a query or a page behind essay_rankings
REPORT_CPU_S = 2.0
REPORT_RSS_MB = 150.0
STATUS_S = 0.5
COHORT = "big"


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
        cohort = COHORT
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
    "essay_rankings (row count)": ("SELECT COUNT(*) FROM essay_rankings", True),
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


@dataclass(frozen=True)
class Process:
    """One command run as a fresh process: wall and CPU seconds, peak resident memory (MB)."""

    wall: float
    cpu: float
    rss_mb: float


# Runs a command and prints its wall time, CPU time and peak RSS. The kernel counts into a child's
# peak memory what its parent held when it forked, so the command is started from this small
# process rather than from the benchmark (which holds a Datasette and a ledger by then).
LAUNCHER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(json.dumps({"wall": time.perf_counter() - started, "cpu": usage.ru_utime + usage.ru_stime,
                  "rss_kb": usage.ru_maxrss, "code": os.waitstatus_to_exitcode(status)}))
"""


def run_process(argv: list[str], env: dict[str, str]) -> Process:
    """Run ``argv`` as a fresh process; its CPU time and peak memory as the kernel counts them."""
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *argv], env=env, capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"{' '.join(argv)} could not be measured: {done.stderr[-800:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    if found["code"] != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({found['code']}): {done.stderr[-800:]}")
    return Process(found["wall"], found["cpu"], found["rss_kb"] / 1024)


def medians(found: list[Process]) -> Process:
    return Process(statistics.median(p.wall for p in found), statistics.median(p.cpu for p in found),
                   statistics.median(p.rss_mb for p in found))


def time_commands(path: Path, runs: int) -> dict[str, Process]:
    """``daydream report`` and ``daydream status`` on the ledger, with start-up references beside
    them; the commands interleaved round by round, so load on the machine hits all of them alike."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAYDREAM_")}
    daydream = [sys.executable, "-m", "daydream"]
    with tempfile.TemporaryDirectory() as out:
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "daydream --help": [*daydream, "--help"],
            "daydream status": [*daydream, "status", "--db", str(path)],
            f"daydream report {COHORT}": [*daydream, "report", COHORT, "--db", str(path), "--out", out],
        }
        for argv in commands.values():  # warm-up: caches, and the schema brought to this version
            run_process(argv, env)
        found: dict[str, list[Process]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                found[name].append(run_process(argv, env))
    return {name: medians(p) for name, p in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="approximate ledger size")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the ledger at this path")
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (medians)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.db"
        if path.exists():
            ledger = Ledger.open(path)  # brings an older ledger's schema up to date
            print(f"reusing {path}: {ledger.count():,} events")
            ledger.close()
        else:
            build(path, args.events).close()
        verdicts: list[tuple[str, str, bool]] = []

        print(f"\n{'query':42s} {'wall':>8s}    {'cpu':>8s}")
        for name, (sql, budgeted) in QUERIES.items():
            ms, cpu, n = time_query(path, sql, args.runs)
            mark = ""
            if budgeted:
                mark = "ok" if ms < BUDGET_MS else f"OVER {BUDGET_MS:.0f} ms"
            print(f"{name:42s} {ms:8.1f} ms {cpu:8.1f} ms  {n:7,} rows  {mark}")

        print(f"\n{'Datasette page (daydream browse)':42s} {'wall':>8s}    {'cpu':>8s}")
        for name, (ms, cpu, status) in time_pages(path, args.runs).items():
            budgeted = PAGES[name][1]
            print(f"{name:42s} {ms:8.1f} ms {cpu:8.1f} ms  HTTP {status}")
            if budgeted:
                verdicts.append((f"page {name}", f"{ms:.0f} ms wall (< {BUDGET_MS:.0f} ms, row count included)",
                                 ms < BUDGET_MS and status == 200))

        print(f"\n{'command (fresh process)':42s} {'wall':>8s} {'cpu':>9s} {'peak RSS':>10s}")
        commands = time_commands(path, args.runs)
        for name, p in commands.items():
            print(f"{name:42s} {p.wall:7.2f} s {p.cpu:7.2f} s {p.rss_mb:7.0f} MB")
        report = commands[f"daydream report {COHORT}"]
        status = commands["daydream status"]
        start = commands["daydream --help"]
        print(f"status beyond start-up (status - --help): {status.wall - start.wall:.3f} s wall")
        verdicts.append((f"daydream report {COHORT}", f"{report.cpu:.2f} s CPU (< {REPORT_CPU_S:g} s)",
                         report.cpu < REPORT_CPU_S))
        verdicts.append((f"daydream report {COHORT}", f"{report.rss_mb:.0f} MB peak RSS (< {REPORT_RSS_MB:g} MB)",
                         report.rss_mb < REPORT_RSS_MB))
        verdicts.append(("daydream status", f"{status.wall:.2f} s wall (< {STATUS_S:g} s)", status.wall < STATUS_S))

        print(f"\n{'target (issue 15)':42s} result")
        for name, text, ok in verdicts:
            print(f"{name:42s} {'PASS' if ok else 'FAIL'}  {text}")
        failed = [name for name, _, ok in verdicts if not ok]
        if failed:
            raise SystemExit(f"over budget: {', '.join(failed)}")


if __name__ == "__main__":
    main()
