"""Built-in daydream plugin: the ``openai`` provider for any OpenAI-compatible chat endpoint.

One ``complete()`` is one HTTP attempt against ``{base_url}/chat/completions`` (OpenRouter by
default; OpenAI, Ollama, vLLM and llama.cpp servers through the model's ``base_url``). Failures are
classified for the runner: retryable (429, 408, 5xx, timeouts, connection errors, unreadable
answers, with the server's ``Retry-After``), fatal for the model (401/403), or plain errors. The API
key is read from the model's environment variable at call time and never appears in a result or
an error message.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from daydream.contracts import CallFailed, CallRequest, CallResult
from daydream.errors import ProviderError
from daydream.hookspecs import hookimpl

if TYPE_CHECKING:  # httpx is imported when a provider is made or called, not when plugins load
    import ssl

    import httpx

PROVIDER_NAME = "openai"
OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MAX_RESPONSE_BYTES = 1_000_000
ERROR_EXCERPT_CHARS = 300


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "inf" and "nan" parse as floats; waiting forever (or for nan) is never what was meant.
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def is_openrouter(base_url: str) -> bool:
    """Whether ``base_url`` points at OpenRouter (which reports cost when asked)."""
    import httpx

    return "openrouter.ai" in httpx.URL(base_url).host


def compute_cost(prompt_tokens: int | None, completion_tokens: int | None,
                 price_in: float | None, price_out: float | None) -> float | None:
    """Cost in USD from catalog prices per 1M tokens; None when tokens or prices are unknown."""
    if prompt_tokens is None or completion_tokens is None or price_in is None or price_out is None:
        return None
    return (prompt_tokens * float(price_in) + completion_tokens * float(price_out)) / 1_000_000


def _number_or_none(value: Any) -> float | None:
    """A finite number from a JSON number or a numeric string (some servers quote usage numbers)."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _int_or_none(value: Any) -> int | None:
    number = _number_or_none(value)
    return None if number is None else int(number)


def _content_text(content: Any) -> str | None:
    """The answer text from ``message.content``: a string, or a list of parts whose text parts join.

    Raises ``TypeError`` for anything else (no text part at all included), so the caller reports an
    invalid answer instead of recording an empty one.
    """
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part["text"] for part in content
                 if isinstance(part, dict) and part.get("type", "text") in ("text", "output_text")
                 and isinstance(part.get("text"), str)]
        if texts:
            return "".join(texts)
    raise TypeError("content is neither a string nor a list of text parts")


def _excerpt(text: str, key: str | None, *, one_line: bool = True) -> str:
    """An excerpt of a response body with the key scrubbed *before* cutting.

    Cutting first could leave the part of an echoed key that precedes the cut. ``one_line``
    collapses whitespace, so an HTML error page does not turn an error message into several lines.
    """
    if key:
        text = text.replace(key, "***")
    return " ".join(text.split())[:ERROR_EXCERPT_CHARS] if one_line else text[:ERROR_EXCERPT_CHARS]


