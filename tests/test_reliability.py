"""Krippendorff's alpha against the published worked examples and its edge cases; the judge checks
(reasons when alpha cannot be computed, offsets, self-preference) on hand-computed cases."""

from __future__ import annotations

import pytest

from daydream.read.compare import Score
from daydream.read.reliability import (LEVELS, evaluator_offsets, krippendorff_alpha, replicate_spread, rubric_agreement,
                                  self_preference, units_from_raters)

N = None
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: four observers,
# twelve units, values 1–5, with missing data. Published: nominal .743, ordinal .815,
# interval .849, ratio .797.
FOUR_OBSERVERS = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
    [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
]
# Same paper, section A: two observers, binary data, ten units, no missing data: alpha = .095.
TWO_OBSERVERS_BINARY = [
    [0, 1, 0, 0, 0, 0, 0, 0, 1, 0],
    [1, 1, 1, 0, 0, 1, 0, 0, 0, 0],
]


@pytest.mark.parametrize("level, published", [
    ("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)])
def test_alpha_matches_krippendorffs_published_example(level: str, published: float) -> None:
    alpha = krippendorff_alpha(units_from_raters(FOUR_OBSERVERS), level)
    assert alpha == pytest.approx(published, abs=0.0005)


def test_alpha_matches_the_binary_two_observer_example() -> None:
    assert krippendorff_alpha(units_from_raters(TWO_OBSERVERS_BINARY), "nominal") == pytest.approx(
        0.095, abs=0.0005)


@pytest.mark.parametrize("level", LEVELS)
def test_perfect_agreement_gives_one(level: str) -> None:
    units = [[3, 3, 3], [5, 5], [7, 7, 7], [1, 1]]
    assert krippendorff_alpha(units, level) == 1.0


def test_one_rater_leaves_alpha_undefined() -> None:
    assert krippendorff_alpha(units_from_raters([[1, 2, 3, 4]]), "ordinal") is None
    assert krippendorff_alpha([], "interval") is None


def test_no_variation_leaves_alpha_undefined() -> None:
    assert krippendorff_alpha([[4, 4], [4, 4, 4]], "ordinal") is None


def test_units_rated_once_are_ignored_as_missing_values() -> None:
    # Adding units rated by one observer only changes nothing: they are not pairable.
    base = units_from_raters(FOUR_OBSERVERS)
    assert krippendorff_alpha(base + [[9], [None, 2], []], "interval") == pytest.approx(
        krippendorff_alpha(base, "interval"))


def test_systematic_disagreement_is_below_zero() -> None:
    # Raters always pick opposite ends: worse than chance.
    assert krippendorff_alpha([[0, 9], [9, 0], [0, 9], [9, 0]], "interval") < 0


def test_ordinal_alpha_depends_on_ranks_not_distances() -> None:
    units = [[1, 2], [2, 3], [3, 3], [1, 1]]
    stretched = [[{1: 1, 2: 20, 3: 300}[v] for v in unit] for unit in units]
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(krippendorff_alpha(stretched, "ordinal"))
    assert krippendorff_alpha(units, "interval") != pytest.approx(krippendorff_alpha(stretched, "interval"))


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="level must be one of"):
        krippendorff_alpha([[1, 2]], "cardinal")


def test_replicate_spread_is_the_mean_within_group_stdev() -> None:
    # [8, 9]: sd √0.5; [7, 7, 7]: 0; [5]: ignored
    assert replicate_spread([[8, 9], [7, 7, 7], [5]]) == pytest.approx((0.5 ** 0.5) / 2)
    assert replicate_spread([[5], []]) is None


# ------------------------------------------------------------------------------------ judges
def score(essay: str, judge: str, value: float, *, author: str = "w", rubric: str = "r", replicate: int = 1) -> Score:
    """A scored evaluation of ``essay`` (its own draft, its own unit) written by ``author``."""
    return Score(f"v_{essay}_{judge}_{rubric}_{replicate}", essay, f"d_{essay}", "c", "t", "dm", 1, "et", author, 1,
                 rubric, judge, replicate, value, 0, 0)


def test_agreement_says_why_alpha_cannot_be_computed() -> None:
    one_judge = [score("e1", "j1", 5), score("e2", "j1", 7)]
    agreement = rubric_agreement(one_judge, "r")
    assert agreement.alpha_interval is None
    assert agreement.reason == ("one judge (j1) scored this rubric: agreement between judges needs two or more "
                                "judges scoring the same essays")
    assert agreement.replicates_reason.startswith("one replicate per essay and judge")
    apart = [score("e1", "j1", 5), score("e2", "j2", 7)]
    assert rubric_agreement(apart, "r").reason == ("no essay was scored by two judges, so their scores cannot be "
                                                   "compared")
    flat = [score("e1", "j1", 5), score("e1", "j2", 5), score("e2", "j1", 5), score("e2", "j2", 5)]
    assert rubric_agreement(flat, "r").reason.startswith("every judge gave every essay the same score")
    assert rubric_agreement(flat, "other").reason == "no scores for this rubric yet"
    agree = [score("e1", "j1", 3), score("e1", "j2", 3), score("e2", "j1", 8), score("e2", "j2", 8),
             score("e1", "j1", 4, replicate=2)]
    found = rubric_agreement(agree, "r")
    assert found.reason is None and found.alpha_interval is not None and found.alpha_replicates is not None


def test_offsets_are_each_judges_distance_from_the_judges_mean() -> None:
    # e1: j1 8, j2 6 → ±1; e2: j1 5, j2 5 → 0; e3: j1 7, j2 4 → ±1.5; e4 scored by j1 alone: no cell.
    scores = [score("e1", "j1", 8), score("e1", "j2", 6), score("e2", "j1", 5), score("e2", "j2", 5),
              score("e3", "j1", 7), score("e3", "j2", 4), score("e4", "j1", 9)]
    offsets, note = evaluator_offsets(scores, seed=1, resamples=500)
    assert note is None
    j1, j2 = offsets
    assert (j1.evaluator, j1.cells, j1.units, j1.offset) == ("j1", 3, 3, pytest.approx(2.5 / 3))
    assert (j2.evaluator, j2.offset) == ("j2", pytest.approx(-2.5 / 3))
    # Three units: the expanded percentile interval spans the all-e2 (0) to the all-e3 (1.5) resample.
    assert (j1.ci_low, j1.ci_high) == (pytest.approx(0.0), pytest.approx(1.5))
    assert evaluator_offsets(scores[:1], seed=1, resamples=10) == (
        [], "one judge (j1): an offset compares judges scoring the same essays, and needs two or more")


def test_self_preference_raw_and_relative_to_the_other_judge() -> None:
    # j1 also wrote e1 and e3; w wrote e2 and e4. j1: own 8, 6 (mean 7), other 5, 5 (mean 5) → +2.
    # Relative to j2 (cell means 7.5, 6, 5.5, 4.5): j1's residuals own +0.5, 0, other −0.5, +0.5
    # → 0.25 − 0 = 0.25: most of the +2 is j1's essays being better, which j2 sees too.
    scores = [score("e1", "j1", 8, author="j1"), score("e1", "j2", 7, author="j1"),
              score("e3", "j1", 6, author="j1"), score("e3", "j2", 6, author="j1"),
              score("e2", "j1", 5), score("e2", "j2", 6), score("e4", "j1", 5), score("e4", "j2", 4)]
    found, note = self_preference(scores, seed=3, resamples=2000)
    assert note is None
    [p] = found  # j2 wrote nothing: nothing to prefer
    assert (p.evaluator, p.n_own, p.n_other, p.mean_own, p.mean_other, p.diff) == ("j1", 2, 2, 7.0, 5.0, 2.0)
    assert p.adjusted == pytest.approx(0.25)
    # Own and other units are resampled apart: own means 8, 7 or 6 against other means 5 → 1 to 3;
    # residuals: own 0.5, 0.25 or 0 against other −0.5, 0 or 0.5 → −0.5 to 1.
    assert (p.ci_low, p.ci_high) == (pytest.approx(1.0), pytest.approx(3.0))
    assert (p.adjusted_ci_low, p.adjusted_ci_high) == (pytest.approx(-0.5), pytest.approx(1.0))
    nobody = [score("e1", "j1", 5), score("e1", "j2", 6)]
    assert self_preference(nobody, seed=3, resamples=10) == (
        [], "no judge's model also wrote essays in this cohort, so there is no own work to prefer")
