"""Contract suites: every registered stage, parser and provider honours its plugin contract."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from daydream import plugins
from daydream.contracts import (PIPELINE_STAGES, CallFailed, CallRequest, CallResult, Generation, Parsed, ParseFailure,
                                Stage, StageInput)
from daydream.ledger.events import DomainEvent

STAGES = sorted(plugins.stages().items)
PARSERS = sorted(plugins.parsers().items)
CONCEPTS = [{"id": "a", "name": "Alpha", "content": "Alpha text."}, {"id": "b", "name": "Beta", "content": "Beta."}]


@pytest.mark.parametrize("name", STAGES)
def test_stage_contract(name: str) -> None:
    stage = plugins.stages().get(name)
    assert isinstance(stage, Stage)
    assert stage.name == name and name in PIPELINE_STAGES
    assert stage.parent_stage is None or stage.parent_stage in STAGES
    variables = stage.variables(StageInput("x_1", CONCEPTS, "parent text\nline 2\nline 3", stage.parent_stage))
    assert isinstance(variables, dict)
    assert stage.check("a\nb\nc\nd", "stop") is None
    # A stage turns a call's outcome into events and never writes them itself.
    gen = Generation("x_1", name, "p_1", "t", "m", 1)
    events, texts = stage.outcome(gen, 1, "one\ntwo\nthree\nSCORE: 7", "stop",
                                  plugins.parsers().get("score" if stage.scored else "identity"),
                                  "score" if stage.scored else "identity")
    assert events and all(isinstance(e, DomainEvent) and e.stream == "gen:x_1" for e in events)
    assert all(e.to_payload()["gen_id"] == "x_1" and e.to_payload()["attempt"] == 1 for e in events)
    assert all(isinstance(t, str) for t in texts)


def test_builtin_stages_form_the_pipeline() -> None:
    assert {"draft", "essay", "evaluation"} <= set(STAGES)
    assert plugins.stages().get("essay").parent_stage == "draft"
    assert plugins.stages().get("evaluation").parent_stage == "essay"


@pytest.mark.parametrize("name", PARSERS)
def test_parser_contract(name: str) -> None:
    parse = plugins.parsers().get(name)
    for raw in ("", "   ", "plain words without any structure", "<essay>x</essay>\nSCORE: 5",
                "<essay-idea stage=\"1\">idea</essay-idea>"):
        try:
            result = parse(raw)
        except ParseFailure as failure:
            assert failure.reason
            continue
        assert isinstance(result, Parsed) and isinstance(result.text, str) and result.text.strip()
        assert result.score is None or 0 <= result.score <= 9


@pytest.mark.parametrize("name", sorted(plugins.providers().items))
def test_provider_contract(name: str, tmp_path) -> None:
    factory = plugins.providers().get(name)
    assert callable(factory)
    model = {"id": "m", "provider": name, "model": "some/model", "base_url": "http://127.0.0.1:9",
             "api_key_env": None, "price_in": None, "price_out": None}
    options = {"timeout_s": 1.0}
    if name == "replay":
        from daydream.ledger.store import Ledger
        options["replay_from"] = str(Ledger.init(tmp_path / "empty.db")[0].path)
    provider = factory(model, **options)
    assert inspect.iscoroutinefunction(provider.complete)
    request = CallRequest(gen_id="d_x", stage="draft", prompt="List ideas about Alpha and Beta.",
                          model_id="m", provider_model="some/model", prompt_hash="0" * 64)

    async def once():
        try:
            return await provider.complete(request)
        except CallFailed as failure:
            return failure
        finally:
            closer = getattr(provider, "aclose", None)
            if closer:
                await closer()

    outcome = asyncio.run(once())
    # Port 9 on loopback refuses connections; replay of an empty ledger misses; offline answers.
    assert isinstance(outcome, (CallResult, CallFailed))
    if isinstance(outcome, CallFailed):
        assert outcome.error_class and outcome.message
    else:
        assert outcome.text and outcome.provider == name
