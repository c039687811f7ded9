"""The offline model: deterministic, honours the output format a prompt asks for, scores by content,
and is fast enough to be the demo's default model."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path

import jinja2
import pytest
from daydream_plugins.provider_offline import OFFLINE_MODEL, estimate_tokens, extract_terms, offline_answer

from daydream import plugins
from daydream.contracts import CallRequest, ParseFailure

CONCEPTS = [
    {"id": "dmn", "name": "Default Mode Network",
     "content": "The default mode network is a set of brain regions active during wakeful rest. "
                "It supports mind-wandering and the recombination of memories."},
    {"id": "search", "name": "Combinatorial Search",
     "content": "Combinatorial search explores a space of combinations, pruning the branches that "
                "cannot lead to a solution."},
    {"id": "flywheel", "name": "Data Flywheel",
     "content": "A data flywheel turns usage into data and data into a better product, which brings "
                "more usage."},
]


def concept_block() -> str:
    return "\n".join(f"**{c['name']}**\n{c['content']}\n---\n" for c in CONCEPTS)


DRAFT_LIST = f"Brainstorm connections between these concepts, one per line.\n\n{concept_block()}"
DRAFT_IDEAS = (f"{concept_block()}\nFor each step output exactly one "
               '<essay-idea stage="i">…</essay-idea> block with the idea text only.')
DRAFT_ESSAY_TAGS = f"{concept_block()}\nOutput format:\n1. <thinking> … </thinking>\n2. <essay> … </essay>"
ESSAY_PLAIN = ("**Role:** Essayist.\n\nUsing the notes below, write a flowing essay.\n\n"
               "## Inputs\nThe Default Mode Network recombines memories while Combinatorial Search "
               "prunes the space; a Data Flywheel keeps the useful combinations.\n")


def evaluation_prompt(essay: str) -> str:
    return (f"RESPONSE TO EVALUATE:\n{essay}\n\n--- EVALUATION INSTRUCTIONS ---\n\n"
            "Rate the text from 0 to 9. End with a line in the exact format:\nSCORE: X")


def parse(name: str, raw: str) -> str:
    return plugins.parsers().get(name)(raw).text


def test_same_inputs_give_the_same_answer() -> None:
    for prompt in (DRAFT_LIST, DRAFT_IDEAS, DRAFT_ESSAY_TAGS, ESSAY_PLAIN, evaluation_prompt("An essay.")):
        assert offline_answer("d_1", prompt) == offline_answer("d_1", prompt)


def test_gen_id_and_prompt_both_change_the_answer() -> None:
    assert offline_answer("d_1", DRAFT_LIST) != offline_answer("d_2", DRAFT_LIST)
    assert offline_answer("d_1", DRAFT_LIST) != offline_answer("d_1", DRAFT_LIST + " More.")


def test_answers_are_built_from_the_concepts_in_the_prompt() -> None:
    answer = offline_answer("d_1", DRAFT_LIST)
    assert sum(c["name"] in answer for c in CONCEPTS) >= 2


def test_concept_names_are_found_under_headings_as_well_as_bold_lines() -> None:
    headed = "\n\n".join(f"## {c['name']}\n{c['content']}" for c in CONCEPTS)
    prompt = f"Concepts:\n\n{headed}\n\n## Output rules\nWrite well.\n"
    assert extract_terms(prompt) == [c["name"] for c in CONCEPTS]
    assert extract_terms(concept_block()) == [c["name"] for c in CONCEPTS]


def test_brainstorm_has_at_least_five_non_empty_lines() -> None:
    for gen in range(20):
        answer = offline_answer(f"d_{gen}", DRAFT_LIST)
        assert len([line for line in answer.splitlines() if line.strip()]) >= 5
        assert parse("identity", answer)


def test_requested_link_line_format_is_followed() -> None:
    listed = "\n".join(f"{i + 1}. {c['name']} — {c['content']}" for i, c in enumerate(CONCEPTS))
    prompt = (f"Brainstorm connections between these concepts.\n\n{listed}\n\nWrite at least eight lines, "
              'one per line, in the form "<concept A> + <concept B>: <what it makes possible>".')
    lines = offline_answer("d_1", prompt).splitlines()
    names = {c["name"] for c in CONCEPTS}
    assert len(lines) >= 8
    for line in lines:
        pair, _, rest = line.partition(": ")
        a, _, b = pair.partition(" + ")
        assert {a, b} <= names and a != b and rest


def test_requested_sections_are_written() -> None:
    prompt = (f"NOTES:\n{concept_block()}\nWrite a proposal with these sections:\n"
              "## Problem — who has it.\n## Idea — the mechanism.\n## First test — an experiment.\n")
    answer = offline_answer("e_1", prompt)
    headings = [line for line in answer.splitlines() if line.startswith("## ")]
    assert headings == ["## Problem", "## Idea", "## First test"]


def test_essay_idea_prompt_gets_staged_blocks_that_parse() -> None:
    answer = offline_answer("d_1", DRAFT_IDEAS)
    assert answer.count('<essay-idea stage="') >= 2 and '<essay-idea stage="1">' in answer
    last = parse("essay_idea_last", answer)
    assert last and "<essay-idea" not in last and "</essay-idea>" not in last


def test_essay_tag_prompt_gets_an_essay_block_that_parses() -> None:
    answer = offline_answer("d_1", DRAFT_ESSAY_TAGS)
    essay = parse("essay_block", answer)
    assert essay.startswith("# ") and "<thinking>" not in essay
    assert parse("essay_block_lenient", answer) == essay


def test_plain_essay_prompt_gets_a_markdown_essay() -> None:
    answer = offline_answer("e_1", ESSAY_PLAIN)
    assert answer.startswith("# ") and len(answer.split()) > 80
    assert parse("essay_block_lenient", answer) == answer.strip()
    with pytest.raises(ParseFailure):
        parse("essay_block", answer)  # no tags were asked for, none are invented


def test_evaluation_ends_with_a_parseable_score_line() -> None:
    answer = offline_answer("v_1", evaluation_prompt(offline_answer("e_1", ESSAY_PLAIN)))
    assert answer.rstrip().splitlines()[-1].startswith("SCORE: ")
    assert 0 <= plugins.parsers().get("score")(answer).score <= 9
    assert OFFLINE_MODEL in answer  # labelled as the offline model's work


def test_evaluation_is_recognised_without_the_exact_score_line() -> None:
    answer = offline_answer("v_1", "Rate this essay; give a score from 0 to 9.\n\nThe essay text.")
    assert plugins.parsers().get("score")(answer).score is not None
    assert "SCORE" not in offline_answer("d_1", DRAFT_LIST)


def test_scores_vary_across_essays_and_follow_content() -> None:
    essays = [offline_answer(f"e_{i}", ESSAY_PLAIN) for i in range(30)]
    scores = [plugins.parsers().get("score")(offline_answer(f"v_{i}", evaluation_prompt(e))).score
              for i, e in enumerate(essays)]
    assert len(set(scores)) >= 3 and statistics.pstdev(scores) > 0.5
    # Content matters more than the jitter: a one-liner scores below a long, varied essay.
    longest = max(essays, key=len)
    for gen in range(10):
        rich = plugins.parsers().get("score")(offline_answer(f"v_{gen}", evaluation_prompt(longest))).score
        poor = plugins.parsers().get("score")(offline_answer(f"v_{gen}", evaluation_prompt("Ideas matter."))).score
        assert rich > poor


def test_full_pipeline_of_offline_answers_parses_at_every_stage() -> None:
    draft = parse("essay_idea_last", offline_answer("d_1", DRAFT_IDEAS))
    essay = offline_answer("e_1", f"Write an essay from these notes:\n{draft}\nOutput format: <essay> … </essay>")
    essay_text = parse("essay_block", essay)
    verdict = offline_answer("v_1", evaluation_prompt(essay_text))
    assert plugins.parsers().get("in_last_line")(verdict).score is not None


def test_offline_provider_labels_its_results() -> None:
    provider = plugins.providers().get("offline")({"id": "offline", "provider": "offline", "model": "offline"},
                                                  timeout_s=1.0)
    req = CallRequest(gen_id="d_1", stage="draft", prompt=DRAFT_LIST, model_id="offline",
                      provider_model="offline")
    result = asyncio.run(provider.complete(req))
    asyncio.run(provider.aclose())
    assert result.text == offline_answer("d_1", DRAFT_LIST)
    assert (result.provider, result.resolved_model, result.cost_usd, result.finish_reason) == \
        ("offline", OFFLINE_MODEL, 0.0, "stop")
    assert result.prompt_tokens == estimate_tokens(DRAFT_LIST) == round(len(DRAFT_LIST.split()) * 1.3)
    assert result.completion_tokens == estimate_tokens(result.text)


def test_offline_model_is_fast() -> None:
    prompt = evaluation_prompt(offline_answer("e_1", ESSAY_PLAIN) * 3)
    prompts = [DRAFT_LIST, DRAFT_IDEAS, DRAFT_ESSAY_TAGS, ESSAY_PLAIN, prompt]
    # CPU time, not wall time: other processes on a busy test machine must not fail this test.
    started = time.process_time()
    n = 0
    for i in range(200):
        for p in prompts:
            offline_answer(f"g_{i}", p)
            n += 1
    rate = n / max(time.process_time() - started, 1e-9)
    # Measured ~3,000-5,000 answers/s here when idle; the margin absorbs slower machines.
    assert rate >= 1000, f"offline model answered only {rate:.0f} prompts per CPU second"


@pytest.mark.parametrize("blob", ["A" * 20_000, "Qm" + "x" * 20_000, "x" * 50_000,
                                  ("Zm9vYmFyYmF6" * 2_000) + " Tail Word"])
def test_long_unbroken_tokens_neither_stall_nor_bloat_the_answer(blob: str) -> None:
    # Pasted blobs (base64, hashes, runs of one letter) once took time quadratic in their length
    # and came back verbatim in the answer, many times over.
    prompt = f"Rate this essay; give a score from 0 to 9.\n\nESSAY:\n{blob}\n"
    started = time.process_time()
    answers = [offline_answer("v_1", prompt), offline_answer("d_1", f"Brainstorm about {blob}.")]
    assert time.process_time() - started < 1.0
    assert all(len(a) < 20_000 for a in answers), [len(a) for a in answers]
    assert plugins.parsers().get("score")(answers[0]).score is not None


# ------------------------------------------------------------------ seed-data templates
def _render(path: Path, **variables: object) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return env.from_string(path.read_text()).render(**variables)


def _seed_concepts(seed_data: Path) -> list[dict[str, str]]:
    data = json.loads((seed_data / "1_raw/concepts/day_dreaming_concepts.json").read_text())
    return [{"id": c["concept_id"], "name": c["name"], "content": c.get("paragraph") or c.get("sentence", "")}
            for c in data["concepts"][:4]]


def _parsers_by_template(seed_data: Path, stage: str) -> dict[str, str]:
    import csv

    with open(seed_data / f"1_raw/{stage}_templates.csv", newline="") as fh:
        return {row["template_id"]: (row.get("parser") or "identity") for row in csv.DictReader(fh)}


def test_offline_answers_to_seed_templates_parse_with_their_catalog_parsers(seed_data: Path) -> None:
    templates = seed_data / "1_raw/templates"
    concepts = _seed_concepts(seed_data)
    draft_parsers = _parsers_by_template(seed_data, "draft")
    eval_parsers = _parsers_by_template(seed_data, "evaluation")
    drafts = []
    for path in sorted((templates / "draft").glob("*.txt")):
        answer = offline_answer(f"d_{path.stem}", _render(path, concepts=concepts))
        assert len([line for line in answer.splitlines() if line.strip()]) >= 3, path.name
        drafts.append(parse(draft_parsers.get(path.stem, "identity"), answer))
    essays = []
    for i, path in enumerate(sorted((templates / "essay").glob("*.txt"))):
        draft = drafts[i % len(drafts)]
        answer = offline_answer(f"e_{path.stem}", _render(path, draft_block=draft, links_block=draft))
        essays.append(parse("essay_block_lenient", answer))
    scores = []
    for path in sorted((templates / "evaluation").glob("*.txt")):
        for j, essay in enumerate(essays):
            answer = offline_answer(f"v_{path.stem}_{j}", _render(path, response=essay))
            scores.append(plugins.parsers().get(eval_parsers.get(path.stem, "score"))(answer).score)
    assert len(set(scores)) >= 3
