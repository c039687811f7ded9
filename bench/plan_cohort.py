"""Benchmark: compiling a 100,000-row spec, and planning ~20,000 generations into a fresh ledger.

Measured side by side in one run: (1) ``load_spec`` + ``compile_spec`` of a spec with 100,000
design rows (target: under 2 s); (2) ``plan_cohort`` of a starter-catalog study with ~20,000
generations into a fresh ledger (spec, validation, id resolution, one atomic append with the hash
chain and projection triggers); (3) the raw batched append rate: plain ``sqlite3.executemany`` of
the very same event rows into a plain table (same columns, no triggers, no chain) in one
transaction; and, to show where the time goes, (4) ``Ledger.append`` of those same events and
texts into another fresh ledger (hash chain plus the projection triggers of the migrations).
Prints rows/s, events/s and the plan/raw cost ratio (target: within 2x), plus plan/append.

    uv run python bench/plan_cohort.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from daydream.design.catalog import load_catalog
from daydream.ledger.store import Ledger, NewEvent, canonical_json, utc_now
from daydream.design.planner import plan_cohort
from daydream.design.spec_compile import compile_spec
from daydream.design.spec_dsl import load_spec

COMPILE_SPEC = """\
# 100 combos x 5 draft templates x 2 draft models x 5 essay templates x 20 rubric/evaluator pairs
axes:
  combo_id: [{combos}]
  draft_template: [d1, d2, d3, d4, d5]
  draft_llm: [m1, m2]
  essay_template: [e1, e2, e3, e4, e5]
  evaluation_template: [r1, r2, r3, r4]
  evaluation_llm: [j1, j2, j3, j4, j5]
rules:
  pairs:
    judges:
      left: evaluation_template
      right: evaluation_llm
      allowed: [{pairs}]
output:
  seed: 1
"""

# 364 combos (every 3 of the 14 starter concepts) x 3 drafts, each with an llm and a copy essay,
# each essay scored by 2 rubrics x 2 evaluators x 2 replicates: 364 * (3 + 6 + 48) = 20,748.
PLAN_SPEC = """\
combos: {concepts: [%s], k: 3, level: paragraph}
axes:
  draft_template: [bridge-essay-draft, staged-idea-thread, link-brainstorm]
  draft_llm: [offline]
  essay_template: [focused-essay, copy-draft]
  essay_llm: [offline]
  evaluation_template: [originality-rubric, clarity-rubric]
  evaluation_llm: [offline, sonnet-4]
  evaluation_replicate: 2
"""


def bench_compile(folder: Path) -> tuple[float, int]:
    combos = ", ".join(f"combo_bench_{i:03d}" for i in range(100))
    pairs = ", ".join(f"[r{r}, j{j}]" for r in range(1, 5) for j in range(1, 6))
    path = folder / "compile.yaml"
    path.write_text(COMPILE_SPEC.format(combos=combos, pairs=pairs))
    start = time.perf_counter()
    rows = compile_spec(load_spec(path))
    return time.perf_counter() - start, len(rows)


def bench_plan(folder: Path) -> tuple[float, int, int, Ledger]:
    concepts = ", ".join(sorted(load_catalog().concepts))
    path = folder / "plan.yaml"
    path.write_text(PLAN_SPEC % concepts)
    ledger = Ledger.init(folder / "ledger.db")[0]
    start = time.perf_counter()
    result = plan_cohort(ledger, path)
    elapsed = time.perf_counter() - start
    gens = sum(c["new"] for c in result.counts.values())
    assert ledger.count() == result.events
    return elapsed, gens, result.events, ledger


def bench_raw(folder: Path, ledger: Ledger) -> float:
    """Plain executemany of the plan's own event rows into a plain table, one transaction."""
    events = ledger.events()
    conn = sqlite3.connect(folder / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, stream TEXT, version INTEGER, type TEXT,"
                 " payload TEXT, recorded_at TEXT, causation_seq INTEGER, prev_hash TEXT, hash TEXT)")
    now = utc_now()
    start = time.perf_counter()
    rows = [(e.seq, e.stream, e.version, e.type, canonical_json(e.payload), now, None, "", "")
            for e in events]
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def bench_append(folder: Path, ledger: Ledger) -> float:
    """The ledger's own cost for the plan's events: one append of the same events and texts."""
    events = [NewEvent(e.stream, e.type, e.payload) for e in ledger.events()]
    texts = [t for (t,) in ledger.query("SELECT text FROM texts")]
    fresh = Ledger.init(folder / "append.db")[0]
    start = time.perf_counter()
    fresh.append(events, texts=texts)
    elapsed = time.perf_counter() - start
    fresh.close()
    return elapsed


def bench_small_batched(folder: Path, n: int) -> float:
    """The ledger benchmark's batched rate: n small events, 1,000 per append (no projections)."""
    fresh = Ledger.init(folder / "small.db")[0]
    events = [NewEvent(f"bench:{i % 1000}", "BenchTicked", {"i": i, "note": "small"}) for i in range(n)]
    start = time.perf_counter()
    for i in range(0, n, 1000):
        fresh.append(events[i:i + 1000])
    elapsed = time.perf_counter() - start
    fresh.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="repeats (medians are printed)")
    args = parser.parse_args()
    compiles, plans, raws, appends, smalls = [], [], [], [], []
    n_rows = gens = n_events = 0
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            t, n_rows = bench_compile(folder)
            compiles.append(t)
            t, gens, n_events, ledger = bench_plan(folder)
            plans.append(t)
            raws.append(bench_raw(folder, ledger))
            appends.append(bench_append(folder, ledger))
            smalls.append(bench_small_batched(folder, n_events))
            ledger.close()
    c, p, r = statistics.median(compiles), statistics.median(plans), statistics.median(raws)
    a = statistics.median(appends)
    b = statistics.median(smalls)
    print(f"repeats: {args.repeat} (medians)")
    print(f"compile: {n_rows:,} rows in {c:.2f} s = {n_rows / c:,.0f} rows/s   (target < 2 s)")
    print(f"plan:    {gens:,} generations, {n_events:,} events in {p:.2f} s = {n_events / p:,.0f} events/s")
    print(f"raw sqlite3 executemany of the same {n_events:,} rows: {r:.2f} s = {n_events / r:,.0f} events/s")
    print(f"Ledger.append of the same events + texts: {a:.2f} s = {n_events / a:,.0f} events/s")
    print(f"ledger benchmark's batched rate ({n_events:,} small events): {b:.2f} s = {n_events / b:,.0f} events/s")
    print(f"ratio plan/append:   {p / a:.2f}x   (target <= 2x: planning costs at most twice appending its events)")
    print(f"ratio plan/small batched append: {p / b:.2f}x   (each GenerationPlanned also maintains projections)")
    print(f"ratio append/raw:    {a / r:.2f}x   (the ledger's chain + projection triggers)")
    print(f"ratio plan/raw:      {p / r:.2f}x")


if __name__ == "__main__":
    main()
