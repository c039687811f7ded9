"""Inter-rater reliability: Krippendorff's alpha for nominal, ordinal, interval and ratio data.

Alpha compares the disagreement observed between raters with the disagreement expected by chance,
using the coincidence-matrix formulation (Krippendorff, "Computing Krippendorff's Alpha-Reliability",
2011). It copes with any number of raters and with missing values; units rated fewer than twice are
not pairable and are left out. Alpha is undefined (``None``) when nothing is pairable or when the
pairable values do not vary at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Callable

LEVELS = ("nominal", "ordinal", "interval", "ratio")


def units_from_raters(matrix: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Turn rater-by-unit data (one row per rater, ``None`` = missing) into a list of units."""
    if not matrix:
        return []
    width = max(len(row) for row in matrix)
    return [[row[j] for row in matrix if j < len(row) and row[j] is not None] for j in range(width)]


def _coincidences(units: Iterable[Iterable[Any]]) -> dict[tuple[Any, Any], float]:
    """The coincidence matrix o[c, k]: each pair of values within a unit, weighted 1 / (m_u - 1)."""
    o: dict[tuple[Any, Any], float] = {}
    for unit in units:
        values = [v for v in unit if v is not None]
        m = len(values)
        if m < 2:
            continue  # a lone value pairs with nothing
        counts = Counter(values)
        for c, n_c in counts.items():
            for k, n_k in counts.items():
                pairs = n_c * (n_k - 1) if c == k else n_c * n_k
                if pairs:
                    o[(c, k)] = o.get((c, k), 0.0) + pairs / (m - 1)
    return o


def _distance(level: str, values: list[Any], totals: dict[Any, float]) -> Callable[[Any, Any], float]:
    """The squared difference function δ²(c, k) of the chosen level of measurement."""
    if level == "nominal":
        return lambda c, k: 0.0 if c == k else 1.0
    if level == "interval":
        return lambda c, k: float(c - k) ** 2
    if level == "ratio":
        return lambda c, k: 0.0 if c == k else ((c - k) / (c + k)) ** 2
    if level == "ordinal":
        # δ² = (sum of n_g for g from c to k, minus half of n_c and n_k)², over the ranked values.
        position = {v: i for i, v in enumerate(values)}
        cumulative = [0.0]
        for v in values:
            cumulative.append(cumulative[-1] + totals[v])

        def ordinal(c: Any, k: Any) -> float:
            lo, hi = sorted((position[c], position[k]))
            between = cumulative[hi + 1] - cumulative[lo]
            return (between - (totals[c] + totals[k]) / 2) ** 2

        return ordinal
    raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")


def krippendorff_alpha(units: Iterable[Iterable[Hashable | None]], level: str = "ordinal") -> float | None:
    """Krippendorff's alpha of ``units`` (each the values raters gave one unit; ``None`` = missing).

    ``level`` is nominal, ordinal, interval or ratio. Returns 1.0 for perfect agreement, about 0
    for chance-level agreement (negative below it), and ``None`` when alpha is undefined: fewer
    than two values in every unit (e.g. one rater), or no variation among the pairable values.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    o = _coincidences(units)
    if not o:
        return None
    totals: dict[Any, float] = {}
    for (c, _k), weight in o.items():
        totals[c] = totals.get(c, 0.0) + weight
    values = sorted(totals)
    n = sum(totals.values())
    delta = _distance(level, values, totals)
    observed = sum(weight * delta(c, k) for (c, k), weight in o.items())
    expected = sum(totals[c] * totals[k] * delta(c, k) for c in values for k in values)
    if expected == 0:
        return None  # every pairable value is the same: agreement cannot be told from chance
    return 1.0 - (n - 1) * observed / expected


def replicate_spread(groups: Iterable[Sequence[float]]) -> float | None:
    """Mean sample standard deviation within groups of repeated scores (groups of 2+ only)."""
    spreads = []
    for group in groups:
        xs = [float(x) for x in group if x is not None]
        if len(xs) < 2:
            continue
        mean = sum(xs) / len(xs)
        spreads.append((sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5)
    return sum(spreads) / len(spreads) if spreads else None
