"""Judges: Krippendorff's alpha (nominal, ordinal, interval, ratio), offsets and self-preference.

Alpha compares the disagreement observed between raters with the disagreement expected by chance,
using the coincidence-matrix formulation (Krippendorff, "Computing Krippendorff's Alpha-Reliability",
2011). It copes with any number of raters and with missing values; units rated fewer than twice are
not pairable and are left out. Alpha is undefined (``None``) when nothing is pairable or when the
pairable values do not vary at all; ``rubric_agreement`` then says why in words. ``evaluator_offsets``
and ``self_preference`` check the judges themselves, with the clustered intervals of
``daydream.read.compare``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from daydream.read.compare import Score, bootstrap_ratio_difference, bootstrap_ratios, interval, random_streams

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


# ------------------------------------------------------------------------------------ judges
ALPHA_EXPLAINED = ("Krippendorff's alpha is how much the judges agree beyond what chance alone would give "
                   "(1 perfect agreement, 0 no better than chance, below 0 systematic disagreement); "
                   "between replicates it is one judge agreeing with itself when scoring an essay again.")


@dataclass(frozen=True)
class Agreement:
    """How far the scores of one rubric agree: between judges, and between one judge's replicates.

    An essay is a unit; between judges, a judge's value for it is the mean of its replicates;
    between replicates, each (essay, judge) is a unit and its replicate scores are the values. When
    an alpha cannot be computed, ``reason`` (or ``replicates_reason``) says why in one sentence.
    """

    rubric: str
    judges: int
    essays: int
    essays_multi_rated: int
    alpha_ordinal: float | None
    alpha_interval: float | None
    reason: str | None
    alpha_replicates: float | None
    replicates_reason: str | None
    replicate_spread: float | None


def rubric_agreement(scores: Iterable[Score], rubric: str) -> Agreement:
    """The ``Agreement`` of ``rubric`` over the scored evaluations ``scores`` (other rubrics ignored)."""
    reps: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in scores:
        if s.evaluation_template == rubric:
            reps[(s.essay_gen_id, s.evaluation_llm or "")].append(s.score)
    judges = sorted({judge for _essay, judge in reps})
    units: dict[str, list[float]] = defaultdict(list)
    for (essay, _judge), xs in sorted(reps.items()):
        units[essay].append(sum(xs) / len(xs))
    multi = sum(len(v) >= 2 for v in units.values())
    ordinal = krippendorff_alpha(units.values(), "ordinal")
    interval = krippendorff_alpha(units.values(), "interval")
    reason = None
    if not judges:
        reason = "no scores for this rubric yet"
    elif len(judges) == 1:
        reason = (f"one judge ({judges[0]}) scored this rubric: agreement between judges needs two or "
                  "more judges scoring the same essays")
    elif not multi:
        reason = "no essay was scored by two judges, so their scores cannot be compared"
    elif interval is None:
        reason = "every judge gave every essay the same score: agreement cannot be told from chance"
    repeated = [xs for xs in reps.values() if len(xs) >= 2]
    alpha_reps = krippendorff_alpha(reps.values(), "interval")
    reps_reason = None
    if not repeated:
        reps_reason = ("one replicate per essay and judge: agreement between repeated scorings needs two "
                       "or more replicates" if reps else "no scores for this rubric yet")
    elif alpha_reps is None:
        reps_reason = "every replicate gave the same score: agreement cannot be told from chance"
    return Agreement(rubric, len(judges), len(units), multi, ordinal, interval, reason, alpha_reps,
                     reps_reason, replicate_spread(reps.values()))


def _residuals(scores: Iterable[Score]) -> list[tuple[Score, float]]:
    """Each judge's mean over replicates in each (essay, rubric) scored by two or more judges, minus
    the mean of the judges' means there: ``(a representative score, residual)`` per judge and cell."""
    cells: dict[tuple[str, str | None], dict[str, list[Score]]] = defaultdict(lambda: defaultdict(list))
    for s in scores:
        cells[(s.essay_gen_id, s.evaluation_template)][s.evaluation_llm or ""].append(s)
    out = []
    for judged in cells.values():
        if len(judged) < 2:
            continue
        means = {j: sum(x.score for x in xs) / len(xs) for j, xs in judged.items()}
        centre = sum(means.values()) / len(means)
        for j, xs in judged.items():
            out.append((xs[0], means[j] - centre))
    return out


@dataclass(frozen=True)
class Offset:
    """How much more generous one judge is than the judges' mean on the same essays and rubrics.

    Over every (essay, rubric) cell scored by two or more judges: the judge's mean there minus the
    mean of all judges' means there, averaged over its cells. The interval is the cluster bootstrap
    of ``daydream.read.compare`` over units (drafts, or essays without drafts).
    """

    evaluator: str
    cells: int
    units: int
    offset: float
    ci_low: float | None
    ci_high: float | None


