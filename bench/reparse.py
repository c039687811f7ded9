"""Benchmark: re-scoring a cohort's recorded judge answers with ``daydream reparse``.

Builds a synthetic Dagster root (``tests/dagster_root.py``) whose evaluation answers are written the
way real judges write them (a few paragraphs of justification, then ``**Final Score:** 7/10``,
``SCORE: 8``, a table …), imports it, then re-parses the imported cohort twice: the first pass
records our parser's reading of every answer, the second must append nothing. Printed side by side
with the import of the same root, which reads and appends the same generations; plus the score
parser's own cost per answer, and what migration 0008's projection statements (a score's scale)
add to each append: scored evaluations appended to a ledger at 0005 and one at 0008, interleaved.

    uv run python bench/reparse.py [--combos 100] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from dagster_root import build_dagster_root  # noqa: E402

from alembic import command  # noqa: E402

from daydream.ledger import db
from daydream import plugins  # noqa: E402
from daydream.transfer.importer import import_dagster  # noqa: E402
from daydream.ledger.store import Ledger, NewEvent, text_hash  # noqa: E402
from daydream.run.reparse import reparse  # noqa: E402

SEED_RAW = REPO.parent / "shared" / "seed-data" / "1_raw"
PARAGRAPH = ("The essay connects the default mode network to a generator-verifier loop and argues that "
             "background recombination produces candidates a critic can filter. The mechanism is "
             "plausible, but the economic claim is asserted rather than shown. ")
ENDINGS = ["**Final Score:** {s}/10", "SCORE: {s}", "## Score\n\n{s}", "| Criterion | Score |\n|---|---|\n"
           "| Novelty | 6 |\n| **Final Score** | **{s}** |", "Overall score: {s} out of 10\n\nThanks."]


def judge_answer(rng: random.Random) -> str:
    body = "\n\n".join(PARAGRAPH * rng.randint(1, 3) for _ in range(rng.randint(3, 6)))
    return body + "\n\n" + rng.choice(ENDINGS).format(s=rng.randint(0, 9)) + "\n"


def run(folder: Path, combos: int) -> None:
    built = build_dagster_root(
        folder / "root", seed_raw=SEED_RAW if SEED_RAW.is_dir() else None, n_combos=combos,
        draft_templates=("creative-synthesis-v10", "creative-synthesis-v7"),
        draft_models=("gemini_25_pro", "sonnet-4"),
        evaluation_templates=("daydreaming-verification", "novelty-v2", "scientific-rigor",
                              "creativity-metrics-v2"),
        evaluation_models=("sonnet-4", "gemini_25_pro"), text_chars=800)
    rng = random.Random(12)
    answers = []
    for gen_id in built.evaluations:
        answers.append(judge_answer(rng))
        (built.folder(gen_id) / "raw.txt").write_text(answers[-1], encoding="utf-8")
    n = len(built.all_ids)
    print(f"root: {n} generations, {len(built.evaluations)} evaluations "
          f"(answers ~{statistics.mean(map(len, answers)) / 1000:.1f} KB)")

    parse = plugins.parsers().get("score")
    laps = []
    for _ in range(5):
        start = time.perf_counter()
        for answer in answers:
            try:
                parse(answer, scale=(0, 10))
            except Exception:
                pass
        laps.append((time.perf_counter() - start) / len(answers))
    print(f"score parser: median {statistics.median(laps) * 1e6:7.1f} µs per answer (5 passes)")

    ledger = Ledger.init(folder / "ledger.db")[0]
    start = time.perf_counter()
    import_dagster(ledger, built.root)
    imported = time.perf_counter() - start
    print(f"import:          {imported:6.2f} s  {n / imported:7.0f} gens/s")

    start = time.perf_counter()
    first = reparse(ledger, built.cohort_id)
    once = time.perf_counter() - start
    changed = len(first.changes)
    print(f"reparse (1st):   {once:6.2f} s  {n / once:7.0f} gens/s  {changed} changed, "
          f"{first.events_appended} events  ({once / imported:.2f}x the import)")

    last = ledger.last_seq()
    start = time.perf_counter()
    second = reparse(ledger, built.cohort_id)
    twice = time.perf_counter() - start
    assert second.events_appended == 0 and ledger.last_seq() == last
    print(f"reparse (again): {twice:6.2f} s  {n / twice:7.0f} gens/s  0 events ({twice / imported:.2f}x the import)")


def _ledger_at(path: Path, revision: str) -> Ledger:
    backend = db.create_backend(path, create=True)
    with db.schema_connection(backend) as conn:
        command.upgrade(db._alembic_config(conn), revision)
        if conn.in_transaction():
            conn.commit()
    return Ledger(path, backend)


def _scored(prefix: str, n: int) -> list[NewEvent]:
    """``n`` evaluations from plan to score: five projected events each."""
    events = []
    for i in range(n):
        gen_id = f"v_{prefix}_{i}"
        stream = f"gen:{gen_id}"
        events += [
            NewEvent(stream, "GenerationPlanned", {
                "gen_id": gen_id, "stage": "evaluation", "parent_gen_id": "e_1", "template_id": "r",
                "template_hash": None, "generator": "llm", "parser": "score", "model_id": "m", "replicate": 1,
                "cohort_id": "c"}),
            NewEvent(stream, "PromptRendered", {"gen_id": gen_id, "attempt": 1, "prompt_hash": text_hash(gen_id),
                                                "chars": 1, "template_id": "r", "template_hash": None}),
            NewEvent(stream, "LLMCallCompleted", {"gen_id": gen_id, "attempt": 1, "call": 1,
                                                  "text_hash": text_hash(gen_id), "chars": 1, "latency_s": 0.1,
                                                  "model_id": "m", "provider": "p"}),
            NewEvent(stream, "ResponseParsed", {"gen_id": gen_id, "attempt": 1, "parser": "score",
                                                "parsed_hash": text_hash("7"), "chars": 1}),
            NewEvent(stream, "ScoreRecorded", {"gen_id": gen_id, "attempt": 1, "score": 7, "scale": [0, 10]})]
    return events


def feed_cost(folder: Path, rounds: int = 12, per_round: int = 2000) -> None:
    ledgers = {"0005": _ledger_at(folder / "at0005.db", "0005_llm_calls_by_stream"),
               "0008": _ledger_at(folder / "at0008.db", "0008_scores_scale")}
    laps: dict[str, list[float]] = {name: [] for name in ledgers}
    for r in range(rounds):
        order = sorted(ledgers, reverse=bool(r % 2))  # alternate who goes first
        for name in order:
            events = _scored(f"{name}{r}", per_round)
            start = time.perf_counter()
            ledgers[name].append(events)
            laps[name].append((time.perf_counter() - start) / len(events))
    old, new = statistics.median(laps["0005"]), statistics.median(laps["0008"])
    print(f"append, scored evaluations: 0005 {old * 1e6:5.1f} µs/event, 0008 {new * 1e6:5.1f} µs/event "
          f"({new / old:.2f}x; medians of {rounds} batches of {per_round * 5} events)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--combos", type=int, default=100, help="combos (32 evaluations each)")
    parser.add_argument("--keep", type=Path, help="build in DIR and keep it")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        run(args.keep, args.combos)
        feed_cost(args.keep)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(Path(tmp), args.combos)
            feed_cost(Path(tmp))


if __name__ == "__main__":
    main()
