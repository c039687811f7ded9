"""Paired comparisons of a cohort's design levels: matched pairs, cluster-bootstrap intervals, p-values.

``read_scores`` reads a cohort's scored evaluations with every design axis of their lineage (the one
query through which comparisons, the report's means and the judge checks see scores);
``compare`` answers *does level A of a factor beat level B, by how much, and how sure are we?*;
``group_means`` gives means of any grouping with the same clustered intervals. ``daydream compare``
and ``daydream report`` both call these, so their numbers are the same numbers.

The statistics, stated once (each function's docstring refers back here):

- **What is random.** The cohort's concept combinations are taken as fixed (the study is about these
  combinations); what is random is what the models wrote and how the judges scored it. Everything
  written from one draft shares that draft's quality, and every score of one essay shares the
  essay's quality, so evaluations are not independent. The **independent unit** is the *draft with
  everything written from it* (in a single-stage cohort without drafts: the essay). Scores from
  different units are independent; scores within a unit are not, and are never resampled apart.
  With one essay per draft this is the essay; with several essays per draft (templates, models,
  replicates) they share their draft's quality, so the draft is the smallest independent unit.
  Combo effects cancel in a paired difference (both sides share the combo) and, for means, the
  combos are the fixed population the study is about.
- **Matched pairs.** For a factor (say ``draft_template``) and two of its levels A and B, a scored
  evaluation at A is paired with one at B when they are equal on every other design axis: the same
  combo, the other templates and models, draft and essay replicates, rubric, evaluator and evaluation
  replicate. The one exception: a copy-mode generation (``generator: copy``) has no model, and its
  missing model matches any model (the copied text is what every model would have "written"), so a
  copied essay is compared with each model's essay of the same draft. A scored evaluation at A or B
  without a partner is *unmatched*: counted and reported, never used.
- **Units of a comparison.** Each pair joins the unit of its A side and the unit of its B side
  (for a draft-level factor: draft A and draft B of the same combo; for an evaluation-level factor
  such as the rubric: the one draft both scores descend from). Units linked by pairs are merged
  (connected components), so no two units of a comparison share a generation. Within a unit the
  pairs are averaged -- over rubrics, evaluators and replicates, and over essay templates or models
  that are not the factor -- giving one difference per unit, ``d_u = mean(A) - mean(B)``. (This
  averages scores of different rubrics, so they must share one scale: when a cohort's scores come
  from rubrics of different scales, every score is compared as ``score_norm``, its 0-1 position on
  its rubric's scale -- see ``read_scores`` -- and the output says so.)
- **Estimate.** ``diff`` is the mean of ``d_u`` over units (every unit weighs the same);
  ``mean_a`` and ``mean_b`` are the means of the unit means, so ``diff = mean_a - mean_b``.
  ``wins``/``ties``/``losses`` count matched pairs (evaluation level) where A scored above, equal
  to or below B; they add up to ``n_pairs``.
- **Interval.** A cluster bootstrap: each resample draws ``n_units`` units with replacement and
  takes the mean of their ``d_u``. Resampling whole units keeps the dependence inside them, which is
  what the naive interval (every evaluation independent) ignores and why it is too narrow. The 95%
  interval is the *expanded percentile* interval (Hesterberg 2015): the bootstrap quantiles at
  ``Phi(-sqrt(n/(n-1)) * t_{0.975, n-1})`` and its complement instead of 2.5% and 97.5%, which
  corrects the plain percentile interval's known narrowness with few units (it is too narrow by
  about the factor ``sqrt((n-1)/n) * z / t``). One unit gives no interval, and no bootstrap
  interval reaches past the most extreme unit, so with n units it holds the truth at most
  ``1 - 2/2^n`` of the time (87.5% with 4): ``few_units_note`` flags such comparisons. On cohorts
  drawn from a known model (tests/test_compare_simulation.py) it covers the true difference about
  95% of the time with 12 units, where the naive interval covers about 70%.
- **p-value.** A sign-flip permutation test on the unit differences: if A and B do not differ, the
  labels A and B are exchangeable within a unit, so each ``d_u`` is as likely to be ``-d_u`` and
  every pattern of signs is equally likely. The p-value is the share of sign patterns whose
  ``|mean|`` is at least the observed one: all ``2^n`` patterns when ``n_units`` is at most
  ``EXACT_SIGN_FLIP_UNITS`` (exact), otherwise ``resamples`` random patterns with the observed one
  counted among them, ``(1 + hits) / (1 + resamples)``, which keeps ``P(p <= alpha) <= alpha``
  under the null despite the sampling (Phipson and Smyth 2010). It assumes only that units are
  independent and that, without an effect, a unit's difference is symmetric about 0 -- no
  normality, no minimum number of units (but with n units p cannot go below ``2 / 2^n``).
- **Multiplicity.** ``p_holm`` is Holm's step-down adjustment over every comparison one call returns
  (all pairs of levels, in every ``within`` slice), which keeps the chance of any false positive
  among them at most 5% when reading ``p_holm < 0.05``.
- **Determinism.** Each comparison draws from its own random stream, seeded by ``seed`` and a hash
  of (factor, A, B, within), so a number does not change when other comparisons are added, and a
  rerun with the same seed gives identical results.

numpy is imported inside the functions that need it: the CLI starts without it.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from daydream.errors import NotFound, UsageError
from daydream.ledger.store import Ledger

DEFAULT_SEED = 20261130
DEFAULT_RESAMPLES = 2000
EXACT_SIGN_FLIP_UNITS = 14  # up to 2^14 = 16,384 sign patterns are enumerated exactly
_CHUNK_CELLS = 1 << 22  # resamples x units drawn per numpy block: bounds memory at ~32 MB

# Two-sided 95% critical values of Student's t for 1–30 degrees of freedom.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042)


def t95(df: int) -> float:
    """Two-sided 95% critical value of Student's t: the table up to 30 degrees of freedom, then
    the Cornish–Fisher expansion around the normal quantile (within 0.001 of the exact value)."""
    if df <= 30:
        return _T95[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


# ------------------------------------------------------------------------------------ design axes
@dataclass(frozen=True)
class Axis:
    """One design axis of an evaluation's lineage: its name (as in cohort specs), label and stage."""

    name: str
    label: str
    stage: str


