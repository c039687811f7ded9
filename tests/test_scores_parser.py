"""The score parser on answers as real judges write them, on 0-9, 0-10 and 1-5 rubrics.

Every case is an answer a judge could plausibly give, and states the score we must read (or why
we must refuse): labels anywhere in the answer, markdown, tables, the value on the next line,
justifications after the score, denominators, two final scores, the rubric quoted back, and
numbers that are not scores at all.
"""

from __future__ import annotations

import pytest

from daydream import plugins
from daydream.contracts import Parsed, ParseFailure
from daydream.design.scales import bind_scale

NINE, TEN, FIVE = (0, 9), (0, 10), (1, 5)

JUSTIFICATION = "\n\n".join([
    "The essay links the default mode network to generator-verifier loops convincingly.",
    "However, the economic argument is asserted rather than shown; 3 of its 5 claims lack support.",
    "In 2023 similar ideas were published, which lowers originality.",
])


def score(raw: str, scale: tuple[int, int]) -> Parsed:
    return plugins.parsers().get("score")(raw, scale=scale)


ACCEPTED = [
    # --- the forms of the value, on each scale
    ("SCORE: 7", NINE, 7),
    ("SCORE: 7.5", NINE, 7.5),
    ("SCORE: 7/9", NINE, 7),
    ("SCORE: 7/10", TEN, 7),
    ("Score: 7 / 10", TEN, 7),
    ("Score: 7 out of 10", TEN, 7),
    ("Score: (7/10)", TEN, 7),
    ("Final score: 8 (out of 10)", TEN, 8),
    ("Rating: 4/5", FIVE, 4),
    ("Rating: 4 out of 5", FIVE, 4),
    ("SCORE: 10/10", TEN, 10),
    ("SCORE: 0", TEN, 0),  # a stated 0 is a score, never a default
    ("Rating: 1", FIVE, 1),
    ("SCORE: 5.", FIVE, 5),
    # --- labels: case, markdown, headers, bullets, backticks, quotes of the label itself
    ("**Final Score:** 8/10", TEN, 8),
    ("**SCORE: 6**", NINE, 6),
    ("### Overall Score: 9/10", TEN, 9),
    ("- `score: 3`", FIVE, 3),
    ("final score = 4", FIVE, 4),
    ("Overall rating: 3.5/5", FIVE, 3.5),
    ("_Score:_ 2", NINE, 2),
    ("2. **Final score**: 6/10", TEN, 6),
    ("Score (0-10): 8", TEN, 8),
    ("Score_0_9: 5", NINE, 5),
    ("Rating [1-5]: 2", FIVE, 2),
    ("My final score is 9/10.", TEN, 9),
    # --- the value on the next non-empty line
    ("**Final Score:**\n\n**8/10**", TEN, 8),
    ("## Final Score\n\n7", NINE, 7),
    ("SCORE:\n4/5 — clear but thin", FIVE, 4),
    ("Final Score\n-----------\n6", NINE, 6),
    # --- justification after the score, remarks on the score's line
    (f"SCORE: 8/10\n\n{JUSTIFICATION}", TEN, 8),
    (f"**Score:** 4 (strong mechanism, weak evidence)\n\n{JUSTIFICATION}", FIVE, 4),
    ("SCORE: 7 — solid but derivative", NINE, 7),
    ("Rating: 3 stars", FIVE, 3),
    # --- tables
    ("| Criterion | Score |\n|---|---|\n| Novelty | 6 |\n| Rigor | 8 |\n| **Final Score** | **7/10** |", TEN, 7),
    ("| Criterion | Score | Notes |\n|---|---|---|\n| Clarity | 3 | fine |\n| **Overall** | **4** | good |",
     FIVE, 4),
    ("Analysis\n| SCORE | 8 |", NINE, 8),
    # --- several labelled scores: per-criterion ones, then the final
    ("Clarity\nScore: 5\n\nNovelty\nScore: 3\n\nFinal Score: 4", FIVE, 4),
    ("- Originality score: 9\n- Rigor score: 2\n\nSCORE: 6/10", TEN, 6),
    ("Score: 6\n...on reflection the mechanism is sound.\nOverall score: 8/10", TEN, 8),
    ("Final Score: 7/10\n\nSCORE: 7", TEN, 7),  # the same score twice is no conflict
    # A summary first, per-criterion scores after it: the overall score is the score.
    ("**Overall Score: 8/10**\n\n### Originality\nScore: 9/10\n\n### Rigor\nScore: 7/10\nSolid.", TEN, 8),
    ("Final Score: 4\n\nCriteria:\n- Score: 2 for clarity\n- Score: 5 for novelty", FIVE, 4),
    ("**Final Score:** 4/5\n\nSCORE: X", FIVE, 4),  # the template's placeholder echoed back
    # --- the rubric quoted back before the real score
    ("The rubric says:\n> SCORE: 0-10 (0 = no creative merit, 10 = exceptional)\n\nMy assessment...\nSCORE: 7",
     TEN, 7),
    ("> **Final Score:** 8/10 means excellent.\n\nThis essay is weaker.\n\n**Final Score:** 5/10", TEN, 5),
    ("Format required:\n```\nSCORE: 9\n```\nReasoning...\nSCORE: 3", NINE, 3),
    ("SCORE: 0-10 (0 = no scientific rigor, 10 = exemplary)\n\nREASONING: ...\nSCORE: 6", TEN, 6),
    # --- a reasoning model's draft in <think> is not its answer; JSON keys are labels too
    ("<think>\nFinal score: 6? No — Final score: 7.\n</think>\n\n**Final Score:** 8/10", TEN, 8),
    ("<think>the essay is weak</think>\nSCORE: 2/5", FIVE, 2),
    ('{\n  "reasoning": "clear but derivative",\n  "final_score": 6\n}', NINE, 6),
    ("Score: 7/10 → solid, derivative", TEN, 7),
    # --- numbers that are not scores around a real one
    (f"In 2023, 10 concepts were combined.\n1. First idea\n2. Second idea\n{JUSTIFICATION}\nSCORE: 2", FIVE, 2),
    # --- invisible characters and Windows line ends
    ("Analysis\r\nSCORE:\u200b 9\r\n", TEN, 9),
]


