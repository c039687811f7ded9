"""Runner-side errors end visibly: failures grouped by reason with the next step and exit 3, an
endpoint that fails every call stops its model (exit 1), --replay-from a file with nothing to
replay records nothing, answers over the size limit are cut and marked, and ``daydream failures``
lists what is left failed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from daydream.ledger.store import Ledger
from daydream.testing import Reply, StubLLMServer
from tests.runner_fixtures import KEY_ENV, drafts_spec, planned_ledger, run_cli, subprocess_env


def run(ledger: Ledger, *extra: str, timeout: float = 120):
    return run_cli("run", "--db", str(ledger.path), "--quiet", *extra,
                   env=subprocess_env(**{KEY_ENV: "k"}), timeout=timeout)


def test_a_run_whose_calls_all_fail_says_why_and_exits_3(tmp_path: Path) -> None:
    with StubLLMServer(script=[500] * 50) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(3))
        result = run(ledger, "--cohort", "t", "--max-tries", "2", "--concurrency", "1")
        assert server.calls == 6
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    err = result.stderr
    assert "3 generation(s) of this run failed:" in err
    assert "3 x ServerError at draft on stub, e.g. d_" in err and "HTTP 500" in err
    assert "next: the endpoint kept failing; once it answers again: daydream rerun --cohort t --failed" in err
    assert "this run: 0 completed (0 copied), 3 failed" in result.stdout


def test_an_endpoint_that_fails_every_call_stops_its_model_and_leaves_the_rest_pending(tmp_path: Path) -> None:
    with StubLLMServer(script=[500] * 200) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(12))
        result = run(ledger, "--max-tries", "2", "--concurrency", "1")
        calls = server.calls
    assert result.returncode == 1, result.stderr
    assert "error: model stub: 5 generations in a row failed after 2 tries each" in result.stderr
    assert "its remaining work was left pending" in result.stderr
    assert calls == 10  # five generations, two tries each; then nothing more was sent
    statuses = dict(ledger.query("SELECT status, COUNT(*) FROM gen_state GROUP BY status"))
    assert statuses == {"failed": 5, "planned": 7}


def test_failures_are_grouped_by_reason_with_json_and_listed_by_daydream_failures(ledger_url: str,
                                                                                  tmp_path: Path) -> None:
    # The failures view and the run's summary: on SQLite and on PostgreSQL (issue 17).
    short = {"id": "x", "model": "m", "choices": [{"message": {"role": "assistant", "content": "one line"},
                                                  "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 5, "completion_tokens": 3}}
    with StubLLMServer(script=[Reply(body=short), Reply(body=short), 400]) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(4), db=ledger_url)
        result = run(ledger, "--concurrency", "1", "--json")
    assert result.returncode == 3, result.stderr
    summary = json.loads(result.stdout)
    groups = {g["reason"]: g for g in summary["failures"]}
    assert set(groups) == {"ValidationFailed", "ClientError"}
    assert groups["ValidationFailed"]["count"] == 2 and groups["ClientError"]["count"] == 1
    assert groups["ValidationFailed"]["next_step"].startswith("the answers did not parse or validate")
    assert "check model stub's name, base_url and parameters" in groups["ClientError"]["next_step"]

    listed = run_cli("failures", "--db", str(ledger.path), "--cohort", "t", "--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert data["failed"] == 3 and {g["reason"]: g["count"] for g in data["groups"]} == {
        "ValidationFailed": 2, "ClientError": 1}
    assert {f["error_class"] for f in data["failures"]} == {"ValidationFailed", "ClientError"}
    assert all(f["cohort_id"] == "t" for f in data["failures"])
    text = run_cli("failures", "--db", str(ledger.path))
    assert text.returncode == 0 and "3 failed generation(s), by reason:" in text.stdout
    assert "2 x ValidationFailed at draft on stub" in text.stdout
    assert "daydream rerun --cohort t --failed" in text.stdout
    # The view behind it carries the class for grouping.
    assert sorted(r[0] for r in ledger.query("SELECT error_class FROM failures")) == [
        "ClientError", "ValidationFailed", "ValidationFailed"]
    # After a rerun, nothing is left failed.
    assert run_cli("rerun", "--db", str(ledger.path), "--cohort", "t", "--failed").returncode == 0
    assert "no failed generations in cohort t" in run_cli("failures", "--db", str(ledger.path),
                                                         "--cohort", "t").stdout
    unknown = run_cli("failures", "--db", str(ledger.path), "--cohort", "nope")
    assert unknown.returncode == 1 and "'nope'" in unknown.stderr and unknown.stderr.count("\n") == 1


@pytest.mark.parametrize("kind", ["empty ledger", "text file", "other sqlite", "empty file"])
def test_replay_from_something_with_nothing_to_replay_records_nothing(tmp_path: Path, kind: str) -> None:
    source = tmp_path / "source.db"
    if kind == "empty ledger":
        Ledger.init(source)
    elif kind == "text file":
        source.write_text("not a ledger\n")
    elif kind == "other sqlite":
        with sqlite3.connect(source) as conn:
            conn.execute("CREATE TABLE notes (body TEXT)")
    else:
        source.write_bytes(b"")
    before_bytes = source.read_bytes()
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(3))
        events = ledger.count()
        result = run(ledger, "--replay-from", str(source))
        assert server.calls == 0
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: --replay-from")
    assert "nothing was run" in result.stderr and "Traceback" not in result.stderr
    assert ledger.count() == events  # nothing recorded
    assert ledger.query("SELECT COUNT(*) FROM workers") == [(0,)]
    assert set(s for (s,) in ledger.query("SELECT status FROM gen_state")) == {"planned"}
    if kind != "empty ledger":
        assert source.read_bytes() == before_bytes  # never switched to WAL or given tables


def test_replay_misses_stay_pending_and_say_so(tmp_path: Path) -> None:
    with StubLLMServer() as server:
        source = planned_ledger(tmp_path / "a", server.base_url, drafts_spec(2))
        assert run(source).returncode == 0
        target = planned_ledger(tmp_path / "b", server.base_url, drafts_spec(4))  # two more prompts
        calls = server.calls
        result = run(target, "--replay-from", str(source.path))
        assert server.calls == calls  # replay never calls out
    assert result.returncode == 3, result.stderr
    assert "2 generation(s) have no recorded answer in" in result.stderr and "left pending" in result.stderr
    statuses = dict(target.query("SELECT status, COUNT(*) FROM gen_state GROUP BY status"))
    assert statuses == {"completed": 2, "planned": 2}
    assert not target.events(type="GenerationFailed")


def test_an_answer_over_the_size_limit_is_cut_and_marked(tmp_path: Path) -> None:
    text = "\n".join(f"{i}. ünïcödé line of a rambling draft that goes on and on" for i in range(300))
    body = {"id": "big", "model": "m", "choices": [{"message": {"role": "assistant", "content": text},
                                                    "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3000}}
    with StubLLMServer(script=[Reply(body=body)]) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(1))
        result = run(ledger, "--max-response-bytes", "4096")
    assert result.returncode == 0, result.stderr
    assert "1 answer(s) over --max-response-bytes were cut and marked truncated" in result.stdout
    (call,) = ledger.events(type="LLMCallCompleted")
    p = call.payload
    assert p["truncated"] is True and p["original_bytes"] == len(text.encode()) and p["max_response_bytes"] == 4096
    stored = ledger.get_text(p["text_hash"])
    assert len(stored.encode()) <= 4096 and text.startswith(stored) and len(stored.encode()) > 4090
    (gen_id,) = ledger.query("SELECT gen_id FROM gen_state")[0]
    shown = run_cli("show", gen_id, "--db", str(ledger.path), "--no-text")
    assert f"the answer was cut at 4,096 of {len(text.encode()):,} bytes" in shown.stdout


def test_a_body_far_over_the_limit_is_not_read_into_memory(tmp_path: Path) -> None:
    huge = {"id": "huge", "model": "m", "choices": [{"message": {"role": "assistant", "content": "x" * 3_000_000},
                                                     "finish_reason": "stop"}]}
    with StubLLMServer(script=[Reply(body=huge)]) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(1))
        result = run(ledger, "--max-response-bytes", "100000")
    assert result.returncode == 3, result.stderr
    assert "ResponseTooLarge" in result.stderr
    (failed,) = ledger.events(type="GenerationFailed")
    assert failed.payload["error_class"] == "ResponseTooLarge"
