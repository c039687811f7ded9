"""Paired comparisons of a cohort's design levels: matched pairs, cluster-bootstrap intervals, p-values.

``read_scores`` reads a cohort's scored evaluations with every design axis of their lineage (the one
query through which comparisons, the report's means and the judge checks see scores);
``compare`` answers *does level A of a factor beat level B, by how much, and how sure are we?*;
``group_means`` gives means of any grouping with the same clustered intervals. ``daydream compare``
and ``daydream report`` both call these, so their numbers are the same numbers. Scores are held
column by column (``daydream.read.score_table.ScoreTable``): matching, grouping and resampling work on
arrays, so a cohort of 150,000 evaluations takes a fraction of a second per comparison.

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
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from daydream.errors import NotFound, UsageError
from daydream.ledger.store import Ledger
from daydream.read.score_table import Score, ScoreTable, group_codes, read_evaluations

__all__ = ["Score", "ScoreTable", "read_scores"]  # Score and ScoreTable live in daydream.read.score_table

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


_INDEX = {name: Score._fields.index(name) for name in Score._fields}


def read_scores(ledger: Ledger, cohort_id: str) -> ScoreTable:
    """Every scored evaluation of ``cohort_id`` with its lineage's design, in gen_id order.

    The one read through which scores are seen (comparisons, report means, judge checks): see
    ``daydream.read.score_table``. A cohort whose rubrics share one scale is compared on the raw score;
    one that mixes scales (a 0-9 and a 0-10 rubric) on ``score_norm`` (0-1), since averaging raw
    scores of two scales means nothing; the ``evaluation_design`` view (migration 0009) makes the
    same choice in SQL, so its rows are these. Raises ``NotFound`` when the cohort has no
    generations at all (an empty table means planned or running but nothing scored yet).
    """
    return read_evaluations(ledger, cohort_id).scores()


def as_table(rows: Iterable[Score]) -> ScoreTable:
    """``rows`` as a ``ScoreTable`` (what ``read_scores`` returns already is one)."""
    return ScoreTable.from_rows(rows)


def scale_note(rows: Sequence[Score]) -> str | None:
    """One sentence saying that ``rows`` mix rubric scales and were read as ``score_norm``, or None."""
    found = as_table(rows).scales()
    scales = sorted(set(found), key=lambda x: tuple(v or 0 for v in x))
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
    if isinstance(rows, ScoreTable):
        return sorted((v for v in rows.column(axis).present() if v is not None), key=_sort_key)
    i = _INDEX[axis]
    return sorted({r[i] for r in rows if r[i] is not None}, key=_sort_key)


def label(value: Any) -> str:
    """How a level is shown: its value, or ``(none)`` for a missing one."""
    return "(none)" if value is None else str(value)


# ------------------------------------------------------------------------------------ statistics
def _numpy() -> Any:
    import numpy

    return numpy


_BLAS: Any = None


def one_blas_thread() -> Any:
    """A context in which numpy's BLAS runs on one thread.

    The matrix products here are small and many (a block of resamples at a time): BLAS threads
    only wait on each other, at up to four times the CPU time for the same numbers (bench/views.py).
    """
    global _BLAS
    _numpy()  # the BLAS library is loaded with numpy
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


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


# Resamples are computed a block of about this many cells at a time, so the values gathered for them
# stay in the processor's cache (and in a few MB of memory) rather than in one array per chunk.
_BLOCK_CELLS = 1 << 16


def _rows_per_block(n: int, cells: int = _BLOCK_CELLS) -> int:
    return max(1, cells // max(1, n))


def _unit_draws(rng: Any, n: int, resamples: int, cells: int = _BLOCK_CELLS) -> Iterable[Any]:
    """The resampled unit indices, a block of rows at a time (``resamples`` rows of ``n`` in all).

    32-bit draws of a range below 2^32 come from the generator's stream the same way whatever the
    block sizes (and as 64-bit ones), so the numbers do not depend on how the work is cut up.
    """
    np = _numpy()
    rows = _rows_per_block(n, cells)
    dtype = np.int32 if n < 2 ** 31 else np.int64
    done = 0
    while done < resamples:
        size = min(rows, resamples - done)
        yield rng.integers(0, n, size=(size, n), dtype=dtype)
        done += size


def bootstrap_means(values: Any, rng: Any, resamples: int) -> Any:
    """``resamples`` means of ``values`` (one per unit) drawn with replacement."""
    np = _numpy()
    values = np.asarray(values, dtype=float)
    n = len(values)
    out = np.empty(resamples)
    buffer = np.empty((_rows_per_block(n), n))
    at = 0
    for idx in _unit_draws(rng, n, resamples):
        size = len(idx)
        gathered = np.take(values, idx, out=buffer[:size])
        gathered.mean(axis=1, out=out[at:at + size])
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
    for idx in _unit_draws(rng, n, resamples):
        size = len(idx)
        out[at:at + size] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
        at += size
    return out


def cluster_mean_intervals(groups: Sequence[tuple[Sequence[str], Any, Any]], *, seed: int, resamples: int,
                           key: str) -> list[tuple[float | None, float | None]]:
    """The cluster-bootstrap 95% interval of the mean of each group (as ``bootstrap_ratios``).

    Each group is ``(unit ids, sums, counts)``: its units and, per unit, the sum and number of its
    values; its mean is ``sum(sums) / sum(counts)``. Groups over the same set of units are
    resampled together: one draw of the units, read as a count of each unit per resample, gives
    every such group's resampled mean in one matrix product instead of one draw per group. Each
    group's interval is still that of resampling its own units with replacement; a set of units
    draws from a stream seeded by ``seed``, ``key`` and the units' ids, so a group's interval does
    not depend on which other groups are computed.
    """
    np = _numpy()
    out: list[tuple[float | None, float | None]] = [(None, None)] * len(groups)
    by_units: dict[tuple[str, ...], list[tuple[int, Any, Any]]] = defaultdict(list)
    for g, (units, sums, counts) in enumerate(groups):
        if len(units) < 2:
            continue
        order = sorted(range(len(units)), key=lambda i: units[i])
        ids = tuple(units[i] for i in order)
        by_units[ids].append((g, np.asarray(sums, dtype=float)[order], np.asarray(counts, dtype=float)[order]))
    for ids, members in by_units.items():
        digest = hashlib.sha256("\x1f".join(ids).encode()).hexdigest()
        rng, _ = random_streams(seed, [key, digest])
        # One column per group: its sums, then its counts.
        table = np.column_stack([m[1] for m in members] + [m[2] for m in members])
        with one_blas_thread():
            boot = _resampled_means(rng, len(ids), resamples, table)
        for j, (g, _, _) in enumerate(members):
            out[g] = interval(boot[:, j], len(ids))
    return out


def _resampled_means(rng: Any, n: int, resamples: int, table: Any) -> Any:
    """Each resample's mean of every group of ``table`` (see ``cluster_mean_intervals``)."""
    np = _numpy()
    width = table.shape[1] // 2
    boot = np.empty((resamples, width))
    offsets = None
    at = 0
    for idx in _unit_draws(rng, n, resamples, _BLOCK_CELLS * 4):  # a count matrix of ~2 MB per block
        size = len(idx)
        if offsets is None or len(offsets) != size:
            offsets = (np.arange(size, dtype=np.int64) * n)[:, None]
        # How often each unit was drawn in each resample, then every group's totals at once.
        times = np.bincount((idx + offsets).ravel(), minlength=size * n).reshape(size, n).astype(float)
        totals = times @ table
        with np.errstate(invalid="ignore", divide="ignore"):
            boot[at:at + size] = totals[:, :width] / totals[:, width:]
        at += size
    return boot


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
    with one_blas_thread():
        if n <= EXACT_SIGN_FLIP_UNITS:
            patterns = ((np.arange(1 << n)[:, None] >> np.arange(n)) & 1) * 2 - 1
            stats = np.abs(patterns @ d) / n
            return float(np.mean(stats >= observed - tol)), "exact"
        hits = 0
        threshold = observed - tol
        rows = _rows_per_block(n)
        for size in _chunks(resamples, n):
            # Drawn a chunk at a time as ever (8-bit draws depend on the chunk), counted a block at a time.
            signs = rng.integers(0, 2, size=(size, n), dtype=np.int8)
            for start in range(0, size, rows):
                block = signs[start:start + rows].astype(float)
                block *= 2.0
                block -= 1.0
                hits += int(np.count_nonzero(np.abs(block @ d) / n >= threshold))
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


