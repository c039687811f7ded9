"""A loopback OpenAI-compatible server for tests and benchmarks: ``StubLLMServer``.

It answers ``POST /chat/completions`` (and ``/v1/chat/completions``) on 127.0.0.1 from an asyncio
loop in a background thread, so many slow requests overlap the way they would against a real
provider. Tests queue scripted replies (status codes, ``Retry-After``, hangs, malformed JSON,
truncated answers); otherwise it answers like the offline model. It records every request (never the
API key itself) and counts calls. ``hold()`` keeps later requests waiting (received, unanswered)
until ``release()``: how a test kills a runner between sending a request and hearing back. ``python -m daydream.testing --port P`` runs it standalone, with
``GET /_stub/stats`` reporting the counts to other processes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from daydream.offline_text import estimate_tokens, offline_answer

CHAT_PATHS = ("/chat/completions", "/v1/chat/completions")
STATS_PATH = "/_stub/stats"
MAX_BODY = 64 * 1024 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            408: "Request Timeout", 413: "Payload Too Large", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass
class Reply:
    """One scripted reply, used for the next request in order.

    ``action`` is ``None`` (send ``status``/``headers``/``body``; a ``None`` body on 200 means the
    default answer), ``"hang"`` (say nothing for ``hang_s`` seconds, longer than a client timeout),
    ``"malformed"`` (200 with a body that is not JSON), ``"length"`` (the default answer, cut short,
    with ``finish_reason: "length"``) or ``"close"`` (drop the connection without answering).
    ``delay_s`` overrides the server's latency for this reply.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    action: str | None = None
    delay_s: float | None = None
    hang_s: float = 30.0


@dataclass(frozen=True)
class RequestRecord:
    """What the server saw of one chat request. The API key itself is never kept."""

    index: int
    path: str
    model: str | None
    prompt: str | None
    received_at: float
    authorization_present: bool
    authorized: bool | None  # None when the server was given no key to compare against
    body: dict[str, Any] | None
    reply: str  # "default", "scripted <status>", "hang", "malformed", "length", "close"


def _as_reply(item: Reply | dict[str, Any] | str | int) -> Reply:
    if isinstance(item, Reply):
        return item
    if isinstance(item, str):
        return Reply(action=item)
    if isinstance(item, int):
        return Reply(status=item)
    return Reply(**item)


