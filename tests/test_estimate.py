"""The estimate of pending work, checked against what the run then really sends and spends.

Real ledgers planned from the starter catalog plus a priced model on a loopback server. Prompt
tokens are the rendered prompts' characters over the characters per token (4, or what the
model's finished calls show); output tokens are max_tokens at worst and, once calls of a
template × model are done, their median; a child of a pending parent counts the parent's text at
its estimate. Each test computes the figures independently from what the runner recorded.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from daydream.ledger.store import Ledger
from daydream.run.estimate import SAMPLE, EstimateRow, estimate_pending
from daydream.testing import StubLLMServer
from tests.runner_fixtures import (KEY_ENV, drafts_spec, pipeline_spec, planned_ledger, run_cli,
                                   stub_catalog, subprocess_env, write_spec)

MAX_TOKENS = 400
PRICE_IN, PRICE_OUT = 1.0, 2.0  # the stub model's, USD per 1M tokens


@pytest.fixture
def server() -> StubLLMServer:
    with StubLLMServer() as running:
        yield running


def run(ledger: Ledger, *args: str) -> None:
    done = run_cli("run", "--db", str(ledger.path), "--quiet", *args, env=subprocess_env(**{KEY_ENV: "k"}))
    assert done.returncode == 0, done.stderr


def row(estimate, stage: str) -> EstimateRow:
    [found] = [r for r in estimate.rows if r.stage == stage]
    return found


def recorded(ledger: Ledger, stage: str) -> tuple[list[int], list[int]]:
    """Prompt characters and completion tokens of a stage's finished calls."""
    rows = ledger.query("SELECT t.chars, g.completion_tokens FROM gen_state g JOIN texts t ON t.sha256 = g.prompt_hash "
                        "WHERE g.stage = ? AND g.status = 'completed' ORDER BY g.gen_id", (stage,))
    return [r[0] for r in rows], [r[1] for r in rows]


def test_draft_prompts_are_measured_as_rendered_and_outputs_at_max_tokens(tmp_path: Path, server) -> None:
    ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(5), max_tokens=MAX_TOKENS)
    estimate = estimate_pending(ledger)
    draft = row(estimate, "draft")
    run(ledger)
    chars, _completions = recorded(ledger, "draft")
    assert draft.calls == 5 and len(chars) == 5
    assert abs(draft.prompt_tokens - sum(chars) / 4) <= 1  # 4 characters per token: nothing observed yet
    assert draft.prompt_tokens == draft.prompt_tokens_max  # the prompts are known exactly
    assert draft.output_tokens == draft.output_tokens_max == 5 * MAX_TOKENS and draft.observed_calls == 0
    assert draft.cost_usd == pytest.approx((draft.prompt_tokens * PRICE_IN + 5 * MAX_TOKENS * PRICE_OUT) / 1e6,
                                           rel=1e-3)  # tokens are rounded, the cost is not
    assert draft.price == "known" and estimate.total["cost_usd_max"] == draft.cost_usd_max


def test_once_calls_are_done_their_median_output_and_token_ratio_are_used(tmp_path: Path, server) -> None:
    ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(3), max_tokens=MAX_TOKENS)
    run(ledger)
    chars, completions = recorded(ledger, "draft")
    prompt_tokens = [r[0] for r in ledger.query("SELECT prompt_tokens FROM gen_state WHERE stage = 'draft'")]
    # More drafts of the same template and model, in a second cohort.
    spec = write_spec(tmp_path, "more", drafts_spec(7))
    assert run_cli("cohort", "plan", str(spec), "--catalog", str(tmp_path / "catalog"),
                   "--db", str(ledger.path)).returncode == 0
    estimate = estimate_pending(ledger, cohort="more")
    draft = row(estimate, "draft")
    assert draft.calls == 4 and draft.observed_calls == 3
    assert draft.output_tokens == round(4 * statistics.median(completions))
    assert draft.output_tokens_max == 4 * MAX_TOKENS
    ratio = sum(chars) / sum(prompt_tokens)
    assert estimate.chars_per_token["stub"] == pytest.approx(ratio, abs=1e-3)
    run(ledger, "--cohort", "more")
    new_chars = [r[0] for r in ledger.query(
        "SELECT t.chars FROM gen_state g JOIN texts t ON t.sha256 = g.prompt_hash JOIN cohort_members m "
        "ON m.gen_id = g.gen_id AND m.cohort_id = 'more' WHERE g.stage = 'draft' AND g.calls = 1 "
        "AND g.gen_id NOT IN (SELECT gen_id FROM cohort_members WHERE cohort_id = 't')")]
    assert len(new_chars) == 4 and abs(draft.prompt_tokens - sum(new_chars) / ratio) <= 1


