"""Built-in daydream plugin: the ``replay`` provider, answering from another ledger's recorded calls.

Given ``replay_from=PATH`` it opens that ledger read-only and indexes, in one pass over its events,
every completed call (and every imported generation with a raw answer) by prompt hash and model. A
request with the same prompt hash and model gets the recorded answer for free; the same gen_id is
preferred so replicates of one prompt keep their own answers. A miss is a clear, non-retryable error.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daydream.contracts import CallFailed, CallRequest, CallResult
from daydream.errors import DaydreamError, ProviderError
from daydream.hookspecs import hookimpl

if TYPE_CHECKING:  # the ledger (SQLAlchemy) is imported when a replay provider is made, not at load
    from daydream.ledger.store import Ledger

PROVIDER_NAME = "replay"

_INDEX_SQL = """
SELECT type,
       json_extract(payload, '$.gen_id'), json_extract(payload, '$.attempt'),
       json_extract(payload, '$.model_id'), json_extract(payload, '$.prompt_hash'),
       json_extract(payload, '$.text_hash'), json_extract(payload, '$.raw_hash'),
       json_extract(payload, '$.finish_reason'), json_extract(payload, '$.prompt_tokens'),
       json_extract(payload, '$.completion_tokens'), json_extract(payload, '$.resolved_model')
FROM events
WHERE type IN (?, ?, ?)
ORDER BY seq
"""


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One recorded answer: where its text is and what was recorded about it."""

    gen_id: str
    text_hash: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    resolved_model: str | None


@dataclass
class ReplayIndex:
    """Recorded answers of one ledger by (prompt hash, model id), and by gen_id within those."""

    by_prompt: dict[tuple[str, str], RecordedCall]
    by_gen: dict[tuple[str, str, str], RecordedCall]

    @classmethod
    def build(cls, ledger: Ledger, model_id: str | None = None) -> ReplayIndex:
        """Index ``ledger`` in one pass; with ``model_id``, only that model's calls are kept."""
        prompts: dict[tuple[str, int], str] = {}
        by_prompt: dict[tuple[str, str], RecordedCall] = {}
        by_gen: dict[tuple[str, str, str], RecordedCall] = {}
        # The event classes load when a replay starts, not with the plugins (start-up).
        from daydream.ledger import events as ev

        with ledger.backend.read() as conn:
            cursor = conn.execute(_INDEX_SQL, (ev.PROMPT_RENDERED, ev.LLM_CALL_COMPLETED, ev.GENERATION_IMPORTED))
            while rows := cursor.fetchmany(10_000):
                for (type_, gen_id, attempt, model, prompt_hash, call_hash, raw_hash, finish,
                     p_tokens, c_tokens, resolved) in rows:
                    attempt = _int(attempt)
                    if type_ == ev.PROMPT_RENDERED:
                        prompts[(gen_id, attempt)] = prompt_hash
                        continue
                    if model_id is not None and model != model_id:
                        continue
                    if type_ == ev.LLM_CALL_COMPLETED:
                        prompt_hash = prompts.get((gen_id, attempt))
                        answer_hash = call_hash
                    else:  # GenerationImported
                        answer_hash = raw_hash
                    if not prompt_hash or not answer_hash or not model:
                        continue
                    # Later events overwrite earlier ones: the newest recorded answer wins. (A
                    # PostgreSQL ledger's json_extract gives text: numbers are made numbers.)
                    call = RecordedCall(gen_id, answer_hash, finish, _int(p_tokens), _int(c_tokens), resolved)
                    by_prompt[(prompt_hash, model)] = call
                    by_gen[(gen_id, prompt_hash, model)] = call
        return cls(by_prompt, by_gen)

    def find(self, gen_id: str, prompt_hash: str, model_id: str) -> RecordedCall | None:
        """The recorded answer for this prompt and model, preferring the same gen_id."""
        return self.by_gen.get((gen_id, prompt_hash, model_id)) or self.by_prompt.get((prompt_hash, model_id))

    def __len__(self) -> int:
        return len(self.by_prompt)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


# The runner creates one provider per catalog model; they all replay the same ledger, so the index
# (one pass over a possibly large ledger) is built once and shared while the file is unchanged.
_LAST_INDEX: dict[tuple[str, tuple[int, ...]], ReplayIndex] = {}


def _file_stamp(path: Path) -> tuple[int, ...]:
    stamp: list[int] = []
    for part in (path, Path(f"{path}-wal")):
        try:
            info = part.stat()
            stamp += [info.st_mtime_ns, info.st_size]
        except FileNotFoundError:
            stamp += [0, 0]
    return tuple(stamp)


