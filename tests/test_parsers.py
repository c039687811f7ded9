"""The built-in parsers: accepted shapes, rejections, and the score parser's refusal to guess."""

from __future__ import annotations

import pytest

from daydream import plugins
from daydream.contracts import Parsed, ParseFailure


def parse(name: str, raw: str) -> Parsed:
    return plugins.parsers().get(name)(raw)


def test_all_builtin_parsers_are_registered() -> None:
    names = set(plugins.parsers().items)
    assert {"identity", "essay_block", "essay_block_lenient", "essay_idea_last", "score",
            "in_last_line"} <= names


# ------------------------------------------------------------------ identity
def test_identity_returns_the_raw_text() -> None:
    assert parse("identity", "  line one\nline two\n") == Parsed("  line one\nline two\n")


@pytest.mark.parametrize("raw", ["", "   \n\t\n"])
def test_identity_rejects_empty_text(raw: str) -> None:
    with pytest.raises(ParseFailure, match="empty"):
        parse("identity", raw)


# ------------------------------------------------------------------ essay_block
def test_essay_block_takes_the_first_block() -> None:
    raw = "intro\n<essay>\nFirst essay.\n</essay>\nmiddle\n<essay>Second</essay>"
    assert parse("essay_block", raw).text == "First essay."


def test_essay_block_is_case_insensitive() -> None:
    assert parse("essay_block", "x <ESSAY>Body text</Essay> y").text == "Body text"


def test_essay_block_unclosed_tag_keeps_the_rest() -> None:
    assert parse("essay_block", "notes\n<essay>\nA truncated essay that never") \
        .text == "A truncated essay that never"


def test_essay_block_does_not_mistake_essay_idea_for_essay() -> None:
    with pytest.raises(ParseFailure, match="no <essay> tag"):
        parse("essay_block", '<essay-idea stage="1">idea</essay-idea>')


def test_essay_block_without_tag_fails_with_preview() -> None:
    with pytest.raises(ParseFailure) as info:
        parse("essay_block", "Just prose, no tags at all.")
    assert "no <essay> tag" in info.value.reason
    assert info.value.preview == "Just prose, no tags at all."


def test_essay_block_empty_block_fails() -> None:
    with pytest.raises(ParseFailure, match="empty"):
        parse("essay_block", "<essay>  \n </essay>")


# ------------------------------------------------------------------ essay_block_lenient
def test_lenient_strips_thinking_before_looking_for_the_essay() -> None:
    raw = "<thinking>draft with a fake <essay>inside</essay></thinking>\n<essay>The real one</essay>"
    assert parse("essay_block_lenient", raw).text == "The real one"


def test_lenient_falls_back_to_the_whole_text_without_thinking() -> None:
    raw = "<thinking>\nplanning\n</thinking>\n\n# Title\n\nThe essay itself."
    assert parse("essay_block_lenient", raw).text == "# Title\n\nThe essay itself."


def test_lenient_thinking_tags_are_case_insensitive() -> None:
    assert parse("essay_block_lenient", "<THINKING>x</Thinking>Body").text == "Body"


def test_lenient_strips_think_blocks_of_reasoning_models_served_locally() -> None:
    # DeepSeek-R1 and Qwen3 on Ollama / vLLM / llama.cpp put their reasoning in <think> in the content.
    raw = "<think>\nFirst I plan. Maybe <essay> tags?\n</think>\n\n# Title\n\nThe essay itself.\r\n"
    assert parse("essay_block_lenient", raw).text == "# Title\n\nThe essay itself."
    assert parse("essay_block_lenient", "<think>plan <essay>fake</essay></think><essay>real</essay>").text == "real"


def test_lenient_fails_when_only_thinking_is_left() -> None:
    with pytest.raises(ParseFailure, match="empty"):
        parse("essay_block_lenient", "<thinking>all of it</thinking>\n")


# ------------------------------------------------------------------ essay_idea_last
def test_essay_idea_last_takes_the_highest_stage() -> None:
    raw = ('<essay-idea stage="1">one</essay-idea>\n<essay-idea stage="3">three</essay-idea>\n'
           '<essay-idea stage="2">two</essay-idea>')
    assert parse("essay_idea_last", raw).text == "three"