@pytest.mark.parametrize("raw,scale,expected", ACCEPTED)
def test_the_final_labelled_score_is_read(raw: str, scale: tuple[int, int], expected: float) -> None:
    assert score(raw, scale) == Parsed(f"{expected:g}", score=expected, scale=scale)


REJECTED = [
    # --- no labelled score: non-scores are never read as one
    ("The essay is strong and original.", NINE, "no labelled score"),
    ("In 2023, researchers combined 10 concepts.", TEN, "no labelled score"),
    ("1. Originality\n2. Rigor\n3. Clarity", FIVE, "no labelled score"),
    ("Originality: 7\nRigor: 8", TEN, "no labelled score"),  # criteria, no score label
    ("SCORE: X", NINE, "no labelled score"),
    ("## Score\nThe essay scores well on 3 criteria.", TEN, "no labelled score"),
    ("| Novelty | 6 |\n| Rigor | 8 |\n| Total | 14 |", TEN, "no labelled score"),
    ("", FIVE, "no labelled score"),
    # --- a denominator or stated scale that is not the rubric's: never rescaled
    ("SCORE: 7/10", NINE, "'7/10' is a score out of 10, but the rubric's scale is 0-9"),
    ("**Final Score:** 8/10", FIVE, "out of 10, but the rubric's scale is 1-5"),
    ("Score: 4 out of 5", TEN, "out of 5, but the rubric's scale is 0-10"),
    ("Score (0-10): 8", NINE, "the label states the scale 0-10, but the rubric's scale is 0-9"),
    ("Score (1-10): 8", TEN, "the label states the scale 1-10, but the rubric's scale is 0-10"),
    # --- outside the scale
    ("SCORE: 10", NINE, "10 is outside the rubric's scale 0-9"),
    ("Rating: 0", FIVE, "0 is outside the rubric's scale 1-5"),
    ("SCORE: 11/10", TEN, "11 is outside the rubric's scale 0-10"),
    ("SCORE: -2", TEN, "-2 is outside the rubric's scale 0-10"),
    ("Score: 2023", NINE, "2023 is outside the rubric's scale 0-9"),
    # --- ambiguous values
    ("SCORE: 7 or 8", TEN, "ambiguous score value '7 or 8'"),
    ("SCORE: 7-8", NINE, "ambiguous score value '7-8'"),
    ("Score: 10 concepts", TEN, "ambiguous score value '10 concepts'"),
    ("Score: 7,5", TEN, "ambiguous"),
    ("Score: 80%", TEN, "ambiguous"),
    ("| Criterion | Score |\n|---|---|\n| Final score | 7 | 8 |", TEN, "ambiguous"),
    ("Final Score:\n7 or 8", NINE, "ambiguous"),
    # --- two different final scores: both named, no choice made
    ("Final score: 6\n\nOn reflection...\n\nFinal score: 8", NINE,
     "two different final scores, 6 (line 1) and 8 (line 5)"),
    ("Final score: 6/10\nOverall score: 6\n\nFinal Score: 8/10\n\nSCORE: 8", TEN,
     "two different final scores, 6 (line 2) and 8/10 (line 4)"),
    ("Overall rating: 3/5\nFinal rating: 4/5", FIVE, "two different final scores, 3/5 (line 1) and 4/5 (line 2)"),
]