class StubLLMServer:
    """An OpenAI-compatible chat server on 127.0.0.1, run in a background thread.

    Use as a context manager (or ``start()`` / ``stop()``). ``base_url`` is ready once started.
    ``api_key``, when given, is compared (via its sha256) with each request's bearer token and a
    mismatch gets a 401; without it every request is accepted.
    """

    def __init__(self, *, latency_s: float = 0.0, script: Iterable[Reply | dict[str, Any] | str | int] = (),
                 api_key: str | None = None, port: int = 0, host: str = "127.0.0.1",
                 cost_usd: float | None = None, resolved_model_prefix: str = "") -> None:
        self.latency_s = latency_s
        self.host = host
        self.port = port
        self.cost_usd = cost_usd
        self.resolved_model_prefix = resolved_model_prefix
        self._key_digest = hashlib.sha256(api_key.encode()).hexdigest() if api_key else None
        self._script: deque[Reply] = deque(_as_reply(item) for item in script)
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._error: BaseException | None = None
        self._hold_from: int | None = None  # requests from this index on wait for release()
        self._gate: asyncio.Event | None = None
        self._held = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        """The URL to put in a model's ``base_url`` (without ``/v1``: both paths are served)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> StubLLMServer:
        """Start serving in a background thread; returns once the port is bound."""
        self._thread = threading.Thread(target=self._run, name="stub-llm-server", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop serving, cancel hanging replies and join the thread."""
        if self._loop is not None and self._stopped is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> StubLLMServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced to start() when binding failed
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        self._gate = asyncio.Event()
        self._gate.set()
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopped.wait()
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    # ------------------------------------------------------------------ test API
    def push(self, *replies: Reply | dict[str, Any] | str | int) -> None:
        """Queue scripted replies; each is used once, in order, before default answers resume."""
        with self._lock:
            self._script.extend(_as_reply(r) for r in replies)

    def hold(self, after: int = 0) -> None:
        """Receive (and record) requests as usual, but answer none after the first ``after`` of
        them (counted over the server's life) until ``release()``."""
        with self._lock:
            self._hold_from = len(self._records) + after if after else len(self._records)
        if self._loop is not None and self._gate is not None:
            self._loop.call_soon_threadsafe(self._gate.clear)

    def release(self) -> None:
        """Answer the held requests and stop holding."""
        with self._lock:
            self._hold_from = None
        if self._loop is not None and self._gate is not None:
            self._loop.call_soon_threadsafe(self._gate.set)

    @property
    def held(self) -> int:
        """Requests received and waiting for ``release()``."""
        with self._lock:
            return self._held

    @property
    def calls(self) -> int:
        """How many chat requests arrived (scripted or not)."""
        with self._lock:
            return len(self._records)

    @property
    def records(self) -> list[RequestRecord]:
        """A copy of the per-request records, in arrival order."""
        with self._lock:
            return list(self._records)

    @property
    def pending_script(self) -> int:
        """Scripted replies not used yet."""
        with self._lock:
            return len(self._script)

    def stats(self) -> dict[str, Any]:
        """Counts for ``GET /_stub/stats``: calls, and calls per prompt hash."""
        with self._lock:
            per_prompt: dict[str, int] = {}
            for r in self._records:
                key = hashlib.sha256((r.prompt or "").encode()).hexdigest()
                per_prompt[key] = per_prompt.get(key, 0) + 1
            return {"calls": len(self._records), "per_prompt": per_prompt,
                    "unauthorized": sum(1 for r in self._records if r.authorized is False)}

    # ------------------------------------------------------------------ HTTP
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, version = (lines[0].split(" ") + ["", "", ""])[:3]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length > MAX_BODY:
                    await self._send(writer, 413, {"error": {"message": "body too large"}}, close=True)
                    return
                body = await reader.readexactly(length) if length else b""
                keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
                path = path.split("?", 1)[0]
                if method == "GET" and path == STATS_PATH:
                    await self._send(writer, 200, self.stats(), close=not keep_alive)
                elif method == "POST" and path in CHAT_PATHS:
                    if not await self._chat(writer, headers, path, body, keep_alive):
                        return
                else:
                    await self._send(writer, 404, {"error": {"message": f"no route {method} {path}"}},
                                     close=not keep_alive)
                if not keep_alive:
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            return
        except asyncio.CancelledError:
            return
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _chat(self, writer: asyncio.StreamWriter, headers: dict[str, str], path: str,
                    raw: bytes, keep_alive: bool) -> bool:
        """Answer one chat request; returns False when the connection must be dropped."""
        try:
            payload = json.loads(raw or b"null")
        except ValueError:
            payload = None
        model = payload.get("model") if isinstance(payload, dict) else None
        prompt = _prompt_of(payload)
        auth = headers.get("authorization", "")
        authorized: bool | None = None
        if self._key_digest is not None:
            token = auth[7:] if auth.lower().startswith("bearer ") else ""
            authorized = hashlib.sha256(token.encode()).hexdigest() == self._key_digest
        with self._lock:
            index = len(self._records)
            reply = self._script.popleft() if self._script else None
            label = ("default" if reply is None else reply.action or f"scripted {reply.status}")
            if authorized is False:
                label = "unauthorized"
            self._records.append(RequestRecord(
                index=index, path=path, model=model, prompt=prompt, received_at=time.time(),
                authorization_present=bool(auth), authorized=authorized,
                body=payload if isinstance(payload, dict) else None, reply=label))
        close = not keep_alive
        if self._gate is not None and self._hold_from is not None and index >= self._hold_from:
            with self._lock:
                self._held += 1
            try:
                await self._gate.wait()
            finally:
                with self._lock:
                    self._held -= 1
        if authorized is False:
            await self._send(writer, 401, {"error": {"message": "invalid API key", "code": 401}}, close=close)
            return keep_alive
        delay = self.latency_s if reply is None or reply.delay_s is None else reply.delay_s
        if delay:
            await asyncio.sleep(delay)
        if reply is not None and reply.action == "hang":
            await asyncio.sleep(reply.hang_s)
            return False
        if reply is not None and reply.action == "close":
            return False
        if reply is not None and reply.action == "malformed":
            await self._send_raw(writer, 200, b'{"choices": [ {"message": oops', {}, close)
            return keep_alive
        if payload is None or prompt is None:
            await self._send(writer, 400, {"error": {"message": "expected a JSON body with messages"}},
                             close=close)
            return keep_alive
        if reply is None or reply.action == "length" or (reply.status == 200 and reply.body is None):
            body = self._default_answer(index, model, prompt, payload,
                                        truncated=reply is not None and reply.action == "length")
            await self._send(writer, 200, body, close, reply.headers if reply else None)
            return keep_alive
        await self._send(writer, reply.status, reply.body if reply.body is not None else
                         {"error": {"message": _REASONS.get(reply.status, "error"), "code": reply.status}},
                         close, reply.headers)
        return keep_alive

    def _default_answer(self, index: int, model: str | None, prompt: str, payload: dict[str, Any],
                        truncated: bool) -> dict[str, Any]:
        text = offline_answer(str(model), prompt)
        if truncated:
            text = text[: max(1, len(text) // 3)]
        usage: dict[str, Any] = {"prompt_tokens": estimate_tokens(prompt),
                                 "completion_tokens": estimate_tokens(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if self.cost_usd is not None:
            usage["cost"] = self.cost_usd
        return {
            "id": f"stub-{index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": f"{self.resolved_model_prefix}{model}",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "length" if truncated else "stop"}],
            "usage": usage,
        }

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: Any, close: bool,
                    headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if not isinstance(body, (bytes, str)) else (
            body.encode() if isinstance(body, str) else body)
        await self._send_raw(writer, status, data, headers or {}, close)

    @staticmethod
    async def _send_raw(writer: asyncio.StreamWriter, status: int, data: bytes, headers: dict[str, str],
                        close: bool) -> None:
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        if not any(name.lower() == "content-type" for name in headers):  # a scripted one replaces it
            head.append("Content-Type: application/json")
        head += [f"Content-Length: {len(data)}", f"Connection: {'close' if close else 'keep-alive'}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        await writer.drain()


def _prompt_of(payload: Any) -> str | None:
    if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
        return None
    parts = [m.get("content") for m in payload["messages"] if isinstance(m, dict)]
    texts = [p for p in parts if isinstance(p, str)]
    return "\n".join(texts) if texts else None


def main(argv: list[str] | None = None) -> None:
    """Run the stub server in the foreground until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m daydream.testing",
                                     description="A loopback OpenAI-compatible stub LLM server.")
    parser.add_argument("--port", type=int, default=0, help="port to bind on 127.0.0.1 (0: any free port)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each answer")
    parser.add_argument("--api-key-env", default=None,
                        help="name of an environment variable holding the key requests must carry")
    args = parser.parse_args(argv)
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    server = StubLLMServer(latency_s=args.latency, port=args.port, api_key=key).start()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    # The first line tells a parent process where to connect.
    print(f"listening on {server.base_url}", flush=True)
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
