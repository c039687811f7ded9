"""Local calls (offline, replay) record their claim with their outcome, in one commit (issue 15:
half the commits of an offline run), and only while the generation is still planned."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from daydream.ledger.events import LLMCallCompleted, LLMCallStarted, PromptRendered, ResponseParsed
from daydream.ledger.store import Ledger, text_hash
from daydream.run.claims import worker_identity
from daydream.run.feed import Feed
from daydream.run.job import Job, LostCalls
from daydream.run.options import RunOptions
from daydream.run.runner import run_cohort
from daydream.run.stats import RunStats
from daydream.run.writer import Writer, WriteItem
from tests.pg_fixtures import ledger_url, pg_server, pg_template, pg_url  # noqa: F401
from tests.runner_fixtures import drafts_spec, planned_ledger


def test_an_offline_generation_is_claimed_and_answered_in_one_append(tmp_path: Path,
                                                                     ledger_url: str) -> None:  # noqa: F811
    ledger = planned_ledger(tmp_path, "http://127.0.0.1:9", drafts_spec(n_combos=4, model="offline"),
                            db=ledger_url)
    stats = run_cohort(ledger, RunOptions(cohort="t"))
    assert stats.completed == 4 and stats.failed == 0
    for gen_id, in ledger.query("SELECT gen_id FROM gen_state WHERE stage = 'draft'"):
        run = [e for e in ledger.stream(f"gen:{gen_id}") if e.type != "GenerationPlanned"]
        # Claim (rendered, started), answer and parse: consecutive seqs, one recorded_at: one append.
        assert [e.type for e in run] == [PromptRendered.TYPE, LLMCallStarted.TYPE, LLMCallCompleted.TYPE,
                                         ResponseParsed.TYPE]
        assert [e.seq - run[0].seq for e in run] == [0, 1, 2, 3]
        assert len({e.recorded_at for e in run}) == 1
    assert ledger.query("SELECT COUNT(*) FROM gen_state WHERE status = 'completed'")[0][0] == 4
    assert ledger.verify()[0] == ledger.last_seq()


def test_a_local_answer_for_a_generation_claimed_meanwhile_is_dropped(tmp_path: Path,
                                                                      ledger_url: str) -> None:  # noqa: F811
    ledger: Ledger = planned_ledger(tmp_path, "http://127.0.0.1:9", drafts_spec(n_combos=2, model="offline"),
                                    db=ledger_url)
    worker = {"host": "h", "pid": 1, "start": None, "machine": None, "run": "mine"}
    feed = Feed(ledger, RunOptions(cohort="t"), ["draft"], worker, RunStats(), lambda _line: None)
    first, second = feed.next(2, 0, lambda gen: True)
    other = {"host": "elsewhere", "pid": 9, "start": None, "machine": None, "run": "theirs"}
    # Another worker claims the first generation after we read it as planned.
    ledger.append([LLMCallStarted(gen_id=first.gen_id, attempt=1, call=1, model_id="offline", provider="offline",
                                  provider_model="offline", lease_until="2999-01-01T00:00:00.000Z", worker=other,
                                  sends_marked=False).new()])
    writer = Writer(ledger, RunOptions(cohort="t"), worker_identity(), RunStats(), LostCalls({}, lambda _m: "x"),
                    say=lambda _line: None, on_error=lambda exc: None, on_written=lambda: None)

    def claimed(gen):  # what a local call hands over: its claim and its answer together
        return WriteItem("claimed", Job(gen), [
            PromptRendered(gen_id=gen.gen_id, attempt=1, prompt_hash=text_hash("prompt"), chars=6, template_id="t",
                           template_hash=None),
            LLMCallStarted(gen_id=gen.gen_id, attempt=1, call=1, model_id="offline", provider="offline",
                           provider_model="offline", lease_until="2999-01-01T00:00:00.000Z",
                           worker=json.loads(writer.worker_json), sends_marked=False),
            LLMCallCompleted(gen_id=gen.gen_id, attempt=1, call=1, try_=1, text_hash=text_hash("answer"), chars=1,
                             model_id="offline", provider="offline", finish_reason="stop", prompt_tokens=1,
                             completion_tokens=1, cost_usd=0.0, latency_s=0.0, requested_model="offline",
                             resolved_model="offline", request_id=None, offline=True)], ["prompt", "answer"])

    async def scenario() -> list[bool]:
        done = writer.start(asyncio.get_running_loop())
        outcome = await asyncio.gather(writer.submit(claimed(first)), writer.submit(claimed(second)))
        writer.close()
        await done
        return list(outcome)

    assert asyncio.run(scenario()) == [False, True]
    assert [e.type for e in ledger.stream(f"gen:{first.gen_id}")][1:] == [LLMCallStarted.TYPE]  # theirs only
    assert ledger.query("SELECT status FROM gen_state WHERE gen_id = :g", {"g": second.gen_id})[0][0] == "running"
    assert ledger.verify()[0] == ledger.last_seq()