def evaluator_offsets(scores: Sequence[Score], *, seed: int, resamples: int) -> tuple[list[Offset], str | None]:
    """Every judge's ``Offset``, or an empty list and the reason none can be computed."""
    judges = sorted({s.evaluation_llm or "" for s in scores})
    if len(judges) < 2:
        shown = f" ({judges[0]})" if judges else ""
        return [], f"one judge{shown}: an offset compares judges scoring the same essays, and needs two or more"
    per_judge: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s, r in _residuals(scores):
        per_judge[s.evaluation_llm or ""][s.unit].append(r)
    if not per_judge:
        return [], "no essay was scored by two judges on the same rubric"
    out = []
    for judge in sorted(per_judge):
        units = per_judge[judge]
        sums = [sum(v) for v in units.values()]
        counts = [len(v) for v in units.values()]
        rng, _ = random_streams(seed, ["offset", judge])
        low, high = interval(bootstrap_ratios(sums, counts, rng, resamples), len(units))
        out.append(Offset(judge, sum(counts), len(units), sum(sums) / sum(counts), low, high))
    return out, None


@dataclass(frozen=True)
class SelfPreference:
    """Does a judge score essays its own model wrote higher than essays other models wrote?

    ``diff`` is the judge's mean score on its own model's essays minus its mean on other models'
    essays (the author of a copied essay is its draft's model). A better writer also earns a
    positive ``diff`` from a fair judge, so ``adjusted`` takes each score relative to the other
    judges' scores of the same essay and rubric (the judge's residual, as in ``Offset``): own minus
    other. Intervals: cluster bootstrap over units.
    """

    evaluator: str
    n_own: int
    n_other: int
    mean_own: float
    mean_other: float
    diff: float
    ci_low: float | None
    ci_high: float | None
    adjusted: float | None
    adjusted_ci_low: float | None
    adjusted_ci_high: float | None


def _split_by_author(items: Iterable[tuple[Score, float]], judge: str) -> dict[str, list[list[float]]]:
    """unit → [own sum, own count, other sum, other count] of the values judged by ``judge``."""
    units: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for s, value in items:
        if (s.evaluation_llm or "") != judge or s.author is None:
            continue
        slot = 0 if s.author == judge else 2
        units[s.unit][slot] += value
        units[s.unit][slot + 1] += 1
    return units


def _difference_interval(units: list[list[float]], rng: Any, resamples: int) -> tuple[float | None, float | None]:
    """The interval of own − other over ``units`` (see ``SelfPreference``), or none with fewer than
    two units on either side."""
    if sum(1 for u in units if u[1]) < 2 or sum(1 for u in units if u[3]) < 2:
        return None, None
    return interval(bootstrap_ratio_difference(units, rng, resamples), len(units))


def self_preference(scores: Sequence[Score], *, seed: int, resamples: int) -> tuple[list[SelfPreference], str | None]:
    """A ``SelfPreference`` for every judge whose model also wrote essays in ``scores`` and that
    scored essays of other models too; otherwise an empty list and the reason."""
    authors = {s.author for s in scores if s.author is not None}
    judges = sorted({s.evaluation_llm for s in scores if s.evaluation_llm in authors})
    if not judges:
        return [], "no judge's model also wrote essays in this cohort, so there is no own work to prefer"
    residuals = _residuals(scores)
    out = []
    for judge in judges:
        raw = _split_by_author(((s, s.score) for s in scores), judge)
        own = [u for u in raw.values() if u[1]]
        other = [u for u in raw.values() if u[3]]
        if not own or not other:
            continue
        mean_own = sum(u[0] for u in own) / sum(u[1] for u in own)
        mean_other = sum(u[2] for u in other) / sum(u[3] for u in other)
        rng, rng_adj = random_streams(seed, ["self-preference", judge])
        low, high = _difference_interval(list(raw.values()), rng, resamples)
        adjusted = adj_low = adj_high = None
        vals = list(_split_by_author(residuals, judge).values())
        if any(u[1] for u in vals) and any(u[3] for u in vals):
            adjusted = (sum(u[0] for u in vals) / sum(u[1] for u in vals)
                        - sum(u[2] for u in vals) / sum(u[3] for u in vals))
            adj_low, adj_high = _difference_interval(vals, rng_adj, resamples)
        out.append(SelfPreference(judge, int(sum(u[1] for u in own)), int(sum(u[3] for u in other)),
                                  mean_own, mean_other, mean_own - mean_other, low, high, adjusted,
                                  adj_low, adj_high))
    if not out:
        return [], "each judge whose model wrote essays scored only its own model's essays (or only others')"
    return out, None