AXES: tuple[Axis, ...] = (
    Axis("combo", "Concept combination", "combo"),
    Axis("draft_template", "Draft template", "draft"),
    Axis("draft_llm", "Draft model", "draft"),
    Axis("draft_replicate", "Draft replicate", "draft"),
    Axis("essay_template", "Essay template", "essay"),
    Axis("essay_llm", "Essay model", "essay"),
    Axis("essay_replicate", "Essay replicate", "essay"),
    Axis("evaluation_template", "Rubric", "evaluation"),
    Axis("evaluation_llm", "Evaluator", "evaluation"),
    Axis("evaluation_replicate", "Evaluation replicate", "evaluation"),
)
AXIS_NAMES = tuple(a.name for a in AXES)
AXIS = {a.name: a for a in AXES}
# The names the report and the views use for the same axes.
ALIASES = {"combo_id": "combo", "draft_model": "draft_llm", "essay_model": "essay_llm",
           "rubric": "evaluation_template", "evaluator": "evaluation_llm",
           "replicate": "evaluation_replicate"}
# A copy-mode generation has no model; on these axes its missing model matches any model.
_COPY_FLAG = {"draft_llm": "draft_copy", "essay_llm": "essay_copy"}


def axis_name(name: str, option: str = "--by") -> str:
    """The canonical axis name of ``name`` (an axis or an alias); ``UsageError`` when unknown."""
    canonical = ALIASES.get(name, name)
    if canonical not in AXIS:
        known = ", ".join(AXIS_NAMES)
        aliases = ", ".join(f"{k}={v}" for k, v in ALIASES.items())
        raise UsageError(f"unknown factor {name!r} for {option}; factors: {known} (aliases: {aliases})")
    return canonical


class Score(NamedTuple):
    """One scored evaluation of a cohort with the design of its whole lineage."""

    evaluation_gen_id: str
    essay_gen_id: str
    draft_gen_id: str | None
    combo: str | None
    draft_template: str | None
    draft_llm: str | None
    draft_replicate: int | None
    essay_template: str | None
    essay_llm: str | None
    essay_replicate: int | None
    evaluation_template: str | None
    evaluation_llm: str | None
    evaluation_replicate: int | None
    score: float
    draft_copy: int = 0  # 1 when the draft was copied (it has no model)
    essay_copy: int = 0  # 1 when the essay is a copy of its draft
    scale_min: float | None = None  # the rubric's scale the score was given on
    scale_max: float | None = None

    @property
    def unit(self) -> str:
        """The independent unit this score belongs to: its draft, or its essay when it has none."""
        return self.draft_gen_id or self.essay_gen_id

    @property
    def author(self) -> str | None:
        """The model that wrote the essay's text: the essay model, the draft model for a copy."""
        return self.draft_llm if self.essay_copy else self.essay_llm


