"""Claims across hosts on a PostgreSQL ledger (issue 17): real ``daydream run`` processes, one of
them "on another host" (``$DAYDREAM_WORKER_HOST``: judged by its heartbeat alone), against one
PostgreSQL ledger and a loopback LLM server. Heartbeats and leases are compared with the database
server's clock. A worker killed with SIGKILL mid-call is taken over once its heartbeat is older
than its grace, and nothing is lost; a live slow one is never taken over."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from daydream.design.planner import plan_cohort
from daydream.ledger.store import Ledger
from daydream.testing import StubLLMServer
from tests.pg_fixtures import pg_server, pg_template, pg_url  # noqa: F401
from tests.runner_fixtures import KEY_ENV, daydream_cmd, drafts_spec, stub_catalog, subprocess_env, write_spec
from tests.test_trust_runner_liveness import ELSEWHERE, seconds, wait_until


def planned(tmp: Path, url: str, base_url: str, n: int) -> Ledger:
    ledger = Ledger.open(url)
    plan_cohort(ledger, write_spec(tmp, "t", drafts_spec(n)), stub_catalog(tmp, base_url), cohort_id="t")
    return ledger


def start_run(url: str, *extra: str, host: str | None = None, stderr=subprocess.PIPE) -> subprocess.Popen:
    env = subprocess_env(**{KEY_ENV: "k"}, **({"DAYDREAM_WORKER_HOST": host} if host else {}))
    return subprocess.Popen(daydream_cmd("run", "--db", url, "--quiet", "--concurrency", "4", *extra),
                            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)


def test_a_worker_killed_on_another_host_is_taken_over_after_its_grace(pg_url: str, tmp_path: Path) -> None:
    grace = 2.0
    with StubLLMServer() as server:
        ledger = planned(tmp_path, pg_url, server.base_url, 4)
        server.hold()
        remote = start_run(pg_url, "--claim-grace", str(grace), host=ELSEWHERE)
        wait_until(lambda: server.held == 4, "the remote worker's four requests")
        log = tmp_path / "local.err"
        with open(log, "w") as err_file:
            local = start_run(pg_url, stderr=err_file)
            wait_until(lambda: "waiting for 4 claim(s) held by other workers" in log.read_text(),
                       "the local run to say it waits")
            os.kill(remote.pid, signal.SIGKILL)
            remote.wait(timeout=30)
            server.release()
            (last_beat,) = ledger.query("SELECT heartbeat_at FROM workers WHERE host = :h", {"h": ELSEWHERE})[0]
            local.communicate(timeout=120)
        assert local.returncode == 0, log.read_text()
        total = server.calls
    takeovers = [e for e in ledger.events(type="LLMCallStarted") if "took_over" in e.payload]
    assert len(takeovers) == 4
    assert all(e.payload["took_over"]["worker"]["host"] == ELSEWHERE for e in takeovers)
    assert min(seconds(e.recorded_at) for e in takeovers) - seconds(last_beat) >= grace
    outcomes = dict(ledger.query("SELECT outcome, COUNT(*) FROM llm_calls GROUP BY outcome"))
    assert outcomes == {"completed": 4, "unknown": 4} and total == 8
    assert ledger.query("SELECT DISTINCT status FROM gen_state") == [("completed",)]
    assert ledger.verify()[0] == ledger.last_seq()


def test_a_live_slow_worker_on_another_host_is_not_taken_over(pg_url: str, tmp_path: Path) -> None:
    with StubLLMServer(latency_s=6.0) as server:
        ledger = planned(tmp_path, pg_url, server.base_url, 4)
        remote = start_run(pg_url, "--claim-grace", "2", host=ELSEWHERE)
        wait_until(lambda: server.calls == 4, "the remote worker's four requests")
        local = start_run(pg_url)
        local_out, local_err = local.communicate(timeout=120)
        _remote_out, remote_err = remote.communicate(timeout=120)
        assert (remote.returncode, local.returncode) == (0, 0), (remote_err, local_err)
        assert server.calls == 4  # nothing was sent twice
    assert "waiting for 4 claim(s) held by other workers" in local_err and ELSEWHERE in local_err
    assert not [e for e in ledger.events(type="LLMCallStarted") if "took_over" in e.payload]
    assert len([e for e in ledger.events(type="LLMCallCompleted") if not e.payload.get("superseded")]) == 4
    assert ledger.verify()[0] == ledger.last_seq()


def test_two_of_four_runners_killed_mid_run_the_survivors_finish_and_nothing_is_lost(
        pg_url: str, tmp_path: Path) -> None:
    grace = 2.0
    with StubLLMServer() as server:
        ledger = planned(tmp_path, pg_url, server.base_url, 16)
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
