"""Two regressions against the previous pipeline (issue 12), both explicit errors before the fix.

1. ``essay_idea_last``: ``<essay-idea>`` blocks without a ``stage`` attribute fall back to the last
   block, as the old pipeline documented.
2. Pair rules with ``balance`` count only the levels the allowed pairs name; a level no pair names
   is dropped by the pair, as the old DSL did.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from daydream import plugins
from daydream.contracts import Parsed, ParseFailure
from daydream.errors import SpecError
from daydream.design.spec_compile import compile_spec
from daydream.design.spec_dsl import load_spec


def idea(raw: str) -> Parsed:
    return plugins.parsers().get("essay_idea_last")(raw)


# ------------------------------------------------------------------ essay_idea_last
def test_blocks_without_a_stage_attribute_give_the_last_block() -> None:
    raw = "<essay-idea>first idea</essay-idea>\nthinking…\n<essay-idea>\nthe refined idea\n</essay-idea>\nDone."
    assert idea(raw) == Parsed("the refined idea")


def test_an_unclosed_last_block_without_stage_keeps_its_text() -> None:
    assert idea("<essay-idea>one</essay-idea><essay-idea>two, cut short").text == "two, cut short"


def test_a_non_numeric_stage_counts_as_no_stage() -> None:
    assert idea('<essay-idea stage="draft">a</essay-idea><essay-idea stage="final">b</essay-idea>').text == "b"


def test_staged_blocks_still_decide_by_their_highest_stage() -> None:
    raw = ('<essay-idea stage="2">two</essay-idea><essay-idea stage="1">one</essay-idea>'
           '<essay-idea>unstaged afterthought</essay-idea>')
    assert idea(raw).text == "two"


def test_an_empty_last_block_without_stage_is_a_parse_failure() -> None:
    with pytest.raises(ParseFailure, match="the last <essay-idea> block is empty"):
        idea("<essay-idea>x</essay-idea><essay-idea>  </essay-idea>")


def test_no_block_at_all_is_still_a_parse_failure() -> None:
    with pytest.raises(ParseFailure, match="no <essay-idea> block"):
        idea("<essay>an essay, not an idea</essay>")


# ------------------------------------------------------------------ pair balance
def _compile(tmp_path: Path, rules: str, extra_axes: str = "") -> list[dict]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent("""\
        axes:
          combo: [{concepts: [feedback-loop, redundancy], level: paragraph}]
          draft_template: [a, b, c]
          draft_llm: [offline]
        """) + extra_axes + textwrap.dedent(rules))
    return compile_spec(load_spec(spec))


def test_balance_ignores_levels_that_no_allowed_pair_names(tmp_path: Path) -> None:
    # The case: allowed [[a,x],[b,x]] over levels a, b, c was "not balanced: a=1, b=1, c=0".
    rows = _compile(tmp_path, """\
        rules:
          pairs:
            by_model:
              left: draft_template
              right: essay_template
              balance: left
              allowed: [[a, x], [b, x]]
        """, "  essay_template: [x, y]\n")
    assert sorted((r["draft_template"], r["essay_template"]) for r in rows) == [("a", "x"), ("b", "x")]


def test_balance_on_both_sides_counts_only_named_levels(tmp_path: Path) -> None:
    rows = _compile(tmp_path, """\
        rules:
          pairs:
            bundle:
              left: draft_template
              right: essay_template
              balance: both
              allowed: [[a, x], [b, y]]
        """, "  essay_template: [x, y, z]\n")
    assert len(rows) == 2


def test_balance_still_refuses_an_unequal_count_among_named_levels(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"not balanced on 'draft_template': a=2, b=1$"):
        _compile(tmp_path, """\
            rules:
              pairs:
                by_model:
                  left: draft_template
                  right: essay_template
                  balance: left
                  allowed: [[a, x], [a, y], [b, x]]
            """, "  essay_template: [x, y]\n")