def _match(table: ScoreTable, ia: Any, ib: Any, factor: str) -> tuple[Any, Any, int, int]:
    """The matched pairs of the rows ``ia`` (level A) and ``ib`` (level B) of ``table``.

    A pair ``(x, y)`` joins ``table[ia[x]]`` and ``table[ib[y]]`` when they are equal on every axis
    but ``factor``; on a model axis where some row of either side is a copy (no model), the values
    must be equal unless either row is a copy. Returns the pair positions ``x`` and ``y`` (by ``x``,
    then ``y``) and how many rows of each side found no partner.
    """
    np = _numpy()
    na, nb = len(ia), len(ib)
    others = [a for a in AXIS_NAMES if a != factor]
    flags = {a: table.flag(_COPY_FLAG[a]) for a in others if a in _COPY_FLAG}
    wild = [a for a in flags if flags[a][ia].any() or flags[a][ib].any()]
    strict = [a for a in others if a not in wild]
    # One group id per combination of the strict axes' values over both sides.
    group, _ = group_codes([np.concatenate([table.codes(a)[ia], table.codes(a)[ib]]) for a in strict])
    group_a, group_b = group[:na], group[na:]
    order_b = np.argsort(group_b, kind="stable")  # B's rows by group, each group in row order
    sorted_b = group_b[order_b]
    low = np.searchsorted(sorted_b, group_a, "left")
    counts = np.searchsorted(sorted_b, group_a, "right") - low
    # Every A row with each B row of its group, as 32-bit positions (many-to-many designs make
    # hundreds of thousands of pairs; these arrays are the comparison's largest).
    index = np.int32 if max(na, nb) < 2 ** 31 else np.int64
    x = np.repeat(np.arange(na, dtype=index), counts)
    # The n-th pair of A row i is B row order_b[low_i + n - (pairs before row i)].
    at = np.arange(len(x), dtype=np.int64)
    at += np.repeat(low - (np.cumsum(counts) - counts), counts)
    y = order_b.astype(index)[at]
    del at
    for a in wild:  # a model axis: equal, or either side a copy (no model)
        codes, copy = table.codes(a), flags[a]
        keep = (codes[ia][x] == codes[ib][y]) | copy[ia][x] | copy[ib][y]
        x, y = x[keep], y[keep]
    unmatched_a = na - int(np.count_nonzero(np.bincount(x, minlength=na)))
    unmatched_b = nb - int(np.count_nonzero(np.bincount(y, minlength=nb)))
    return x, y, unmatched_a, unmatched_b


