"""Judges: Krippendorff's alpha (nominal, ordinal, interval, ratio), offsets and self-preference.

Alpha compares the disagreement observed between raters with the disagreement expected by chance,
using the coincidence-matrix formulation (Krippendorff, "Computing Krippendorff's Alpha-Reliability",
2011). It copes with any number of raters and with missing values; units rated fewer than twice are
not pairable and are left out. Alpha is undefined (``None``) when nothing is pairable or when the
pairable values do not vary at all; ``rubric_agreement`` then says why in words. ``evaluator_offsets``
and ``self_preference`` check the judges themselves, with the clustered intervals of
``daydream.read.compare``.

Everything here works on the columns of a ``daydream.read.score_table.ScoreTable`` (any sequence of
``Score`` rows is turned into one): a cohort of 150,000 evaluations is a few array operations, not
a Python loop per score.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from daydream.read.compare import (MEAN_KEY, MeanGroup, Score, as_table, bootstrap_ratio_difference,
                              cluster_mean_intervals, interval, random_streams)
from daydream.read.score_table import ScoreTable, group_codes

LEVELS = ("nominal", "ordinal", "interval", "ratio")


def _np() -> Any:
    import numpy

    return numpy


def units_from_raters(matrix: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Turn rater-by-unit data (one row per rater, ``None`` = missing) into a list of units."""
    if not matrix:
        return []
    width = max(len(row) for row in matrix)
    return [[row[j] for row in matrix if j < len(row) and row[j] is not None] for j in range(width)]


