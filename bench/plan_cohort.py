"""Benchmark: compiling a 100,000-row spec, planning ~20,000 generations, and planning memory at scale.

Measured side by side in one run: (1) ``load_spec`` + ``compile_spec`` of a spec with 100,000
design rows (target: under 2 s); (2) ``plan_cohort`` of a starter-catalog study with ~20,000
generations into a fresh ledger (spec, validation, id resolution, one atomic append with the hash
chain and projection triggers); (3) the raw batched append rate: plain ``sqlite3.executemany`` of
the very same event rows into a plain table (same columns, no triggers, no chain) in one
transaction; and, to show where the time goes, (4) ``Ledger.append`` of those same events and
texts into another fresh ledger (hash chain plus the projection triggers of the migrations).
Prints rows/s, events/s and the plan/raw cost ratio (target: within 2x), plus plan/append.

Then planning memory (issue 15: peak RSS flat in cohort size, under 250 MB for 1,000,000
generations): the same study scaled by its evaluation replicates to ~100,000 generations (and
~1,000,000 with ``--million``), each planned into a fresh ledger by a fresh process, which reports
its peak RSS (VmHWM of /proc/self/status, else ``getrusage``), wall time, generations/s, how many
write transactions it took and the longest time one held the ledger's write lock (other writers wait
up to the 120 s busy timeout: a plan over ``TRANSACTION_EVENTS`` events is staged in transactions of
a few seconds, the last of which completes it), and the bytes it wrote (/proc/self/io). Side by side at
100k: the planner before streaming (``--baseline``, default the commit this work started from,
loaded from git; it needs ~3 KB per generation, so 1M is not attempted with it).

    uv run python bench/plan_cohort.py [--repeat 3] [--million] [--baseline REF | --no-baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import types
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


# Evaluation replicates giving ~100k and ~1M generations: 364 * (3 + 6 + 24 * r).
SCALES = {"100k": 11, "1M": 114}
BASELINE = "de4069b90d602e243d9b4bdabc2655da4cda0c86"  # the planner before streaming (issue 15)
REPO = Path(__file__).resolve().parent.parent


def study_spec(replicates: int) -> str:
    concepts = ", ".join(sorted(load_catalog().concepts))
    return PLAN_SPEC.replace("evaluation_replicate: 2", f"evaluation_replicate: {replicates}") % concepts


def baseline_planner(ref: str) -> types.ModuleType:
    """The planner module as of git ``ref``, loaded under its own name (it still runs on today's ledger)."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:daydream/design/planner.py"],
                            capture_output=True, text=True, check=True).stdout
    from daydream.design import spec_compile, spec_dsl

    # Older planners imported compile_spec from spec_dsl, which re-exported it then.
    if not hasattr(spec_dsl, "compile_spec"):
        spec_dsl.compile_spec = spec_compile.compile_spec  # type: ignore[attr-defined]
    module = types.ModuleType("daydream_baseline_planner")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, f"{ref[:10]}:daydream/design/planner.py", "exec"), module.__dict__)
    return module


def peak_rss_mb() -> float:
    """This process's peak resident set size: VmHWM, reset by exec (ru_maxrss is not: on Linux a
    child started by a big parent reports the parent's size), else ru_maxrss."""
    try:
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def written_bytes() -> int:
    try:
        with open("/proc/self/io") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("write_bytes"))
    except (OSError, StopIteration):
        return 0