def test_children_of_pending_parents_count_the_parent_text_at_its_estimate(tmp_path: Path, server) -> None:
    ledger = planned_ledger(tmp_path, server.base_url, pipeline_spec(n_combos=2), max_tokens=MAX_TOKENS)
    before = estimate_pending(ledger)
    essay = row(before, "essay")
    # Nothing observed: the draft's text counts as its max_tokens both ways.
    assert essay.prompt_tokens == essay.prompt_tokens_max
    run(ledger, "--stage", "draft")
    # Drafts done: essays now render with the real drafts, and are measured exactly.
    after = estimate_pending(ledger)
    essay_after, evaluation = row(after, "essay"), row(after, "evaluation")
    ratio = after.chars_per_token["stub"]
    run(ledger, "--stage", "essay")
    chars, _ = recorded(ledger, "essay")
    assert abs(essay_after.prompt_tokens - sum(chars) / ratio) <= 1
    assert essay_after.prompt_tokens < essay.prompt_tokens  # real drafts are shorter than max_tokens
    # Evaluations of essays not yet written: worst case counts the essay at max_tokens; expected at
    # the essay's expected output (max_tokens too, with no essay observed): equal; once essays are
    # observed, the expected essay length is their median parsed length.
    assert evaluation.prompt_tokens == evaluation.prompt_tokens_max
    spec = write_spec(tmp_path, "more", pipeline_spec(n_combos=4))
    assert run_cli("cohort", "plan", str(spec), "--catalog", str(tmp_path / "catalog"),
                   "--db", str(ledger.path)).returncode == 0
    more = estimate_pending(ledger, cohort="more")
    new_essays, new_evals = row(more, "essay"), row(more, "evaluation")
    assert new_essays.calls == 2 and new_evals.calls == 4  # two of four combos are done already
    assert new_essays.prompt_tokens < new_essays.prompt_tokens_max
    parsed = [r[0] for r in ledger.query("SELECT t.chars FROM gen_state g JOIN texts t ON t.sha256 = g.parsed_hash "
                                         "WHERE g.stage = 'draft' AND g.status = 'completed'")]
    ratio = more.chars_per_token["stub"]
    # Per essay, worst − expected = max_tokens − median parsed draft length (the template uses it once).
    gap = (new_essays.prompt_tokens_max - new_essays.prompt_tokens) / new_essays.calls
    assert gap == pytest.approx(MAX_TOKENS - statistics.median(parsed) / ratio, abs=1)


def test_evaluations_of_copied_essays_read_the_drafts_text(tmp_path: Path, server) -> None:
    spec = drafts_spec(3)
    spec["axes"].update({"essay_template": ["copy-draft"], "evaluation_template": ["originality-rubric"],
                         "evaluation_llm": ["stub"]})
    ledger = planned_ledger(tmp_path, server.base_url, spec, max_tokens=MAX_TOKENS)
    before = estimate_pending(ledger)
    assert [(r.stage, r.calls) for r in before.rows] == [("draft", 3), ("evaluation", 3)]  # copies cost nothing
    run(ledger, "--stage", "draft")
    after = estimate_pending(ledger)  # essays still pending (copies), drafts written: their text is used
    evaluation = row(after, "evaluation")
    ratio = after.chars_per_token["stub"]
    run(ledger)
    chars, _ = recorded(ledger, "evaluation")
    assert abs(evaluation.prompt_tokens - sum(chars) / ratio) <= 1


