"""A cohort's evaluations column by column: the one read behind comparisons, means, judge checks and reports.

``read_evaluations`` reads every evaluation of a cohort in one pass over the ledger -- each
evaluation's own row, then the lineage of each distinct essay once -- into ``Evaluations``: a numpy
array per column, with text (and every other repeated value) stored as integer codes into the list
of its distinct values. ``Evaluations.scores()`` is the ``ScoreTable`` of the scored ones, in
evaluation id order, each with the design of its whole lineage: what ``daydream.read.compare.read_scores``
returns, so ``daydream compare`` and ``daydream report`` see the very same rows.

A ``ScoreTable`` is a ``Sequence[Score]`` for any caller, but the statistics read its columns:
150,000 evaluations take about 15 MB this way instead of the 120 MB their Python tuples would, and
matching or grouping them is array work rather than a Python loop per row.

When a cohort's scored evaluations come from rubrics of different scales, ``score`` is each score's
``score_norm`` (its 0-1 position on its rubric's scale): averaging raw scores of a 0-9 and a 1-5
rubric means nothing. The ``evaluation_design`` view (migration 0009) makes the same choice in SQL.
numpy is imported inside the functions that need it: the CLI starts without it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, overload

from daydream.errors import NotFound
from daydream.ledger.store import Ledger


def _np() -> Any:
    import numpy

    return numpy


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


FIELDS = Score._fields
# Every field but the score is categorical: codes into the list of its distinct values.
CATEGORICAL = tuple(f for f in FIELDS if f != "score")


# ------------------------------------------------------------------------------------ columns
@dataclass(frozen=True)
class Column:
    """One categorical column: ``values`` (distinct, in first-seen order) and a code per row."""

    values: list[Any]
    codes: Any  # numpy integer array, of the smallest type that holds one code more (see ``code_type``)

    def __len__(self) -> int:
        return len(self.codes)

    def take(self, index: Any) -> "Column":
        """The rows at ``index`` (a numpy index array or mask), sharing the same values."""
        return Column(self.values, self.codes[index])

    def tolist(self) -> list[Any]:
        """The value of every row."""
        if isinstance(self.values, Texts):
            return self.values.pick(self.codes)
        return list(map(self.values.__getitem__, self.codes.tolist()))

    def present(self) -> list[Any]:
        """The distinct values the rows hold, in code order."""
        np = _np()
        return [self.values[c] for c in np.unique(self.codes).tolist()]

    def truthy(self) -> Any:
        """A boolean array: each row's value is true (a copy flag, say)."""
        np = _np()
        return np.array([bool(v) for v in self.values], dtype=bool)[self.codes] if self.values else \
            np.zeros(len(self.codes), dtype=bool)


def code_type(n: int) -> Any:
    """The smallest numpy integer type holding the codes of ``n`` values and one more (``n``
    itself, which reads as "none" once appended to a column's values): design columns take a
    byte per row instead of four."""
    np = _np()
    return np.int8 if n < 127 else np.int16 if n < 32767 else np.int32


class Encoder:
    """Builds a ``Column`` from values given a chunk at a time (codes by first appearance)."""

    def __init__(self) -> None:
        self.lookup: dict[Any, int] = {}
        self.parts: list[Any] = []

    def add(self, items: Sequence[Any]) -> None:
        np = _np()
        lookup = self.lookup
        for v in dict.fromkeys(items):  # the chunk's distinct values, in order, at C speed
            if v not in lookup:
                lookup[v] = len(lookup)
        self.parts.append(np.fromiter(map(lookup.__getitem__, items), dtype=np.int32, count=len(items)))

    def column(self) -> Column:
        np = _np()
        codes = np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.int32)
        return Column(list(self.lookup), codes.astype(code_type(len(self.lookup))))


def encode(items: Sequence[Any]) -> Column:
    """The ``Column`` of ``items``."""
    enc = Encoder()
    enc.add(items)
    return enc.column()


class Texts(Sequence[str]):
    """Strings kept as one numpy array of UTF-8 bytes and decoded when read: the ids of 150,000
    evaluations take 4 MB this way, 13 MB as Python strings."""

    def __init__(self, data: Any) -> None:
        self.data = data

    @classmethod
    def of(cls, items: Sequence[str]) -> "Texts":
        np = _np()
        try:
            return cls(np.array(items, dtype="S") if len(items) else np.zeros(0, dtype="S1"))
        except UnicodeEncodeError:  # ids beyond ASCII: encode them one by one
            return cls(np.array([s.encode("utf-8") for s in items], dtype="S"))

    def __len__(self) -> int:
        return len(self.data)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return self.pick(range(*i.indices(len(self))))
        return bytes(self.data[i]).decode("utf-8")

    def pick(self, index: Any) -> list[str]:
        """The strings at ``index`` (positions), decoded."""
        return [b.decode("utf-8") for b in self.data[index].tolist()]

    def take(self, index: Any) -> "Texts":
        return Texts(self.data[index])


