"""Benchmark: appending the events of a run, projected by one trigger per event type (0011) or by 0004's
single feed trigger (0009), measured side by side in one process.

Both ledgers run the same code (``Ledger.append``) and receive the same events: a cohort's plan
(GenerationPlanned) and each generation's run (PromptRendered, LLMCallStarted, LLMCallCompleted,
ResponseParsed, and ScoreRecorded for evaluations): the events a ``daydream run`` appends, all of
them projected. The only difference is the schema revision, i.e. how the projection statements
are installed. Batched appends (1,000 events per transaction, as the runner's writer batches) and
single-event transactions; then ``projections check`` on the batched ledger (it replays every
event through the same triggers, in a transaction it rolls back). Repeats alternate between the
two schemas; medians are printed.

    uv run python bench/projection_feed.py [--generations 20000] [--single 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from alembic import command

from daydream.ledger import db, projections
from daydream.ledger.store import Ledger, NewEvent

SINGLE_TRIGGER = "0009_comparisons"


def run_events(generations: int) -> list[NewEvent]:
    """A cohort's plan, then every generation's run, as a runner appends them."""
    stages = ("draft", "essay", "evaluation")
    plans, runs = [], []
    for i in range(generations):
        stage, gen_id = stages[i % 3], f"g_{i}"
        stream = f"gen:{gen_id}"
        plans.append(NewEvent(stream, "GenerationPlanned", {
            "gen_id": gen_id, "stage": stage, "parent_gen_id": f"g_{i - 1}" if i % 3 else None,
            "combo_id": "combo_v1_0123456789ab", "template_id": f"{stage}-template",
            "template_hash": "a" * 64, "generator": "llm", "parser": "score" if stage == "evaluation" else "identity",
            "model_id": f"model-{i % 4}", "model_hash": "b" * 64, "replicate": 1, "cohort_id": "bench",
            "catalog_hash": "c" * 64}))
        runs += [
            NewEvent(stream, "PromptRendered", {"gen_id": gen_id, "attempt": 1, "prompt_hash": "d" * 64,
                                                "chars": 2000, "template_id": f"{stage}-template",
                                                "template_hash": "a" * 64}),
            NewEvent(stream, "LLMCallStarted", {"gen_id": gen_id, "attempt": 1, "call": 1, "model_id": f"model-{i % 4}",
                                                "provider": "openai", "provider_model": "m",
                                                "lease_until": "2026-12-04T00:10:00Z", "sends_marked": True,
                                                "worker": {"host": "h", "pid": 1, "start": 1.0, "machine": "x",
                                                           "run": "r"}}),
            NewEvent(stream, "LLMCallCompleted", {"gen_id": gen_id, "attempt": 1, "call": 1, "try": 1,
                                                  "text_hash": "e" * 64, "chars": 3000, "finish_reason": "stop",
                                                  "prompt_tokens": 500, "completion_tokens": 700, "cost_usd": 0.0012,
                                                  "latency_s": 3.2, "model_id": f"model-{i % 4}", "provider": "openai",
                                                  "requested_model": "m", "resolved_model": "m-1", "offline": False}),
            NewEvent(stream, "ResponseParsed", {"gen_id": gen_id, "attempt": 1, "parser": "identity",
                                                "parsed_hash": "f" * 64, "chars": 2900}),
        ]
        if stage == "evaluation":
            runs.append(NewEvent(stream, "ScoreRecorded", {
                "gen_id": gen_id, "attempt": 1, "essay_gen_id": f"g_{i - 1}", "score": 7.0, "scale": [0, 9],
                "rubric": "rubric", "evaluator": f"model-{i % 4}", "replicate": 1}))
    return plans + runs


def ledger_at(path: Path, revision: str) -> Ledger:
    backend = db.create_backend(path, create=True)
    with db.schema_connection(backend) as conn:
        command.upgrade(db._alembic_config(conn), revision)
        if conn.in_transaction():
            conn.commit()
    return Ledger(path, backend)


def timed(folder: Path, revision: str, events: list[NewEvent], batch: int) -> tuple[float, float, list[tuple]]:
    """Seconds to append ``events`` in batches of ``batch``, seconds of a check, and the projected state."""
    ledger = ledger_at(folder / f"{revision}-{batch}.db", revision)
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        ledger.append(events[i:i + batch])
    elapsed = time.perf_counter() - start
    state = ledger.query("SELECT gen_id, status, calls, cost_usd, score, scale_max FROM gen_state ORDER BY gen_id")
    check = 0.0
    if batch != 1:
        start = time.perf_counter()
        assert projections.check(ledger).drift == []
        check = time.perf_counter() - start
    ledger.close()
    return elapsed, check, state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=20_000, help="generations in the batched run")
    parser.add_argument("--single", type=int, default=5_000, help="events appended one per transaction")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    events = run_events(args.generations)
    single_events = run_events(args.single // 5 + 1)[:args.single]
    revisions = {"one feed trigger (0009)": SINGLE_TRIGGER, "a trigger per event type (head)": "head"}
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeat):
        states = []
        for name, revision in revisions.items():
            with tempfile.TemporaryDirectory() as tmp:
                for batch, sample in ((args.batch, events), (1, single_events)):
                    elapsed, check, state = timed(Path(tmp), revision, sample, batch)
                    times.setdefault((name, batch), []).append(elapsed)
                    if batch != 1:
                        times.setdefault((name, 0), []).append(check)
                        states.append(state)
        assert states[0] == states[1], "the two schemas projected different states"
    print(f"{len(events):,} events batched by {args.batch}, {len(single_events):,} single; "
          f"{args.repeat} repeats, alternating (medians)")
    base: dict[int, float] = {}
    kinds = {args.batch: "batched", 1: "single", 0: "check"}
    for batch in kinds:
        for name in revisions:
            n = len(single_events) if batch == 1 else len(events)
            median = statistics.median(times[(name, batch)])
            base.setdefault(batch, median)
            print(f"{name:<34} {kinds[batch]:<8} {n / median:>10,.0f} events/s "
                  f"{median / n * 1e6:>8.2f} us/event   time x{median / base[batch]:.2f}")


if __name__ == "__main__":
    main()