def match_pairs(rows_a: Sequence[Score], rows_b: Sequence[Score],
                factor: str) -> tuple[list[tuple[int, int]], int, int]:
    """Pairs (i, j) of ``rows_a[i]`` and ``rows_b[j]`` equal on every axis but ``factor``.

    A copy-mode generation's missing model matches any model on that stage's model axis. Returns the
    pairs (in ``rows_a`` order, then ``rows_b`` order) and how many rows of each side found no partner.
    """
    np = _numpy()
    table = as_table([*rows_a, *rows_b])
    x, y, unmatched_a, unmatched_b = _match(table, np.arange(len(rows_a)),
                                            np.arange(len(rows_a), len(rows_a) + len(rows_b)), factor)
    return list(zip(x.tolist(), y.tolist())), unmatched_a, unmatched_b


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


def _linked(unit_a: Any, unit_b: Any, size: int) -> Any:
    """Each pair's connected component of units (the partition ``_components`` finds), as the
    smallest unit code in it: units linked through pairs, directly or not, are one unit."""
    np = _numpy()
    label = np.arange(size, dtype=unit_a.dtype)
    while True:  # min-label propagation with pointer jumping: a few rounds for real designs
        low = np.minimum(label[unit_a], label[unit_b])
        before = label.copy()
        np.minimum.at(label, unit_a, low)
        np.minimum.at(label, unit_b, low)
        label = label[label]
        if np.array_equal(label, before):
            return label[unit_a]


def _unit_of_pairs(unit_a: Any, unit_b: Any, size: int) -> Any:
    """Each pair's unit: the connected component of the units (codes below ``size``) of its two
    sides, numbered in the order the pairs first reach them (as ``_components`` labels would be)."""
    np = _numpy()
    component = unit_a if np.array_equal(unit_a, unit_b) else _linked(unit_a, unit_b, size)
    del unit_a, unit_b
    first = np.full(size, len(component), dtype=np.int64)
    np.minimum.at(first, component, np.arange(len(component)))
    reached = np.flatnonzero(first < len(component))
    rank = np.empty(size, dtype=np.int64)
    rank[reached[np.argsort(first[reached], kind="stable")]] = np.arange(len(reached))
    return rank[component]