def floats(items: Iterable[Any]) -> Any:
    """A float array of ``items``, ``None`` as NaN."""
    np = _np()
    return np.array([np.nan if v is None else v for v in items], dtype=float)


def group_codes(columns: Sequence[Any]) -> tuple[Any, Any]:
    """Dense group ids of the rows of several integer code arrays (rows equal on all of them share an
    id), and the index of the first row of each group. Ids follow the sorted order of the keys."""
    np = _np()
    n = len(columns[0]) if columns else 0
    if not columns or n == 0:
        return np.zeros(n, dtype=np.int64), np.zeros(1 if n else 0, dtype=np.int64)
    sizes = [int(c.max()) + 1 for c in columns]
    if all(int(c.min()) >= 0 for c in columns) and float(np.prod([float(s) for s in sizes])) < 2.0 ** 62:
        # One number per row (the codes in mixed radix): a single stable sort instead of a lexsort.
        combined = np.zeros(n, dtype=np.int64)
        for c, size in zip(columns, sizes):
            combined *= size
            combined += c
        order = np.argsort(combined, kind="stable")
        ordered = combined[order]
        starts = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    else:
        stacked = np.stack([np.asarray(c, dtype=np.int64) for c in columns])
        order = np.lexsort(stacked[::-1])
        ordered = stacked[:, order]
        starts = np.concatenate([[True], np.any(ordered[:, 1:] != ordered[:, :-1], axis=0)])
    ids = np.empty(n, dtype=np.int64)
    ids[order] = np.cumsum(starts) - 1
    return ids, order[starts]


# ------------------------------------------------------------------------------------ the score table
class ScoreTable(Sequence[Score]):
    """Scored evaluations held column by column; a ``Sequence[Score]`` (rows are built on demand).

    ``column(field)`` gives a categorical ``Column`` for every ``Score`` field but ``score``, which is a
    float array; ``raw`` is each score on its rubric's own scale (equal to ``score`` unless the
    cohort mixes scales, when ``score`` is ``score_norm``). ``unit`` holds each row's independent unit
    (its draft, else its essay) as codes into ``unit_values``.
    """

    def __init__(self, columns: dict[str, Column], score: Any, raw: Any | None = None) -> None:
        np = _np()
        self.columns = columns
        self.score = np.asarray(score, dtype=float)
        self.raw = self.score if raw is None else np.asarray(raw, dtype=float)
        self._unit: tuple[list[Any], Any] | None = None

    # -------------------------------------------------------------- building
    @classmethod
    def from_rows(cls, rows: Iterable[Score]) -> "ScoreTable":
        """The table of ``rows`` (a table is returned as it is)."""
        if isinstance(rows, ScoreTable):
            return rows
        rows = [r if isinstance(r, Score) else Score(*r) for r in rows]
        by_field = list(zip(*rows)) if rows else [()] * len(FIELDS)
        columns = {f: encode(list(by_field[i])) for i, f in enumerate(FIELDS) if f != "score"}
        return cls(columns, floats(by_field[FIELDS.index("score")]))

    def take(self, index: Any) -> "ScoreTable":
        """The rows at ``index`` (numpy index array or boolean mask), in that order."""
        table = ScoreTable({f: c.take(index) for f, c in self.columns.items()}, self.score[index],
                           self.raw[index] if self.raw is not self.score else None)
        if self._unit is not None:
            table._unit = (self._unit[0], self._unit[1][index])
        return table

    # -------------------------------------------------------------- columns
    def column(self, name: str) -> Column:
        return self.columns[name]

    def codes(self, name: str) -> Any:
        return self.columns[name].codes

    def flag(self, name: str) -> Any:
        """Truthiness of a flag column (``draft_copy``, ``essay_copy``) per row."""
        return self.columns[name].truthy()

    @property
    def unit_values(self) -> list[Any]:
        return self._units()[0]

    @property
    def unit(self) -> Any:
        """Each row's unit as a code into ``unit_values``: its draft, or its essay without one."""
        return self._units()[1]

    def _units(self) -> tuple[list[Any], Any]:
        if self._unit is None:
            np = _np()
            draft, essay = self.columns["draft_gen_id"], self.columns["essay_gen_id"]
            lookup: dict[Any, int] = {}
            for v in [*draft.values, *essay.values]:
                if v and v not in lookup:  # Score.unit: the draft id when it is set, else the essay id
                    lookup[v] = len(lookup)
            of_draft = np.array([lookup[v] if v else -1 for v in draft.values] or [-1], dtype=np.int32)
            of_essay = np.array([lookup.get(v, -1) if v else -1 for v in essay.values] or [-1], dtype=np.int32)
            d = of_draft[draft.codes]
            codes = np.where(d >= 0, d, of_essay[essay.codes])
            values = list(lookup)
            if (codes < 0).any():  # a row without draft or essay id: a unit of its own
                values.append(None)
                codes = np.where(codes < 0, len(values) - 1, codes).astype(np.int32)
            self._unit = (values, codes)
        return self._unit

    def author_values(self) -> list[Any]:
        """Each row's author (``Score.author``): the essay model, the draft model for a copy."""
        essay_copy = self.flag("essay_copy")
        draft, essay = self.column("draft_llm").tolist(), self.column("essay_llm").tolist()
        return [d if c else e for d, e, c in zip(draft, essay, essay_copy.tolist())]

    def scales(self) -> list[tuple[Any, Any]]:
        """The distinct (scale_min, scale_max) pairs the rows hold."""
        lo, hi = self.columns["scale_min"], self.columns["scale_max"]
        _, first = group_codes([lo.codes, hi.codes])
        return [(lo.values[lo.codes[i]], hi.values[hi.codes[i]]) for i in first.tolist()] if len(self) else []

    # -------------------------------------------------------------- Sequence[Score]
    def __len__(self) -> int:
        return len(self.score)

    @overload
    def __getitem__(self, i: int) -> Score: ...

    @overload
    def __getitem__(self, i: slice) -> list[Score]: ...

    def __getitem__(self, i: int | slice) -> Score | list[Score]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("ScoreTable index out of range")
        values = {f: c.values[int(c.codes[i])] for f, c in self.columns.items()}
        return Score(**values, score=float(self.score[i]))

    def __iter__(self) -> Iterator[Score]:
        columns = [self.columns[f].tolist() if f != "score" else self.score.tolist() for f in FIELDS]
        return map(Score._make, zip(*columns))