@dataclass(frozen=True)
class _Answer:
    """A response read in full (within the size cap): what the failure and result parsers need."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    encoding: str

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding, errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class OpenAIProvider:
    """An OpenAI-compatible chat-completions client for one catalog model."""

    name = PROVIDER_NAME

    def __init__(self, model: dict[str, Any], *, timeout_s: float | None = None,
                 max_response_bytes: int | None = None) -> None:
        self.model = model
        self.model_id = str(model.get("id"))
        self.base_url = str(model.get("base_url") or OPENROUTER_BASE_URL).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ProviderError(f"model {self.model_id}: base_url {self.base_url!r} is not an http(s) URL; "
                                "expected e.g. https://openrouter.ai/api/v1 or http://localhost:11434/v1")
        self.url = f"{self.base_url}/chat/completions"
        self.openrouter = is_openrouter(self.base_url)
        self.timeout_s = float(timeout_s if timeout_s is not None else DEFAULT_TIMEOUT_S)
        # The runner cuts an answer's text at max_response_bytes; the body around it (JSON,
        # escapes, usage) may be larger, but not without limit.
        limit = int(max_response_bytes if max_response_bytes is not None else DEFAULT_MAX_RESPONSE_BYTES)
        self.max_body_bytes = 4 * limit + 2**20
        self._clients: list[httpx.AsyncClient] = []
        self._idle: list[httpx.AsyncClient] = []
        self._ssl: ssl.SSLContext | None = None

    def _checkout(self) -> httpx.AsyncClient:
        # One client per request in flight, reused afterwards with its keep-alive connection.
        # httpcore 1.0's pool rescans every connection for every queued request (quadratic; see
        # encode/httpcore#1035), which caps a single shared client at ~150 requests/s at
        # concurrency 50. Single-connection clients avoid that scan; the runner bounds concurrency,
        # so the number of clients stays at its limit.
        import httpx

        if self._idle:
            return self._idle.pop()
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()  # load CA certificates once, not per client
        client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s), verify=self._ssl,
                                   limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        self._clients.append(client)
        return client

    def _api_key(self) -> str | None:
        env = self.model.get("api_key_env")
        if not env:
            return None  # local servers (Ollama, llama.cpp) need no key
        # Surrounding whitespace is never part of a key: a .env file with Windows line endings
        # leaves a "\r" that would otherwise make the header illegal (and httpx's error quote it).
        key = (os.environ.get(str(env)) or "").strip()
        if not key:
            raise CallFailed(
                "MissingAPIKey",
                f"environment variable ${env} is not set: model {self.model_id} needs its API key there",
                retryable=False, fatal_for_model=True)
        if not all("!" <= char <= "~" for char in key):
            # Not sendable as a header; say where to look without showing any of the value.
            raise CallFailed(
                "InvalidAPIKey",
                f"environment variable ${env} holds a value with spaces, control or non-ASCII characters: "
                f"not a usable API key for model {self.model_id}", retryable=False, fatal_for_model=True)
        return key

    def _body(self, request: CallRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.provider_model or self.model.get("model"),
            "messages": [{"role": "user", "content": request.prompt}],
        }
        temperature = request.temperature if request.temperature is not None else self.model.get("temperature")
        max_tokens = request.max_tokens if request.max_tokens is not None else self.model.get("max_tokens")
        if temperature is not None:
            body["temperature"] = float(temperature)
        if max_tokens is not None:
            body["max_tokens"] = int(max_tokens)
        if self.openrouter:
            body["usage"] = {"include": True}
        return body

    async def complete(self, request: CallRequest) -> CallResult:
        """Make one attempt at ``request``; raise ``CallFailed`` when it does not succeed."""
        import httpx

        key = self._api_key()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if self.openrouter:
            headers["X-Title"] = "daydream"
        started = time.perf_counter()
        client = self._checkout()
        try:
            async with client.stream("POST", self.url, json=self._body(request), headers=headers) as streamed:
                response = await self._read(streamed, started)
        except httpx.TimeoutException as exc:
            raise CallFailed("Timeout", f"no answer from {self.base_url} for model {self.model_id} "
                             f"within {self.timeout_s:g}s ({type(exc).__name__})", retryable=True,
                             latency_s=time.perf_counter() - started) from None
        except httpx.TransportError as exc:
            raise CallFailed("ConnectionError", self._scrub(
                f"cannot reach {self.base_url} for model {self.model_id}: {type(exc).__name__}: {exc}", key),
                retryable=True, latency_s=time.perf_counter() - started) from None
        except httpx.DecodingError as exc:  # a body the server claimed to encode but did not
            raise CallFailed("MalformedResponse", self._scrub(
                f"unreadable answer from {self.base_url} for model {self.model_id}: {exc}", key),
                retryable=True, latency_s=time.perf_counter() - started) from None
        except httpx.RequestError as exc:  # redirect loops and the like: trying again will not help
            raise CallFailed("RequestError", self._scrub(
                f"request to {self.base_url} for model {self.model_id} failed: {type(exc).__name__}: {exc}",
                key), retryable=False, latency_s=time.perf_counter() - started) from None
        finally:
            self._idle.append(client)
        latency = time.perf_counter() - started
        if response.status_code != 200:
            raise self._http_failure(response, latency, key)
        return self._result(request, response, latency, key)

    async def _read(self, streamed: httpx.Response, started: float) -> _Answer:
        """The whole body, unless it outgrows ``max_body_bytes``: then the call fails without
        holding more of it in memory (a server must not be able to exhaust ours)."""
        chunks: list[bytes] = []
        total = 0
        async for chunk in streamed.aiter_bytes():
            total += len(chunk)
            if total > self.max_body_bytes:
                raise CallFailed(
                    "ResponseTooLarge", f"answer from {self.base_url} for model {self.model_id} is over "
                    f"{self.max_body_bytes:,} bytes (4 x --max-response-bytes + 1 MiB); stopped reading it",
                    retryable=False, status=streamed.status_code, latency_s=time.perf_counter() - started)
            chunks.append(chunk)
        return _Answer(streamed.status_code, streamed.headers, b"".join(chunks), streamed.encoding or "utf-8")

    def _scrub(self, text: str, key: str | None) -> str:
        # Some providers echo (part of) the key in error bodies; never pass it on.
        return text.replace(key, "***") if key else text

    def _http_failure(self, response: _Answer, latency: float, key: str | None) -> CallFailed:
        status = response.status_code
        excerpt = _excerpt(response.text, key)
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status in (401, 403):
            env = self.model.get("api_key_env") or "(no api_key_env set in the catalog)"
            label = "401 Unauthorized" if status == 401 else "403 Forbidden"
            return CallFailed(
                "Unauthorized" if status == 401 else "Forbidden",
                f"{label} from {self.base_url} for model {self.model_id}: check the API key in ${env}",
                retryable=False, fatal_for_model=True, status=status, latency_s=latency)
        if status == 402:
            # Out of credits (OpenRouter): true of the account, not of this call, so stop the
            # model's work (it stays pending for a later run) rather than fail every generation.
            env = self.model.get("api_key_env") or "(no api_key_env set in the catalog)"
            return CallFailed("PaymentRequired", f"402 Payment Required from {self.base_url} for model "
                              f"{self.model_id}: add credits to the account of the key in ${env} ({excerpt})",
                              retryable=False, fatal_for_model=True, status=status, latency_s=latency)
        if status == 404:
            # Wrong base URL or a model slug the endpoint does not know: true of every call of this
            # model, so stop its work (left pending) instead of failing each generation in turn.
            return CallFailed("NotFound", f"404 Not Found from {self.url} for model {self.model_id} "
                              f"({self.model.get('model')!r}): check its base_url and model name in the "
                              f"catalog ({excerpt})", retryable=False, fatal_for_model=True, status=status,
                              latency_s=latency)
        if status == 429:
            error_class, retryable = "RateLimited", True
        elif status == 408:
            error_class, retryable = "RequestTimeout", True
        elif status >= 500:
            error_class, retryable = "ServerError", True
        else:
            error_class, retryable = "ClientError", False
        return CallFailed(error_class, f"HTTP {status} from {self.base_url} for model {self.model_id}: {excerpt}",
                          retryable=retryable, status=status, retry_after=retry_after, latency_s=latency,
                          raw_text=excerpt or None)

    def _upstream_failure(self, error: Any, latency: float, key: str | None,
                          raw_text: str | None = None) -> CallFailed:
        """A failure from an error object inside a 200 answer, classified by its code."""
        error = error if isinstance(error, dict) else {"message": str(error)}
        code = _int_or_none(error.get("code"))
        said = _excerpt(str(error.get("message", "")), key)
        retryable = code is None or code in (408, 429) or code >= 500
        return CallFailed("UpstreamError", f"error from {self.base_url} for model {self.model_id}"
                          f"{f' (code {code})' if code else ''}: {said}", retryable=retryable,
                          status=code, latency_s=latency, raw_text=raw_text or None)

    def _result(self, request: CallRequest, response: _Answer, latency: float,
                key: str | None) -> CallResult:
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise CallFailed("MalformedResponse", f"answer from {self.base_url} for model {self.model_id} "
                             "is not valid JSON", retryable=True, status=response.status_code, latency_s=latency,
                             raw_text=_excerpt(response.text, key, one_line=False)) from None
        if isinstance(data, dict) and "error" in data and not data.get("choices"):
            # OpenRouter reports upstream failures as 200 with an error object.
            raise self._upstream_failure(data["error"], latency, key)
        try:
            choice = data["choices"][0]
            message = choice.get("message") or {}
            content = _content_text(message.get("content"))
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise CallFailed("InvalidResponse", f"answer from {self.base_url} for model {self.model_id} "
                             f"has no choices[0].message.content ({exc})", retryable=True,
                             status=response.status_code, latency_s=latency,
                             raw_text=_excerpt(response.text, key, one_line=False)) from None
        if choice.get("finish_reason") == "error":
            # OpenRouter's normalised finish reason when the upstream broke off mid-answer: what
            # came is incomplete, so it is a failed attempt (its text kept as the raw excerpt).
            raise self._upstream_failure(choice.get("error") or {"message": "finish_reason 'error'"},
                                         latency, key, raw_text=_excerpt(content or "", key, one_line=False))
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt_tokens = _int_or_none(usage.get("prompt_tokens"))
        completion_tokens = _int_or_none(usage.get("completion_tokens"))
        reported = _number_or_none(usage.get("cost"))
        provider_cost = reported is not None
        if reported is not None:
            cost: float | None = reported
        else:
            cost = compute_cost(prompt_tokens, completion_tokens,
                                self.model.get("price_in"), self.model.get("price_out"))
        extra: dict[str, Any] = {}
        reasoning = message.get("reasoning") or message.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            extra["reasoning_chars"] = len(reasoning)
        refusal = message.get("refusal")
        if not content and isinstance(refusal, str) and refusal.strip():
            # The model declined (OpenAI's structured refusal): keep what it said as the answer, so
            # the ledger shows why the generation then fails to parse or validate.
            content = refusal
            extra["refusal"] = True
        if provider_cost:
            extra["cost_source"] = "provider"
        elif cost is not None:
            extra["cost_source"] = "catalog"
        return CallResult(
            text=content or "",  # reasoning-only answers have no content: a result all the same
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost,
            latency_s=latency, requested_model=str(request.provider_model or self.model.get("model")),
            resolved_model=data.get("model"),
            request_id=data.get("id") or response.headers.get("x-request-id"),
            provider=PROVIDER_NAME, extra=extra,
        )

    async def aclose(self) -> None:
        """Close every HTTP connection this provider opened."""
        clients, self._clients, self._idle = self._clients, [], []
        for client in clients:
            await client.aclose()


def create_openai_provider(model: dict[str, Any], **options: Any) -> OpenAIProvider:
    """Factory for the ``openai`` provider; honours the ``timeout_s`` and ``max_response_bytes`` options."""
    return OpenAIProvider(model, timeout_s=options.get("timeout_s"),
                          max_response_bytes=options.get("max_response_bytes"))


@hookimpl
def register_providers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the ``openai`` provider."""
    register(PROVIDER_NAME, create_openai_provider)
