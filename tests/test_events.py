"""Typed events: one frozen dataclass per event type, the only place type names are spelled, and
payloads that round-trip exactly (the hash chain depends on every byte)."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import json
import time
from pathlib import Path

import pytest

from daydream.ledger import events as ev
from daydream.ledger.store import Ledger
from daydream.run.retry import retry_generations
from daydream.run.runner import RunOptions, Runner, run_cohort
from daydream.testing import Reply, StubLLMServer
from tests.runner_fixtures import KEY_ENV, drafts_spec, pipeline_spec, planned_ledger

REPO = Path(__file__).resolve().parent.parent
EVENTS_MODULE = REPO / "daydream" / "ledger" / "events.py"
STREAM_PREFIXES = ("gen:", "cohort:", "combo:", "catalog:", "model:", "report:")


def _sources() -> list[Path]:
    found = sorted((REPO / "daydream").rglob("*.py")) + sorted((REPO / "plugins").rglob("*.py"))
    assert len(found) > 30
    return [p for p in found if p != EVENTS_MODULE]


def test_no_module_outside_events_names_an_event_type_as_a_string() -> None:
    # SQL that mentions a type inside a larger statement is fine; a bare "LLMCallStarted" is not.
    types = set(ev.EVENT_TYPES)
    found = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in types:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not found, "use the event classes or constants of daydream.ledger.events:\n" + "\n".join(found)


def test_no_module_outside_events_builds_a_stream_name() -> None:
    found = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.JoinedStr) and len(node.values) >= 2
                    and isinstance(node.values[0], ast.Constant) and node.values[0].value in STREAM_PREFIXES
                    and isinstance(node.values[1], ast.FormattedValue)):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, "use events.gen_stream() and friends (or the event's .stream):\n" + "\n".join(found)


@pytest.mark.parametrize("type_", sorted(ev.EVENT_TYPES))
def test_every_event_type_is_a_documented_frozen_dataclass(type_: str) -> None:
    cls = ev.EVENT_TYPES[type_]
    assert cls.TYPE == type_ and cls.__name__ == type_
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    doc = (cls.__doc__ or "").strip()
    assert doc and "\n" not in doc, f"{type_}: a one-line docstring"
    for f in dataclasses.fields(cls):
        assert f.type not in (None, "Any"), f"{type_}.{f.name} needs a type"
    # The constant other modules (and the projections' SQL) use names the same type.
    constant = "".join("_" + c if c.isupper() and i and not type_[i - 1].isupper() else c
                       for i, c in enumerate(type_)).upper().replace("LLMCALL", "LLM_CALL")
    assert getattr(ev, constant) == type_
    assert type_ in ev.ALL_TYPES


def test_optional_fields_are_left_out_and_others_written_as_null() -> None:
    failed = ev.GenerationFailed(gen_id="d_1", attempt=1, error_class="X", reason="why")
    assert failed.to_payload() == {"gen_id": "d_1", "attempt": 1, "error_class": "X", "reason": "why"}
    assert failed.but(raw_hash="ab").to_payload()["raw_hash"] == "ab"
    call = ev.LLMCallFailed(gen_id="d_1", attempt=1, call=1, try_=2, model_id="m", provider="openai",
                            error_class="ServerError", message="500", status=None, retryable=True,
                            latency_s=None, released=False)
    payload = call.to_payload()
    assert payload["try"] == 2 and "try_" not in payload
    assert payload["status"] is None and "superseded" not in payload
    assert call.stream == "gen:d_1" and call.new().type == "LLMCallFailed"
    linked = ev.GenerationLinked(cohort_id="c", gen_id="d_1", stage="draft")
    assert linked.stream == "cohort:c"


def test_an_older_payload_takes_defaults_and_round_trips() -> None:
    # A claim recorded before sent marks has no sends_marked: None, and still absent when written.
    old = {"gen_id": "d_1", "attempt": 1, "call": 1, "model_id": "m", "provider": "openai",
           "provider_model": "x", "lease_until": "2024-01-01T00:00:00.000000Z", "worker": {"pid": 1}}
    started = ev.LLMCallStarted.from_payload(old)
    assert started.sends_marked is None and started.to_payload() == old
    with pytest.raises(KeyError):
        ev.from_stored("SomethingUnknown", {})


def _stored(ledger: Ledger) -> list[tuple[str, dict]]:
    return [(type_, json.loads(payload)) for type_, payload in ledger.query("SELECT type, payload FROM events")]


def _assert_round_trip(ledger: Ledger) -> set[str]:
    seen = set()
    for type_, payload in _stored(ledger):
        typed = ev.from_stored(type_, payload)
        assert typed.to_payload() == payload, type_
        assert json.dumps(typed.to_payload(), sort_keys=True) == json.dumps(payload, sort_keys=True)
        seen.add(type_)
    return seen


def test_the_example_ledger_round_trips_through_the_typed_events() -> None:
    seen = _assert_round_trip(Ledger.open(REPO / "ledger.db.example", readonly=True))
    assert {"CatalogImported", "GenerationPlanned", "LLMCallCompleted", "ScoreRecorded"} <= seen


def test_failures_retries_takeovers_and_releases_round_trip(tmp_path: Path, monkeypatch) -> None:
    """A ledger with every kind of run event: retried tries, failed generations, a rerun, a claim
    taken over from a stalled runner (lost request, superseded answer), and an interrupted call."""
    monkeypatch.setenv(KEY_ENV, "k")
    script = [Reply(status=500), Reply(action="length"), Reply(status=400)]
    with StubLLMServer(script=script) as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(4))
        run_cohort(ledger, RunOptions(cohort="t", retry_base_s=0.01))
        assert retry_generations(ledger, cohort="t", failed_only=True)
        server.latency_s = 0.8

        async def stalled_then_taken_over() -> None:
            first = Runner(ledger, RunOptions(cohort="t", claim_grace_s=0.3, heartbeat_s=3600))
            task = asyncio.create_task(first.run())
            await asyncio.sleep(0.5)
            await Runner(ledger, RunOptions(cohort="t")).run()
            await task

        asyncio.run(stalled_then_taken_over())
    seen = _assert_round_trip(ledger)
    assert {"LLMCallFailed", "LLMCallSent", "GenerationFailed", "GenerationRetried", "LLMCallLost"} <= seen
    superseded = [p for t, p in _stored(ledger) if t == "LLMCallCompleted" and p.get("superseded")]
    assert superseded and all("answers_lost_seq" in p for p in superseded)
    assert any("took_over" in p for t, p in _stored(ledger) if t == "LLMCallStarted")

    # An interrupted call: its request is recorded lost and its claim released.
    with StubLLMServer() as server:
        other = planned_ledger(tmp_path / "b", server.base_url, pipeline_spec(1))
        server.hold()

        async def interrupted() -> None:
            runner = Runner(other, RunOptions(cohort="t"))
            task = asyncio.create_task(runner.run())
            deadline = time.monotonic() + 10
            while server.held < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            runner.request_stop("interrupted (test)")
            await task

        asyncio.run(interrupted())
        server.release()
    seen = _assert_round_trip(other)
    assert {"LLMCallLost", "ClaimReleased"} <= seen


def test_start_up_does_not_build_the_event_classes(tmp_path: Path) -> None:
    # Building ~20 frozen dataclasses costs more than the rest of `daydream --help`: the CLI, the
    # plugins and `status` load them only when an event is made or read (bench/startup.py).
    from tests.test_cli_startup import loaded_by

    for args in (("--help",), ("status", "--db", str(REPO / "ledger.db.example"))):
        code, modules = loaded_by(tmp_path, *args)
        assert code == 0 and "daydream.ledger.events" not in modules, args