def test_price_unknown_and_no_max_tokens_leave_cost_and_worst_case_unknown(tmp_path: Path, server) -> None:
    ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(2), price_in=None, price_out=None,
                            price="unknown")
    estimate = estimate_pending(ledger)
    draft = row(estimate, "draft")
    assert draft.price == "unknown" and draft.cost_usd is None and draft.cost_usd_max is None
    assert draft.output_tokens is None and draft.output_tokens_max is None  # no max_tokens, nothing observed
    assert draft.prompt_tokens > 0
    assert "model stub has 'price: unknown': its cost is unknown" in estimate.notes
    assert "model stub sets no max_tokens: its worst case is unbounded (unknown)" in estimate.notes
    assert estimate.total["cost_usd"] is None


def test_a_free_model_costs_nothing_even_without_max_tokens(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "ledger.db")[0]
    spec = write_spec(tmp_path, "c", drafts_spec(2, model="offline"))
    assert run_cli("cohort", "plan", str(spec), "--db", str(ledger.path)).returncode == 0
    draft = row(estimate_pending(ledger), "draft")
    assert draft.output_tokens_max is None and draft.cost_usd == draft.cost_usd_max == 0


def test_large_groups_are_sampled_and_say_so(tmp_path: Path, server, monkeypatch: pytest.MonkeyPatch) -> None:
    import daydream.run.estimate as estimate_module

    monkeypatch.setattr(estimate_module, "SAMPLE", 3)
    ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(8), max_tokens=MAX_TOKENS)
    estimate = estimate_pending(ledger)
    assert row(estimate, "draft").calls == 8
    assert "prompt lengths measured on a sample: draft link-brainstorm × stub 3 of 8" in estimate.notes
    assert SAMPLE >= 100  # the real sample is large enough that typical groups are measured whole


def test_run_dry_run_prints_the_estimate_and_json_gives_the_same(tmp_path: Path, server) -> None:
    ledger = planned_ledger(tmp_path, server.base_url, pipeline_spec(n_combos=2), max_tokens=MAX_TOKENS)
    text = run_cli("run", "--dry-run", "--db", str(ledger.path))
    assert text.returncode == 0
    assert "estimate of the 6 pending LLM calls (expected – worst case):" in text.stdout
    assert "stage       model  calls  prompt tokens  output tokens  cost USD" in text.stdout
    doc = json.loads(run_cli("run", "--dry-run", "--json", "--db", str(ledger.path)).stdout)
    direct = estimate_pending(ledger).as_dict()
    assert doc["estimate"] == json.loads(json.dumps(direct))
    assert [(r["stage"], r["model_id"], r["calls"]) for r in doc["estimate"]["rows"]] == [
        ("draft", "stub", 2), ("essay", "stub", 2), ("evaluation", "stub", 2)]
    assert doc["preflight"]["ok"] is False  # the key is not set in this environment
    total = doc["estimate"]["total"]
    line = next(x for x in text.stdout.splitlines() if x.startswith("total"))
    assert f"{total['calls']}" in line and f"{total['output_tokens']:,}" in line


def test_cohort_plan_prints_the_estimate_and_dry_run_leaves_the_ledger_untouched(tmp_path: Path, server) -> None:
    catalog = stub_catalog(tmp_path, server.base_url, max_tokens=MAX_TOKENS)
    ledger = Ledger.init(tmp_path / "ledger.db")[0]
    spec = write_spec(tmp_path, "c", pipeline_spec(n_combos=2))
    size = (tmp_path / "ledger.db").stat().st_size
    dry = run_cli("cohort", "plan", str(spec), "--catalog", str(catalog), "--db", str(ledger.path), "--dry-run",
                  "--json")
    assert dry.returncode == 0, dry.stderr
    assert ledger.count() == 0 and (tmp_path / "ledger.db").stat().st_size == size
    planned = run_cli("cohort", "plan", str(spec), "--catalog", str(catalog), "--db", str(ledger.path), "--json")
    assert json.loads(dry.stdout)["estimate"] == json.loads(planned.stdout)["estimate"]
    assert json.loads(planned.stdout)["estimate"]["total"]["calls"] == 6
    again = run_cli("cohort", "plan", str(spec), "--catalog", str(catalog), "--db", str(ledger.path))
    assert "estimate of the 6 pending LLM calls" in again.stdout
