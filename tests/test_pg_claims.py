"""Claims across several hosts on one PostgreSQL ledger (issue 17): four real ``daydream run``
processes, each "on its own host" (``$DAYDREAM_WORKER_HOST``: judged by its heartbeat alone), against
a loopback LLM server; two are killed with SIGKILL mid-call, the survivors take their work over
after the grace and nothing is lost. Heartbeats and leases are compared with the database server's
clock. (Several hosts sharing one ledger is what PostgreSQL is for; one worker taken over, or a live
slow one left alone, runs on both backends in test_trust_runner_liveness.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from daydream.testing import StubLLMServer
from tests.runner_fixtures import KEY_ENV, daydream_cmd, drafts_spec, planned_ledger, subprocess_env
from tests.test_trust_runner_liveness import wait_until


def test_two_of_four_runners_killed_mid_run_the_survivors_finish_and_nothing_is_lost(
        pg_url: str, tmp_path: Path) -> None:
    grace = 2.0
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(16), db=pg_url)
        server.hold()
        runners = [subprocess.Popen(
            daydream_cmd("run", "--db", pg_url, "--quiet", "--concurrency", "2", "--claim-grace", str(grace)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=subprocess_env(**{KEY_ENV: "k", "DAYDREAM_WORKER_HOST": f"host-{i}.example"})) for i in range(4)]
        wait_until(lambda: server.held == 8, "two requests in flight from each of the four runners")
        for victim in runners[:2]:
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(timeout=30)
        server.release()
        for survivor in runners[2:]:
            _out, err = survivor.communicate(timeout=180)
            assert survivor.returncode == 0, err
        total = server.calls
    assert ledger.query("SELECT status, COUNT(*) FROM gen_state GROUP BY status") == [("completed", 16)]
    takeovers = [e for e in ledger.events(type="LLMCallStarted") if "took_over" in e.payload]
    assert sorted({e.payload["took_over"]["worker"]["host"] for e in takeovers}) == ["host-0.example", "host-1.example"]
    assert len(takeovers) == 4
    # Every request sent is on record: the killed runners' four as unknown, each generation answered once.
    outcomes = dict(ledger.query("SELECT outcome, COUNT(*) FROM llm_calls GROUP BY outcome"))
    assert outcomes == {"completed": 16, "unknown": 4} and total == 20
    completed = [e for e in ledger.events(type="LLMCallCompleted") if not e.payload.get("superseded")]
    assert len({e.payload["gen_id"] for e in completed}) == len(completed) == 16
    assert ledger.verify()[0] == ledger.last_seq()