@dataclass(frozen=True)
class PairedRow:
    """One matched pair behind a comparison (what the ``comparisons`` view shows for SQL checks)."""

    unit: str
    a: Score
    b: Score


def paired_rows(rows: Sequence[Score], factor: str, a: Any, b: Any) -> list[PairedRow]:
    """The matched pairs of level ``a`` against level ``b`` of ``factor`` in ``rows``, each with the
    label of the unit it was averaged into."""
    np = _numpy()
    table = as_table(rows)
    column = table.column(factor)
    codes = [i for i, v in enumerate(column.values) if v == a], [i for i, v in enumerate(column.values) if v == b]
    ia, ib = (np.flatnonzero(np.isin(column.codes, c)) for c in codes)
    x, y, _, _ = _match(table, ia, ib, factor)
    units = table.unit_values
    ua, ub = table.unit[ia][x].tolist(), table.unit[ib][y].tolist()
    labels = _components((units[p], units[q]) for p, q in zip(ua, ub))
    return [PairedRow(labels[units[p]], table[int(i)], table[int(j)])
            for p, i, j in zip(ua, ia[x].tolist(), ib[y].tolist())]


def _compare_levels(table: ScoreTable, ia: Any, ib: Any, factor: str, a: Any, b: Any,
                    within: dict[str, Any] | None, seed: int, resamples: int) -> Comparison:
    np = _numpy()
    x, y, unmatched_a, unmatched_b = _match(table, ia, ib, factor)
    pair_unit = _unit_of_pairs(table.unit[ia][x], table.unit[ib][y], len(table.unit_values))
    score_a = table.score[ia][x]
    score_b = table.score[ib][y]
    n_pairs = len(x)
    del x, y
    n_units = int(pair_unit.max()) + 1 if len(pair_unit) else 0
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
        factor=factor, a=a, b=b, within=within, n_pairs=n_pairs, n_units=n_units,
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


def check_rubric(rows: Sequence[Score], rubric: str | None, cohort_id: str) -> ScoreTable:
    """``rows`` of ``rubric`` only (all rows when ``None``); ``NotFound`` (exit 1, as for an unknown
    cohort) when it has no scores."""
    np = _numpy()
    table = as_table(rows)
    if rubric is None:
        return table
    column = table.column("evaluation_template")
    kept = table.take(np.flatnonzero(np.isin(column.codes, [i for i, v in enumerate(column.values) if v == rubric])))
    if not len(kept):
        known = ", ".join(levels(table, "evaluation_template")) or "none"
        raise NotFound(f"rubric {rubric!r} has no scores in cohort {cohort_id!r} (rubrics: {known})")
    return kept