def test_essay_idea_last_takes_the_last_on_ties() -> None:
    raw = '<essay-idea stage="2">first two</essay-idea> <essay-idea stage="2">second two</essay-idea>'
    assert parse("essay_idea_last", raw).text == "second two"


def test_essay_idea_last_accepts_quote_styles_multiline_and_case() -> None:
    raw = "<Essay-Idea stage='1'>\nA\n</essay-idea>\n<essay-idea stage=10>\nline 1\n\nline 2\n</ESSAY-IDEA>"
    assert parse("essay_idea_last", raw).text == "line 1\n\nline 2"


def test_essay_idea_last_numeric_not_lexical_order() -> None:
    raw = '<essay-idea stage="9">nine</essay-idea><essay-idea stage="10">ten</essay-idea>'
    assert parse("essay_idea_last", raw).text == "ten"


def test_essay_idea_last_unclosed_final_block_keeps_its_text() -> None:
    raw = '<essay-idea stage="1">one</essay-idea>\n<essay-idea stage="2">\ntwo, cut short'
    assert parse("essay_idea_last", raw).text == "two, cut short"


def test_essay_idea_last_without_blocks_fails() -> None:
    with pytest.raises(ParseFailure, match="no <essay-idea"):
        parse("essay_idea_last", "<essay>not an idea</essay>")


def test_essay_idea_last_empty_chosen_block_fails() -> None:
    with pytest.raises(ParseFailure, match="stage 2 block is empty"):
        parse("essay_idea_last", '<essay-idea stage="1">x</essay-idea><essay-idea stage="2"> </essay-idea>')


# ------------------------------------------------------------------ score
ACCEPTED = [
    ("Analysis...\nSCORE: 7", 7.0, "7"),
    ("Analysis...\n**Score:** 7.5", 7.5, "7.5"),
    ("Analysis...\nFinal score: 8", 8.0, "8"),
    ("Analysis...\nSCORE: 7/9", 7.0, "7"),
    ("Analysis...\nSCORE: 7 / 9", 7.0, "7"),
    ("Analysis...\nScore: 6 out of 9", 6.0, "6"),
    ("Analysis...\nscore: 3", 3.0, "3"),
    ("Analysis...\nSCORE: 5.", 5.0, "5"),
    ("Analysis...\n**SCORE: 4**", 4.0, "4"),
    ("Analysis...\nSCORE: **4**", 4.0, "4"),
    ("Analysis...\n**Final Score:** 8.0", 8.0, "8"),
    ("Analysis...\n## Score: 2", 2.0, "2"),
    ("Analysis...\n- `SCORE: 1`", 1.0, "1"),
    ("Analysis...\nOverall score = 6", 6.0, "6"),
    ("Analysis...\nSCORE: 0", 0.0, "0"),
    ("Analysis...\nSCORE: 9", 9.0, "9"),
    ("Analysis...\nSCORE:9", 9.0, "9"),
    ("Analysis...\nSCORE: 7\n\nThanks for reading.", 7.0, "7"),
    ("Analysis...\n**Score:** 7\nSCORE: 7", 7.0, "7"),  # the same score twice is not ambiguous
    ("Novelty score: 3\nRigor score: 5\nSCORE: 6", 6.0, "6"),  # sub-scores are not the score
    ("SCORE: 7\r\n", 7.0, "7"),
    ("Analysis...\nScore (0-9): 5", 5.0, "5"),
    ("Analysis...\nFinal score: 7 (out of 9)", 7.0, "7"),
    ("Analysis...\nSCORE: 8/9.", 8.0, "8"),
    ("Good.\r\nSCORE: 7   \t\r\n\r\n  ", 7.0, "7"),  # Windows newlines, trailing whitespace
    # Issue 12 made these scores (they were refusals when only the last three lines were read):
    ("Analysis...\nSCORE: 7, strong mechanism", 7.0, "7"),  # a remark without a number
    ("Analysis...\nSCORE: 7\nFinal score: 8", 8.0, "8"),  # the final score wins over an earlier one
    ("SCORE: 7\nline\nline\nline", 7.0, "7"),  # justification after the score
    ("| Score | 7 | strong in 3 ways |", 7.0, "7"),  # a remark cell in the table
    # A score in a markdown table row at the end: a label cell and one value cell.
    ("| Criterion | Score |\n|---|---|\n| Novelty | 6 |\n| **SCORE** | **7** |", 7.0, "7"),
    ("| Criterion | Score |\n|---|---|\n| Novelty | 6 |\n| Final score | 7/9 |\n", 7.0, "7"),
    ("Analysis...\n| SCORE: 8 |", 8.0, "8"),
    ("Analysis...\n__SCORE: 7__", 7.0, "7"),  # underscore bold
    ("Analysis...\n__Score:__ 6", 6.0, "6"),
    ("Analysis...\nSCORE: 7\u200b", 7.0, "7"),  # an invisible zero-width space is not a second token
]


