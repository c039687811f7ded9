"""Crash safety with real processes: kill -9 mid-run, Ctrl-C, and two runners on one ledger, each on
a SQLite file and on a PostgreSQL database (``ledger_url``, issue 17)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from daydream.ledger import projections
from daydream.ledger.store import Ledger
from daydream.testing import StubLLMServer
from tests.runner_fixtures import (KEY_ENV, completed_calls_per_gen, daydream_cmd, pipeline_spec,
                                   planned_ledger, subprocess_env)


def llm_gen_ids(ledger: Ledger) -> set[str]:
    return {g for (g,) in ledger.query("SELECT gen_id FROM gen_state WHERE generator = 'llm'")}


def start_run(ledger: Ledger, *extra: str, concurrency: int = 4) -> subprocess.Popen:
    return subprocess.Popen(daydream_cmd("run", "--db", str(ledger.path), "--quiet", "--concurrency",
                                         str(concurrency), *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env(**{KEY_ENV: "k"}))


def wait_for_calls(server: StubLLMServer, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while server.calls < n:
        assert time.monotonic() < deadline, f"only {server.calls} calls arrived"
        time.sleep(0.01)


def assert_each_generation_called_once(ledger: Ledger) -> None:
    per_gen = completed_calls_per_gen(ledger)
    expected = llm_gen_ids(ledger)
    assert set(per_gen) == expected
    assert set(per_gen.values()) == {1}, {g: n for g, n in per_gen.items() if n != 1}
    assert ledger.query("SELECT DISTINCT status FROM gen_state") == [("completed",)]
    ledger.verify()
    assert projections.check(ledger).drift == []  # claims, takeovers, releases: a replay agrees


@pytest.mark.parametrize("kill_after_calls", [1, 7, 16])
def test_kill_9_then_rerun_pays_for_nothing_twice(ledger_url: str, tmp_path: Path, kill_after_calls: int) -> None:
    with StubLLMServer(latency_s=0.25) as server:
        ledger = planned_ledger(tmp_path, server.base_url, pipeline_spec(n_combos=4, eval_replicates=2), db=ledger_url)
        n_llm = len(llm_gen_ids(ledger))  # 4 drafts + 4 essays + 8 evaluations
        proc = start_run(ledger)
        wait_for_calls(server, kill_after_calls)
        time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        calls_at_kill = server.calls
        answered = ledger.count("LLMCallCompleted") + ledger.count("LLMCallFailed")
        in_flight_at_kill = calls_at_kill - answered
        assert ledger.count("LLMCallStarted") >= answered  # claims came before calls
        rerun = start_run(ledger)
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        total_calls = server.calls
    assert_each_generation_called_once(ledger)
    assert total_calls <= n_llm + in_flight_at_kill, (total_calls, n_llm, in_flight_at_kill)


def test_two_runners_on_one_ledger_never_make_a_call_twice(ledger_url: str, tmp_path: Path) -> None:
    with StubLLMServer(latency_s=0.2) as server:
        ledger = planned_ledger(tmp_path, server.base_url, pipeline_spec(n_combos=10, eval_replicates=2), db=ledger_url)
        n_llm = len(llm_gen_ids(ledger))  # 40 calls of 0.2 s, two at a time: ~4 s, so they overlap
        procs = [start_run(ledger, concurrency=2), start_run(ledger, concurrency=2)]
        results = [p.communicate(timeout=180) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [err for _out, err in results]
        assert server.calls == n_llm
    assert_each_generation_called_once(ledger)
    workers = {e.payload["worker"]["pid"] for e in ledger.events(type="LLMCallStarted")}
    assert len(workers) == 2, "both runners should have taken a share of the work"


def test_ctrl_c_stops_cleanly_with_130_and_a_rerun_finishes(ledger_url: str, tmp_path: Path) -> None:
    with StubLLMServer(latency_s=0.3) as server:
        ledger = planned_ledger(tmp_path, server.base_url, pipeline_spec(n_combos=4, eval_replicates=2), db=ledger_url)
        n_llm = len(llm_gen_ids(ledger))
        proc = start_run(ledger)
        wait_for_calls(server, 5)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        calls_at_stop = server.calls
        released = [e for e in ledger.events(type="LLMCallFailed") if e.payload.get("released")]
        released += ledger.events(type="LLMCallLost")  # sent, interrupted before the answer
        assert ledger.query("SELECT COUNT(*) FROM gen_state WHERE status = 'running'") == [(0,)]
        rerun = start_run(ledger)
        _out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        assert server.calls <= n_llm + len(released)
        assert calls_at_stop < n_llm
    per_gen = completed_calls_per_gen(ledger)
    assert set(per_gen) == llm_gen_ids(ledger)
    assert ledger.query("SELECT DISTINCT status FROM gen_state") == [("completed",)]
    ledger.verify()