# ------------------------------------------------------------------------------------ reading
# Each evaluation of the cohort with its own columns (the ``scores`` view's, read from gen_state
# directly); the essays' lineage is read once per essay below, not once per evaluation.
EVALUATIONS_SQL = """
SELECT v.gen_id, v.parent_gen_id, v.score,
       json_array(v.template_id, v.model_id, v.replicate, v.attempt, v.status, v.error, v.imported, v.scale_min,
                  v.scale_max, v.parse_failed)
FROM cohort_members m JOIN gen_state v ON v.gen_id = m.gen_id
WHERE m.cohort_id = ? AND m.stage = 'evaluation' AND v.stage = 'evaluation'
  AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans))"""  # not staged (0013)
# The columns that take few distinct values come as one JSON array per row, encoded once and split
# after: one dictionary lookup per row in Python instead of nine.
EVALUATION_COLUMNS = ("evaluation_gen_id", "essay_gen_id", "score", "design")
DESIGN_COLUMNS = ("rubric", "evaluator", "replicate", "attempt", "status", "error", "imported", "scale_min",
                  "scale_max", "parse_failed")

# The lineage of each essay: its parent (the draft, or an essay it was rewritten from) and the
# draft's design. ``d`` is only a draft: an essay written from an essay has no draft axis.
ESSAYS_SQL = """
SELECT e.gen_id, e.parent_gen_id, e.combo_id, COALESCE(e.combo_id, d.combo_id), d.gen_id, d.template_id,
       d.model_id, d.replicate, CASE WHEN d.generator = 'copy' THEN 1 ELSE 0 END, e.template_id, e.model_id,
       e.replicate, CASE WHEN e.generator = 'copy' THEN 1 ELSE 0 END
FROM gen_state e
LEFT JOIN gen_state d ON d.gen_id = e.parent_gen_id AND d.stage != 'essay'
WHERE e.gen_id IN (SELECT value FROM json_each(?))"""
# PostgreSQL (issue 17) spells the two JSON functions differently; the statements are otherwise the same.
_POSTGRESQL = {EVALUATIONS_SQL: EVALUATIONS_SQL.replace("json_array(", "json_build_array(").replace(
                   "v.parse_failed)\n", "v.parse_failed)::text\n"),
               ESSAYS_SQL: ESSAYS_SQL.replace("SELECT value FROM json_each(?)", "SELECT json_array_elements_text(?::json)")}