@pytest.mark.parametrize("raw,scale,reason", REJECTED)
def test_what_is_not_one_score_on_the_scale_is_refused(raw: str, scale: tuple[int, int], reason: str) -> None:
    with pytest.raises(ParseFailure) as info:
        score(raw, scale)
    assert reason in info.value.reason
    assert "\n" not in info.value.reason and len(info.value.preview) <= 300


def test_there_are_at_least_forty_cases_on_each_of_the_three_scales() -> None:
    cases = ACCEPTED + REJECTED
    assert len(cases) >= 40
    assert {scale for _raw, scale, _x in cases} == {NINE, TEN, FIVE}


def test_a_failure_names_the_lines_at_fault() -> None:
    raw = "Intro\nFinal score: 6\nmore\nFinal score: 8\nend"
    with pytest.raises(ParseFailure) as info:
        score(raw, NINE)
    assert info.value.preview == "line 2: Final score: 6\nline 4: Final score: 8"


def test_the_default_scale_is_zero_to_nine() -> None:
    parse = plugins.parsers().get("score")
    assert parse("SCORE: 9") == Parsed("9", score=9.0, scale=NINE)
    with pytest.raises(ParseFailure, match="out of 10"):
        parse("SCORE: 9/10")


def test_the_legacy_name_reads_the_same_way() -> None:
    assert plugins.parsers().get("in_last_line")("**Final Score:** 8/10", scale=TEN).score == 8


def test_a_bound_parser_checks_any_parsers_scores_against_the_rubric() -> None:
    # A parser that knows nothing of scales (a third-party one) still cannot record 12 on 0-10.
    def lenient(raw: str) -> Parsed:
        return Parsed(raw.strip(), score=float(raw))

    assert bind_scale(lenient, TEN)("7") == Parsed("7", score=7.0, scale=TEN)
    with pytest.raises(ParseFailure, match="outside the rubric's scale 0-10"):
        bind_scale(lenient, TEN)("12")

    def on_its_own_scale(raw: str) -> Parsed:
        return Parsed("4", score=4.0, scale=FIVE)

    with pytest.raises(ParseFailure, match="on 1-5, but the rubric's scale is 0-10"):
        bind_scale(on_its_own_scale, TEN)("4")
    assert bind_scale(lenient, None) is lenient  # stages without scores are left alone


def test_a_long_answer_is_read_quickly_enough_to_score_thousands() -> None:
    # Not a timing assertion: a 20,000-line answer must simply parse (no quadratic blow-up).
    raw = (JUSTIFICATION + "\n") * 5000 + "**Final Score:** 6/10\n" + "Thanks.\n" * 1000
    assert score(raw, TEN).score == 6