@pytest.mark.parametrize("raw,score,text", ACCEPTED)
def test_score_accepts(raw: str, score: float, text: str) -> None:
    assert parse("score", raw) == Parsed(text, score=score, scale=(0, 9))


REJECTED = [
    ("Analysis without any score.", "no labelled score"),
    ("", "no labelled score"),
    ("Analysis...\nSCORE: 10", "outside the rubric's scale 0-9"),
    ("Analysis...\nSCORE: 9.5", "outside the rubric's scale 0-9"),
    ("Analysis...\nSCORE: 7 or 8", "ambiguous"),
    ("Analysis...\nSCORE: 7-8", "ambiguous"),
    ("Analysis...\nSCORE: -1", "outside the rubric's scale 0-9"),
    ("Analysis...\nSCORE: 7/10", "out of 10, but the rubric's scale is 0-9"),
    ("Analysis...\nScore: 7 (out of 10)", "out of 10, but the rubric's scale is 0-9"),
    ("Analysis...\nFinal score: 7\nFinal score: 8", "two different final scores"),
    ("Analysis...\nSCORE: X", "no labelled score"),  # the template's placeholder echoed back
    ("| Criterion | Score |\n|---|---|\n| Final score | 7 | 8 |", "ambiguous"),  # two value cells
    ("| Novelty | 6 |\n| Rigor | 8 |\n| Total | 14 |", "no labelled score"),  # no row is labelled score
    ("| Criterion | Score |\n|---|---|\n| Novelty | 6 |", "no labelled score"),  # a column header is no score
]


@pytest.mark.parametrize("raw,reason", REJECTED)
def test_score_rejects(raw: str, reason: str) -> None:
    with pytest.raises(ParseFailure, match=reason):
        parse("score", raw)


def test_score_failure_previews_the_line_at_fault() -> None:
    raw = "\n".join(f"line {i}" for i in range(20)) + "\nSCORE: 7 or 8"
    with pytest.raises(ParseFailure) as info:
        parse("score", raw)
    assert info.value.preview == "line 21: SCORE: 7 or 8"


def test_in_last_line_is_the_score_parser() -> None:
    assert plugins.parsers().get("in_last_line") is plugins.parsers().get("score")


# ------------------------------------------------------------------ contract: every parser
ODD_INPUTS = ["", " ", "\n\n", "<essay>", "</essay>", "<essay-idea stage=\"x\">", "SCORE:", "SCORE: 7",
              "\x00\x01 binary", "<thinking>unclosed", "é" * 10_000, "line\n" * 5_000,
              "<essay>" * 100 + "text", '<essay-idea stage="1">' * 50]


@pytest.mark.parametrize("name", sorted(plugins.parsers().items))
@pytest.mark.parametrize("raw", ODD_INPUTS, ids=range(len(ODD_INPUTS)))
def test_every_parser_returns_parsed_text_or_a_parse_failure(name: str, raw: str) -> None:
    try:
        result = parse(name, raw)
    except ParseFailure as failure:
        assert failure.reason.strip() and isinstance(failure.preview, str)
        assert len(failure.preview) <= 300
        return
    assert isinstance(result, Parsed) and result.text.strip()
    assert result.score is None or 0 <= result.score <= 9
    assert parse(name, raw) == result  # pure: the same input gives the same result