ESSAY_COLUMNS = ("essay_gen_id", "parent_gen_id", "combo_id", "combo", "draft_gen_id", "draft_template", "draft_llm",
                 "draft_replicate", "draft_copy", "essay_template", "essay_llm", "essay_replicate", "essay_copy")
_CHUNK_ROWS = 5_000


def _dialect(ledger: Any, sql: str) -> str:
    return _POSTGRESQL[sql] if ledger.backend.name == "postgresql" else sql


class Evaluations:
    """Every evaluation of one cohort, scored or not, column by column in evaluation id order.

    ``ids`` are the evaluation ids; ``columns`` the categorical columns of ``EVALUATION_COLUMNS``
    (``essay_gen_id``, ``rubric``, ``evaluator``, ``replicate``, ``attempt``, ``status``, ``error``,
    ``imported``, ``parse_failed``); ``score``, ``scale_min``, ``scale_max`` and ``score_norm`` float arrays (NaN: none).
    ``essay`` is each evaluation's row in ``essays`` (-1 when its essay is unknown), whose columns are
    ``ESSAY_COLUMNS``. ``mixed`` is true when the scored evaluations with a known essay (the rows of
    ``scores()``) use more than one scale.
    """

    def __init__(self, cohort_id: str, ids: Texts, columns: dict[str, Column], numbers: dict[str, Any],
                 essays: dict[str, Column], essay_of_value: Any) -> None:
        np = _np()
        self.cohort_id = cohort_id
        self.ids = ids
        self.columns = columns
        self.score = numbers["score"]
        # The scales as numbers, read from their (few) distinct values.
        self.scale_min = floats(columns["scale_min"].values)[columns["scale_min"].codes]
        self.scale_max = floats(columns["scale_max"].values)[columns["scale_max"].codes]
        with np.errstate(invalid="ignore", divide="ignore"):
            # The scores view's score_norm: (score - min) / (max - min), for a score on a proper scale.
            width = self.scale_max - self.scale_min
            self.score_norm = np.where(width > 0, (self.score - self.scale_min) * 1.0 / width, np.nan)
        self.essays = essays
        # Each essay id (a value of the essay_gen_id column) → its row in ``essays``; -1: not in the ledger.
        self.essay_of_value = essay_of_value
        self.essay = np.append(essay_of_value, -1)[columns["essay_gen_id"].codes]
        self.scored = ~np.isnan(self.score)
        self.mixed = len(self.scale_pairs(self.scored & (self.essay >= 0))) > 1

    def __len__(self) -> int:
        return len(self.ids)

    def scale_pairs(self, mask: Any) -> list[tuple[float, float]]:
        """The distinct (min, max) scales of the rows in ``mask`` (a missing scale is left out)."""
        np = _np()
        lo, hi = self.columns["scale_min"], self.columns["scale_max"]
        _, first = group_codes([lo.codes[mask], hi.codes[mask]])
        rows = np.flatnonzero(mask)[first] if len(first) else first
        pairs = {(float(self.scale_min[i]), float(self.scale_max[i])) for i in rows.tolist()}
        return sorted((a, b) for a, b in pairs if not (math.isnan(a) or math.isnan(b)))

    def essay_column(self, name: str) -> Column:
        """An essay-level column (``ESSAY_COLUMNS``) for every evaluation (None without an essay)."""
        np = _np()
        col = self.essays[name]
        codes = np.append(col.codes, len(col.values))[self.essay]  # -1 reads the appended None
        return Column([*col.values, None], codes)

    def compared(self) -> Any:
        """The score each evaluation is compared on: ``score_norm`` when the cohort mixes scales."""
        return self.score_norm if self.mixed else self.score

    def scores(self) -> ScoreTable:
        """The ``ScoreTable`` of the scored evaluations whose essay is known (``read_scores``)."""
        np = _np()
        keep = self.scored & (self.essay >= 0)
        index = np.flatnonzero(keep)
        essay = self.essay[index]
        columns: dict[str, Column] = {"evaluation_gen_id": Column(self.ids, index.astype(code_type(len(self.ids))))}
        own = {"essay_gen_id": "essay_gen_id", "evaluation_template": "rubric", "evaluation_llm": "evaluator",
               "evaluation_replicate": "replicate"}
        for field, name in own.items():
            columns[field] = self.columns[name].take(index)
        for field in ("draft_gen_id", "combo", "draft_template", "draft_llm", "draft_replicate", "essay_template",
                      "essay_llm", "essay_replicate", "draft_copy", "essay_copy"):
            columns[field] = self.essays[field].take(essay)
        for field in ("scale_min", "scale_max"):
            columns[field] = self.columns[field].take(index)
        ordered = {f: columns[f] for f in CATEGORICAL}
        return ScoreTable(ordered, self.compared()[index], self.score[index])