def plan_child(replicates: int, baseline: str | None) -> None:
    """In a fresh process: plan the study into a fresh ledger and print one JSON line of figures."""
    plan = baseline_planner(baseline).plan_cohort if baseline else plan_cohort
    # Time the write transaction: the streaming planner appends through append_batches, the
    # baseline through one append.
    method = "append" if baseline else "append_batches"
    real = getattr(Ledger, method)
    held: list[float] = []

    def timed(self: Ledger, *args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        try:
            return real(self, *args, **kwargs)
        finally:
            held.append(time.perf_counter() - start)
            if os.environ.get("PLAN_BENCH_VERBOSE"):
                print(f"  transaction {len(held)}: {held[-1]:.2f} s", file=sys.stderr)

    setattr(Ledger, method, timed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "study.yaml"
        path.write_text(study_spec(replicates))
        ledger = Ledger.init(folder / "ledger.db")[0]
        before = written_bytes()
        start = time.perf_counter()
        result = plan(ledger, path)
        elapsed = time.perf_counter() - start
        written = written_bytes() - before
        ledger.close()
        size = (folder / "ledger.db").stat().st_size
    print(json.dumps({"generations": sum(c["new"] for c in result.counts.values()), "events": result.events,
                      "seconds": elapsed, "write_txn_s": max(held, default=0.0), "transactions": len(held),
                      "last_txn_s": held[-1] if held else 0.0,
                      "peak_rss_mb": peak_rss_mb(),
                      "written_mb": written / 1e6, "ledger_mb": size / 1e6}))


def measure_plan(replicates: int, baseline: str | None) -> dict | None:
    args = [sys.executable, __file__, "--child", str(replicates)] + (["--baseline", baseline] if baseline else [])
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        print(f"  ({'baseline' if baseline else 'streaming'} planner failed: "
              f"{(done.stderr.strip().splitlines() or ['?'])[-1]})")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_memory(million: bool, baseline: str | None) -> None:
    print("\nplanning memory (each plan in a fresh process, into a fresh ledger):")
    header = (f"  {'plan':<22}{'generations':>12}{'time':>9}{'gen/s':>9}{'txns':>6}{'longest':>9}{'last':>7}"
              f"{'peak RSS':>10}{'written':>10}{'ledger':>9}")
    print(header)
    figures: dict[tuple[str, str], dict] = {}
    runs = ([("100k", baseline)] if baseline else []) + [("100k", None)] + ([("1M", None)] if million else [])
    for scale, ref in runs:
        got = measure_plan(SCALES[scale], ref)
        if got is None:
            continue
        name = f"{scale} {'baseline ' + ref[:7] if ref else 'streaming'}"
        figures[(scale, "baseline" if ref else "streaming")] = got
        print(f"  {name:<22}{got['generations']:>12,}{got['seconds']:>8.1f}s{got['generations'] / got['seconds']:>9,.0f}"
              f"{got.get('transactions', 1):>6}{got['write_txn_s']:>8.1f}s{got.get('last_txn_s', 0.0):>6.1f}s"
              f"{got['peak_rss_mb']:>8.0f}MB{got['written_mb']:>8.0f}MB{got['ledger_mb']:>7.0f}MB")
    new100 = figures.get(("100k", "streaming"))
    old100 = figures.get(("100k", "baseline"))
    if new100 and old100:
        print(f"ratio peak RSS streaming/baseline at 100k: {new100['peak_rss_mb'] / old100['peak_rss_mb']:.2f}x; "
              f"time: {new100['seconds'] / old100['seconds']:.2f}x")
    print("  (txns: write transactions; longest: the longest the ledger's write lock was held, which other\n"
          "   writers wait up to 120 s for; last: the transaction that completes the plan and makes it visible)")
    new1m = figures.get(("1M", "streaming"))
    if new100 and new1m:
        print(f"ratio peak RSS 1M/100k (streaming): {new1m['peak_rss_mb'] / new100['peak_rss_mb']:.2f}x   "
              f"(target: flat; 1M under 250 MB: {'yes' if new1m['peak_rss_mb'] < 250 else 'NO'})")


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
    parser.add_argument("--million", action="store_true",
                        help="also plan ~1,000,000 generations (about 2-3 minutes and 1.5 GB of disk)")
    parser.add_argument("--baseline", metavar="REF", default=BASELINE,
                        help="git commit whose planner is measured side by side at 100k (default: the "
                             "planner before streaming)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline planner")
    parser.add_argument("--child", type=int, metavar="REPLICATES", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        plan_child(args.child, args.baseline if "--baseline" in sys.argv else None)
        return
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
    bench_memory(args.million, None if args.no_baseline else args.baseline)


if __name__ == "__main__":
    main()
