"""Built-in daydream plugin: the output parsers templates name in the catalog.

Each parser is a pure function from an LLM's raw answer to a ``Parsed`` result, or a
``ParseFailure`` carrying a reason and a preview of the text it looked at. The score parser takes
the rubric's scale (``scale=(min, max)``) and reads what real judges write (labels anywhere in the
answer, markdown, tables, ``7/10``), but it is strict: an answer whose score is missing, out of
range, on another scale or ambiguous fails loudly instead of being read as 0, rescaled or guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from daydream.contracts import Parsed, ParseFailure
from daydream.hookspecs import hookimpl
from daydream.design.scales import DEFAULT_SCALE

PREVIEW_CHARS = 300

_ESSAY_OPEN = re.compile(r"<essay(?:\s[^>]*)?>", re.IGNORECASE)
_ESSAY_CLOSE = re.compile(r"</essay\s*>", re.IGNORECASE)
# <thinking> is what templates ask for; <think> is where reasoning models served locally (DeepSeek-R1,
# Qwen3 on Ollama / vLLM / llama.cpp) put their reasoning inside the answer itself.
_THINKING = re.compile(r"<(think|thinking)(?:\s[^>]*)?>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
# An <essay-idea> block, with or without attributes; it ends at its closing tag, at the next block,
# or at the end of a truncated answer.
_IDEA = re.compile(
    r"<essay-idea(?P<attrs>(?:\s[^>]*)?)>(?P<body>.*?)(?:</essay-idea\s*>|(?=<essay-idea[\s>])|\Z)",
    re.IGNORECASE | re.DOTALL,
)
_IDEA_STAGE = re.compile(r"\bstage\s*=\s*[\"']?\s*(\d+)\s*[\"']?", re.IGNORECASE)

def _preview(text: str) -> str:
    return text.strip()[:PREVIEW_CHARS]


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
    """The ``<essay-idea stage="N">`` block with the highest stage (the last one on ties).

    Blocks without a numeric ``stage`` attribute cannot be ordered by stage, so when no block has
    one the last ``<essay-idea>`` block is taken (the previous pipeline's documented behaviour).
    """
    staged: tuple[int, str] | None = None
    last: str | None = None
    for match in _IDEA.finditer(raw):
        body = match.group("body").strip()
        stage = _IDEA_STAGE.search(match.group("attrs"))
        if stage is None:
            last = body
        elif staged is None or int(stage.group(1)) >= staged[0]:
            staged = (int(stage.group(1)), body)
    if staged is not None:
        if not staged[1]:
            raise ParseFailure(f"essay_idea_last: the stage {staged[0]} block is empty", _preview(raw))
        return Parsed(staged[1])
    if last is None:
        raise ParseFailure("essay_idea_last: no <essay-idea> block in the answer", _preview(raw))
    if not last:
        raise ParseFailure("essay_idea_last: the last <essay-idea> block is empty", _preview(raw))
    return Parsed(last)


# ----------------------------------------------------------------------------- score
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))  # zero-width characters
_FENCE = re.compile(r"^\s*(?:```|~~~)")
# Markdown around a label or value: bold/italic stars, backticks, __bold__, _italic_ (not the
# underscores inside a word such as Score_0_9), blockquote marks, headings and bullets.
_LONE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_QUOTE = re.compile(r"^(?:>\s*)+")
_LEAD = re.compile(r"^(?:#{1,6}\s*|[-•+]\s+)+")
_ORDERED = re.compile(r"^\d{1,2}[.)]\s+")
_RULE = re.compile(r"^[-=_*\s]{3,}$")  # a horizontal rule, or the underline of a heading
_TABLE_SEPARATOR = re.compile(r"^\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
# The labels judges put before their score: SCORE, Score, Final Score, Overall score, Rating (any
# case; also as a JSON key, "final_score": 7), which may state a scale: "Score (0-10)",
# "Rating [1-5]", "Score_0_9", "Score (out of 10)".
_LABEL = re.compile(
    r"^[\"']?(?:(?:the|my|our)\s+)?(?:(?P<strong>final|overall)[\s_]+)?(?:score|rating)(?![A-Za-z])[\"']?"
    r"(?:\s*[(\[]\s*(?:(?P<lo>\d+)\s*(?:-|–|—|to)\s*(?P<hi>\d+)|out\s+of\s+(?P<of>\d+))\s*[)\]]"
    r"|_(?P<ulo>\d+)_(?P<uhi>\d+))?(?P<after>.*)$", re.IGNORECASE)
# A table row that names only the final or overall result ("| Overall | 7/10 |").
_TABLE_LABEL = re.compile(r"^(?P<strong>final|overall)\s*:?$", re.IGNORECASE)
# Between a label and its value: "Score: 7", "Score = 7", "Score is 7", "Score — 7", "Score - 7".
_SEPARATOR = re.compile(r"^\s*(?:[:=：]|is\b|-\s|–|—)\s*", re.IGNORECASE)
_STARTS_WITH_NUMBER = re.compile(r"^\s*[(\[]?\s*[-−+]?\d")
# The value forms: 7, 7.5, 7/10, 7 / 10, 7 out of 10, 7 (out of 10), (7/10), [7]. What follows on
# the line is judged apart (``_REST_OK``).
_VALUE = re.compile(
    r"^(?P<open>[(\[]\s*)?(?P<num>[-−+]?\d+(?:\.\d+)?)"
    r"(?:\s*(?P<paren>\(\s*)?(?:/|\bout\s+of\b)\s*(?P<den>\d+(?:\.\d+)?)\s*(?(paren)\)))?"
    r"\s*(?(open)[)\]])(?P<rest>.*)$", re.IGNORECASE)
# What may follow a value: nothing, punctuation, a remark set off by a dash, a comma or brackets
# ("7 — solid", "8/10 (strong originality)"), or a unit ("4 points"). A remark that holds another
# number ("7 or 8", "7-8", "7 because 3 ideas…") makes the value ambiguous.
_REST_OK = re.compile(r"^(?:[.,;:!)\]\-–—(→]|(?:points?|pts|stars?)\b)", re.IGNORECASE)
_HAS_DIGIT = re.compile(r"\d")


@dataclass(frozen=True)
class _Found:
    """One labelled score in an answer: ``value`` is None when the label is followed by numbers
    that are not one clean value ("7 or 8")."""

    line: int
    strong: bool  # labelled final or overall
    value: float | None
    shown: str  # the value as written
    denominator: float | None
    stated: tuple[int | None, int] | None  # the scale the label states, (None, max) for "out of"
    quoted: bool  # inside a blockquote or a fenced code block


def _clean(line: str) -> str:
    line = line.translate(_INVISIBLE).replace("*", "").replace("`", "").replace("__", "")
    return _LONE_UNDERSCORE.sub("", line).strip()


def _format_score(value: float) -> str:
    return f"{value:g}"


def _read_value(part: str) -> tuple[float | None, float | None, str] | None:
    """(value, denominator, as written) of a value part; value None when ambiguous; None when the
    part holds no number at all (prose, or the template's "X" echoed back)."""
    part = part.strip()
    if not _HAS_DIGIT.search(part):
        return None
    match = _VALUE.match(part)
    if match is None:
        return None, None, part
    rest = match.group("rest").strip()
    if rest and (_HAS_DIGIT.search(rest) or not _REST_OK.match(rest)):
        return None, None, part
    number = float(match.group("num").replace("−", "-"))
    denominator = float(match.group("den")) if match.group("den") else None
    return number, denominator, part[:match.start("rest")].strip()


def _label(text: str) -> tuple[bool, tuple[int | None, int] | None, str | None] | None:
    """(strong, stated scale, value part) of a label line; value part None for a label alone on
    its line (the value is on the next one); None when the line is not a label."""
    match = _LABEL.match(text) or _LABEL.match(_ORDERED.sub("", text, count=1))
    if match is None:
        return None
    stated: tuple[int | None, int] | None = None
    if match.group("hi") is not None:
        stated = (int(match.group("lo")), int(match.group("hi")))
    elif match.group("uhi") is not None:
        stated = (int(match.group("ulo")), int(match.group("uhi")))
    elif match.group("of") is not None:
        stated = (None, int(match.group("of")))
    after = match.group("after")
    strong = match.group("strong") is not None
    if after.strip() in ("", ":", "=", "："):
        return strong, stated, None
    separator = _SEPARATOR.match(after)
    if separator is not None:
        return strong, stated, after[separator.end():]
    if _STARTS_WITH_NUMBER.match(after):  # "Final Score 8/10"
        return strong, stated, after
    return None  # "Score the essay on…", "Final score calculation"


def _next_value(lines: list[str], start: int) -> tuple[int, str] | None:
    """The next non-empty line after a label that stands alone, if it starts with a number."""
    for index in range(start, len(lines)):
        text = _LEAD.sub("", _QUOTE.sub("", _clean(lines[index])))
        if not text or _RULE.match(text):
            continue
        text = text.strip("|").strip()
        return (index, text) if _STARTS_WITH_NUMBER.match(text) else None
    return None


def _table_row(cells: list[str], header: list[str] | None
               ) -> tuple[bool, tuple[int | None, int] | None, str | None] | None:
    """A table row whose first cell is a score label: (strong, stated scale, value cell)."""
    label = _label(cells[0])
    if label is not None and label[2] is None:
        strong, stated = label[0], label[1]
    elif _TABLE_LABEL.match(cells[0]):
        strong, stated = True, None
    else:
        return None
    column = None
    if header is not None:
        column = next((i for i, name in enumerate(header) if i > 0 and _LABEL.match(name)), None)
    if column is None:
        column = next((i for i in range(1, len(cells)) if cells[i]), None)
    if column is None or column >= len(cells):
        return None
    # Another cell that is a bare number makes the row ambiguous ("| Final score | 7 | 8 |");
    # cells of text are remarks.
    if any(i not in (0, column) and _VALUE.match(cell) and not _VALUE.match(cell).group("rest").strip()
           for i, cell in enumerate(cells)):
        return strong, stated, " ".join(cells[1:])
    return strong, stated, cells[column]


def _find_scores(raw: str) -> list[_Found]:
    lines = raw.splitlines()
    found: list[_Found] = []
    in_fence = False
    previous_row: list[str] | None = None
    header: list[str] | None = None
    skip_to = -1
    for index, original in enumerate(lines):
        if _FENCE.match(original):
            in_fence = not in_fence
            previous_row = header = None
            continue
        if index <= skip_to:
            continue
        text = _clean(original)
        quoted = in_fence or text.startswith(">")
        text = _LEAD.sub("", _QUOTE.sub("", text))
        if text.startswith("|"):
            cells = [cell.strip() for cell in text.strip().strip("|").split("|")]
            if _TABLE_SEPARATOR.match(text):
                header = previous_row
                continue
            previous_row = cells
            labelled = _table_row(cells, header) if len(cells) > 1 else _label(cells[0])
        else:
            previous_row = header = None
            labelled = _label(text)
        if labelled is None:
            continue
        strong, stated, part = labelled
        line = index
        if part is None:
            nxt = _next_value(lines, index + 1)
            if nxt is None:
                continue
            line, part = nxt
            skip_to = line
        value = _read_value(part)
        if value is None:
            continue
        found.append(_Found(line + 1, strong, value[0], value[2], value[1], stated, quoted))
    return found


def _without_reasoning(raw: str) -> str:
    """``raw`` with <think>/<thinking> blocks blanked out, line numbers kept."""
    return _THINKING.sub(lambda m: "\n" * m.group(0).count("\n"), raw)


def _line_preview(raw: str, *numbers: int) -> str:
    lines = raw.splitlines()
    shown = [f"line {n}: {lines[n - 1].strip()}" for n in sorted(set(numbers)) if 0 < n <= len(lines)]
    return "\n".join(shown)[:PREVIEW_CHARS]


def parse_score(raw: str, *, scale: tuple[int, int] = DEFAULT_SCALE) -> Parsed:
    """The final labelled score anywhere in the answer, on the rubric's ``scale`` (0–9 by default).

    A score is a label (SCORE, Score, Final Score, Overall score, Rating; any case, markdown bold,
    headers, bullets, backticks and table pipes ignored) and a value on the same line or the next
    non-empty one: ``7``, ``7.5``, ``7/10``, ``7 / 10``, ``7 out of 10``, ``(7/10)``. The score is
    the last one labelled final or overall, else the last labelled one: other labelled scores are
    per-criterion scores, drafts or the rubric quoted back (so is text in <think> blocks,
    blockquotes and code blocks while anything outside them is labelled). ParseFailure, never a
    guess, when: no score is
    labelled; the value is not one number ("7 or 8", "7-8"); two final/overall scores differ (both
    are named); a denominator or a scale in the label differs from the rubric's; the value is
    outside the scale.
    """
    scale = (int(scale[0]), int(scale[1]))
    low, high = scale
    # A reasoning model's <think> block, blockquotes and code blocks hold drafts and quotes: they
    # count only when nothing else in the answer is labelled.
    pool = [f for f in _find_scores(_without_reasoning(raw)) if not f.quoted] or _find_scores(raw)
    if not pool:
        raise ParseFailure("score: no labelled score (like 'SCORE: 7' or 'Final Score: 7/10') in the answer",
                           raw.strip()[-PREVIEW_CHARS:])
    strong = [f for f in pool if f.strong]
    chosen = strong[-1] if strong else pool[-1]
    if chosen.value is None:
        raise ParseFailure(f"score: ambiguous score value {chosen.shown!r} (line {chosen.line})",
                           _line_preview(raw, chosen.line))
    # The final/overall score wins over plain labels (per-criterion scores often follow a summary
    # "Overall score: 8"), but only while the final/overall scores agree with one another.
    rivals = [f for f in strong[:-1] if f.value is not None and f.value != chosen.value]
    if rivals:
        first, second = sorted((chosen, rivals[-1]), key=lambda f: f.line)
        raise ParseFailure(f"score: two different final scores, {first.shown} (line {first.line}) and "
                           f"{second.shown} (line {second.line}); refusing to choose",
                           _line_preview(raw, first.line, second.line))
    preview = _line_preview(raw, chosen.line)
    if chosen.stated is not None:
        stated_low, stated_high = chosen.stated
        if stated_high != high or (stated_low is not None and stated_low != low):
            label = f"{stated_low}-{stated_high}" if stated_low is not None else f"out of {stated_high}"
            raise ParseFailure(f"score: the label states the scale {label}, but the rubric's scale is "
                               f"{low}-{high} (scores are never rescaled)", preview)
    if chosen.denominator is not None and chosen.denominator != high:
        raise ParseFailure(f"score: {chosen.shown!r} is a score out of {_format_score(chosen.denominator)}, "
                           f"but the rubric's scale is {low}-{high} (scores are never rescaled)", preview)
    if not low <= chosen.value <= high:
        raise ParseFailure(f"score: {_format_score(chosen.value)} is outside the rubric's scale {low}-{high}",
                           preview)
    return Parsed(_format_score(chosen.value), score=chosen.value, scale=scale)


PARSERS: dict[str, Callable[..., Parsed]] = {
    "identity": parse_identity,
    "essay_block": parse_essay_block,
    "essay_block_lenient": parse_essay_block_lenient,
    "essay_idea_last": parse_essay_idea_last,
    "score": parse_score,
    # The previous pipeline's catalog calls the score parser by this name.
    "in_last_line": parse_score,
}


@hookimpl
def register_parsers(register: Callable[[str, Callable[..., Parsed]], None]) -> None:
    """Register the built-in parsers."""
    for name, parse in PARSERS.items():
        register(name, parse)
