"""The progress display of `daydream run` (issue 11): rich's bars on a terminal, plain lines in a pipe.

The terminal case runs the real CLI in a subprocess attached to a pseudo-terminal (pty), against
the loopback server, on a ledger whose drafts and essays were finished by an earlier run.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from daydream.ledger.store import Ledger
from daydream.run.runner import RunOptions, run_cohort
from daydream.testing import StubLLMServer
from tests.runner_fixtures import KEY_ENV, daydream_cmd, pipeline_spec, planned_ledger, subprocess_env

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CONCURRENCY = 2


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "k")


def half_done(tmp_path: Path, base_url: str) -> Ledger:
    """2 drafts and 2 essays finished, 6 evaluations to go, on a model with 2 call slots."""
    ledger = planned_ledger(tmp_path, base_url, pipeline_spec(2, eval_replicates=3), concurrency=CONCURRENCY)
    for stage in ("draft", "essay"):
        run_cohort(ledger, RunOptions(stage=stage, retry_base_s=0.05))
    assert ledger.query("SELECT stage, status, COUNT(*) FROM gen_state GROUP BY 1, 2 ORDER BY 1") == [
        ("draft", "completed", 2), ("essay", "completed", 2), ("evaluation", "planned", 6)]
    return ledger


def run_in_terminal(*args: str, timeout_s: float = 60) -> tuple[int, str]:
    """``daydream ARGS`` with stdin, stdout and stderr on a pseudo-terminal: exit code and output."""
    master, slave = pty.openpty()
    env = subprocess_env(**{KEY_ENV: "k", "COLUMNS": "140", "LINES": "40", "TERM": "xterm-256color"})
    process = subprocess.Popen(daydream_cmd(*args), stdin=slave, stdout=slave, stderr=slave, env=env,
                               close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(master)
    code = process.wait(timeout=10)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_a_resumed_run_on_a_terminal_shows_bars_that_count_earlier_work(tmp_path: Path) -> None:
    with StubLLMServer(latency_s=1.0) as server:
        ledger = half_done(tmp_path, server.base_url)
        code, raw = run_in_terminal("run", "--db", str(ledger.path))
        assert server.calls == 4 + 6
    text = ANSI.sub("", raw).replace("\r", "\n")
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    assert code == 0, text
    # The first line says what was already done, per stage.
    assert lines[0] == ("resuming: 4 of 10 generations already done before this run "
                        "(draft 2/2, essay 2/2, evaluation 0/6)")
    assert "\x1b[" in raw  # a live display (cursor movement and colour), not plain lines
    # One bar per stage; done includes the earlier run's work; the last frame is complete.
    frames = [line for line in lines if line.startswith(("draft", "essay", "evaluation")) and "%" in line]
    assert any(re.match(r"draft\s.*\s2/2\s+100%", f) for f in frames)
    assert any(re.match(r"evaluation\s.*\s0/6\s+0%", f) for f in frames)
    last = [f for f in frames if f.startswith("evaluation")][-1]
    assert re.match(r"evaluation\s.*\s6/6\s+100%", last), last
    # Calls in flight are requests sent and unanswered: never more than the model's call slots.
    in_flight = [int(n) for n in re.findall(r"(\d+) in flight", text)]
    assert in_flight and max(in_flight) <= CONCURRENCY
    assert any(n > 0 for n in in_flight)  # seen while calls were out (1 s each, 3 rounds; a report every 0.5 s)
    # Rate and time left, calls, tokens and money under the bars.
    assert re.search(r"\d+\.\d/s", text) and "ETA" in text
    assert re.search(r"calls \d+, \d+ in flight · tokens [\d,]+ · spent \$", text)
    # Then the usual summary.
    assert "this run: 6 completed" in text


def test_a_pipe_gets_plain_lines_and_quiet_gets_none(tmp_path: Path) -> None:
    with StubLLMServer() as server:
        ledger = half_done(tmp_path, server.base_url)
        env = subprocess_env(**{KEY_ENV: "k"})
        piped = subprocess.run(daydream_cmd("run", "--db", str(ledger.path), "--limit", "3"),
                               capture_output=True, text=True, env=env, timeout=120)
        quiet = subprocess.run(daydream_cmd("run", "--db", str(ledger.path), "--quiet"),
                               capture_output=True, text=True, env=env, timeout=120)
    assert piped.returncode == 0 and quiet.returncode == 0
    assert "\x1b[" not in piped.stderr
    assert piped.stderr.splitlines()[0] == ("resuming: 4 of 10 generations already done before this run "
                                            "(draft 2/2, essay 2/2, evaluation 0/6)")
    assert quiet.stderr == ""
    assert "this run: 3 completed" in quiet.stdout


def test_plain_lines_carry_the_same_figures() -> None:
    from daydream.cli.progress import plain_lines, resume_line
    from daydream.run.stats import RunStats

    stats = RunStats(budget_usd=1.0)
    draft = stats.stages["draft"]
    draft.total, draft.finished, draft.done_before, draft.calls_in_flight = 10, 7, 4, 2
    stats.calls, stats.tokens, stats.spent_usd, stats.calls_in_flight = 3, 1234, 0.25, 2
    stats.started -= 3.0  # three seconds in: 3 generations made, 1/s, 3 left
    assert resume_line(stats) == "resuming: 4 of 10 generations already done before this run (draft 4/10)"
    first, money = plain_lines(stats)
    assert first.startswith("draft 7/10 done (70%), 1.0/s, ETA 0:00:03, 2 calls in flight")
    assert money.startswith("calls 3, 2 in flight · tokens 1,234 · spent $0.2500 of $1.0000 budget")
