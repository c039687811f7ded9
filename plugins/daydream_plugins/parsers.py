"""Built-in daydream plugin: the output parsers templates name in the catalog.

Each parser is a pure function from an LLM's raw answer to a ``Parsed`` result, or a
``ParseFailure`` carrying a reason and a preview of the text it looked at. The score parser is
deliberately strict: an answer whose score is missing, out of range or ambiguous fails loudly
instead of being read as 0 or guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from daydream.contracts import Parsed, ParseFailure
from daydream.hookspecs import hookimpl

PREVIEW_CHARS = 300
# How many trailing non-empty lines the score parser looks at: templates ask for the score on the
# last line, but models often add a short remark after it.
SCORE_WINDOW = 3

_ESSAY_OPEN = re.compile(r"<essay(?:\s[^>]*)?>", re.IGNORECASE)
_ESSAY_CLOSE = re.compile(r"</essay\s*>", re.IGNORECASE)
# <thinking> is what templates ask for; <think> is where reasoning models served locally (DeepSeek-R1,
# Qwen3 on Ollama / vLLM / llama.cpp) put their reasoning inside the answer itself.
_THINKING = re.compile(r"<(think|thinking)(?:\s[^>]*)?>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_IDEA = re.compile(
    r"<essay-idea\s+stage\s*=\s*[\"']?(\d+)[\"']?\s*>(.*?)(?:</essay-idea\s*>|(?=<essay-idea[\s>])|\Z)",
    re.IGNORECASE | re.DOTALL,
)
# A score line: optional "final"/"overall"/"total", the word score (also "Score_0_9" or
# "Score (0-9)"), a ":" or "=", then the value part judged separately below.
_SCORE_LABEL = re.compile(
    r"^(?:final|overall|total)?\s*score(?:[\s_]*\(?0\s*[-–_]\s*9\)?)?\s*[:=]\s*(.*)$",
    re.IGNORECASE,
)
# The only value shapes accepted: "7", "7.5", "7/9", "7 / 9", "7 out of 9", "7 (out of 9)", with an
# optional final period.
_SCORE_VALUE = re.compile(
    r"^(\d+(?:\.\d+)?)(?:\s*\(?\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?)\s*\)?)?\s*\.?$", re.IGNORECASE)


def _preview(text: str) -> str:
    return text.strip()[:PREVIEW_CHARS]


def _tail_preview(lines: list[str]) -> str:
    return "\n".join(lines)[-PREVIEW_CHARS:]


def _require_text(text: str, parser: str, raw: str) -> str:
    if not text.strip():
        raise ParseFailure(f"{parser}: the parsed text is empty", _preview(raw))
    return text


def parse_identity(raw: str) -> Parsed:
    """The raw answer unchanged (fails only when it is empty)."""
    return Parsed(_require_text(raw, "identity", raw))


def _first_essay_block(text: str) -> str | None:
    opened = _ESSAY_OPEN.search(text)
    if opened is None:
        return None
    rest = text[opened.end():]
    closed = _ESSAY_CLOSE.search(rest)
    # A truncated answer may never close the tag: keep what was written.
    return (rest[:closed.start()] if closed else rest).strip()


def parse_essay_block(raw: str) -> Parsed:
    """The first ``<essay>…</essay>`` block (case-insensitive); an unclosed tag keeps the rest."""
    block = _first_essay_block(raw)
    if block is None:
        raise ParseFailure("essay_block: no <essay> tag in the answer", _preview(raw))
    return Parsed(_require_text(block, "essay_block", raw))


def parse_essay_block_lenient(raw: str) -> Parsed:
    """Like ``essay_block`` after removing ``<thinking>`` (and ``<think>``) blocks, falling back to the
    whole text."""
    stripped = _THINKING.sub("", raw)
    block = _first_essay_block(stripped)
    text = block if block is not None and block.strip() else stripped.strip()
    return Parsed(_require_text(text, "essay_block_lenient", raw))


def parse_essay_idea_last(raw: str) -> Parsed:
    """The ``<essay-idea stage="N">`` block with the highest stage (the last one on ties)."""
    best: tuple[int, str] | None = None
    for match in _IDEA.finditer(raw):
        stage = int(match.group(1))
        if best is None or stage >= best[0]:
            best = (stage, match.group(2).strip())
    if best is None:
        raise ParseFailure('essay_idea_last: no <essay-idea stage="N"> block in the answer', _preview(raw))
    if not best[1]:
        raise ParseFailure(f"essay_idea_last: the stage {best[0]} block is empty", _preview(raw))
    return Parsed(best[1])


_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))  # zero-width characters


def _clean_line(line: str) -> str:
    # Markdown decoration around the label or value ("**Score:** 7", "__SCORE: 7__", "- `SCORE: 7`",
    # "### Score: 7"), and invisible zero-width characters some models emit.
    line = line.translate(_INVISIBLE).replace("*", "").replace("__", "").replace("`", "").strip()
    line = re.sub(r"^(?:#+|[-•>]+)\s*", "", line).strip()
    if line.startswith("|"):
        # A markdown table row: "| SCORE | 7 |" reads as "SCORE: 7". Every further cell stays in
        # the value, so "| Score | 7 | 8 |" is ambiguous rather than silently the first number.
        cells = [cell.strip() for cell in line.strip("|").split("|") if cell.strip()]
        line = cells[0] if len(cells) == 1 else f"{cells[0]}: {' '.join(cells[1:])}" if cells else ""
    return line


def _format_score(value: float) -> str:
    return f"{value:g}"


def parse_score(raw: str) -> Parsed:
    """A 0–9 score from the last lines (``SCORE: 7``, ``**Score:** 7.5``, ``Final score: 8``, ``7/9``).

    Fails when no score line is found, when a score line's value is anything but one number (``7 or
    8``), when the scale is not 9, when the value is outside 0–9, or when the last lines give two
    different scores.
    """
    tail = [line.strip() for line in raw.splitlines() if line.strip()][-SCORE_WINDOW:]
    preview = _tail_preview(tail)
    found: list[float] = []
    for line in tail:
        label = _SCORE_LABEL.match(_clean_line(line))
        if label is None:
            continue
        value_part = label.group(1).strip()
        value = _SCORE_VALUE.match(value_part)
        if value is None:
            if re.search(r"\d", value_part):
                raise ParseFailure(f"score: ambiguous score value {value_part!r}", preview)
            continue  # "Score: see the rubric above" is prose, not a score
        if value.group(2) is not None and float(value.group(2)) != 9:
            raise ParseFailure(f"score: {value_part!r} is not on the 0-9 scale", preview)
        number = float(value.group(1))
        if not 0 <= number <= 9:
            raise ParseFailure(f"score: {value.group(1)} is outside the 0-9 range", preview)
        found.append(number)
    if not found:
        raise ParseFailure(f"score: no score line (like 'SCORE: 7') in the last {SCORE_WINDOW} lines",
                           preview)
    if len(set(found)) > 1:
        shown = ", ".join(_format_score(v) for v in found)
        raise ParseFailure(f"score: the last lines give different scores ({shown})", preview)
    return Parsed(_format_score(found[-1]), score=found[-1])


PARSERS: dict[str, Callable[[str], Parsed]] = {
    "identity": parse_identity,
    "essay_block": parse_essay_block,
    "essay_block_lenient": parse_essay_block_lenient,
    "essay_idea_last": parse_essay_idea_last,
    "score": parse_score,
    # The previous pipeline's catalog calls the score parser by this name.
    "in_last_line": parse_score,
}


@hookimpl
def register_parsers(register: Callable[[str, Callable[[str], Parsed]], None]) -> None:
    """Register the built-in parsers."""
    for name, parse in PARSERS.items():
        register(name, parse)