def krippendorff_alpha(units: Iterable[Iterable[Hashable | None]], level: str = "ordinal") -> float | None:
    """Krippendorff's alpha of ``units`` (each the values raters gave one unit; ``None`` = missing).

    ``level`` is nominal, ordinal, interval or ratio. Returns 1.0 for perfect agreement, about 0
    for chance-level agreement (negative below it), and ``None`` when alpha is undefined: fewer
    than two values in every unit (e.g. one rater), or no variation among the pairable values.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    unit_ids: list[int] = []
    values: list[Any] = []
    for u, unit in enumerate(units):
        for v in unit:
            if v is not None:
                unit_ids.append(u)
                values.append(v)
    return alpha_of_columns(unit_ids, values, level)


def alpha_of_columns(unit: Any, values: Any, level: str) -> float | None:
    """Krippendorff's alpha of values given as two columns: each value's unit id and the value.

    The coincidence matrix is never built. With ``n_uc`` the number of values ``c`` in unit ``u``
    (``m_u`` values in all) and ``n_c`` the number of pairable values ``c``, the observed
    disagreement is ``sum_u sum_{c,k} n_uc n_uk d2(c, k) / (m_u - 1)`` and the expected one
    ``sum_{c,k} n_c n_k d2(c, k)``; alpha is ``1 - (n - 1) observed / expected``. Ordinal
    distances are interval distances between the values' mid-ranks (the cumulative count up to a
    value, less half its own count), which gives the expected sum in closed form for both levels.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    np = _np()
    unit = np.asarray(unit, dtype=np.int64)
    values = np.asarray(values, dtype=float)
    if not len(values):
        return None
    _, unit = np.unique(unit, return_inverse=True)
    size = np.bincount(unit)
    pairable = size[unit] >= 2  # a lone value pairs with nothing
    unit, values = unit[pairable], values[pairable]
    if not len(values):
        return None
    distinct, code = np.unique(values, return_inverse=True)
    if len(distinct) < 2:
        return None  # every pairable value is the same: agreement cannot be told from chance
    width = len(distinct)
    n_c = np.bincount(code, minlength=width).astype(float)
    n = n_c.sum()
    position = distinct if level != "ordinal" else np.cumsum(n_c) - n_c / 2

    def d2(c: Any, k: Any) -> Any:
        if level == "nominal":
            return (c != k).astype(float)
        if level == "ratio":
            a, b = distinct[c], distinct[k]
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(c == k, 0.0, ((a - b) / (a + b)) ** 2)
        return (position[c] - position[k]) ** 2

    # Each unit's distinct values with their counts, then every pair of them within the unit.
    entry, n_uc = np.unique(unit * width + code, return_counts=True)
    entry_unit, entry_code = entry // width, entry % width
    per_unit = np.bincount(entry_unit)
    start = np.concatenate([[0], np.cumsum(per_unit)[:-1]])
    repeats = per_unit[entry_unit]
    left = np.repeat(np.arange(len(entry)), repeats)
    offset = np.arange(len(left)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    right = start[entry_unit[left]] + offset
    values_in_unit = np.bincount(unit)  # m_u: every unit left holds two or more
    weight = n_uc[left] * n_uc[right] / (values_in_unit[entry_unit[left]] - 1)
    observed = float(np.sum(weight * d2(entry_code[left], entry_code[right])))
    if level == "nominal":
        expected = n * n - float(np.sum(n_c * n_c))
    elif level == "ratio":
        expected = 0.0
        codes = np.arange(width)
        for lo in range(0, width, 512):  # a block of rows of the value-by-value table at a time
            rows = codes[lo:lo + 512]
            expected += float(np.sum(n_c[rows][:, None] * n_c[None, :] * d2(rows[:, None], codes[None, :])))
    else:
        centre = float(np.sum(n_c * position)) / n
        expected = 2.0 * n * float(np.sum(n_c * (position - centre) ** 2))
    if expected == 0:
        return None
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


def _spread_of_groups(group: Any, values: Any) -> float | None:
    """``replicate_spread`` of the values grouped by ``group`` (dense ids), as arrays."""
    np = _np()
    if not len(values):
        return None
    count = np.bincount(group)
    mean = np.bincount(group, values) / np.maximum(count, 1)
    squares = np.bincount(group, (values - mean[group]) ** 2)
    many = count >= 2
    if not many.any():
        return None
    return float(np.mean(np.sqrt(squares[many] / (count[many] - 1))))


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
    Scores are read on the rubric's own scale (alpha does not change with a rescaling, and the
    replicate spread is then in the rubric's own points).
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


def _judges(table: ScoreTable) -> tuple[list[str], Any]:
    """The judges (``evaluation_llm``, a missing one as ``""``), sorted, and each row's index among them."""
    np = _np()
    column = table.column("evaluation_llm")
    names = [v or "" for v in column.values]
    judges = sorted(set(names[c] for c in np.unique(column.codes).tolist())) if len(table) else []
    at = {j: i for i, j in enumerate(judges)}
    of_value = np.array([at.get(v, -1) for v in names] or [-1], dtype=np.int64)
    return judges, of_value[column.codes]


def _rows_of(table: ScoreTable, field: str, value: Any) -> Any:
    np = _np()
    column = table.column(field)
    return np.flatnonzero(np.isin(column.codes, [i for i, v in enumerate(column.values) if v == value]))


def rubric_agreement(scores: Sequence[Score], rubric: str) -> Agreement:
    """The ``Agreement`` of ``rubric`` over the scored evaluations ``scores`` (other rubrics ignored)."""
    np = _np()
    full = as_table(scores)
    table = full.take(_rows_of(full, "evaluation_template", rubric))
    judges, judge = _judges(table)
    values = table.raw
    essay = table.codes("essay_gen_id")
    # Replicates: one group per (essay, judge); a judge's value for an essay is their mean.
    rep, first = group_codes([essay, judge])
    rep_count = np.bincount(rep) if len(rep) else np.zeros(0, dtype=np.int64)
    rep_mean = np.bincount(rep, values) / np.maximum(rep_count, 1) if len(rep) else np.zeros(0)
    rep_essay = essay[first]
    essays_seen = len(np.unique(rep_essay))
    multi = int(np.count_nonzero(np.bincount(rep_essay) >= 2)) if len(rep_essay) else 0
    ordinal = alpha_of_columns(rep_essay, rep_mean, "ordinal")
    interval_alpha = alpha_of_columns(rep_essay, rep_mean, "interval")
    reason = None
    if not judges:
        reason = "no scores for this rubric yet"
    elif len(judges) == 1:
        reason = (f"one judge ({judges[0]}) scored this rubric: agreement between judges needs two or "
                  "more judges scoring the same essays")
    elif not multi:
        reason = "no essay was scored by two judges, so their scores cannot be compared"
    elif interval_alpha is None:
        reason = "every judge gave every essay the same score: agreement cannot be told from chance"
    repeated = bool(len(rep_count)) and bool((rep_count >= 2).any())
    alpha_reps = alpha_of_columns(rep, values, "interval")
    reps_reason = None
    if not repeated:
        reps_reason = ("one replicate per essay and judge: agreement between repeated scorings needs two "
                       "or more replicates" if len(rep_count) else "no scores for this rubric yet")
    elif alpha_reps is None:
        reps_reason = "every replicate gave the same score: agreement cannot be told from chance"
    return Agreement(rubric, len(judges), essays_seen, multi, ordinal, interval_alpha, reason, alpha_reps,
                     reps_reason, _spread_of_groups(rep, values))


@dataclass(frozen=True)
class _Residuals:
    """Each judge's mean over replicates in each (essay, rubric) cell scored by two or more judges,
    minus the mean of the judges' means there: one entry per judge and cell."""

    judge: Any  # index into the judges
    unit: Any  # the cell's unit (code into the table's unit_values)
    author: Any  # the essay's author (index into the judges, -1 when the author is no judge)
    value: Any  # the residual
    order: Any  # the first row of the entry's cell: entries in the order their cells come


def _residuals(table: ScoreTable, judge: Any, author: Any) -> _Residuals:
    np = _np()
    essay, rubric = table.codes("essay_gen_id"), table.codes("evaluation_template")
    entry, first = group_codes([essay, rubric, judge])
    count = np.bincount(entry)
    mean = np.bincount(entry, table.score) / count
    cell, cell_first = group_codes([essay[first], rubric[first]])
    judges_in_cell = np.bincount(cell)
    centre = np.bincount(cell, mean) / judges_in_cell
    keep = judges_in_cell[cell] >= 2
    rows = first[keep]
    # Entries in the order of their cells' first rows (then their own), as a walk over the rows meets them.
    cell_start = np.full(len(cell_first), len(table), dtype=np.int64)
    np.minimum.at(cell_start, cell, first)
    cell_row = cell_start[cell[keep]]
    order = np.lexsort((rows, cell_row))
    return _Residuals(judge[rows][order], table.unit[rows][order], author[rows][order],
                      (mean - centre[cell])[keep][order], cell_row[order])


def _unit_sums(unit: Any, values: Any) -> tuple[Any, Any, Any]:
    """Per unit (in the order the values first reach them): the unit, the sum and count of its values."""
    np = _np()
    ids, first, inverse = np.unique(unit, return_index=True, return_inverse=True)
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(ids))
    slot = rank[inverse]
    return ids[np.argsort(rank)], np.bincount(slot, values, len(ids)), np.bincount(slot, minlength=len(ids))


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


