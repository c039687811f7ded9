"""Every request that left is on record: a runner killed between sending and hearing back leaves
calls that the next run records as lost (outcome unknown, cost estimated), and the ledger's count
of calls matches what the server received. On a SQLite file and on a PostgreSQL database (``ledger_url``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from daydream.ledger import projections
from daydream.ledger.store import Ledger
from daydream.testing import StubLLMServer
from tests.runner_fixtures import KEY_ENV, daydream_cmd, drafts_spec, planned_ledger, run_cli, subprocess_env

PRICE_IN, PRICE_OUT = 1.0, 2.0  # runner_fixtures' stub model, USD per million tokens


def start_run(ledger: Ledger, *extra: str, concurrency: int = 4, **env: str) -> subprocess.Popen:
    return subprocess.Popen(daydream_cmd("run", "--db", str(ledger.path), "--quiet", "--concurrency",
                                         str(concurrency), *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env(**{KEY_ENV: "k"}, **env))


def wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def recorded_requests(ledger: Ledger) -> dict[str, int]:
    """Requests the ledger knows were made, by outcome (every llm_calls row is one request)."""
    return dict(ledger.query("SELECT outcome, COUNT(*) FROM llm_calls GROUP BY outcome"))


def expected_estimate(ledger: Ledger, lost_seq: int, gen_id: str, attempt: int) -> float:
    """What the estimate should be: prompt chars / 4 at the input price, plus the median completion
    of the draft calls completed before the takeover at the output price."""
    (chars,) = [e.payload["chars"] for e in ledger.stream(f"gen:{gen_id}")
                if e.type == "PromptRendered" and e.payload["attempt"] == attempt][-1:]
    done = sorted(e.payload["completion_tokens"] for e in ledger.events(type="LLMCallCompleted")
                  if e.seq < lost_seq and not e.payload.get("superseded"))
    median = done[len(done) // 2]
    return round((-(-chars // 4) * PRICE_IN + median * PRICE_OUT) / 1e6, 8)


@pytest.mark.parametrize("answered_first", [0, 3])
def test_requests_sent_by_a_killed_runner_are_counted_and_estimated(ledger_url: str, tmp_path: Path,
                                                                    answered_first: int) -> None:
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(10), db=ledger_url)
        # Answer the first few, then hold every request: the runner has sent them, hears nothing.
        server.hold(after=answered_first)
        proc = start_run(ledger)
        wait_until(lambda: server.held == 4, "four requests in flight")  # --concurrency 4
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        server.release()  # their answers go to a dead socket
        assert server.calls == answered_first + 4
        before = recorded_requests(ledger)
        # Before anyone takes over, the ledger already shows them: sent, no answer yet.
        assert before == ({"completed": answered_first} if answered_first else {}) | {"open": 4}

        rerun = start_run(ledger)
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        total = server.calls

    # Every request the server received is a row of llm_calls, the lost ones included.
    counts = recorded_requests(ledger)
    assert counts == {"completed": 10, "unknown": 4}
    assert sum(counts.values()) == total == 14
    # The takeover recorded them with an estimate, and said so.
    lost = ledger.events(type="LLMCallLost")
    assert len(lost) == 4 and all(e.payload["sent"] is True for e in lost)
    assert "took over" in err and "recorded as lost" in err
    for event in lost:
        p = event.payload
        if answered_first:
            assert p["estimated_cost_usd"] == pytest.approx(expected_estimate(ledger, event.seq, p["gen_id"], 1))
            assert "median of 3 completed calls" in p["estimate_basis"]
        else:  # nothing completed yet to go by: no max_tokens in the stub model either
            assert p["estimated_cost_usd"] is None and "completion unknown" in p["estimate_basis"]
        started = [e for e in ledger.stream(f"gen:{p['gen_id']}") if e.type == "LLMCallStarted"]
        assert [e.payload["call"] for e in started] == [1, 2]  # the new claim numbers its call after the lost one
        assert started[1].payload["took_over"]["lost_requests"] == 1
    estimate = sum(e.payload["estimated_cost_usd"] or 0 for e in lost)
    # spend and status count them apart from the money the provider reported.
    spend = ledger.query("SELECT calls, lost_calls, estimated_cost_usd FROM spend WHERE cohort_id = 't'")
    assert spend == [(10, 4, round(estimate, 6) if answered_first else None)]
    status = run_cli("status", "t", "--db", str(ledger.path), "--json")
    draft = json.loads(status.stdout)["cohorts"]["t"]["draft"]
    assert (draft["calls"], draft["lost_calls"], draft["completed"]) == (10, 4, 10)
    assert draft["estimated_cost_usd"] == (round(estimate, 6) if answered_first else None)
    table = run_cli("status", "t", "--db", str(ledger.path)).stdout
    assert "+4 lost" in table
    ledger.verify()
    assert projections.check(ledger).drift == []


def test_a_request_interrupted_by_ctrl_c_is_lost_and_an_unsent_claim_is_not(ledger_url: str, tmp_path: Path) -> None:
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(6), db=ledger_url)
        server.hold()
        proc = start_run(ledger, concurrency=2)
        wait_until(lambda: server.held == 2, "two requests in flight")
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        server.release()
        assert server.calls == 2
    assert recorded_requests(ledger) == {"unknown": 2}
    assert [e.payload["reason"] for e in ledger.events(type="LLMCallLost")] == [
        "run interrupted before the answer arrived"] * 2
    # The claims were given back: nothing is running, everything is pending again.
    assert ledger.query("SELECT status, COUNT(*) FROM gen_state GROUP BY status") == [("planned", 6)]
