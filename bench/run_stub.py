"""Benchmark: the runner against a loopback stub LLM server in another process.

1. N generations (default 1,000) against a stub answering after 200 ms at concurrency 50: wall
   time vs the ideal ``calls × latency ÷ concurrency``, and their ratio (target ≤ 1.25). Each
   request is on record before it leaves (its claim commits first), so a commit's round trip is
   part of every call; ``--repeat`` runs it several times and reports the median, which a shared
   machine's load disturbs less than a single run.
2. The same with 0 ms latency: generations per second of pure orchestration (target ≥ 300/s).
3. Peak memory (max RSS) of a ``daydream run`` subprocess doing 20,000 generations.

    uv run python bench/run_stub.py [--n 1000] [--repeat 3] [--big 20000]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from daydream.ledger.store import Ledger
from daydream.design.planner import plan_cohort
from daydream.run.runner import RunOptions, run_cohort

REPO = Path(__file__).resolve().parent.parent
KEY_ENV = "DAYDREAM_BENCH_KEY"


def start_stub(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "daydream.testing", "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()  # "listening on http://127.0.0.1:PORT"
    return proc, line.rsplit(" ", 1)[1]


def prepare(folder: Path, base_url: str, n: int, concurrency: int) -> Ledger:
    catalog = folder / "catalog"
    shutil.copytree(REPO / "specs" / "catalog", catalog)
    models = yaml.safe_load((catalog / "models.yaml").read_text())
    models.append({"id": "stub", "provider": "openai", "model": "stub/bench", "base_url": base_url,
                   "api_key_env": KEY_ENV, "concurrency": concurrency, "price_in": 0, "price_out": 0})
    (catalog / "models.yaml").write_text(yaml.safe_dump(models, sort_keys=False))
    concepts = [c["id"] for c in yaml.safe_load((catalog / "concepts.yaml").read_text())]
    combos_per_rep = 364 if len(concepts) >= 14 else len(concepts)
    replicates = -(-n // combos_per_rep)
    spec = {"combos": {"concepts": concepts[:14], "k": 3, "level": "sentence"},
            "axes": {"draft_template": ["link-brainstorm"], "draft_llm": ["stub"],
                     "draft_replicate": replicates}}
    (folder / "bench.yaml").write_text(yaml.safe_dump(spec))
    ledger = Ledger.init(folder / "bench.db")[0]
    plan_cohort(ledger, folder / "bench.yaml", catalog, cohort_id="bench")
    return ledger


def timed_run(n: int, latency: float, concurrency: int) -> tuple[float, int]:
    stub, base_url = start_stub(latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ledger = prepare(Path(tmp), base_url, n, concurrency)
            start = time.perf_counter()
            stats = run_cohort(ledger, RunOptions(cohort="bench", concurrency=concurrency, limit=n))
            elapsed = time.perf_counter() - start
            return elapsed, stats.completed
    finally:
        stub.terminate()
        stub.wait()


def peak_memory(n: int, concurrency: int) -> tuple[float, float, int]:
    stub, base_url = start_stub(0.0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ledger = prepare(Path(tmp), base_url, n, concurrency)
            env = {**os.environ, KEY_ENV: "bench"}
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "daydream", "run", "--db", str(ledger.path), "--quiet",
                            "--concurrency", str(concurrency), "--limit", str(n)], check=True, env=env,
                           stdout=subprocess.DEVNULL)
            elapsed = time.perf_counter() - start
            done = ledger.query("SELECT COUNT(*) FROM gen_state WHERE status = 'completed'")[0][0]
            rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            return rss_mb, elapsed, done
    finally:
        stub.terminate()
        stub.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the 200 ms case (median reported)")
    parser.add_argument("--big", type=int, default=20000, help="generations for the memory run (0: skip)")
    args = parser.parse_args()
    os.environ[KEY_ENV] = "bench"

    print(f"{args.n} generations, {args.latency * 1000:.0f} ms stub latency, concurrency {args.concurrency}")
    ratios = []
    for _ in range(max(1, args.repeat)):
        wall, done = timed_run(args.n, args.latency, args.concurrency)
        ideal = done * args.latency / args.concurrency
        ratios.append(wall / ideal)
        print(f"  wall {wall:.2f} s   ideal {ideal:.2f} s   ratio {wall / ideal:.2f}")
    print(f"  median ratio {statistics.median(ratios):.2f}   (target <= 1.25)")

    wall0, done0 = timed_run(args.n, 0.0, args.concurrency)
    print(f"{done0} generations, 0 ms stub latency: {wall0:.2f} s = {done0 / wall0:.0f} generations/s "
          "(target >= 300/s)")

    if args.big:
        rss, elapsed, done_big = peak_memory(args.big, args.concurrency)
        print(f"{done_big} generations in a `daydream run` subprocess: {elapsed:.1f} s, "
              f"peak RSS {rss:.0f} MB (target < 300 MB)")


if __name__ == "__main__":
    main()
