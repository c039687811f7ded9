"""Krippendorff's alpha against the published worked examples, and its edge cases."""

from __future__ import annotations

import pytest

from daydream.reliability import LEVELS, krippendorff_alpha, replicate_spread, units_from_raters

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
