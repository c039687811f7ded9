"""Provider plugins against real servers: the ``openai`` provider talks to ``StubLLMServer`` on
127.0.0.1, the ``replay`` provider reads a real ledger file built event by event."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from daydream_plugins.provider_openai import OpenAIProvider, compute_cost, parse_retry_after

from daydream.ledger import events as ev
from daydream import plugins
from daydream.contracts import CallFailed, CallRequest, CallResult, Provider
from daydream.errors import ProviderError
from daydream.ledger.store import Ledger, NewEvent, text_hash
from daydream.testing import Reply, StubLLMServer

KEY_ENV = "DAYDREAM_TEST_STUB_KEY"
SECRET = "sk-test-0123456789-very-secret"
PROMPT = "Brainstorm links between **Default Mode Network** and **Combinatorial Search**."


def model(base_url: str, **extra: Any) -> dict[str, Any]:
    return {"id": "stub_m", "provider": "openai", "model": "vendor/stub-model", "base_url": base_url,
            "api_key_env": KEY_ENV, "concurrency": 4, "rpm": None, "price_in": None,
            "price_out": None, "temperature": None, "max_tokens": None, **extra}


def request(prompt: str = PROMPT, **extra: Any) -> CallRequest:
    return CallRequest(gen_id="d_test1", stage="draft", prompt=prompt, model_id="stub_m",
                       provider_model="vendor/stub-model", prompt_hash=text_hash(prompt), **extra)


def call(provider: Provider, req: CallRequest | None = None) -> CallResult:
    async def once() -> CallResult:
        try:
            return await provider.complete(req or request())
        finally:
            await provider.aclose()
    return asyncio.run(once())


def failure(provider: Provider, req: CallRequest | None = None) -> CallFailed:
    with pytest.raises(CallFailed) as info:
        call(provider, req)
    return info.value


def openai(base_url: str, timeout_s: float = 5.0, **extra: Any) -> Provider:
    return plugins.providers().get("openai")(model(base_url, **extra), timeout_s=timeout_s)


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


@pytest.fixture
def server(key: str) -> Any:
    with StubLLMServer(api_key=key) as stub:
        yield stub


# ------------------------------------------------------------------ openai: success
def test_openai_success_records_text_usage_cost_and_ids(key: str) -> None:
    with StubLLMServer(api_key=key, cost_usd=0.0042, resolved_model_prefix="resolved/") as stub:
        result = call(openai(stub.base_url))
        assert stub.calls == 1
        record = stub.records[0]
    assert isinstance(result, CallResult)
    assert result.text and result.finish_reason == "stop"
    assert result.prompt_tokens and result.prompt_tokens > 0
    assert result.completion_tokens and result.completion_tokens > 0
    assert result.cost_usd == pytest.approx(0.0042)
    assert result.provider == "openai"
    assert result.requested_model == "vendor/stub-model"
    assert result.resolved_model == "resolved/vendor/stub-model"
    assert result.request_id == "stub-0"
    assert result.latency_s > 0
    assert record.model == "vendor/stub-model" and record.prompt == PROMPT
    assert record.body is not None and record.body["messages"] == [{"role": "user", "content": PROMPT}]
    assert "usage" not in record.body  # only OpenRouter is asked for usage accounting


def test_openai_authorization_header_reaches_the_server(server: StubLLMServer) -> None:
    call(openai(server.base_url))
    record = server.records[0]
    assert record.authorization_present and record.authorized is True
    assert SECRET not in repr(record)  # the server keeps no copy of the key


def test_openai_cost_computed_from_catalog_prices_when_not_reported(server: StubLLMServer) -> None:
    result = call(openai(server.base_url, price_in=3.0, price_out=15.0))
    expected = (result.prompt_tokens * 3.0 + result.completion_tokens * 15.0) / 1_000_000
    assert result.cost_usd == pytest.approx(expected)
    assert result.extra["cost_source"] == "catalog"


def test_openai_cost_is_null_without_report_or_prices(server: StubLLMServer) -> None:
    assert call(openai(server.base_url)).cost_usd is None


def test_openai_sends_temperature_and_max_tokens_request_over_catalog(server: StubLLMServer) -> None:
    call(openai(server.base_url, temperature=0.2, max_tokens=500), request(max_tokens=900))
    body = server.records[0].body
    assert body is not None and body["temperature"] == 0.2 and body["max_tokens"] == 900


def test_openai_accepts_a_base_url_ending_in_v1(server: StubLLMServer) -> None:
    call(openai(server.base_url + "/v1"))
    assert server.records[0].path == "/v1/chat/completions"


def test_openai_asks_openrouter_for_usage_accounting() -> None:
    provider = OpenAIProvider(model("https://openrouter.ai/api/v1"))
    assert provider._body(request())["usage"] == {"include": True}
    assert "usage" not in OpenAIProvider(model("http://127.0.0.1:9"))._body(request())


def test_openai_length_finish_reason_is_surfaced(server: StubLLMServer) -> None:
    server.push("length")
    result = call(openai(server.base_url))
    assert result.finish_reason == "length" and result.text


def test_openai_reasoning_only_answer_is_an_empty_result(server: StubLLMServer) -> None:
    server.push(Reply(body={"id": "r1", "model": "m", "choices": [{"message": {
        "role": "assistant", "content": None, "reasoning": "long thoughts"}, "finish_reason": "stop"}]}))
    result = call(openai(server.base_url))
    assert result.text == "" and result.extra["reasoning_chars"] == len("long thoughts")


def test_openai_request_id_falls_back_to_the_header(server: StubLLMServer) -> None:
    server.push(Reply(headers={"x-request-id": "hdr-7"}, body={"choices": [
        {"message": {"content": "hello"}, "finish_reason": "stop"}]}))
    result = call(openai(server.base_url))
    assert result.request_id == "hdr-7" and result.prompt_tokens is None and result.resolved_model is None


# ------------------------------------------------------------------ openai: failures
def test_openai_429_is_retryable_with_retry_after(server: StubLLMServer) -> None:
    server.push(Reply(status=429, headers={"Retry-After": "3"}))
    err = failure(openai(server.base_url))
    assert (err.retryable, err.status, err.retry_after, err.error_class) == (True, 429, 3.0, "RateLimited")
    assert not err.fatal_for_model
    assert server.calls == 1  # one attempt: retrying is the runner's job


def test_openai_retry_after_as_http_date(server: StubLLMServer) -> None:
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    server.push(Reply(status=503, headers={"Retry-After": when}))
    err = failure(openai(server.base_url))
    assert err.retryable and err.retry_after is not None and 25 <= err.retry_after <= 31


def test_parse_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:10 GMT", now=now) == 10.0
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("inf") is None and parse_retry_after("nan") is None  # never wait forever


@pytest.mark.parametrize("status,error_class", [(500, "ServerError"), (502, "ServerError"),
                                                (503, "ServerError"), (408, "RequestTimeout")])
def test_openai_server_errors_are_retryable(server: StubLLMServer, status: int, error_class: str) -> None:
    server.push(status)
    err = failure(openai(server.base_url))
    assert err.retryable and err.status == status and err.error_class == error_class
    assert err.retry_after is None


def test_openai_404_stops_the_model_naming_url_and_model(server: StubLLMServer) -> None:
    server.push(404)
    err = failure(openai(server.base_url))
    assert not err.retryable and err.fatal_for_model and err.status == 404
    assert "/chat/completions" in err.message and "base_url" in err.message


@pytest.mark.parametrize("status", [400, 409, 422])
def test_openai_other_client_errors_are_not_retryable(server: StubLLMServer, status: int) -> None:
    server.push(status)
    err = failure(openai(server.base_url))
    assert not err.retryable and not err.fatal_for_model and err.status == status


def test_openai_hang_times_out_as_retryable(server: StubLLMServer) -> None:
    server.push("hang")
    started = time.monotonic()
    err = failure(openai(server.base_url, timeout_s=0.3))
    assert time.monotonic() - started < 3
    assert err.retryable and err.error_class == "Timeout"
    assert server.calls == 1


def test_openai_malformed_json_is_retryable(server: StubLLMServer) -> None:
    server.push("malformed")
    err = failure(openai(server.base_url))
    assert err.retryable and err.error_class == "MalformedResponse" and err.raw_text


def test_openai_invalid_shape_is_retryable(server: StubLLMServer) -> None:
    server.push(Reply(body={"object": "chat.completion", "choices": []}))
    err = failure(openai(server.base_url))
    assert err.retryable and err.error_class == "InvalidResponse"


def test_openai_error_object_in_a_200_is_classified_by_its_code(server: StubLLMServer) -> None:
    server.push(Reply(body={"error": {"message": "upstream overloaded", "code": 502}}),
                Reply(body={"error": {"message": "context too long", "code": 400}}))
    first = failure(openai(server.base_url))
    second = failure(openai(server.base_url))
    assert first.retryable and "upstream overloaded" in first.message
    assert not second.retryable


def test_openai_finish_reason_error_is_a_failed_attempt_not_an_answer(server: StubLLMServer) -> None:
    # OpenRouter's normalised finish_reason "error": the upstream broke off mid-answer.
    server.push(Reply(body={"id": "g1", "choices": [{"message": {"content": "The first half of"},
                                                     "finish_reason": "error",
                                                     "error": {"code": 502, "message": "upstream died"}}]}),
                Reply(body={"choices": [{"message": {"content": "half"}, "finish_reason": "error"}]}),
                Reply(body={"choices": [{"message": {"content": ""}, "finish_reason": "error",
                                         "error": {"code": 400, "message": "invalid request"}}]}))
    first = failure(openai(server.base_url))
    assert first.error_class == "UpstreamError" and first.retryable and first.status == 502
    assert "upstream died" in first.message and first.raw_text == "The first half of"
    assert failure(openai(server.base_url)).retryable
    assert not failure(openai(server.base_url)).retryable


def test_openai_connection_refused_is_retryable(key: str) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    err = failure(openai(f"http://127.0.0.1:{port}"))
    assert err.retryable and err.error_class == "ConnectionError"


def test_openai_401_is_fatal_for_the_model_and_never_shows_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with StubLLMServer(api_key="sk-the-right-one") as stub:
        err = failure(openai(stub.base_url))
        assert stub.calls == 1 and stub.records[0].authorized is False
    assert err.fatal_for_model and not err.retryable and err.status == 401
    assert err.message == (f"401 Unauthorized from {stub.base_url} for model stub_m: "
                           f"check the API key in ${KEY_ENV}")
    assert SECRET not in str(err) and SECRET not in repr(err.__dict__)


def test_openai_403_is_fatal_for_the_model(server: StubLLMServer) -> None:
    server.push(403)
    err = failure(openai(server.base_url))
    assert err.fatal_for_model and not err.retryable and "403 Forbidden" in err.message


def test_openai_402_out_of_credits_stops_the_model_instead_of_failing_every_generation(
        server: StubLLMServer) -> None:
    # OpenRouter: "insufficient credits" — every further call to this account fails the same way.
    server.push(Reply(status=402, body={"error": {"code": 402, "message": "Insufficient credits"}}))
    err = failure(openai(server.base_url))
    assert err.fatal_for_model and not err.retryable and err.status == 402
    assert "credits" in err.message and f"${KEY_ENV}" in err.message


def test_openai_error_bodies_echoing_the_key_are_scrubbed(server: StubLLMServer) -> None:
    server.push(Reply(status=400, body={"error": {"message": f"bad request for key {SECRET}"}}))
    err = failure(openai(server.base_url))
    assert SECRET not in str(err) and SECRET not in (err.raw_text or "") and "***" in err.message


def test_openai_missing_key_env_is_fatal_and_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with StubLLMServer() as stub:
        err = failure(openai(stub.base_url))
        assert stub.calls == 0  # nothing was sent without a key
    assert err.fatal_for_model and not err.retryable and err.error_class == "MissingAPIKey"
    assert f"${KEY_ENV}" in err.message


@pytest.mark.parametrize("padding", ["\r", "\n", "\r\n", " ", "\t"])
def test_openai_key_with_surrounding_whitespace_is_sent_trimmed(monkeypatch: pytest.MonkeyPatch,
                                                                 padding: str) -> None:
    # A .env file saved with Windows line endings leaves "\r" on the value; it is never part of a key.
    monkeypatch.setenv(KEY_ENV, SECRET + padding)
    with StubLLMServer(api_key=SECRET) as stub:
        result = call(openai(stub.base_url))
        assert result.text and stub.records[0].authorized is True


@pytest.mark.parametrize("bad", [SECRET[:10] + "\u2019" + SECRET[10:], SECRET[:10] + "\n" + SECRET[10:],
                                 SECRET[:10] + " " + SECRET[10:]])
def test_openai_key_that_cannot_be_a_header_is_fatal_and_never_shown(monkeypatch: pytest.MonkeyPatch,
                                                                     bad: str) -> None:
    monkeypatch.setenv(KEY_ENV, bad)
    with StubLLMServer() as stub:
        err = failure(openai(stub.base_url))
        assert stub.calls == 0
    assert err.fatal_for_model and not err.retryable and err.error_class == "InvalidAPIKey"
    assert f"${KEY_ENV}" in err.message
    shown = repr(err.__dict__) + str(err)
    assert SECRET[:10] not in shown and SECRET[11:] not in shown


def test_openai_model_without_key_env_sends_no_authorization() -> None:
    with StubLLMServer() as stub:
        call(openai(stub.base_url, api_key_env=None))
        assert stub.records[0].authorization_present is False


def test_openai_rejects_a_base_url_that_is_not_http() -> None:
    with pytest.raises(ProviderError, match="base_url 'localhost:11434' is not an http"):
        openai("localhost:11434")


def test_compute_cost_needs_both_prices_and_tokens() -> None:
    assert compute_cost(1_000_000, 500_000, 1.0, 4.0) == pytest.approx(3.0)
    assert compute_cost(10, 10, 0.0, 0.0) == 0.0  # free models cost zero, not unknown
    assert compute_cost(10, None, 1.0, 1.0) is None and compute_cost(10, 10, None, 1.0) is None


def test_openai_provider_reuses_connections_across_calls(server: StubLLMServer) -> None:
    provider = openai(server.base_url)

    async def several() -> int:
        for _ in range(5):
            await provider.complete(request())
        clients = len(provider._clients)  # one request at a time needs a single client
        await provider.aclose()
        return clients

    assert asyncio.run(several()) == 1 and server.calls == 5


# ------------------------------------------------------------------ openai: real-world answer quirks
def test_openai_content_as_a_list_of_parts_is_joined_not_retried(server: StubLLMServer) -> None:
    # Some OpenAI-compatible servers answer with content parts; retrying would pay again for the same shape.
    server.push(Reply(body={"choices": [{"message": {"role": "assistant", "content": [
        {"type": "text", "text": "Hello "}, {"type": "reasoning", "reasoning": "not this"},
        {"type": "text", "text": "world"}]}, "finish_reason": "stop"}]}))
    result = call(openai(server.base_url))
    assert result.text == "Hello world" and server.calls == 1


def test_openai_content_parts_without_text_are_an_invalid_answer(server: StubLLMServer) -> None:
    server.push(Reply(body={"choices": [{"message": {"content": [{"type": "image_url", "image_url": {}}]}}]}))
    err = failure(openai(server.base_url))
    assert err.error_class == "InvalidResponse"


def test_openai_usage_numbers_sent_as_strings_are_kept(server: StubLLMServer) -> None:
    server.push(Reply(body={"id": "s1", "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": "12", "completion_tokens": "3", "cost": "0.0021"},
                            "system_fingerprint": "fp_1", "provider": "Somebody"}))
    result = call(openai(server.base_url, price_in=1.0, price_out=1.0))
    assert (result.prompt_tokens, result.completion_tokens) == (12, 3)
    assert result.cost_usd == pytest.approx(0.0021) and result.extra["cost_source"] == "provider"


def test_openai_unparseable_reported_cost_falls_back_to_catalog_prices(server: StubLLMServer) -> None:
    server.push(Reply(body={"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "cost": "n/a"}}))
    result = call(openai(server.base_url, price_in=1.0, price_out=1.0))
    assert result.cost_usd == pytest.approx(20 / 1_000_000) and result.extra["cost_source"] == "catalog"


def test_openai_error_code_sent_as_a_string_is_classified(server: StubLLMServer) -> None:
    server.push(Reply(body={"error": {"message": "bad request", "code": "400"}}))
    err = failure(openai(server.base_url))
    assert not err.retryable and err.status == 400


def test_openai_html_error_page_is_a_one_line_message(server: StubLLMServer) -> None:
    page = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
            "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
    server.push(Reply(status=502, headers={"Content-Type": "text/html"}, body=page))
    err = failure(openai(server.base_url))
    assert err.retryable and err.error_class == "ServerError" and err.status == 502
    assert "\n" not in err.message and "\r" not in err.message and "502 Bad Gateway" in err.message


@pytest.mark.parametrize("at", [270, 285, 295])
def test_openai_a_key_cut_by_the_excerpt_never_leaks_in_part(server: StubLLMServer, at: int) -> None:
    # Scrubbing after cutting the body would let the part of the key before the cut through.
    server.push(Reply(status=400, body="x" * at + SECRET + " was rejected"),
                Reply(body={"error": {"message": "y" * at + SECRET, "code": 400}}),
                Reply(body="z" * at + SECRET + " {not json"))
    for _ in range(3):
        err = failure(openai(server.base_url))
        seen = err.message + (err.raw_text or "")
        assert SECRET[:10] not in seen, seen[-60:]


def test_openai_gzip_body_and_slow_headers(server: StubLLMServer) -> None:
    import gzip

    body = {"choices": [{"message": {"content": "packed"}, "finish_reason": "stop"}]}
    server.push(Reply(headers={"Content-Encoding": "gzip"}, body=gzip.compress(json.dumps(body).encode())),
                Reply(headers={"Content-Encoding": "gzip"}, body=json.dumps(body).encode()),
                Reply(delay_s=1.0))
    assert call(openai(server.base_url)).text == "packed"
    lying = failure(openai(server.base_url))  # says gzip, is not: unreadable, worth another try
    assert lying.retryable and lying.error_class == "MalformedResponse"
    slow = failure(openai(server.base_url, timeout_s=0.3))
    assert slow.retryable and slow.error_class == "Timeout" and server.calls == 3


# ------------------------------------------------------------------ the stub server itself
def test_stub_overlaps_many_slow_requests() -> None:
    with StubLLMServer(latency_s=0.2) as stub:
        provider = openai(stub.base_url, api_key_env=None, timeout_s=10)

        async def burst() -> float:
            started = time.perf_counter()
            await asyncio.gather(*(provider.complete(request(f"{PROMPT} {i}")) for i in range(60)))
            await provider.aclose()
            return time.perf_counter() - started

        elapsed = asyncio.run(burst())
        assert stub.calls == 60
    # Sequential handling would take 12 s; overlapping takes a little over 0.2 s.
    assert elapsed < 2.0


def test_stub_scripted_headers_replace_the_default_content_type() -> None:
    with StubLLMServer(script=[Reply(status=502, headers={"Content-Type": "text/html"}, body="<h1>502</h1>")]) as stub:
        response = httpx.post(stub.base_url + "/chat/completions", json={"messages": [{"content": "x"}]})
    assert response.status_code == 502 and response.headers.get_list("content-type") == ["text/html"]


def test_stub_serves_scripted_replies_in_order_then_defaults() -> None:
    with StubLLMServer(script=[429, "malformed"]) as stub:
        codes = []
        with httpx.Client(base_url=stub.base_url) as client:
            for _ in range(3):
                body = {"model": "x", "messages": [{"role": "user", "content": "Write SCORE: 3"}]}
                codes.append(client.post("/chat/completions", json=body).status_code)
            last = client.post("/v1/chat/completions", json=body).json()
        assert codes == [429, 200, 200] and stub.pending_script == 0
        assert [r.reply for r in stub.records] == ["scripted 429", "malformed", "default", "default"]
        assert last["choices"][0]["message"]["content"].rstrip().splitlines()[-1].startswith("SCORE:")
        assert last["usage"]["prompt_tokens"] > 0


def test_stub_runs_standalone_and_reports_stats() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "daydream.testing", "--port", "0", "--latency", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("listening on http://127.0.0.1:")
        base_url = line.split()[-1]
        with httpx.Client(base_url=base_url) as client:
            body = {"model": "x", "messages": [{"role": "user", "content": "hello"}]}
            assert client.post("/chat/completions", json=body).status_code == 200
            assert client.post("/chat/completions", json=body).status_code == 200
            stats = client.get("/_stub/stats").json()
        assert stats["calls"] == 2 and stats["per_prompt"] == {text_hash("hello"): 2}
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


# ------------------------------------------------------------------ replay
def _completed(ledger: Ledger, gen_id: str, prompt: str, answer: str, *, model_id: str = "stub_m",
               attempt: int = 1) -> None:
    stream = ev.gen_stream(gen_id)
    ledger.append([
        NewEvent(stream, ev.PROMPT_RENDERED, {
            "gen_id": gen_id, "attempt": attempt, "prompt_hash": text_hash(prompt), "chars": len(prompt),
            "template_id": "t1", "template_hash": text_hash("template")}),
        NewEvent(stream, ev.LLM_CALL_COMPLETED, {
            "gen_id": gen_id, "attempt": attempt, "call": 1, "text_hash": text_hash(answer),
            "chars": len(answer), "finish_reason": "stop", "prompt_tokens": 11, "completion_tokens": 22,
            "cost_usd": 0.5, "latency_s": 1.5, "model_id": model_id, "provider": "openai",
            "requested_model": "vendor/stub-model", "resolved_model": "vendor/stub-model-0301",
            "request_id": "req-1", "offline": False}),
    ], texts=[prompt, answer])


def replay(path: Path, model_id: str = "stub_m") -> Provider:
    return plugins.providers().get("replay")(model("unused", id=model_id), replay_from=str(path))


def test_replay_answers_a_recorded_call_for_free(ledger_path: Path) -> None:
    _completed(Ledger.open(ledger_path), "d_a", PROMPT, "recorded answer")
    result = call(replay(ledger_path), request())
    assert result.text == "recorded answer"
    assert (result.provider, result.cost_usd, result.finish_reason) == ("replay", 0.0, "stop")
    assert (result.prompt_tokens, result.completion_tokens) == (11, 22)
    assert result.resolved_model == "vendor/stub-model-0301"


def test_replay_miss_is_a_clear_non_retryable_error(ledger_path: Path) -> None:
    _completed(Ledger.open(ledger_path), "d_a", PROMPT, "recorded answer")
    err = failure(replay(ledger_path), request("a prompt nobody recorded"))
    assert err.error_class == "ReplayMiss" and not err.retryable
    assert str(ledger_path) in err.message and "stub_m" in err.message


def test_replay_requires_the_same_model(ledger_path: Path) -> None:
    _completed(Ledger.open(ledger_path), "d_a", PROMPT, "recorded answer", model_id="other_model")
    assert failure(replay(ledger_path), request()).error_class == "ReplayMiss"


def test_replay_prefers_the_same_gen_and_the_newest_attempt(ledger_path: Path) -> None:
    ledger = Ledger.open(ledger_path)
    _completed(ledger, "d_test1", PROMPT, "replicate one, first attempt")
    _completed(ledger, "d_test1", PROMPT, "replicate one, retried", attempt=2)
    _completed(ledger, "d_other", PROMPT, "replicate two")
    provider = replay(ledger_path)
    assert call(provider, request()).text == "replicate one, retried"
    stranger = CallRequest(gen_id="d_new", stage="draft", prompt=PROMPT, model_id="stub_m",
                           provider_model="vendor/stub-model")
    assert call(provider, stranger).text == "replicate two"  # any recorded answer to that prompt


def test_replay_answers_from_imported_generations(ledger_path: Path) -> None:
    ledger = Ledger.open(ledger_path)
    ledger.append([NewEvent(ev.gen_stream("d_imp"), ev.GENERATION_IMPORTED, {
        "gen_id": "d_imp", "stage": "draft", "template_id": "t1", "model_id": "stub_m", "replicate": 1,
        "generator": "llm", "status": "completed", "prompt_hash": text_hash(PROMPT),
        "raw_hash": text_hash("imported answer"), "finish_reason": "stop", "source": "test",
        "metadata": {}})], texts=[PROMPT, "imported answer"])
    assert call(replay(ledger_path), request()).text == "imported answer"


def test_replay_index_is_shared_between_models_until_the_ledger_changes(ledger_path: Path) -> None:
    ledger = Ledger.open(ledger_path)
    _completed(ledger, "d_a", PROMPT, "first answer")
    first, second = replay(ledger_path), replay(ledger_path, model_id="judge_b")
    assert first.index is second.index  # built once for all models of a run
    _completed(ledger, "d_b", "a later prompt", "later answer")
    later = replay(ledger_path)
    assert later.index is not first.index
    req = CallRequest(gen_id="d_b", stage="draft", prompt="a later prompt", model_id="stub_m", provider_model="m")
    assert call(later, req).text == "later answer"


def test_replay_without_a_ledger_is_a_clear_error(tmp_path: Path) -> None:
    factory = plugins.providers().get("replay")
    with pytest.raises(ProviderError, match="--replay-from"):
        factory(model("unused"))
    with pytest.raises(ProviderError, match="does not exist"):
        factory(model("unused"), replay_from=str(tmp_path / "missing.db"))


def test_replay_indexes_a_big_ledger_quickly(ledger_path: Path) -> None:
    ledger = Ledger.open(ledger_path)
    batch, texts = [], []
    for i in range(3000):
        prompt, answer = f"prompt {i}", f"answer {i}"
        stream = ev.gen_stream(f"d_{i}")
        batch += [NewEvent(stream, ev.PROMPT_RENDERED, {"gen_id": f"d_{i}", "attempt": 1,
                                                          "prompt_hash": text_hash(prompt), "chars": 8,
                                                          "template_id": "t", "template_hash": "h"}),
                  NewEvent(stream, ev.LLM_CALL_COMPLETED, {"gen_id": f"d_{i}", "attempt": 1, "call": 1,
                                                             "text_hash": text_hash(answer), "chars": 8,
                                                             "latency_s": 0.1, "model_id": "stub_m",
                                                             "provider": "openai", "offline": False})]
        texts += [prompt, answer]
    ledger.append(batch, texts=texts)
    started = time.perf_counter()
    provider = replay(ledger_path)
    assert time.perf_counter() - started < 2.0
    assert len(provider.index) == 3000
    req = CallRequest(gen_id="d_x", stage="draft", prompt="prompt 2999", model_id="stub_m", provider_model="m")
    assert call(provider, req).text == "answer 2999"


def test_providers_satisfy_the_protocol(tmp_path: Path, ledger_path: Path) -> None:
    registry = plugins.providers()
    assert isinstance(registry.get("openai")(model("http://127.0.0.1:9")), Provider)
    assert isinstance(registry.get("offline")(model("unused")), Provider)
    assert isinstance(registry.get("replay")(model("unused"), replay_from=str(ledger_path)), Provider)
    assert json.dumps(sorted(registry.items))  # names are plain strings


def test_openai_refusal_is_kept_as_the_answer_text(server: StubLLMServer) -> None:
    body = {"id": "r1", "model": "m", "choices": [{"message": {"role": "assistant", "content": None,
                                                              "refusal": "I can't help with that."},
                                                  "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5}}
    server.push(Reply(body=body))
    result = call(openai(server.base_url))
    assert result.text == "I can't help with that." and result.extra.get("refusal") is True
