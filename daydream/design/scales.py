"""Rubric scales: the range a rubric's scores live on, and how a parser is given it.

A scale is a pair of integers ``(min, max)``; ``DEFAULT_SCALE`` (0–9) is what a rubric that declares
none uses. Catalogs declare scales (``scale: [0, 10]`` in templates.yaml); ``infer_scale`` reads one
from a rubric's own words for catalogs that cannot declare it (the previous pipeline's ``1_raw``).
``bind_scale`` hands the scale to a parser that takes a ``scale`` keyword and checks every score
against it, so a score is never recorded outside its rubric's range.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from typing import Any

from daydream.contracts import Parsed, ParseFailure
from daydream.errors import CatalogError, UsageError

Scale = tuple[int, int]
DEFAULT_SCALE: Scale = (0, 9)
# Bounds a scale may have: wide enough for 0-100 rubrics, narrow enough to catch a typo like 0-1000.
_LIMIT = 1000


def scale_label(scale: Scale) -> str:
    """``0-10`` for (0, 10): how scales are written in messages and on the command line."""
    return f"{scale[0]}-{scale[1]}"


def _checked(lo: int, hi: int, where: str, error: type[Exception]) -> Scale:
    if not (-_LIMIT <= lo < hi <= _LIMIT):
        raise error(f"{where}: scale {lo}-{hi}; expected two integers min < max (like [0, 10])")
    return (lo, hi)


def coerce_scale(value: Any, where: str) -> Scale:
    """A scale from catalog YAML (``[0, 10]``); CatalogError naming ``where`` otherwise."""
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return _checked(value[0], value[1], where, CatalogError)
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, float) and v.is_integer() for v in value)):
        return _checked(int(value[0]), int(value[1]), where, CatalogError)
    raise CatalogError(f"{where}: scale {value!r}; expected [min, max] with two integers, like [0, 10]")


_OPTION = re.compile(r"^\s*(-?\d+)\s*(?:-|–|\.\.|:|,)\s*(-?\d+)\s*$")


def parse_scale_option(text: str) -> Scale:
    """A scale from the command line (``0-10``, ``1-5``); UsageError otherwise."""
    match = _OPTION.match(text or "")
    if match is None:
        raise UsageError(f"--scale {text!r}; expected MIN-MAX with two integers, like 0-10")
    return _checked(int(match.group(1)), int(match.group(2)), "--scale", UsageError)


# ----------------------------------------------------------------------------- inference
# A range as rubrics write it: "0-10", "0 – 9", "0 to 10", "1 and 5", "0 (none) to 9 (best)".
_RANGE = r"(\d{1,3})\s*(?:\([^)\n]{0,80}\)\s*)?(?:-|–|—|to|and)\s*(\d{1,3})"
# Statements about the answer's own format, which decide over any other statement:
# "SCORE: 0-10 (0 = …)" (the score line the rubric asks for, with a range instead of a value),
# "X is a single digit from 0 to 9" / "with X being a digit 0-9", and "SCORE: X (0-9)".
_FORMAT = [
    re.compile(rf"^\W*(?:final\s+|overall\s+)?score\W*[:=]\W*{_RANGE}", re.IGNORECASE | re.MULTILINE),
    re.compile(rf"\b(?:digit|number|integer)\s+(?:from\s+|between\s+|in\s+)?{_RANGE}", re.IGNORECASE),
    re.compile(rf"\bscore\W*[:=]\s*X\s*[(\[]\s*{_RANGE}", re.IGNORECASE),  # "SCORE: X (0-9)"
]
# Statements about the scale of the score: "on a scale of 0 to 10", "convert to 0-9 scale",
# "Scoring Rubric (0-9)", "holistic score (0–9)", "Score_0_9", "assign a score from 0 to 9",
# "rate it out of 10". The last one in the text wins: rubrics that first sum points ("raw score
# out of 100") then convert ("to 0-9 scale") state the final scale last.
_STATEMENTS = [
    re.compile(rf"\bscale\s+(?:of|from)\s+{_RANGE}", re.IGNORECASE),
    re.compile(rf"{_RANGE}[\s-]*(?:point\s+)?scale\b", re.IGNORECASE),
    re.compile(rf"\b(?:score|scoring|rating|rubric|normali[sz]ation)\s*\(\s*{_RANGE}\s*\)", re.IGNORECASE),
    re.compile(r"\bscore_(\d{1,3})_(\d{1,3})\b", re.IGNORECASE),
    re.compile(rf"\b(?:score|rate|rating|grade)\s+(?:\w+\s+){{0,3}}?(?:from|between)\s+{_RANGE}", re.IGNORECASE),
    re.compile(r"\b(?:score|rate|rating|grade)\b[^\n.]{0,40}?\bout\s+of\s+(\d{1,3})\b", re.IGNORECASE),
]


def _found(pattern: re.Pattern[str], text: str, *, strict: bool) -> list[tuple[int, Scale]]:
    out = []
    for match in pattern.finditer(text):
        numbers = [int(g) for g in match.groups() if g is not None]
        lo, hi = (0, numbers[0]) if len(numbers) == 1 else (numbers[0], numbers[1])
        # A scale starts at 0 or 1; other ranges are bands of a rubric ("7-8: strong"), and tiny
        # ones are per-criterion points ("0-1 points each").
        if lo in (0, 1) and hi > lo and (hi >= 2 if strict else hi >= 4):
            out.append((match.start(), (lo, hi)))
    return out


def infer_scale(text: str) -> Scale:
    """The score scale a rubric's text asks for, else ``DEFAULT_SCALE``.

    The answer-format statement decides when there is one ("SCORE: 0-10 (…)", "X is a single digit
    from 0 to 9"); otherwise the last statement about the score's scale ("on a scale of 0 to 10",
    "Convert to 0-9 scale", "Scoring Rubric (0-9)", "out of 10"). Bands such as "7-8: strong" or
    "Excellent (13-15)" are not scales.
    """
    text = text.replace("*", "").replace("`", "")  # markdown emphasis: "a score from **0 to 9**"
    formats = sorted(hit for p in _FORMAT for hit in _found(p, text, strict=True))
    if formats:
        return formats[-1][1]
    statements = sorted(hit for p in _STATEMENTS for hit in _found(p, text, strict=False))
    return statements[-1][1] if statements else DEFAULT_SCALE


# ----------------------------------------------------------------------------- parsers and scales
def takes_scale(parse: Callable[..., Any]) -> bool:
    """Does this parser accept a ``scale`` keyword (the rubric's (min, max))?"""
    try:
        params = inspect.signature(parse).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "scale" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _format(value: float) -> str:
    return f"{value:g}"


def bind_scale(parse: Callable[..., Parsed], scale: Scale | None) -> Callable[[str], Parsed]:
    """``parse`` applied on ``scale``: given the scale when it takes one, its score checked against it.

    The result carries the scale its score is on (``Parsed.scale``). A parser that reports another
    scale, or a score outside this one, is a ParseFailure: a score is never rescaled or clipped.
    ``None`` (a stage without scores) returns ``parse`` unchanged.
    """
    if scale is None:
        return parse
    given = takes_scale(parse)

    def parse_on_scale(raw: str) -> Parsed:
        parsed = parse(raw, scale=scale) if given else parse(raw)
        if parsed.score is None:
            return parsed
        if parsed.scale is not None and tuple(parsed.scale) != scale:
            raise ParseFailure(f"the parser read a score on {scale_label(tuple(parsed.scale))}, but the "
                               f"rubric's scale is {scale_label(scale)}", raw.strip()[-300:])
        if not scale[0] <= parsed.score <= scale[1]:
            raise ParseFailure(f"score {_format(parsed.score)} is outside the rubric's scale "
                               f"{scale_label(scale)}", raw.strip()[-300:])
        return parsed if parsed.scale is not None else dataclasses.replace(parsed, scale=scale)

    return parse_on_scale
