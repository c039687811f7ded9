"""The statistics of ``daydream compare`` on cohorts drawn from a known model, hundreds of times.

The model (``tests/compare_model.py``): every draft has a quality = base + its template's effect +
a draft effect shared by everything written from it (sd ``sd_draft``); every evaluation adds
independent judge noise. Each cohort: 12 combos x the templates, one draft each, copied as the
essay, 2 rubrics x 1 judge x 2 replicates (8 scores per draft pair).

These replications run the library function ``compare`` directly on ``Score`` rows drawn from the
model: 300+ full pipeline runs would take minutes. ``test_compare_pipeline`` drives cohorts drawn
from the very same model (the same ``true_quality`` and ``judge_score``) through the real pipeline
(planner, runner, a loopback OpenAI-compatible server, parser, ledger, ``read_scores``) and checks
that ``compare`` gets exactly the numbers the server answered, so what is shown here holds for the
command. Every draw is seeded: the test gives the same counts on every run.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from daydream.read.compare import Score, compare, t95
from tests.compare_model import Model, simulate_scores

N_COHORTS = 300
N_COMBOS = 12
RESAMPLES = 1000


def naive_interval(rows: list[Score], a: str, b: str) -> tuple[float, float]:
    """The interval the old report gave: every evaluation independent (t over all matched pairs)."""
    pairs: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in rows:
        pairs[(r.combo, r.evaluation_template, r.evaluation_llm, r.evaluation_replicate)][r.draft_template] = r.score
    d = [v[a] - v[b] for v in pairs.values() if a in v and b in v]
    mean, half = statistics.fmean(d), t95(len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
    return mean - half, mean + half


def coverage(model: Model, seed: str) -> tuple[float, float]:
    """Share of cohorts whose clustered (and naive) 95% interval holds the true A − B."""
    truth = model.true_difference("A", "B")
    clustered = naive = 0
    for i in range(N_COHORTS):
        rows = simulate_scores(model, N_COMBOS, seed=(seed, i))
        [c] = compare(rows, "draft_template", resamples=RESAMPLES).comparisons
        clustered += c.ci_low <= truth <= c.ci_high
        low, high = naive_interval(rows, "A", "B")
        naive += low <= truth <= high
    return clustered / N_COHORTS, naive / N_COHORTS


def test_the_clustered_interval_covers_the_true_difference_about_95_percent_of_the_time() -> None:
    clustered, naive = coverage(Model({"A": 0.5, "B": 0.0}, sd_draft=1.0, sd_judge=0.6), "large draft effects")
    assert 0.90 <= clustered <= 0.99, clustered
    # The bug being fixed: counting 8 scores of one draft pair as 8 independent observations makes
    # the interval far too narrow when drafts differ a lot.
    assert naive < 0.80, naive
    assert clustered - naive > 0.15


def test_with_small_draft_effects_both_intervals_are_close_to_95_percent() -> None:
    # The naive interval is only wrong because of the shared draft effect: without it, the two agree.
    clustered, naive = coverage(Model({"A": 0.5, "B": 0.0}, sd_draft=0.05, sd_judge=0.6), "small draft effects")
    assert 0.90 <= clustered <= 0.99, clustered
    assert 0.90 <= naive <= 0.99, naive


def test_no_effect_gives_at_most_5_percent_holm_corrected_false_positives() -> None:
    model = Model({"A": 0.0, "B": 0.0, "C": 0.0}, sd_draft=1.0, sd_judge=0.6)
    any_positive = raw_positive = 0
    for i in range(N_COHORTS):
        found = compare(simulate_scores(model, N_COMBOS, seed=("null", i)), "draft_template",
                        resamples=RESAMPLES).comparisons
        assert len(found) == 3  # A−B, A−C, B−C
        any_positive += any(c.p_holm < 0.05 for c in found)
        raw_positive += sum(c.p < 0.05 for c in found)
    # Family-wise: a cohort counts once if any of its three comparisons is called significant.
    assert any_positive / N_COHORTS <= 0.05, any_positive
    # Each single test holds its level too (three per cohort).
    assert raw_positive / (3 * N_COHORTS) <= 0.06, raw_positive


def test_a_real_effect_is_found_most_of_the_time() -> None:
    # Power, so the tests above are not passed by a test that never rejects. A unit difference has
    # sd ≈ √(2·1² + 2·0.6²/4) ≈ 1.48, so 12 units give an effect of 1.5 a standardised size of
    # about 3.5: a paired t-test would find it about 90% of the time.
    model = Model({"A": 1.5, "B": 0.0}, sd_draft=1.0, sd_judge=0.6)
    found = sum(compare(simulate_scores(model, N_COMBOS, seed=("power", i)), "draft_template",
                        resamples=RESAMPLES).comparisons[0].p_holm < 0.05 for i in range(100))
    assert found >= 80, found