_INDEX = {name: Score._fields.index(name) for name in Score._fields}

# The one query through which scores are read (comparisons, report means, judge checks). A cohort
# whose rubrics share one scale is compared on the raw score; one that mixes scales (a 0-9 and a 0-10
# rubric) on ``score_norm`` (0-1), since averaging raw scores of two scales means nothing. The
# ``evaluation_design`` view (migration 0009) makes the same choice in SQL, so its rows are these.
SCORES_SQL = """
SELECT s.evaluation_gen_id, s.essay_gen_id, d.gen_id, COALESCE(e.combo_id, d.combo_id),
       d.template_id, d.model_id, d.replicate, e.template_id, e.model_id, e.replicate,
       s.rubric, s.evaluator, s.replicate, s.score,
       COALESCE(d.generator = 'copy', 0), COALESCE(e.generator = 'copy', 0),
       s.scale_min, s.scale_max, s.score_norm
FROM cohort_members m
JOIN scores s ON s.evaluation_gen_id = m.gen_id
JOIN gen_state e ON e.gen_id = s.essay_gen_id
LEFT JOIN gen_state d ON d.gen_id = e.parent_gen_id AND d.stage != 'essay'
WHERE m.cohort_id = ? AND m.stage = 'evaluation' AND s.score IS NOT NULL
ORDER BY s.evaluation_gen_id"""


def read_scores(ledger: Ledger, cohort_id: str) -> list[Score]:
    """Every scored evaluation of ``cohort_id`` with its lineage's design, in gen_id order.

    Raises ``NotFound`` when the cohort has no generations at all (an empty list means planned or
    running but nothing scored yet).
    """
    with ledger.backend.read() as conn:
        rows = conn.execute(SCORES_SQL, (cohort_id,)).fetchall()
    if not rows and not ledger.query("SELECT 1 FROM cohort_members WHERE cohort_id = ? LIMIT 1", (cohort_id,)):
        known = ", ".join(r[0] for r in ledger.query(
            "SELECT DISTINCT cohort_id FROM cohort_members ORDER BY 1")) or "none"
        raise NotFound(f"cohort {cohort_id!r} has no generations in the ledger (cohorts: {known})")
    if len({(r[16], r[17]) for r in rows}) > 1:  # rubrics of different scales: compare positions
        return [Score._make((*r[:13], r[18], r[14], r[15], r[16], r[17])) for r in rows]
    return [Score._make(r[:18]) for r in rows]


def scale_note(rows: Sequence[Score]) -> str | None:
    """One sentence saying that ``rows`` mix rubric scales and were read as ``score_norm``, or None."""
    scales = sorted({(r.scale_min, r.scale_max) for r in rows}, key=lambda x: tuple(v or 0 for v in x))
    if len(scales) < 2:
        return None
    shown = ", ".join(f"{lo:g}-{hi:g}" for lo, hi in scales if lo is not None and hi is not None)
    return (f"the rubrics use different scales ({shown}): every score is compared as score_norm, its "
            "position on its rubric's scale from 0 to 1")


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def levels(rows: Iterable[Score], axis: str) -> list[Any]:
    """The distinct values of ``axis`` in ``rows``, sorted; a missing value (no draft, no model) is
    not a level."""
    i = _INDEX[axis]
    return sorted({r[i] for r in rows if r[i] is not None}, key=_sort_key)


def label(value: Any) -> str:
    """How a level is shown: its value, or ``(none)`` for a missing one."""
    return "(none)" if value is None else str(value)


# ------------------------------------------------------------------------------------ statistics
def _numpy() -> Any:
    import numpy

    return numpy