def offset_groups(scores: Sequence[Score]) -> tuple[list[tuple[str, MeanGroup]], str | None]:
    """Each judge's residuals summed per unit (what its ``Offset`` is made of), or the reason there
    are none."""
    np = _np()
    table = as_table(scores)
    judges, judge = _judges(table)
    if len(judges) < 2:
        shown = f" ({judges[0]})" if judges else ""
        return [], f"one judge{shown}: an offset compares judges scoring the same essays, and needs two or more"
    found = _residuals(table, judge, np.full(len(table), -1))
    if not len(found.value):
        return [], "no essay was scored by two judges on the same rubric"
    groups = []
    for j in sorted(set(found.judge.tolist()), key=judges.__getitem__):
        mine = found.judge == j
        units, sums, counts = _unit_sums(found.unit[mine], found.value[mine])
        groups.append((judges[j], MeanGroup((judges[j],), [table.unit_values[u] for u in units.tolist()], sums,
                                            counts.astype(float))))
    return groups, None


def offsets_from(groups: Sequence[tuple[str, MeanGroup]],
                 intervals: Sequence[tuple[float | None, float | None]]) -> list[Offset]:
    """The ``Offset`` of each judge of ``offset_groups``, given their intervals (same order)."""
    return [Offset(name, int(g.counts.sum()), len(g.units), float(g.sums.sum() / g.counts.sum()), low, high)
            for (name, g), (low, high) in zip(groups, intervals)]


