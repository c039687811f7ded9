"""Benchmark: 1 and 4 ``daydream run`` processes on one PostgreSQL ledger, as if on four hosts,
reaching the server through a loopback proxy that adds network latency (issue 17).

Each runner is a real ``daydream run`` subprocess with its own worker identity
(``$DAYDREAM_WORKER_HOST=bench-host-N``: judged by heartbeat, as on another machine), against a
stub LLM server on 127.0.0.1 (``python -m daydream.testing``) answering after ``--llm-latency``.
The same cohort of ``--generations`` drafts is planned into a fresh database for each run; the
runners share it. Afterwards every generation is completed and the chain verifies. (No generation called twice is read from the ledger: the answers recorded, less those
recorded as superseded after a takeover, equal the completed generations.) Prints each wall time and the ratio of the four runners' wall to the one runner's
(issue 17's target: at most 0.35 at 50 ms and 2,000 generations).

    uv run python bench/pg_runners.py [--url URL] [--generations 2000] [--latency-ms 50]
        [--llm-latency 0.2] [--concurrency 16] [--repeat 3]

``--url`` (default ``$DAYDREAM_TEST_PG``) must let its user create databases.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pg_writers import DelayProxy  # noqa: E402  (the same latency proxy)
from run_stub import KEY_ENV, start_stub, stub_catalog  # noqa: E402

import yaml  # noqa: E402

from daydream.design.planner import plan_cohort  # noqa: E402
from daydream.ledger.store import Ledger  # noqa: E402



def plan(folder: Path, url: str, base_url: str, n: int, concurrency: int) -> None:
    catalog, concepts = stub_catalog(folder, base_url, concurrency)
    # Exactly n generations (single concepts x replicates), so that every run does the same work
    # to the end, with no --limit (a limit is per runner).
    per_replicate = next(c for c in range(len(concepts), 0, -1) if n % c == 0)
    spec = {"combos": {"concepts": concepts[:per_replicate], "k": 1, "level": "sentence"},
            "axes": {"draft_template": ["link-brainstorm"], "draft_llm": ["stub"],
                     "draft_replicate": n // per_replicate}}
    (folder / "bench.yaml").write_text(yaml.safe_dump(spec))
    ledger = Ledger.init(url)[0]
    plan_cohort(ledger, folder / "bench.yaml", catalog, cohort_id="bench")
    ledger.close()


def one_run(server_url: str, proxy_url: str, runners: int, n: int, llm_latency: float,
            concurrency: int) -> tuple[float, int, int, int]:
    """(wall seconds, completed generations, answers recorded, answers recorded as superseded)."""
    import psycopg

    name = f"daydream_bench_{uuid.uuid4().hex[:10]}"
    parts, proxied = urlsplit(server_url), urlsplit(proxy_url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    stub, base_url = start_stub(llm_latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            plan(Path(tmp), urlunsplit(parts._replace(path=f"/{name}")), base_url, n, concurrency)
            db = urlunsplit(proxied._replace(path=f"/{name}"))
            start = time.perf_counter()
            procs = [subprocess.Popen(
                [sys.executable, "-m", "daydream", "run", "--db", db, "--quiet", "--cohort", "bench",
                 "--concurrency", str(concurrency)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                env={**os.environ, KEY_ENV: "bench", "DAYDREAM_WORKER_HOST": f"bench-host-{i}"})
                for i in range(runners)]
            for p in procs:
                _out, err = p.communicate()
                assert p.returncode == 0, err[-2000:]
            elapsed = time.perf_counter() - start
            ledger = Ledger.open(urlunsplit(parts._replace(path=f"/{name}")))
            assert ledger.verify()[0] == ledger.last_seq()
            done = ledger.query("SELECT COUNT(*) FROM gen_state WHERE status = 'completed'")[0][0]
            completed = ledger.events(type="LLMCallCompleted")
            superseded = sum(1 for e in completed if e.payload.get("superseded"))
            ledger.close()
        return elapsed, done, len(completed), superseded
    finally:
        stub.terminate()
        stub.wait()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("DAYDREAM_TEST_PG"))
    parser.add_argument("--generations", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="round-trip latency added to the server")
    parser.add_argument("--llm-latency", type=float, default=0.2, help="seconds the stub LLM takes per answer")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight per runner")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (1 runner, then 4); medians are printed")
    args = parser.parse_args()
    if not args.url:
        parser.error("give --url or set DAYDREAM_TEST_PG")
    target = urlsplit(args.url)
    proxy = DelayProxy(target.hostname or "127.0.0.1", target.port or 5432, args.latency_ms / 2000)
    proxy_url = urlunsplit(target._replace(netloc=target.netloc.rsplit(":", 1)[0] + f":{proxy.port}"))
    print(f"load average {os.getloadavg()[0]:.1f}; {args.generations} generations, {args.latency_ms:.0f} ms to the "
          f"server, LLM {args.llm_latency:.2f} s, concurrency {args.concurrency} per runner")
    walls: dict[int, list[float]] = {1: [], 4: []}
    for round_ in range(args.repeat):
        for runners in (1, 4):
            wall, done, calls, superseded = one_run(args.url, proxy_url, runners, args.generations,
                                                    args.llm_latency, args.concurrency)
            assert done == args.generations, (done, args.generations)
            assert calls - superseded == done, (calls, superseded, done)  # nothing called twice
            walls[runners].append(wall)
            print(f"round {round_ + 1}: {runners} runner(s): {wall:.1f} s, {done / wall:.1f} generations/s, "
                  f"{calls} answers ({superseded} superseded); chain verified", flush=True)
        print(f"round {round_ + 1}: 4 runners / 1 runner wall time: {walls[4][-1] / walls[1][-1]:.2f}", flush=True)
    ratios = sorted(four / one for one, four in zip(walls[1], walls[4]))
    print(f"median over {args.repeat} round(s): 1 runner {statistics.median(walls[1]):.1f} s, 4 runners "
          f"{statistics.median(walls[4]):.1f} s; 4 runners / 1 runner wall time: {statistics.median(ratios):.2f} "
          f"(target <= 0.35; rounds {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
