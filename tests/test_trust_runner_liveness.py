"""Liveness across hosts: a claim is live while its worker's heartbeat is recent, whatever host the
worker runs on. A worker that dies elsewhere is taken over after its grace; a live slow one never
is; and a run with nothing left but claims held elsewhere waits and says so.

A worker "on another host" is a real ``daydream run`` subprocess started with
``$DAYDREAM_WORKER_HOST``: it records another host name and is judged by its heartbeat alone (no
local pid check), exactly as a worker on another machine is. Every test here runs on a SQLite file
and on a PostgreSQL database (``ledger_url``, issue 17); several runners on several hosts, some
killed, are in test_pg_claims.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

from daydream.design.planner import plan_cohort
from daydream.ledger.store import Ledger
from daydream.testing import StubLLMServer
from tests.runner_fixtures import (KEY_ENV, daydream_cmd, drafts_spec, planned_ledger, stub_catalog, subprocess_env,
                                   write_spec)

ELSEWHERE = "host-b.example"


def start_run(ledger: Ledger, *extra: str, host: str | None = None, concurrency: int = 4) -> subprocess.Popen:
    env = subprocess_env(**{KEY_ENV: "k"}, **({"DAYDREAM_WORKER_HOST": host} if host else {}))
    return subprocess.Popen(daydream_cmd("run", "--db", str(ledger.path), "--quiet", "--concurrency",
                                         str(concurrency), *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_dead_worker_on_another_host_is_taken_over_after_its_grace(ledger_url: str, tmp_path: Path) -> None:
    grace = 2.0
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(4), db=ledger_url)
        server.hold()
        remote = start_run(ledger, "--claim-grace", str(grace), host=ELSEWHERE)
        wait_until(lambda: server.held == 4, "the remote worker's four requests")
        # A local run finds nothing but the remote's live claims: it waits, and says so …
        log = tmp_path / "local.err"
        with open(log, "w") as err_file:
            local = subprocess.Popen(daydream_cmd("run", "--db", str(ledger.path), "--quiet"),
                                     stdout=subprocess.PIPE, stderr=err_file, text=True,
                                     env=subprocess_env(**{KEY_ENV: "k"}))
            wait_until(lambda: "waiting for 4 claim(s) held by other workers" in log.read_text(),
                       "the local run to say it waits")
            os.kill(remote.pid, signal.SIGKILL)  # … then the other machine goes away mid-call
            remote.wait(timeout=30)
            server.release()
            (last_beat,) = ledger.query("SELECT heartbeat_at FROM workers WHERE host = :h", {"h": ELSEWHERE})[0]
            _out, _ = local.communicate(timeout=120)
        err = log.read_text()
        assert local.returncode == 0, err
        total = server.calls
    assert ELSEWHERE in err
    # It took over only once the remote heartbeat was older than the grace.
    takeovers = [e for e in ledger.events(type="LLMCallStarted") if "took_over" in e.payload]
    assert len(takeovers) == 4
    assert all(e.payload["took_over"]["worker"]["host"] == ELSEWHERE
               and "stopped heartbeating" in e.payload["took_over"]["reason"] for e in takeovers)
    assert min(seconds(e.recorded_at) for e in takeovers) - seconds(last_beat) >= grace
    # The four requests the dead worker sent are counted (LLMCallLost): the server's count matches the ledger's.
    lost = ledger.events(type="LLMCallLost")
    assert len(lost) == 4 and all(e.payload["sent"] is True for e in lost)
    outcomes = dict(ledger.query("SELECT outcome, COUNT(*) FROM llm_calls GROUP BY outcome"))
    assert outcomes == {"completed": 4, "unknown": 4} and total == 8
    assert ledger.query("SELECT DISTINCT status FROM gen_state") == [("completed",)]
    assert ledger.verify()[0] == ledger.last_seq()


def test_a_live_slow_worker_on_another_host_is_not_taken_over(ledger_url: str, tmp_path: Path) -> None:
    # Each answer takes 6 s, three times the remote worker's grace: only its heartbeat keeps its
    # claims, and a second runner must leave them alone (and wait for them, saying so).
    with StubLLMServer(latency_s=6.0) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(4), db=ledger_url)
        remote = start_run(ledger, "--claim-grace", "2", host=ELSEWHERE)
        wait_until(lambda: server.calls == 4, "the remote worker's four requests")
        local = start_run(ledger)
        local_out, local_err = local.communicate(timeout=120)
        remote_out, remote_err = remote.communicate(timeout=120)
        assert (remote.returncode, local.returncode) == (0, 0), (remote_err, local_err)
        assert server.calls == 4  # nothing was sent twice
    assert "waiting for 4 claim(s) held by other workers" in local_err and ELSEWHERE in local_err
    assert not ledger.events(type="LLMCallLost")
    assert not [e for e in ledger.events(type="LLMCallStarted") if "took_over" in e.payload]
    assert len([e for e in ledger.events(type="LLMCallCompleted") if not e.payload.get("superseded")]) == 4
    assert "this run: 0 completed" in local_out and "waited" in local_out
    assert ledger.verify()[0] == ledger.last_seq()


def test_heartbeats_live_in_a_table_not_in_the_hash_chain(ledger_url: str, tmp_path: Path) -> None:
    with StubLLMServer(latency_s=0.6) as server:
        ledger = Ledger.open(ledger_url)
        plan_cohort(ledger, write_spec(tmp_path, "t", drafts_spec(2)), stub_catalog(tmp_path, server.base_url),
                    cohort_id="t")
        before = ledger.count()
        proc = start_run(ledger, "--claim-grace", "0.5")  # a heartbeat every 0.1 s
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    (worker,) = ledger.query("SELECT host, started_at, heartbeat_at, grace_s, stopped_at FROM workers")
    host, started, beat, grace, stopped = worker
    assert grace == 0.5 and stopped is not None and seconds(beat) - seconds(started) >= 0.5
    # 2 generations: claim (2 events), answer (2 events) each; no event for any heartbeat.
    assert ledger.count() - before == 8
    ledger.verify()