def evaluator_offsets(scores: Sequence[Score], *, seed: int, resamples: int) -> tuple[list[Offset], str | None]:
    """Every judge's ``Offset``, or an empty list and the reason none can be computed."""
    groups, note = offset_groups(scores)
    if note:
        return [], note
    intervals = cluster_mean_intervals([g.cluster for _, g in groups], seed=seed, resamples=resamples, key=MEAN_KEY)
    return offsets_from(groups, intervals), None


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


def _split_by_author(unit: Any, own: Any, values: Any) -> Any:
    """Per unit (first-seen order): [own sum, own count, other sum, other count] of ``values``."""
    np = _np()
    ids, first, inverse = np.unique(unit, return_index=True, return_inverse=True)
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(ids))
    slot = rank[inverse]
    k = len(ids)
    return np.column_stack([np.bincount(slot, np.where(own, values, 0.0), k), np.bincount(slot, own, k),
                            np.bincount(slot, np.where(own, 0.0, values), k), np.bincount(slot, ~own, k)])


def _difference_interval(units: Any, rng: Any, resamples: int) -> tuple[float | None, float | None]:
    """The interval of own − other over ``units`` (see ``SelfPreference``), or none with fewer than
    two units on either side."""
    if int((units[:, 1] > 0).sum()) < 2 or int((units[:, 3] > 0).sum()) < 2:
        return None, None
    return interval(bootstrap_ratio_difference(units, rng, resamples), len(units))


def self_preference(scores: Sequence[Score], *, seed: int, resamples: int) -> tuple[list[SelfPreference], str | None]:
    """A ``SelfPreference`` for every judge whose model also wrote essays in ``scores`` and that
    scored essays of other models too; otherwise an empty list and the reason."""
    np = _np()
    table = as_table(scores)
    authors = table.author_values()
    wrote = {a for a in authors if a is not None}
    judge_column = table.column("evaluation_llm")
    present = [judge_column.values[c] for c in np.unique(judge_column.codes).tolist()] if len(table) else []
    candidates = sorted(v for v in present if v in wrote)
    if not candidates:
        return [], "no judge's model also wrote essays in this cohort, so there is no own work to prefer"
    judges, judge = _judges(table)
    at = {j: i for i, j in enumerate(judges)}
    author = np.array([-2 if a is None else at.get(a, -1) for a in authors], dtype=np.int64)
    residuals = _residuals(table, judge, author)
    out = []
    for name in candidates:
        j = at[name or ""]
        mine = (judge == j) & (author != -2)
        raw = _split_by_author(table.unit[mine], author[mine] == j, table.score[mine])
        if not raw[:, 1].any() or not raw[:, 3].any():
            continue
        mean_own = float(raw[:, 0].sum() / raw[:, 1].sum())
        mean_other = float(raw[:, 2].sum() / raw[:, 3].sum())
        rng, rng_adj = random_streams(seed, ["self-preference", name])
        low, high = _difference_interval(raw, rng, resamples)
        adjusted = adj_low = adj_high = None
        res = (residuals.judge == j) & (residuals.author != -2)
        vals = _split_by_author(residuals.unit[res], residuals.author[res] == j, residuals.value[res])
        if len(vals) and vals[:, 1].any() and vals[:, 3].any():
            adjusted = float(vals[:, 0].sum() / vals[:, 1].sum() - vals[:, 2].sum() / vals[:, 3].sum())
            adj_low, adj_high = _difference_interval(vals, rng_adj, resamples)
        out.append(SelfPreference(name, int(raw[:, 1].sum()), int(raw[:, 3].sum()), mean_own, mean_other,
                                  mean_own - mean_other, low, high, adjusted, adj_low, adj_high))
    if not out:
        return [], "each judge whose model wrote essays scored only its own model's essays (or only others')"
    return out, None