def _shared_index(ledger: Ledger, url: str | None = None) -> ReplayIndex:
    # A server's ledger is unchanged while its last seq is (an append-only chain).
    key = (url, (ledger.last_seq(),)) if url else (str(ledger.path.resolve()), _file_stamp(ledger.path))
    index = _LAST_INDEX.get(key)
    if index is None:
        # Not filtered by model: requests name their model_id, and one index serves all models.
        index = ReplayIndex.build(ledger)
        _LAST_INDEX.clear()
        _LAST_INDEX[key] = index
    return index


class ReplayProvider:
    """Answers requests with texts recorded in another ledger; costs nothing, never calls out."""

    name = PROVIDER_NAME
    # Nothing leaves the machine and nothing is paid: the runner records no LLMCallSent for it.
    local = True

    def __init__(self, model: dict[str, Any], replay_from: str | os.PathLike[str]) -> None:
        self.model = model
        self.model_id = str(model.get("id"))
        from daydream.ledger.pg_backend import is_postgres_url, redact

        url = str(replay_from) if is_postgres_url(str(replay_from)) else None
        # What messages name: the file, or the server's URL without its password.
        self.path: Any = redact(url) if url else Path(replay_from)
        if url is None and not self.path.is_file():
            raise ProviderError(f"--replay-from {str(self.path)!r}: the file does not exist; pass an existing "
                                "ledger file or a postgresql:// URL")
        try:
            from daydream.ledger.store import Ledger

            self.ledger = Ledger.open(url or self.path, readonly=True)
            self.index = _shared_index(self.ledger, url)
        except DaydreamError as exc:
            raise ProviderError(f"--replay-from {str(self.path)!r} cannot be replayed: {_why(exc)}; "
                                "nothing was run") from None
        except Exception as exc:  # a SQLite file of another application has no events table
            raise ProviderError(f"--replay-from {str(self.path)!r} is not a daydream ledger "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                                "nothing was run") from None

    def check_source(self) -> None:
        """Refuse a ledger with nothing to replay (the runner asks before claiming anything, so an
        empty ledger is one clear error instead of a miss for every generation)."""
        if not len(self.index):
            raise ProviderError(f"--replay-from {str(self.path)!r} holds no recorded LLM answer to replay "
                                "(no completed call, no imported response); nothing was run")

    def has_answer(self, request: CallRequest) -> bool:
        """Whether this ledger recorded an answer for ``request`` (checked before claiming it)."""
        from daydream.ledger.store import text_hash

        prompt_hash = request.prompt_hash or text_hash(request.prompt)
        return self.index.find(request.gen_id, prompt_hash, request.model_id) is not None

    async def complete(self, request: CallRequest) -> CallResult:
        """The recorded answer to ``request``, or ``CallFailed('ReplayMiss')``."""
        from daydream.ledger.store import text_hash

        started = time.perf_counter()
        prompt_hash = request.prompt_hash or text_hash(request.prompt)
        call = self.index.find(request.gen_id, prompt_hash, request.model_id)
        if call is None:
            raise CallFailed(
                "ReplayMiss", f"replay ledger {str(self.path)!r} has no recorded answer for model "
                f"{request.model_id} and prompt {prompt_hash[:16]}… (gen {request.gen_id})",
                retryable=False)
        text = self.ledger.get_text(call.text_hash)
        if text is None:
            raise CallFailed("ReplayMiss", f"replay ledger {str(self.path)!r} lacks the text "
                             f"{call.text_hash[:16]}… recorded for gen {call.gen_id}", retryable=False)
        return CallResult(
            text=text, finish_reason=call.finish_reason, prompt_tokens=call.prompt_tokens,
            completion_tokens=call.completion_tokens, cost_usd=0.0,
            latency_s=time.perf_counter() - started, requested_model=request.provider_model,
            resolved_model=call.resolved_model, request_id=None, provider=PROVIDER_NAME,
            extra={"replayed_from": str(self.path), "replayed_gen_id": call.gen_id},
        )

    async def aclose(self) -> None:
        """Release the other ledger's connections."""
        self.ledger.close()


def _why(exc: Exception) -> str:
    text = str(exc)
    # Ledger.open's own advice ("run 'daydream init'") is wrong for a file we only read.
    return text.split(": run 'daydream init", 1)[0]


def create_replay_provider(model: dict[str, Any], **options: Any) -> ReplayProvider:
    """Factory for the ``replay`` provider; needs the ``replay_from`` option."""
    path = options.get("replay_from")
    if not path:
        raise ProviderError(f"model {model.get('id')} uses the replay provider but no ledger to replay "
                            "was given; pass --replay-from PATH")
    return ReplayProvider(model, path)


@hookimpl
def register_providers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the ``replay`` provider."""
    register(PROVIDER_NAME, create_replay_provider)