def fetch_chunks(ledger: Ledger, sql: str, params: tuple[Any, ...], size: int = _CHUNK_ROWS) -> Iterator[list[tuple]]:
    """The rows of ``sql``, ``size`` at a time from the driver's own cursor: a large result never
    exists all at once as Python tuples."""
    with ledger.backend.read() as conn:
        cursor = conn.cursor()
        try:
            cursor.execute(sql, params)
            while chunk := cursor.fetchmany(size):
                yield chunk
        finally:
            cursor.close()


def _read_rows(ledger: Ledger, sql: str, params: tuple[Any, ...], names: Sequence[str],
               keep_plain: Sequence[str] = (), numeric: Sequence[str] = ()) -> tuple[dict[str, Any], int]:
    """Run ``sql`` a chunk of rows at a time into columns: ``keep_plain`` columns as ``Texts``,
    ``numeric`` as float arrays, every other one encoded as a ``Column``."""
    np = _np()
    encoders = {n: Encoder() for n in names if n not in keep_plain and n not in numeric}
    plain: dict[str, list[Any]] = {n: [] for n in keep_plain}  # Texts, a chunk at a time
    nums: dict[str, list[Any]] = {n: [] for n in numeric}
    count = 0
    for chunk in fetch_chunks(ledger, sql, params):
        count += len(chunk)
        for name, values in zip(names, zip(*chunk)):
            if name in encoders:
                encoders[name].add(values)
            elif name in plain:
                plain[name].append(Texts.of(values).data)
            else:
                nums[name].append(floats(values))
    out: dict[str, Any] = {n: e.column() for n, e in encoders.items()}
    out.update({n: Texts(np.concatenate(v) if v else np.zeros(0, dtype="S1")) for n, v in plain.items()})
    out.update({n: (np.concatenate(v) if v else np.zeros(0)) for n, v in nums.items()})
    return out, count


def split_json(column: Column, names: Sequence[str]) -> dict[str, Column]:
    """The columns packed in a column of JSON arrays (one value per name), each as a ``Column``."""
    rows = [json.loads(v) for v in column.values]
    out = {}
    for i, name in enumerate(names):
        part = encode([r[i] for r in rows])
        # Each packed value's code in this column, then each row's.
        out[name] = Column(part.values, part.codes[column.codes] if len(rows) else part.codes)
    return out


def read_evaluations(ledger: Ledger, cohort_id: str) -> Evaluations:
    """Every evaluation of ``cohort_id`` with its essay's lineage, in evaluation id order.

    Raises ``NotFound`` when the cohort has no generations at all.
    """
    np = _np()
    found, n = _read_rows(ledger, _dialect(ledger, EVALUATIONS_SQL), (cohort_id,), EVALUATION_COLUMNS,
                          keep_plain=("evaluation_gen_id",), numeric=("score",))
    if not n and not ledger.query("SELECT 1 FROM cohort_members WHERE cohort_id = ? LIMIT 1", (cohort_id,)):
        known = ", ".join(r[0] for r in ledger.query(
            "SELECT DISTINCT cohort_id FROM cohort_members ORDER BY 1")) or "none"
        raise NotFound(f"cohort {cohort_id!r} has no generations in the ledger (cohorts: {known})")
    # Evaluation id order: SQLite's BINARY collation compares UTF-8 bytes, as numpy sorts them.
    ids: Texts = found.pop("evaluation_gen_id")
    order = np.argsort(ids.data, kind="stable")
    ids = ids.take(order)
    columns = {"essay_gen_id": found["essay_gen_id"].take(order)}
    columns.update(split_json(found["design"].take(order), DESIGN_COLUMNS))
    numbers = {"score": found["score"][order]}
    essay_col = columns["essay_gen_id"]
    wanted = [v for v in essay_col.values if v is not None]
    essays, _ = _read_rows(ledger, _dialect(ledger, ESSAYS_SQL), (json.dumps(wanted),), ESSAY_COLUMNS)
    # Each evaluation's row among the essays read (-1: its essay is not in the ledger).
    position = {v: i for i, v in enumerate(essays["essay_gen_id"].tolist())}
    of_value = np.array([position.get(v, -1) for v in essay_col.values], dtype=np.int64)
    return Evaluations(cohort_id, ids, columns, numbers, essays, of_value)
