"""--budget is a hard ceiling on money committed (issue 11), against the loopback server with prices.

A call goes out only if spent + the worst case of the calls in flight + its own worst case fits;
the worst case is the rendered prompt's estimated tokens x price_in + max_tokens x price_out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from daydream.ledger.store import Ledger
from daydream.run.budget import Budget
from daydream.run.job import Job
from daydream.run.pending import PendingGeneration
from daydream.run.runner import RunOptions, run_cohort
from daydream.run.stats import RunStats
from daydream.testing import Reply, StubLLMServer
from tests.runner_fixtures import KEY_ENV, drafts_spec, planned_ledger, run_cli, subprocess_env

MAX_TOKENS = 1000
PRICE_OUT = 10.0  # USD per 1M tokens: a call's output may cost up to $0.01
W = MAX_TOKENS * PRICE_OUT / 1e6  # with price_in 0, every call's worst case


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "k")


def options(**kw) -> RunOptions:
    base = RunOptions(retry_base_s=0.05, timeout_s=5.0)
    for k, v in kw.items():
        setattr(base, k, v)
    return base


def spent(ledger: Ledger) -> float:
    return ledger.query("SELECT COALESCE(SUM(cost_usd), 0) FROM gen_state")[0][0]


def started_calls(ledger: Ledger) -> int:
    return ledger.query("SELECT COUNT(*) FROM events WHERE type = 'LLMCallStarted'")[0][0]


def test_a_budget_below_one_calls_worst_case_sends_nothing_and_says_why(tmp_path: Path) -> None:
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(3), price_in=0.0, price_out=PRICE_OUT,
                                max_tokens=MAX_TOKENS, concurrency=2)
        before = ledger.query("SELECT COUNT(*) FROM events")[0][0]
        stats = run_cohort(ledger, options(budget=W * 0.9))
        assert server.calls == 0
    assert stats.calls == 0 and stats.budget_left_pending == 3
    line = stats.stopped_reason or ""
    assert line.startswith("budget $0.009000 reached: $0 spent, $0 reserved, $0.009000 left")
    assert "needs up to $0.0100" in line and "3 call(s) were left pending" in line
    # Nothing claimed, nothing failed: the work is still pending for a run with more money.
    assert ledger.query("SELECT COUNT(*) FROM events")[0][0] == before
    assert ledger.query("SELECT status, COUNT(*) FROM gen_state GROUP BY status") == [("planned", 3)]


def test_the_cli_prints_the_stop_line_and_leaves_the_work_pending(tmp_path: Path) -> None:
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(2), price_in=0.0, price_out=PRICE_OUT,
                                max_tokens=MAX_TOKENS)
        done = run_cli("run", "--budget", "0.001", "--db", str(ledger.path), "--quiet",
                       env=subprocess_env(**{KEY_ENV: "k"}))
        assert server.calls == 0
    assert "stopped: budget $0.001000 reached: $0 spent, $0 reserved, $0.001000 left" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr
    assert done.returncode == 3  # finished, with work left undone
    as_json = run_cli("run", "--budget", "0.001", "--db", str(ledger.path), "--json",
                      env=subprocess_env(**{KEY_ENV: "k"}))
    summary = json.loads(as_json.stdout)
    assert summary["budget_usd"] == 0.001 and summary["budget_left_pending"] == 2 and summary["calls"] == 0


@pytest.mark.parametrize("concurrency", [1, 4])
def test_ten_worst_cases_buy_at_least_ten_calls_and_never_more_than_the_budget(tmp_path: Path,
                                                                              concurrency: int) -> None:
    # The provider reports each call at its worst case: exactly ten fit.
    with StubLLMServer(cost_usd=W) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(14), price_in=0.0, price_out=PRICE_OUT,
                                max_tokens=MAX_TOKENS, concurrency=concurrency)
        budget = 10 * W
        stats = run_cohort(ledger, options(budget=budget, concurrency=concurrency))
        assert server.calls == 10
    assert started_calls(ledger) == 10 and stats.budget_left_pending == 4
    assert spent(ledger) <= budget + 1e-12 and stats.spent_usd == pytest.approx(budget)
    assert ledger.query("SELECT status, COUNT(*) FROM gen_state GROUP BY status ORDER BY 1") == [
        ("completed", 10), ("planned", 4)]


def test_cheap_answers_let_more_calls_through_than_the_worst_case_alone(tmp_path: Path) -> None:
    # Catalog prices only: real answers are far below max_tokens, so reservations come back.
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(14), price_in=0.0, price_out=PRICE_OUT,
                                max_tokens=MAX_TOKENS, concurrency=3)
        stats = run_cohort(ledger, options(budget=3 * W, concurrency=3))
        calls = server.calls
    assert 3 < calls < 14  # more than floor(B / w), and the money still ran out before the work
    assert stats.budget_left_pending == 14 - calls and 0 < spent(ledger) <= 3 * W
    # It stopped only when the next worst case no longer fitted beside what was spent.
    assert spent(ledger) + W > 3 * W


def test_reported_cost_above_the_estimate_stops_before_the_budget_is_passed(tmp_path: Path) -> None:
    # The provider charges three times what the prices say a call may cost at most.
    with StubLLMServer(cost_usd=3 * W) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(10), price_in=0.0, price_out=PRICE_OUT,
                                max_tokens=MAX_TOKENS, concurrency=1)
        stats = run_cohort(ledger, options(budget=10 * W, concurrency=1))
        assert server.calls == 3  # 3w, 6w, 9w: a fourth at 12w would pass 10w
    assert spent(ledger) == pytest.approx(9 * W) and spent(ledger) <= 10 * W
    assert "needs up to $0.0300" in (stats.stopped_reason or "")


def _job(prompt: str, model_id: str = "m") -> Job:
    gen = PendingGeneration(gen_id="d_1", stage="draft", parent_gen_id=None, combo_id=None, template_id="t",
                            template_hash=None, generator="llm", parser=None, model_id=model_id, replicate=1,
                            attempt=None, status="planned", worker=None, lease_until=None,
                            parent_parsed_hash=None, planned_seq=1)
    return Job(gen, prompt=prompt)


def test_the_worst_case_uses_the_prompts_real_length_and_learns_from_reported_tokens() -> None:
    model = {"id": "m", "price_in": 2.0, "price_out": 10.0, "max_tokens": 100}
    budget = Budget(1.0, RunStats())
    short, long = _job("x" * 400), _job("x" * 40_000)
    assert budget.worst_case(short, model) == pytest.approx((100 * 2.0 + 100 * 10.0) / 1e6)
    assert budget.worst_case(long, model) == pytest.approx((10_000 * 2.0 + 100 * 10.0) / 1e6)
    # The model reports 1 token per 2 characters: later prompts are estimated at that rate.
    budget.observe(short, cost=None, prompt_tokens=200)
    assert budget.prompt_tokens("m", "x" * 1000) == 500
    assert budget.worst_case(long, model) == pytest.approx((20_000 * 2.0 + 100 * 10.0) / 1e6)
    # A model without max_tokens has no bound: a fixed allowance stands in, never 0.
    assert budget.worst_case(short, {"id": "m", "price_in": 0, "price_out": 1.0}) > 0


def test_an_answer_without_usage_gets_an_estimated_cost_marked_as_such(tmp_path: Path) -> None:
    text = "\n".join(f"- idea {i}: a bottleneck that feeds back into itself" for i in range(8))
    body = {"id": "x", "object": "chat.completion", "model": "stub/test-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
    with StubLLMServer(script=[Reply(body=body)]) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(2), price_in=1.0, price_out=2.0,
                                max_tokens=MAX_TOKENS, concurrency=1)
        stats = run_cohort(ledger, options(concurrency=1))
        prompt = server.records[0].prompt or ""
    calls = [json.loads(p) for (p,) in ledger.query(
        "SELECT payload FROM events WHERE type = 'LLMCallCompleted' ORDER BY seq")]
    estimated = [c for c in calls if c.get("cost_estimated")]
    assert len(estimated) == 1 and estimated[0]["prompt_tokens"] is None
    expected = (math.ceil(len(prompt) / 4) * 1.0 + math.ceil(len(text) / 4) * 2.0) / 1e6
    assert estimated[0]["cost_usd"] == pytest.approx(expected)
    assert all("cost_estimated" not in c for c in calls if c is not estimated[0])  # usage reported: not marked
    assert stats.estimated_calls == 1 and stats.estimated_usd == pytest.approx(expected)
    assert stats.spent_usd == pytest.approx(sum(c["cost_usd"] for c in calls))
