"""The runner end to end: offline model, a real loopback HTTP server, retries, failures, budgets.

What a run records in the ledger (calls, failures, budgets, reruns, replays, takeovers) is checked
on a SQLite file and on a PostgreSQL database (``ledger_url``, issue 17); how the provider client
retries, times out and paces requests does not depend on the ledger and runs on SQLite alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from daydream.cli import cli
from daydream.ledger.store import Ledger
from daydream.run.pending import pending_counts
from daydream.run.retry import retry_generations
from daydream.run.runner import RunOptions, run_cohort
from daydream.testing import Reply, StubLLMServer
from tests.runner_fixtures import (KEY_ENV, completed_calls_per_gen, drafts_spec, pipeline_spec,
                                   planned_ledger)

SECRET = "sk-test-NEVER-LEAK-4f9c2a7e1b"


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)


def options(**kw) -> RunOptions:
    base = RunOptions(retry_base_s=0.05, timeout_s=5.0)
    for k, v in kw.items():
        setattr(base, k, v)
    return base


def statuses(ledger: Ledger) -> dict[str, str]:
    return dict(ledger.query("SELECT gen_id, status FROM gen_state"))


def test_demo_runs_every_generation_to_completion_offline(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = CliRunner().invoke(cli, ["demo", "--db", str(db), "--quiet"])
    assert result.exit_code == 0, result.output
    ledger = Ledger.open(db)
    counts = pending_counts(ledger, "demo")
    assert all(c["completed"] == c["total"] > 0 for c in counts.values()), counts
    scores = ledger.query("SELECT score FROM gen_state WHERE stage = 'evaluation'")
    assert scores and all(s is not None and 0 <= s <= 9 for (s,) in scores)
    assert len({s for (s,) in scores}) > 1, "offline scores should not be flat"
    assert "top 5 essays" in result.output
    assert CliRunner().invoke(cli, ["verify", "--db", str(db)]).exit_code == 0
    # A second demo repeats nothing.
    before = ledger.count()
    again = CliRunner().invoke(cli, ["demo", "--db", str(db), "--quiet"])
    assert again.exit_code == 0
    assert ledger.count() == before


def test_success_records_call_details_and_sends_the_key(ledger_url: str, tmp_path: Path) -> None:
    with StubLLMServer(api_key=SECRET, cost_usd=0.0125) as server:
        ledger = planned_ledger(tmp_path, server.base_url, pipeline_spec(n_combos=1), db=ledger_url)
        stats = run_cohort(ledger, options())
        assert server.calls == 3  # draft, essay, evaluation
        assert all(r.authorized for r in server.records)
    assert stats.completed == 3 and stats.failed == 0
    call = ledger.events(type="LLMCallCompleted")[0].payload
    assert call["cost_usd"] == 0.0125 and call["prompt_tokens"] > 0 and call["completion_tokens"] > 0
    assert call["requested_model"] == "stub/test-model" and call["resolved_model"]
    assert call["request_id"] and call["finish_reason"] == "stop" and call["latency_s"] >= 0
    assert ledger.get_text(call["text_hash"])
    assert set(statuses(ledger).values()) == {"completed"}
    assert ledger.query("SELECT COUNT(*) FROM gen_state WHERE score IS NOT NULL") == [(1,)]


def test_429_retry_after_is_honoured(tmp_path: Path) -> None:
    with StubLLMServer(script=[Reply(status=429, headers={"Retry-After": "1"}, body={"error": "slow down"})]) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(1))
        start = time.monotonic()
        run_cohort(ledger, options())
        elapsed = time.monotonic() - start
        times = [r.received_at for r in server.records]
        assert server.calls == 2
    assert times[1] - times[0] >= 0.95, f"Retry-After: 1 not honoured ({times[1] - times[0]:.2f}s)"
    assert elapsed >= 0.95
    failed = ledger.events(type="LLMCallFailed")
    assert len(failed) == 1 and failed[0].payload["status"] == 429 and failed[0].payload["retryable"]
    assert set(statuses(ledger).values()) == {"completed"}


def test_500_then_success(tmp_path: Path) -> None:
    with StubLLMServer(script=[500]) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(1))
        run_cohort(ledger, options())
        assert server.calls == 2
    assert [e.payload["status"] for e in ledger.events(type="LLMCallFailed")] == [500]
    assert set(statuses(ledger).values()) == {"completed"}


def test_hanging_response_times_out_then_succeeds(tmp_path: Path) -> None:
    with StubLLMServer(script=[Reply(action="hang", hang_s=5)]) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(1))
        run_cohort(ledger, options(timeout_s=0.5))
        assert server.calls == 2
    failure = ledger.events(type="LLMCallFailed")[0].payload
    assert failure["retryable"] and "time" in failure["error_class"].lower() + failure["message"].lower()
    assert set(statuses(ledger).values()) == {"completed"}


def test_malformed_json_is_retried(tmp_path: Path) -> None:
    with StubLLMServer(script=["malformed"]) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(1))
        run_cohort(ledger, options())
        assert server.calls == 2
    assert len(ledger.events(type="LLMCallFailed")) == 1
    assert set(statuses(ledger).values()) == {"completed"}


def test_persistent_500_gives_up_after_max_tries(ledger_url: str, tmp_path: Path) -> None:
    with StubLLMServer(script=[500] * 10) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(1), db=ledger_url)
        run_cohort(ledger, options(max_tries=3))
        assert server.calls == 3
    assert set(statuses(ledger).values()) == {"failed"}
    reason = ledger.events(type="GenerationFailed")[0].payload["reason"]
    assert "gave up after 3 tries" in reason


def test_truncated_draft_fails_with_raw_text_kept(ledger_url: str, tmp_path: Path) -> None:
    with StubLLMServer(script=["length"]) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(1), db=ledger_url)
        run_cohort(ledger, options())
        assert server.calls == 1
    (gen_id, status, raw_hash, error), = ledger.query("SELECT gen_id, status, raw_hash, error FROM gen_state")
    assert status == "failed" and "truncated" in error
    assert ledger.get_text(raw_hash)
    assert ledger.events(type="GenerationFailed")[0].payload["raw_hash"] == raw_hash


def test_short_draft_fails_validation(tmp_path: Path) -> None:
    body = {"id": "x", "model": "m", "choices": [{"message": {"role": "assistant", "content": "one line only"},
                                                   "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3}}
    with StubLLMServer(script=[Reply(body=body)]) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(1))
        run_cohort(ledger, options())
    (status, error), = ledger.query("SELECT status, error FROM gen_state")
    assert status == "failed" and "too short" in error


def test_401_stops_the_model_without_a_retry_storm(tmp_path: Path) -> None:
    with StubLLMServer(api_key="the-right-key") as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(3), concurrency=1)
        result = CliRunner().invoke(cli, ["run", "--db", str(ledger.path), "--quiet"])
        assert server.calls == 1
    assert result.exit_code == 1
    assert "401" in result.output and KEY_ENV in result.output
    assert SECRET not in result.output
    # Nothing failed for good: the work waits for a fixed key.
    assert set(statuses(ledger).values()) == {"planned"}


def test_missing_key_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(2))
        result = CliRunner().invoke(cli, ["run", "--db", str(ledger.path), "--quiet"])
        assert server.calls == 0
    assert result.exit_code == 1 and KEY_ENV in result.output


def test_key_never_reaches_ledger_or_output(tmp_path: Path) -> None:
    with StubLLMServer(api_key=SECRET, script=[500, 429]) as server:
        ledger = planned_ledger(tmp_path, server.base_url, pipeline_spec(n_combos=2))
        result = CliRunner().invoke(cli, ["run", "--db", str(ledger.path)])
        assert result.exit_code == 0, result.output
    with StubLLMServer(api_key="another-key") as server:  # a refused key: error paths too
        other = planned_ledger(tmp_path / "b", server.base_url, drafts_spec(1)) if (tmp_path / "b").mkdir() is None else None
        refused = CliRunner().invoke(cli, ["run", "--db", str(other.path)])
    for path in (ledger.path, other.path):
        for suffix in ("", "-wal"):
            f = Path(str(path) + suffix)
            if f.exists():
                assert SECRET.encode() not in f.read_bytes()
    assert SECRET not in result.output and SECRET not in refused.output


def test_budget_stops_claiming(ledger_url: str, tmp_path: Path) -> None:
    with StubLLMServer(cost_usd=0.01) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(8), price_in=0.0, price_out=0.0,
                                concurrency=1, db=ledger_url)
        stats = run_cohort(ledger, options(budget=0.035))
        calls = server.calls
    assert stats.stopped_reason and "budget" in stats.stopped_reason
    # The prices say 0, the provider reports $0.01 a call: after the first answer no call is
    # assumed cheaper than that one, so 0.01 → 0.02 → 0.03 and the fourth would pass $0.035.
    assert calls == 3
    spent = ledger.query("SELECT SUM(cost_usd) FROM gen_state")[0][0]
    assert spent == pytest.approx(0.03)


def test_budget_estimate_from_prices_keeps_spend_under_budget(tmp_path: Path) -> None:
    with StubLLMServer() as server:  # no reported cost: computed from catalog prices
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(8), price_in=100.0, price_out=100.0,
                                max_tokens=500, concurrency=1)
        stats = run_cohort(ledger, options(budget=0.5))
    spent = ledger.query("SELECT SUM(cost_usd) FROM gen_state")[0][0]
    assert stats.stopped_reason and "budget" in stats.stopped_reason
    assert 0 < spent <= 0.5


def test_completed_generations_are_never_called_again(ledger_url: str, tmp_path: Path) -> None:
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, pipeline_spec(n_combos=2), db=ledger_url)
        run_cohort(ledger, options())
        first = server.calls
        run_cohort(ledger, options())
        assert server.calls == first == 6
    assert set(completed_calls_per_gen(ledger).values()) == {1}


def test_rerun_records_a_new_attempt_and_keeps_history(ledger_url: str, tmp_path: Path) -> None:
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(2), db=ledger_url)
        run_cohort(ledger, options())
        gen_id = ledger.query("SELECT gen_id FROM gen_state ORDER BY gen_id LIMIT 1")[0][0]
        result = CliRunner().invoke(cli, ["rerun", "--db", str(ledger.path), gen_id])
        assert result.exit_code == 0 and "1 generation" in result.output
        assert statuses(ledger)[gen_id] == "planned"
        run_cohort(ledger, options())
        assert server.calls == 3
    assert ledger.query("SELECT attempt, status FROM gen_state WHERE gen_id = ?", (gen_id,)) == [(2, "completed")]
    attempts = [e.payload["attempt"] for e in ledger.stream(f"gen:{gen_id}") if e.type == "LLMCallCompleted"]
    assert attempts == [1, 2]
    assert retry_generations(ledger, cohort="t", failed_only=True) == []
    bad = CliRunner().invoke(cli, ["rerun", "--db", str(ledger.path), "d_doesnotexist"])
    assert bad.exit_code == 1 and "d_doesnotexist" in bad.output
    usage = CliRunner().invoke(cli, ["rerun", "--db", str(ledger.path)])
    assert usage.exit_code == 2


def test_rpm_limit_spaces_requests(tmp_path: Path) -> None:
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(4), rpm=120, concurrency=4)
        run_cohort(ledger, options())
        times = sorted(r.received_at for r in server.records)
    # 120/min = one start every 0.5 s: four requests span at least ~1.5 s (less a little jitter in
    # when each reaches the server); without the limit they would arrive together.
    assert len(times) == 4 and times[-1] - times[0] >= 1.2, times


def test_replay_answers_from_another_ledger_without_network(ledger_url: str, tmp_path: Path) -> None:
    source = tmp_path / "source.db"
    assert CliRunner().invoke(cli, ["demo", "--db", str(source), "--quiet"]).exit_code == 0
    target = ledger_url  # a SQLite file or a PostgreSQL database, initialised

    assert CliRunner().invoke(cli, ["cohort", "plan", "specs/cohorts/demo.yaml", "--db", str(target),
                                    "--cohort-id", "demo"]).exit_code == 0
    result = CliRunner().invoke(cli, ["run", "--db", str(target), "--replay-from", str(source), "--quiet"])
    assert result.exit_code == 0, result.output
    a, b = Ledger.open(source), Ledger.open(target)
    q = "SELECT gen_id, parsed_hash, score FROM gen_state ORDER BY gen_id"
    assert a.query(q) == b.query(q)
    assert {e.payload["provider"] for e in b.events(type="LLMCallCompleted")} == {"replay"}


def test_every_seed_template_renders_with_stage_variables(seed_data: Path) -> None:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    from daydream import plugins
    from daydream.contracts import StageInput

    env = SandboxedEnvironment(undefined=StrictUndefined)
    concepts = [{"id": "a", "name": "Alpha", "content": "Alpha is a thing."},
                {"id": "b", "name": "Beta", "content": "Beta is another."}]
    rendered = 0
    for stage_name in ("draft", "essay", "evaluation"):
        stage = plugins.stages().get(stage_name)
        parent = None if stage_name == "draft" else "Some parsed parent text.\nWith lines."
        variables = stage.variables(StageInput("x", concepts, parent, stage.parent_stage))
        for path in sorted((seed_data / "1_raw" / "templates" / stage_name).glob("*.txt")):
            text = env.from_string(path.read_text()).render(**variables)
            assert text.strip(), path
            rendered += 1
    assert rendered >= 40


def test_a_call_whose_claim_was_taken_over_is_recorded_as_superseded(ledger_url: str, tmp_path: Path) -> None:
    """Runner A's heartbeat stops mid-call (a stalled worker); runner B takes the claim over after
    A's grace. Both calls are recorded (both were paid), only the current claimant's answer is
    projected and parsed, and A's late answer stands in llm_calls for the request B recorded lost.
    On SQLite and on PostgreSQL (issue 17)."""
    import asyncio

    from daydream.run.runner import Runner

    with StubLLMServer(latency_s=0.8) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(1), db=ledger_url)

        async def both() -> None:
            # A beats once (when it starts) and never again: after 0.3 s its claims are fair game.
            first = Runner(ledger, options(claim_grace_s=0.3, heartbeat_s=3600))
            task = asyncio.create_task(first.run())
            await asyncio.sleep(0.5)  # A's call is in flight and its heartbeat is stale
            await Runner(ledger, options()).run()
            await task

        asyncio.run(both())
        assert server.calls == 2
    completed = ledger.events(type="LLMCallCompleted")
    assert len(completed) == 2
    assert [bool(e.payload.get("superseded")) for e in completed].count(True) == 1
    assert ledger.query("SELECT status, calls FROM gen_state") == [("completed", 1)]
    assert len(ledger.events(type="ResponseParsed")) == 1
    (lost,) = ledger.events(type="LLMCallLost")
    late = next(e for e in completed if e.payload.get("superseded"))
    assert late.payload["answers_lost_seq"] == lost.seq
    assert [r[0] for r in ledger.query("SELECT outcome FROM llm_calls ORDER BY seq")] == ["completed", "completed"]


def test_no_call_outlives_its_lease(tmp_path: Path) -> None:
    """A server that never finishes (per-read timeouts never fire while bytes trickle) is cut off at
    90% of the lease, recorded as a retryable timeout, and the retry succeeds."""
    with StubLLMServer(script=[Reply(action="hang", hang_s=10)]) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(1))
        start = time.monotonic()
        run_cohort(ledger, options(timeout_s=60, lease_s=1.5))
        assert time.monotonic() - start < 8
        assert server.calls == 2
    failure = ledger.events(type="LLMCallFailed")[0].payload
    assert failure["error_class"] == "Timeout" and "lease" in failure["message"] and failure["retryable"]
    assert set(statuses(ledger).values()) == {"completed"}


@pytest.mark.parametrize("round_", range(3))
def test_every_generation_is_parsed_once_even_while_its_result_waits_for_the_writer(
        tmp_path: Path, round_: int) -> None:
    # Copy-mode essays finish without a call, so their results pile up for the writer while the
    # feeder looks for more work; a result not yet committed must not be started a second time.
    db = tmp_path / "demo.db"
    result = CliRunner().invoke(cli, ["demo", "--db", str(db), "--quiet"])
    assert result.exit_code == 0, result.output
    ledger = Ledger.open(db, readonly=True)
    twice = ledger.query("SELECT stream, COUNT(*) FROM events WHERE type = 'ResponseParsed' "
                         "GROUP BY stream HAVING COUNT(*) > 1")
    assert twice == []
    assert ledger.count("ResponseParsed") == ledger.query("SELECT COUNT(*) FROM gen_state")[0][0]