def _split(table: ScoreTable, axes: Sequence[str], rows: Any = None) -> list[tuple[tuple[Any, ...], Any]]:
    """The rows of ``table`` (or only ``rows``, an index array) by their values on ``axes``:
    (values, row indices in order) per group, groups in the order their first rows come."""
    np = _numpy()
    if rows is None:
        rows = np.arange(len(table))
    if not axes:
        return [((), rows)]
    group, first = group_codes([table.codes(a)[rows] for a in axes])
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(len(first) + 1))
    out = []
    for g in np.argsort(first, kind="stable").tolist():
        row = rows[first[g]]
        key = tuple(table.column(a).values[table.codes(a)[row]] for a in axes)
        out.append((key, rows[order[bounds[g]:bounds[g + 1]]]))
    return out


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
    table = check_rubric(rows, rubric, cohort_id)
    found = levels(table, factor)
    if len(found) < 2:
        varied = [a for a in AXIS_NAMES if len(levels(table, a)) > 1]
        shown = ", ".join(label(v) for v in found) or "no value"
        raise UsageError(f"{factor} has {len(found)} level{'s' if len(found) != 1 else ''}{where} ({shown}): "
                         f"nothing to compare; factors with two or more levels: {', '.join(varied) or 'none'}")
    slices = []
    planned = 0
    for key, part in _split(table, within_axes):
        by_level: dict[Any, Any] = {}
        for level_key, rows_at in _split(table, [factor], part):
            if level_key[0] is not None:
                by_level[level_key[0]] = rows_at
        k = len(by_level)
        planned += k * (k - 1) // 2
        slices.append((key, by_level))
    if planned > MAX_COMPARISONS:
        raise UsageError(f"{factor} has {len(found)} levels{where}: {planned:,} pairwise comparisons, more than "
                         f"{MAX_COMPARISONS:,} (too many to read or to correct for); compare a factor with "
                         "fewer levels")
    comparisons: list[Comparison] = []
    skipped: list[str] = []
    for key, by_level in sorted(slices, key=lambda s: tuple(_sort_key(label(v) if v is None else v) for v in s[0])):
        within_map = dict(zip(within_axes, key)) if within_axes else None
        names = sorted(by_level, key=_sort_key)
        if len(names) < 2:
            where_slice = ", ".join(f"{k} = {label(v)}" for k, v in zip(within_axes, key))
            skipped.append(f"{where_slice}: {len(names)} level{'s' if len(names) != 1 else ''} of {factor}")
            continue
        for x in range(len(names)):
            for y in range(x + 1, len(names)):
                comparisons.append(_compare_levels(table, by_level[names[x]], by_level[names[y]], factor,
                                                   names[x], names[y], within_map, seed, resamples))
    adjusted = holm([c.p for c in comparisons])
    comparisons = [replace(c, p_holm=p) for c, p in zip(comparisons, adjusted)]
    return ComparisonSet(factor, within_axes, rubric, seed, resamples, comparisons, skipped,
                         scale_note(table))


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
    Groups over the same units share their resamples (``cluster_mean_intervals``), which makes a
    report's dozens of means one draw; each interval is still its own group's cluster bootstrap.
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
    (missing values kept as ``None``), sorted by key. The intervals come from
    ``cluster_mean_intervals``: groups over the same units share their draws."""
    return group_means_by(rows, [axes], seed=seed, resamples=resamples)[0]


# The seed key of every cluster-bootstrap mean (group means, judge offsets): intervals over the same
# units share their draws, whichever statistic they belong to.
MEAN_KEY = "cluster mean"


@dataclass(frozen=True)
class MeanGroup:
    """The scores of one group, summed per unit: what a clustered mean and its interval are made of."""

    key: tuple[Any, ...]
    units: list[str]
    sums: Any
    counts: Any

    @property
    def cluster(self) -> tuple[list[str], Any, Any]:
        return self.units, self.sums, self.counts


def mean_groups(rows: Sequence[Score], groupings: Sequence[Sequence[str]]) -> list[list[MeanGroup]]:
    """For each grouping (a list of axes), its groups sorted by key, each summed per unit (units
    in the order the group's rows reach them)."""
    np = _numpy()
    table = as_table(rows)
    unit_values = table.unit_values
    found: list[list[MeanGroup]] = []
    for axes in groupings:
        names = tuple(axis_name(a, "axes") for a in axes)
        mine = []
        for key, part in _split(table, names):
            units = table.unit[part]
            ids, first, inverse = np.unique(units, return_index=True, return_inverse=True)
            rank = np.empty(len(ids), dtype=np.int64)
            rank[np.argsort(first, kind="stable")] = np.arange(len(ids))
            slot = rank[inverse]
            sums = np.bincount(slot, table.score[part], len(ids))
            counts = np.bincount(slot, minlength=len(ids)).astype(float)
            mine.append(MeanGroup(key, [unit_values[u] for u in ids[np.argsort(rank)].tolist()], sums, counts))
        mine.sort(key=lambda g: tuple((v is None, _sort_key(v) if v is not None else 0) for v in g.key))
        found.append(mine)
    return found


def means_from(groups: Sequence[Sequence[MeanGroup]],
               intervals: Sequence[tuple[float | None, float | None]]) -> list[list[GroupMean]]:
    """``GroupMean`` lists from ``mean_groups`` and their intervals (in the same order, flattened)."""
    at = iter(intervals)
    return [[GroupMean(g.key, int(g.counts.sum()), len(g.units), float(g.sums.sum() / g.counts.sum()), *next(at))
             for g in mine] for mine in groups]


def group_means_by(rows: Sequence[Score], groupings: Sequence[Sequence[str]], *, seed: int = DEFAULT_SEED,
                   resamples: int = DEFAULT_RESAMPLES) -> list[list[GroupMean]]:
    """``group_means`` for several groupings at once (one list per grouping), every group's
    interval from one call of ``cluster_mean_intervals``, so groups over the same units share one
    draw whichever grouping they belong to."""
    groups = mean_groups(rows, groupings)
    return means_from(groups, cluster_mean_intervals([g.cluster for mine in groups for g in mine], seed=seed,
                                                     resamples=resamples, key=MEAN_KEY))