def random_streams(seed: int, key: Any) -> tuple[Any, Any]:
    """Two independent generators (bootstrap, permutation) for one comparison: seeded by ``seed``
    and a stable hash of ``key``, so no comparison's numbers depend on which others are computed."""
    np = _numpy()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    boot, perm = np.random.SeedSequence([seed, *words]).spawn(2)
    return np.random.default_rng(boot), np.random.default_rng(perm)


def expanded_level(n: int) -> float:
    """The lower tail probability the expanded percentile interval reads for ``n`` units (95%).

    Hesterberg (2015), "What teachers should know about the bootstrap": use
    ``Phi(-sqrt(n / (n - 1)) * t_{0.975, n-1})`` instead of 0.025, widening the percentile
    interval by the amount its small-sample narrowness is known to take away.
    """
    x = math.sqrt(n / (n - 1)) * t95(n - 1)
    return 0.5 * math.erfc(x / math.sqrt(2))


def interval(boot: Any, n: int) -> tuple[float | None, float | None]:
    """The expanded percentile 95% interval of the bootstrap values ``boot`` from ``n`` units
    (``None`` for fewer than two units; resamples that came out undefined, NaN, are left out)."""
    np = _numpy()
    boot = np.asarray(boot, dtype=float)
    if n < 2 or not np.isfinite(boot).any():
        return None, None
    tail = expanded_level(n)
    low, high = np.nanquantile(boot, [tail, 1.0 - tail])
    return float(low), float(high)


