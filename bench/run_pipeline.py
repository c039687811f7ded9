"""Benchmark: the runner on all three stages against the critical path measured on the same server.

A cohort of drafts, one essay per draft and two evaluations per essay (about 1,000 generations) runs
against a loopback stub LLM server answering after 200 ms, at concurrency 50. Beside it, in the
same process and round by round, a bare asyncio + httpx client replays the *same prompts* against
the same server with the same dependencies (an essay's request leaves when its draft's answer is
back, an evaluation's when its essay's is) and the same 50 requests at a time: the fastest any
orchestrator could go on this server. That client's wall time is the critical path, measured, not
computed. The ratio ``runner wall / critical path`` is the figure (issue 15 target: at most 1.15).
The runner's side includes everything a run does: rendering, claims committed before each request
leaves, parsing, scores, projections, the hash chain.

    uv run python bench/run_pipeline.py [--drafts 240] [--latency 0.2] [--concurrency 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
import yaml

from daydream.design.planner import plan_cohort
from daydream.ledger.store import Ledger
from daydream.run.runner import RunOptions, run_cohort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_stub import KEY_ENV, start_stub, stub_catalog  # noqa: E402  (the stub server and catalog of bench/run_stub.py)

TARGET = 1.15


def prepare(folder: Path, base_url: str, drafts: int, concurrency: int) -> Ledger:
    """A ledger with the three-stage cohort ``bench`` planned on model ``stub``."""
    catalog, concepts = stub_catalog(folder, base_url, concurrency)
    combos = 120 if len(concepts) >= 10 else 1  # C(10, 3)
    spec = {"combos": {"concepts": concepts[:10], "k": 3, "level": "sentence"},
            "axes": {"draft_template": ["link-brainstorm"], "draft_llm": ["stub"],
                     "draft_replicate": max(1, -(-drafts // combos)),
                     "essay_template": ["focused-essay"], "essay_llm": ["stub"],
                     "evaluation_template": ["originality-rubric", "coherence-rubric"],
                     "evaluation_llm": ["stub"]}}
    (folder / "bench.yaml").write_text(yaml.safe_dump(spec))
    ledger = Ledger.init(folder / "bench.db")[0]
    plan_cohort(ledger, folder / "bench.yaml", catalog, cohort_id="bench")
    return ledger


def runner_wall(drafts: int, base_url: str, concurrency: int, folder: Path) -> tuple[float, int, Ledger]:
    ledger = prepare(folder, base_url, drafts, concurrency)
    start = time.perf_counter()
    stats = run_cohort(ledger, RunOptions(cohort="bench", concurrency=concurrency))
    return time.perf_counter() - start, stats.completed, ledger


def recorded_dag(ledger: Ledger) -> tuple[dict[str, str], dict[str | None, list[str]]]:
    """Each generation's recorded prompt (what the runner sent) and its children."""
    rows = ledger.query("""SELECT g.gen_id, g.parent_gen_id, t.text FROM gen_state g
                           JOIN texts t ON t.sha256 = g.prompt_hash
                           JOIN cohort_members m ON m.gen_id = g.gen_id AND m.cohort_id = 'bench'""")
    prompts = {gen_id: text for gen_id, _parent, text in rows}
    children: dict[str | None, list[str]] = defaultdict(list)
    for gen_id, parent, _text in rows:
        children[parent if parent in prompts else None].append(gen_id)
    return prompts, children


async def _critical_path(base_url: str, prompts: dict[str, str], children: dict[str | None, list[str]],
                         concurrency: int) -> tuple[float, int]:
    slots = asyncio.Semaphore(concurrency)
    done = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60,
                                 headers={"Authorization": "Bearer bench"}) as client:
        async def one(gen_id: str) -> None:
            nonlocal done
            async with slots:
                response = await client.post("/chat/completions", json={
                    "model": "stub/bench", "messages": [{"role": "user", "content": prompts[gen_id]}]})
                response.raise_for_status()
                response.json()["choices"][0]["message"]["content"]
            done += 1
            await asyncio.gather(*(one(child) for child in children.get(gen_id, ())))

        start = time.perf_counter()
        await asyncio.gather(*(one(root) for root in children[None]))
        return time.perf_counter() - start, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drafts", type=int, default=240, help="drafts (x4 generations in all)")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="rounds (medians reported)")
    args = parser.parse_args()
    os.environ[KEY_ENV] = "bench"
    stub, base_url = start_stub(args.latency)
    ratios, walls, ideals = [], [], []
    try:
        for _ in range(max(1, args.repeat)):
            with tempfile.TemporaryDirectory() as tmp:
                wall, completed, ledger = runner_wall(args.drafts, base_url, args.concurrency, Path(tmp))
                prompts, children = recorded_dag(ledger)
                ideal, sent = asyncio.run(_critical_path(base_url, prompts, children, args.concurrency))
                ledger.close()
            assert sent == completed == len(prompts), (sent, completed, len(prompts))
            ratios.append(wall / ideal)
            walls.append(wall)
            ideals.append(ideal)
            print(f"  {completed} generations: runner {wall:.2f} s   critical path {ideal:.2f} s   "
                  f"ratio {wall / ideal:.3f}", flush=True)
    finally:
        stub.terminate()
        stub.wait()
    median = statistics.median(ratios)
    print(f"three stages, {args.latency * 1000:.0f} ms stub latency, concurrency {args.concurrency}: "
          f"median runner {statistics.median(walls):.2f} s, critical path {statistics.median(ideals):.2f} s, "
          f"ratio {median:.3f}  {'PASS' if median <= TARGET else 'FAIL'} (target <= {TARGET})")


if __name__ == "__main__":
    main()
