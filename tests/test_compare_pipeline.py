"""``daydream compare`` end to end: cohorts drawn from a known model, run through the real pipeline.

A loopback OpenAI-compatible server plays three models. ``writer-a`` and ``writer-b`` write drafts
(the factor compared, ``draft_llm``): each draft carries a hidden quality, drawn by
``tests.compare_model.true_quality`` (writer-a's effect 0.5 above writer-b's, plus a draft effect).
The drafts are copied as essays; ``judge`` reads the quality back out of the essay in its prompt and
answers ``SCORE: X`` with ``judge_score`` (quality plus noise). The planner, the runner, the
provider, the score parser, the ledger and ``read_scores`` all run for real.

Two cohorts run end to end here (a few seconds); the coverage over hundreds of cohorts from the same
model is shown by ``test_compare_simulation`` on the library function, which these tests tie to the
pipeline: ``compare`` on the ledger gets exactly the scores the server answered, and the command,
the JSON and the report print the same numbers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from daydream.cli import main
from daydream.read.compare import compare_cohort
from daydream.ledger.store import Ledger
from daydream.design.planner import plan_cohort
from daydream.read.report import publish_report
from daydream.run.runner import RunOptions, run_cohort
from daydream.testing import StubLLMServer
from daydream_plugins.provider_offline import offline_answer
from tests.compare_model import Model, judge_score, true_quality

REPO = Path(__file__).resolve().parent.parent
KEY_ENV = "DAYDREAM_TEST_COMPARE_KEY"
MODEL = Model({"writer-a": 0.5, "writer-b": 0.0}, sd_draft=1.0, sd_judge=0.6)
CONCEPTS = ["feedback-loop", "division-of-labor", "natural-selection", "compound-interest", "redundancy",
            "bottleneck"]
# What a draft carries for the judge to read back: its quality, its writer, and its prompt's hash
# (the same for both writers of one combo, so it names the combo).
MARK = re.compile(r"hidden quality q=(-?\d+\.\d+) by (\S+) for (\w+)")


class ModelServer(StubLLMServer):
    """The stub server answering from the known model, and keeping what it answered."""

    def __init__(self, cohort_seed: str) -> None:
        super().__init__()
        self.cohort_seed = cohort_seed
        self.asked: dict[str, int] = defaultdict(int)
        self.answered: list[dict[str, Any]] = []  # every judge answer: writer, combo key, score
        self._answer_lock = threading.Lock()

    def _default_answer(self, index: int, model: str | None, prompt: str, payload: dict[str, Any],
                        truncated: bool) -> dict[str, Any]:
        body = super()._default_answer(index, model, prompt, payload, truncated)
        key = hashlib.sha256(prompt.encode()).hexdigest()
        if model in MODEL.effects:  # a draft: the offline text, plus its hidden quality
            quality = true_quality(MODEL, model, self.cohort_seed, key)
            text = offline_answer(model, prompt) + f"\n\nhidden quality q={quality:.6f} by {model} for {key[:16]}"
        else:  # the judge: read the quality back, add this scoring's noise
            found = MARK.search(prompt)
            assert found, "an evaluation prompt must quote its essay"
            with self._answer_lock:
                n = self.asked[key]
                self.asked[key] += 1
            score = judge_score(MODEL, float(found.group(1)), self.cohort_seed, key, n)
            text = f"The essay is what it is.\nSCORE: {score:.3f}"
            with self._answer_lock:
                self.answered.append({"writer": found.group(2), "combo": found.group(3), "score": score})
        body["choices"][0]["message"]["content"] = text
        return body


def catalog(tmp: Path, base_url: str) -> Path:
    folder = tmp / "catalog"
    shutil.copytree(REPO / "specs" / "catalog", folder)
    models = yaml.safe_load((folder / "models.yaml").read_text())
    for name in ("writer-a", "writer-b", "judge"):
        models.append({"id": name, "provider": "openai", "model": name, "base_url": base_url,
                       "api_key_env": KEY_ENV, "concurrency": 8, "price_in": 0, "price_out": 0})
    (folder / "models.yaml").write_text(yaml.safe_dump(models, sort_keys=False))
    return folder


def spec(tmp: Path) -> Path:
    body = {"combos": {"concepts": CONCEPTS, "k": 2, "level": "paragraph"},  # 15 combos
            "axes": {"draft_template": ["link-brainstorm"], "draft_llm": ["writer-a", "writer-b"],
                     "essay_template": ["copy-draft"], "essay_llm": ["writer-a"],
                     "evaluation_template": ["originality-rubric", "coherence-rubric"],
                     "evaluation_llm": ["judge"], "evaluation_replicate": 2}}
    path = tmp / "model.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def run_pipeline(tmp: Path, cohort_seed: str) -> tuple[Ledger, ModelServer]:
    with ModelServer(cohort_seed) as server:
        ledger = Ledger.init(tmp / "ledger.db")[0]
        plan_cohort(ledger, spec(tmp), catalog(tmp, server.base_url), cohort_id="model")
        stats = run_cohort(ledger, RunOptions(retry_base_s=0.05, timeout_s=10.0))
        assert stats.failed == 0
    return ledger, server


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-compare")


@pytest.mark.parametrize("cohort_seed", ["first", "second"])
def test_compare_on_a_real_run_uses_exactly_the_scores_the_judge_gave(tmp_path: Path, cohort_seed: str) -> None:
    ledger, server = run_pipeline(tmp_path, cohort_seed)
    # 15 combos x 2 writers = 30 drafts, copied; 2 rubrics x 2 replicates → 120 evaluations.
    assert len(server.answered) == 120
    result = compare_cohort(ledger, "model", "draft_llm")
    [c] = result.comparisons
    assert (c.a, c.b, c.n_pairs, c.n_units, c.n_unmatched) == ("writer-a", "writer-b", 60, 15, 0)

    # The same estimate from the server's own record of what the judge answered: per combo, the
    # mean of writer-a's four scores minus writer-b's, averaged over combos.
    by_combo: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for a in server.answered:
        by_combo[a["combo"]][a["writer"]].append(a["score"])
    assert len(by_combo) == 15
    diffs = [sum(v["writer-a"]) / 4 - sum(v["writer-b"]) / 4 for v in by_combo.values()]
    assert c.diff == pytest.approx(sum(diffs) / len(diffs), abs=1e-9)
    assert c.ci_low < c.diff < c.ci_high
    # The cohort is one draw; over hundreds of draws the interval holds the truth ~95% of the time
    # (test_compare_simulation). This draw and its interval are fixed by the seeds above.
    assert c.ci_low <= MODEL.true_difference("writer-a", "writer-b") <= c.ci_high


def test_command_json_and_report_show_the_same_comparison(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    ledger, _server = run_pipeline(tmp_path, "report")
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "model", "--by", "draft_model", "--json", "--db", str(ledger.path)])
    assert exit_.value.code in (0, None)
    [printed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [c] = compare_cohort(ledger, "model", "draft_llm").comparisons
    assert printed == json.loads(json.dumps(c.as_json()))
    publish_report(ledger, "model", tmp_path / "report")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "report" / "comparisons.csv").read_text())))
    [row] = [r for r in rows if r["factor"] == "draft_llm"]
    assert row["diff"] == f"{c.diff:.4f}" and row["ci_low"] == f"{c.ci_low:.4f}"
    assert row["p_holm"] == f"{c.p_holm:.4f}" and row["n_pairs"] == "60"
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Draft model: A − B, 95% CI" in page  # the forest plot of the factor with two levels
    assert "Draft template: A − B" not in page  # one draft template: not charted