def _chunks(resamples: int, n: int) -> Iterable[int]:
    step = max(1, _CHUNK_CELLS // max(1, n))
    done = 0
    while done < resamples:
        size = min(step, resamples - done)
        yield size
        done += size


def bootstrap_means(values: Any, rng: Any, resamples: int) -> Any:
    """``resamples`` means of ``values`` (one per unit) drawn with replacement."""
    np = _numpy()
    values = np.asarray(values, dtype=float)
    n = len(values)
    out = np.empty(resamples)
    at = 0
    for size in _chunks(resamples, n):
        idx = rng.integers(0, n, size=(size, n))
        out[at:at + size] = values[idx].mean(axis=1)
        at += size
    return out


def bootstrap_ratios(sums: Any, counts: Any, rng: Any, resamples: int) -> Any:
    """``resamples`` ratios sum(sums) / sum(counts) over units drawn with replacement (the mean of
    all scores in the resampled units: the cluster bootstrap of a plain mean)."""
    np = _numpy()
    sums = np.asarray(sums, dtype=float)
    counts = np.asarray(counts, dtype=float)
    n = len(sums)
    out = np.empty(resamples)
    at = 0
    for size in _chunks(resamples, n):
        idx = rng.integers(0, n, size=(size, n))
        out[at:at + size] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
        at += size
    return out


def bootstrap_ratio_difference(units: Sequence[Sequence[float]], rng: Any, resamples: int) -> Any:
    """``resamples`` differences of two cluster means, units drawn with replacement within strata.

    Each unit is ``(sum_1, count_1, sum_2, count_2)``; a resample's value is
    ``sum(sum_1) / sum(count_1) - sum(sum_2) / sum(count_2)`` over its units. Units holding only
    group 1, only group 2, or both are resampled separately (a stratified cluster bootstrap), so
    every resample keeps as many units of each kind as the data have and both means stay defined.
    """
    np = _numpy()
    table = np.asarray(units, dtype=float).reshape(-1, 4)
    strata = [table[(table[:, 1] > 0) & (table[:, 3] == 0)], table[(table[:, 1] == 0) & (table[:, 3] > 0)],
              table[(table[:, 1] > 0) & (table[:, 3] > 0)]]
    strata = [s for s in strata if len(s)]
    n = len(table)
    out = np.empty(resamples)
    at = 0
    for size in _chunks(resamples, n):
        totals = np.zeros((size, 4))
        for stratum in strata:
            idx = rng.integers(0, len(stratum), size=(size, len(stratum)))
            totals += stratum[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[at:at + size] = totals[:, 0] / totals[:, 1] - totals[:, 2] / totals[:, 3]
        at += size
    return out


def sign_flip_p(diffs: Any, rng: Any, resamples: int) -> tuple[float | None, str]:
    """Two-sided sign-flip permutation p-value of mean(diffs) = 0, and how it was computed.

    Exact (every sign pattern) for at most ``EXACT_SIGN_FLIP_UNITS`` values, else Monte Carlo with
    ``(1 + hits) / (1 + resamples)``. A tolerance of 1e-9 relative keeps a pattern that equals the
    observed statistic (e.g. all signs flipped) from being lost to rounding.
    """
    np = _numpy()
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    if n == 0:
        return None, "none"
    observed = abs(d.mean())
    tol = 1e-9 * max(1.0, float(np.abs(d).max()))
    if n <= EXACT_SIGN_FLIP_UNITS:
        patterns = ((np.arange(1 << n)[:, None] >> np.arange(n)) & 1) * 2 - 1
        stats = np.abs(patterns @ d) / n
        return float(np.mean(stats >= observed - tol)), "exact"
    hits = 0
    for size in _chunks(resamples, n):
        signs = rng.integers(0, 2, size=(size, n), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(np.abs(signs @ d) / n >= observed - tol))
    return (1 + hits) / (1 + resamples), "monte carlo"


def holm(ps: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (``None`` entries are not tests and stay ``None``)."""
    order = sorted((p, i) for i, p in enumerate(ps) if p is not None)
    m = len(order)
    out: list[float | None] = [None] * len(ps)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


# ------------------------------------------------------------------------------------ comparisons
@dataclass(frozen=True)
class Comparison:
    """A versus B on one factor (in one ``within`` slice): see the module docstring for each number."""

    factor: str
    a: Any
    b: Any
    within: dict[str, Any] | None
    n_pairs: int
    n_units: int
    n_unmatched: int
    n_unmatched_a: int
    n_unmatched_b: int
    mean_a: float | None
    mean_b: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    wins: int
    ties: int
    losses: int
    p: float | None
    p_holm: float | None
    p_method: str

    JSON_FIELDS = ("factor", "a", "b", "within", "n_pairs", "n_unmatched", "mean_a", "mean_b", "diff",
                   "ci_low", "ci_high", "wins", "ties", "losses", "p", "p_holm")

    def as_json(self) -> dict[str, Any]:
        """The fields ``daydream compare --json`` prints, then the extra detail."""
        out = {k: getattr(self, k) for k in self.JSON_FIELDS}
        out.update(n_units=self.n_units, n_unmatched_a=self.n_unmatched_a,
                   n_unmatched_b=self.n_unmatched_b, p_method=self.p_method)
        return out


@dataclass(frozen=True)
class ComparisonSet:
    """Everything one ``compare`` call found: the comparisons and the slices it could not compare."""

    factor: str
    within: tuple[str, ...]
    rubric: str | None
    seed: int
    resamples: int
    comparisons: list[Comparison]
    skipped: list[str] = field(default_factory=list)
    scales: str | None = None  # set when the rubrics mix scales (see ``scale_note``)


def _key_getter(axes: Sequence[str]) -> Any:
    """A function giving a row's values on ``axes`` as a tuple (itemgetter: C speed on 100k rows)."""
    idx = [_INDEX[a] for a in axes]
    if len(idx) > 1:
        return operator.itemgetter(*idx)
    if idx:
        i = idx[0]
        return lambda r: (r[i],)
    return lambda r: ()


def match_pairs(rows_a: Sequence[Score], rows_b: Sequence[Score],
                factor: str) -> tuple[list[tuple[int, int]], int, int]:
    """Pairs (i, j) of ``rows_a[i]`` and ``rows_b[j]`` equal on every axis but ``factor``.

    A copy-mode generation's missing model matches any model on that stage's model axis. Returns the
    pairs (in ``rows_a`` order) and how many rows of each side found no partner.
    """
    others = [a for a in AXIS_NAMES if a != factor]
    wild = [a for a in others if a in _COPY_FLAG
            and any(getattr(r, _COPY_FLAG[a]) for side in (rows_a, rows_b) for r in side)]
    strict = _key_getter([a for a in others if a not in wild])
    index: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for j, r in enumerate(rows_b):
        index[strict(r)].append(j)
    checks = [(_INDEX[a], _INDEX[_COPY_FLAG[a]]) for a in wild]
    pairs: list[tuple[int, int]] = []
    used_b: set[int] = set()
    unmatched_a = 0
    for i, r in enumerate(rows_a):
        found = False
        for j in index.get(strict(r), ()):
            s = rows_b[j]
            for v, c in checks:  # a model axis: equal, or either side a copy (no model)
                if r[v] != s[v] and not r[c] and not s[c]:
                    break
            else:
                pairs.append((i, j))
                used_b.add(j)
                found = True
        unmatched_a += not found
    return pairs, unmatched_a, len(rows_b) - len(used_b)


def _components(links: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Union-find: each unit id → the label of its connected component (members joined by '+',
    in first-seen order, so a pair of units ``x``, ``y`` is labelled ``x+y`` and one unit itself)."""
    parent: dict[str, str] = {}
    order: dict[str, int] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        order.setdefault(x, len(order))
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in dict.fromkeys(links):  # each distinct link once, in first-seen order
        rx, ry = find(x), find(y)
        if rx != ry:
            if order[ry] < order[rx]:
                rx, ry = ry, rx
            parent[ry] = rx
    members: dict[str, list[str]] = defaultdict(list)
    for x in sorted(parent, key=order.__getitem__):
        members[find(x)].append(x)
    return {x: "+".join(members[find(x)]) for x in parent}


@dataclass(frozen=True)
class PairedRow:
    """One matched pair behind a comparison (what the ``comparisons`` view shows for SQL checks)."""

    unit: str
    a: Score
    b: Score


def paired_rows(rows: Sequence[Score], factor: str, a: Any, b: Any) -> list[PairedRow]:
    """The matched pairs of level ``a`` against level ``b`` of ``factor`` in ``rows``, each with the
    label of the unit it was averaged into."""
    i = _INDEX[factor]
    rows_a = [r for r in rows if r[i] == a]
    rows_b = [r for r in rows if r[i] == b]
    pairs, _, _ = match_pairs(rows_a, rows_b, factor)
    units = _components((rows_a[x].unit, rows_b[y].unit) for x, y in pairs)
    return [PairedRow(units[rows_a[x].unit], rows_a[x], rows_b[y]) for x, y in pairs]


def _compare_levels(rows_a: Sequence[Score], rows_b: Sequence[Score], factor: str, a: Any, b: Any,
                    within: dict[str, Any] | None, seed: int, resamples: int) -> Comparison:
    np = _numpy()
    pairs, unmatched_a, unmatched_b = match_pairs(rows_a, rows_b, factor)
    units = _components((rows_a[x].unit, rows_b[y].unit) for x, y in pairs)
    unit_ids: dict[str, int] = {}
    pair_unit = np.array([unit_ids.setdefault(units[rows_a[x].unit], len(unit_ids)) for x, y in pairs], dtype=np.int64)
    score_a = np.array([rows_a[x].score for x, _ in pairs], dtype=float)
    score_b = np.array([rows_b[y].score for _, y in pairs], dtype=float)
    n_units = len(unit_ids)
    empty = dict(mean_a=None, mean_b=None, diff=None, ci_low=None, ci_high=None, p=None, p_method="none")
    stats: dict[str, Any] = dict(empty)
    if n_units:
        counts = np.bincount(pair_unit, minlength=n_units)
        unit_a = np.bincount(pair_unit, score_a, n_units) / counts
        unit_b = np.bincount(pair_unit, score_b, n_units) / counts
        d = unit_a - unit_b
        boot_rng, perm_rng = random_streams(seed, [factor, a, b, within])
        low, high = interval(bootstrap_means(d, boot_rng, resamples), n_units)
        p, method = sign_flip_p(d, perm_rng, resamples)
        stats = dict(mean_a=float(unit_a.mean()), mean_b=float(unit_b.mean()), diff=float(d.mean()),
                     ci_low=low, ci_high=high, p=p, p_method=method)
    return Comparison(
        factor=factor, a=a, b=b, within=within, n_pairs=len(pairs), n_units=n_units,
        n_unmatched=unmatched_a + unmatched_b, n_unmatched_a=unmatched_a, n_unmatched_b=unmatched_b,
        wins=int(np.count_nonzero(score_a > score_b)), ties=int(np.count_nonzero(score_a == score_b)),
        losses=int(np.count_nonzero(score_a < score_b)), p_holm=None, **stats)


MAX_COMPARISONS = 1000  # pairs of levels one call may compare (100 combos would be 4,950)
FEW_UNITS = 5  # at or below this many units, intervals and p-values are flagged as weak


def few_units_note(comparisons: Iterable[Comparison]) -> str | None:
    """A warning when some comparison rests on ``FEW_UNITS`` units or fewer, else ``None``.

    With n units the sign-flip p-value cannot go below 2 / 2^n, and a bootstrap interval never
    reaches past the most extreme unit, so it holds the truth at most 1 − 2 / 2^n of the time
    (87.5% with 4 units) even for symmetric differences: such numbers describe, they do not settle.
    """
    few = sorted({c.n_units for c in comparisons if 0 < c.n_units <= FEW_UNITS})
    if not few:
        return None
    bounds = "; ".join(f"{n} unit{'s' if n != 1 else ''}: p ≥ {2 / 2 ** n:.4g}, interval coverage ≤ "
                       f"{100 * (1 - 2 / 2 ** n):.4g}%" for n in few if n > 1)
    ones = " One unit gives no interval." if 1 in few else ""
    return (f"few units ({bounds})." if bounds else "") + ones


def check_rubric(rows: Sequence[Score], rubric: str | None, cohort_id: str) -> list[Score]:
    """``rows`` of ``rubric`` only (all rows when ``None``); ``UsageError`` when it has no scores."""
    if rubric is None:
        return list(rows)
    kept = [r for r in rows if r.evaluation_template == rubric]
    if not kept:
        known = ", ".join(levels(rows, "evaluation_template")) or "none"
        raise UsageError(f"rubric {rubric!r} has no scores in cohort {cohort_id!r} (rubrics: {known})")
    return kept


def compare(rows: Sequence[Score], by: str, within: Sequence[str] = (), *, rubric: str | None = None,
            seed: int = DEFAULT_SEED, resamples: int = DEFAULT_RESAMPLES, cohort_id: str = "") -> ComparisonSet:
    """Every pair of levels (A, B), A before B in sorted order, of factor ``by``, compared A − B.

    With ``within`` axes, one set of comparisons per combination of their levels (rows whose value
    is missing form a slice of their own, shown as ``(none)``). With ``rubric``, only that rubric's
    scores (otherwise rubrics are averaged within each unit). Holm's adjustment runs over all the
    comparisons returned. The statistics are those of the module docstring.

    Raises ``UsageError`` for an unknown factor or rubric, a ``within`` axis equal to ``by``, a
    factor with fewer than two levels or so many that more than ``MAX_COMPARISONS`` pairs would be
    compared, or ``resamples`` below 1; ``NotFound`` when there are no scores.
    """
    factor = axis_name(by)
    within_axes = tuple(axis_name(w, "--within") for w in within)
    if factor in within_axes:
        raise UsageError(f"{factor} is the factor compared (--by); it cannot also be a --within axis")
    if len(set(within_axes)) != len(within_axes):
        raise UsageError(f"--within names an axis twice: {', '.join(within_axes)}")
    if rubric is not None and factor == "evaluation_template":
        raise UsageError("--rubric keeps one rubric, so rubrics cannot be compared; "
                         "use --within evaluation_template for one comparison per rubric")
    if rubric is not None and "evaluation_template" in within_axes:
        raise UsageError("--rubric keeps one rubric; drop --within evaluation_template")
    if resamples < 1:
        raise UsageError(f"--resamples must be at least 1, got {resamples}")
    if seed < 0:
        raise UsageError(f"--seed must be 0 or more, got {seed}")
    where = f" in cohort {cohort_id!r}" if cohort_id else ""
    if not rows:
        raise NotFound(f"no scores{where} yet: nothing to compare (see 'daydream status')")
    rows = check_rubric(rows, rubric, cohort_id)
    found = levels(rows, factor)
    if len(found) < 2:
        varied = [a for a in AXIS_NAMES if len(levels(rows, a)) > 1]
        shown = ", ".join(label(v) for v in found) or "no value"
        raise UsageError(f"{factor} has {len(found)} level{'s' if len(found) != 1 else ''}{where} ({shown}): "
                         f"nothing to compare; factors with two or more levels: {', '.join(varied) or 'none'}")
    slices: dict[tuple[Any, ...], list[Score]] = defaultdict(list)
    get_slice = _key_getter(within_axes)
    for r in rows:
        slices[get_slice(r)].append(r)
    fi = _INDEX[factor]
    planned = 0
    for part in slices.values():
        k = len({r[fi] for r in part if r[fi] is not None})
        planned += k * (k - 1) // 2
    if planned > MAX_COMPARISONS:
        raise UsageError(f"{factor} has {len(found)} levels{where}: {planned:,} pairwise comparisons, more than "
                         f"{MAX_COMPARISONS:,} (too many to read or to correct for); compare a factor with "
                         "fewer levels")
    comparisons: list[Comparison] = []
    skipped: list[str] = []
    for key in sorted(slices, key=lambda k: tuple(_sort_key(label(v) if v is None else v) for v in k)):
        part = slices[key]
        within_map = dict(zip(within_axes, key)) if within_axes else None
        by_level: dict[Any, list[Score]] = defaultdict(list)
        for r in part:
            if r[fi] is not None:
                by_level[r[fi]].append(r)
        names = sorted(by_level, key=_sort_key)
        if len(names) < 2:
            where_slice = ", ".join(f"{k} = {label(v)}" for k, v in zip(within_axes, key))
            skipped.append(f"{where_slice}: {len(names)} level{'s' if len(names) != 1 else ''} of {factor}")
            continue
        for x in range(len(names)):
            for y in range(x + 1, len(names)):
                comparisons.append(_compare_levels(by_level[names[x]], by_level[names[y]], factor,
                                                   names[x], names[y], within_map, seed, resamples))
    adjusted = holm([c.p for c in comparisons])
    comparisons = [replace(c, p_holm=p) for c, p in zip(comparisons, adjusted)]
    return ComparisonSet(factor, within_axes, rubric, seed, resamples, comparisons, skipped,
                         scale_note(rows))


def compare_cohort(ledger: Ledger, cohort_id: str, by: str, within: Sequence[str] = (), *,
                   rubric: str | None = None, seed: int = DEFAULT_SEED,
                   resamples: int = DEFAULT_RESAMPLES) -> ComparisonSet:
    """``compare`` on the scores of ``cohort_id`` (what ``daydream compare`` runs).

    The factor and options are checked before the ledger is read, so a typo costs no query. Raises
    ``UsageError`` when the ``within`` slices leave nothing to compare (each holds one level).
    """
    axis_name(by)
    for w in within:
        axis_name(w, "--within")
    found = compare(read_scores(ledger, cohort_id), by, within, rubric=rubric, seed=seed,
                    resamples=resamples, cohort_id=cohort_id)
    if not found.comparisons:
        raise UsageError(f"{found.factor} has one level within each level of {', '.join(found.within)}: "
                         f"nothing to compare ({'; '.join(found.skipped)})")
    return found


# ------------------------------------------------------------------------------------ means
@dataclass(frozen=True)
class GroupMean:
    """The mean score of one group (a level, or a combination of levels) with a clustered interval.

    ``mean`` is the plain mean of the group's scores; the interval resamples the group's units
    (drafts, or essays without drafts) and takes the mean of all scores in the resampled units, so
    scores of one unit move together (the expanded percentile interval of the module docstring).
    """

    key: tuple[Any, ...]
    n: int
    n_units: int
    mean: float
    ci_low: float | None
    ci_high: float | None


def group_means(rows: Sequence[Score], axes: Sequence[str], *, seed: int = DEFAULT_SEED,
                resamples: int = DEFAULT_RESAMPLES) -> list[GroupMean]:
    """Mean and clustered 95% interval of the scores for each combination of values of ``axes``
    (missing values kept as ``None``), sorted by key."""
    np = _numpy()
    names = tuple(axis_name(a, "axes") for a in axes)
    get = _key_getter(names)
    groups: dict[tuple[Any, ...], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[get(r)][r.unit].append(r.score)
    out = []
    for key in sorted(groups, key=lambda k: tuple((v is None, _sort_key(v) if v is not None else 0) for v in k)):
        units = groups[key]
        sums = np.array([sum(v) for v in units.values()])
        counts = np.array([len(v) for v in units.values()], dtype=float)
        n = int(counts.sum())
        low = high = None
        if len(units) > 1:
            boot_rng, _ = random_streams(seed, ["mean", list(names), list(key)])
            low, high = interval(bootstrap_ratios(sums, counts, boot_rng, resamples), len(units))
        out.append(GroupMean(key, n, len(units), float(sums.sum() / n), low, high))
    return out
