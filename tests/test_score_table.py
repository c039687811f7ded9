"""Scores column by column: the arrays give what a row-by-row reading of the same rules gives.

``daydream.read.compare`` matches pairs, links units and resamples on numpy arrays; these tests hold each
piece against a plain Python statement of its rule on random designs (copies, replicates, links
between units), check that cutting the resampling into blocks changes no number, and read ids that
are not ASCII or need quoting in a CSV file.
"""

from __future__ import annotations

import csv
import io
import itertools
import random
from pathlib import Path

import numpy as np
import pytest

from daydream.read import compare as C
from daydream.read.compare import AXIS_NAMES, Score, ScoreTable, cluster_mean_intervals, match_pairs, paired_rows
from daydream.ledger.store import Ledger, NewEvent
from daydream.read.report import publish_report
from daydream.read.score_table import Texts, group_codes, read_evaluations

COPY_FLAG = {"draft_llm": "draft_copy", "essay_llm": "essay_copy"}


def random_rows(seed: int) -> list[Score]:
    """A small random design: combos, two templates and models per stage, copies, replicates, and
    drafts that share their design (so pairs cross units and link them)."""
    rng = random.Random(seed)
    rows = []
    for d in range(rng.randint(2, 9)):
        combo = f"c{rng.randint(0, 2)}"
        draft_copy = int(rng.random() < 0.2)
        draft = (f"d{d}", combo, rng.choice("AB"), None if draft_copy else rng.choice(["m1", "m2"]),
                 rng.randint(1, 2), draft_copy)
        for e in range(rng.randint(1, 3)):
            essay_copy = int(rng.random() < 0.3)
            essay_model = None if essay_copy else rng.choice(["m1", "m2"])
            for rubric, judge, rep in itertools.product(["r1", "r2"], ["j1", "j2"], [1, 2]):
                if rng.random() < 0.3:
                    continue
                rows.append(Score(f"v{d}{e}{rubric}{judge}{rep}", f"e{d}{e}", draft[0], combo, draft[2], draft[3],
                                  draft[4], rng.choice(["T", "U"]), essay_model, rng.randint(1, 2), rubric, judge,
                                  rep, float(rng.randint(0, 9)), draft[5], essay_copy, 0, 9))
    rng.shuffle(rows)
    return rows


def brute_pairs(rows_a: list[Score], rows_b: list[Score], factor: str) -> list[tuple[int, int]]:
    """The matching rule read literally: equal on every other axis, a copy's missing model equal to any."""
    others = [a for a in AXIS_NAMES if a != factor]
    copies = {a for a in COPY_FLAG if a in others and any(getattr(r, COPY_FLAG[a]) for r in [*rows_a, *rows_b])}
    pairs = []
    for i, r in enumerate(rows_a):
        for j, s in enumerate(rows_b):
            if all(getattr(r, a) == getattr(s, a) or (a in copies and (getattr(r, COPY_FLAG[a]) or
                                                                        getattr(s, COPY_FLAG[a])))
                   for a in others):
                pairs.append((i, j))
    return pairs


@pytest.mark.parametrize("seed", range(40))
def test_matched_pairs_and_their_units_follow_the_rule_read_row_by_row(seed: int) -> None:
    rows = random_rows(seed)
    for factor in ("draft_template", "draft_llm", "essay_template", "essay_llm", "evaluation_template",
                   "evaluation_llm", "evaluation_replicate", "combo"):
        found = C.levels(rows, factor)
        for a, b in itertools.combinations(found, 2):
            rows_a = [r for r in rows if getattr(r, factor) == a]
            rows_b = [r for r in rows if getattr(r, factor) == b]
            pairs, unmatched_a, unmatched_b = match_pairs(rows_a, rows_b, factor)
            expected = brute_pairs(rows_a, rows_b, factor)
            assert pairs == expected, (factor, a, b)
            assert unmatched_a == len(rows_a) - len({i for i, _ in expected})
            assert unmatched_b == len(rows_b) - len({j for _, j in expected})
            # Units linked through pairs are one unit, labelled by the row-by-row union-find.
            labels = C._components((rows_a[i].unit, rows_b[j].unit) for i, j in expected)
            got = [p.unit for p in paired_rows(rows, factor, a, b)]
            assert got == [labels[rows_a[i].unit] for i, _ in expected]
            table = ScoreTable.from_rows(rows)
            ia = np.array([k for k, r in enumerate(rows) if getattr(r, factor) == a])
            ib = np.array([k for k, r in enumerate(rows) if getattr(r, factor) == b])
            x, y, _, _ = C._match(table, ia, ib, factor)
            numbered = C._unit_of_pairs(table.unit[ia][x], table.unit[ib][y], len(table.unit_values))
            order: dict[str, int] = {}
            assert numbered.tolist() == [order.setdefault(labels[rows_a[i].unit], len(order)) for i, _ in expected]


def test_a_comparison_gives_the_same_numbers_however_the_resampling_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = random_rows(3)  # a few units: exact sign flips
    many = [r._replace(evaluation_gen_id=f"{r.evaluation_gen_id}-{k}", draft_gen_id=f"{r.draft_gen_id}-{k}",
                       essay_gen_id=f"{r.essay_gen_id}-{k}", combo=f"{r.combo}-{k}") for k in range(8) for r in rows]
    for case in (rows, many):  # few units (exact p) and many (Monte Carlo p)
        before = [c.as_json() for c in C.compare(case, "evaluation_template", resamples=999).comparisons]
        for cells in (1, 64, 1 << 20):
            monkeypatch.setattr(C, "_BLOCK_CELLS", cells)
            assert [c.as_json() for c in C.compare(case, "evaluation_template", resamples=999).comparisons] == before


def test_bootstrap_draws_do_not_depend_on_the_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.random.default_rng(1).normal(size=997)
    reference = C.bootstrap_means(values, np.random.default_rng(5), 700)
    for cells in (1, 1000, 1 << 22):
        monkeypatch.setattr(C, "_BLOCK_CELLS", cells)
        assert np.array_equal(C.bootstrap_means(values, np.random.default_rng(5), 700), reference)
        assert C.sign_flip_p(values, np.random.default_rng(5), 700) == C.sign_flip_p(
            values, np.random.default_rng(5), 700)


def test_a_means_interval_is_its_own_groups_whatever_else_is_drawn_with_it() -> None:
    units = [f"u{i}" for i in range(30)]
    rng = np.random.default_rng(2)
    group = (units, rng.normal(size=30) * 4, np.full(30, 4.0))
    other = (units[::-1], rng.normal(size=30), np.ones(30))  # same units, another order
    alone = cluster_mean_intervals([group], seed=7, resamples=500, key="k")
    fewer = (units[:10], group[1][:10], np.ones(10))  # other units: a draw of its own
    together = cluster_mean_intervals([other, group, fewer], seed=7, resamples=500, key="k")
    assert together[1] == pytest.approx(alone[0], rel=1e-12)
    assert together[0] != together[1]
    # Too few units for an interval.
    assert cluster_mean_intervals([(["u"], [1.0], [1.0])], seed=7, resamples=10, key="k") == [(None, None)]


def test_group_ids_agree_with_python_tuples() -> None:
    rng = np.random.default_rng(4)
    columns = [rng.integers(0, k, size=500).astype(np.int8) for k in (3, 5, 2, 7)]
    ids, first = group_codes(columns)
    keys = list(zip(*(c.tolist() for c in columns)))
    seen: dict[tuple[int, ...], int] = {}
    for i, key in enumerate(keys):
        assert seen.setdefault(key, int(ids[i])) == ids[i]
    assert sorted(seen) == [keys[f] for f in first.tolist()]  # ids follow the sorted keys
    assert len(set(ids.tolist())) == len(seen)


def test_texts_keep_any_unicode_and_sort_as_sqlite_does() -> None:
    ids = ["v_z", "v_é", "v_a", "v_日本", "v_aa", "v_"]
    texts = Texts.of(ids)
    assert list(texts) == ids and texts[1] == "v_é" and texts[1:3] == ["v_é", "v_a"]
    assert texts.take(np.argsort(texts.data, kind="stable")).pick(np.arange(len(ids))) == sorted(ids)


def test_odd_evaluation_ids_are_read_in_sqlite_order_and_quoted_in_scores_csv(ledger: Ledger, tmp_path: Path) -> None:
    ledger.append([NewEvent("cohort:c", "CohortPlanned", {"cohort_id": "c", "planned": {}})])
    plan = {"parent_gen_id": None, "combo_id": "k", "template_id": "t", "template_hash": None, "generator": "llm",
            "parser": "identity", "model_id": "m", "replicate": 1, "cohort_id": "c", "catalog_hash": None}
    events = [NewEvent("gen:d", "GenerationPlanned", {**plan, "gen_id": "d", "stage": "draft"}),
              NewEvent("gen:e", "GenerationPlanned", {**plan, "gen_id": "e", "stage": "essay", "parent_gen_id": "d"})]
    ids = ['v_é "quoted", too', "v_a,b", "v_日本", "v_z"]
    for i, gen_id in enumerate(ids):
        events += [NewEvent(f"gen:{gen_id}", "GenerationPlanned", {**plan, "gen_id": gen_id, "stage": "evaluation",
                                                                    "parent_gen_id": "e", "template_id": "r",
                                                                    "replicate": i + 1}),
                   NewEvent(f"gen:{gen_id}", "ScoreRecorded", {"gen_id": gen_id, "attempt": 1, "essay_gen_id": "e",
                                                               "score": float(i), "rubric": "r", "evaluator": "m",
                                                               "replicate": i + 1})]
    ledger.append(events)
    in_sql = [r[0] for r in ledger.query("SELECT gen_id FROM gen_state WHERE stage = 'evaluation' ORDER BY gen_id")]
    assert list(read_evaluations(ledger, "c").ids) == in_sql == sorted(ids)
    publish_report(ledger, "c", tmp_path / "r")
    written = list(csv.DictReader(io.StringIO((tmp_path / "r" / "scores.csv").read_text(encoding="utf-8"))))
    assert [r["evaluation_gen_id"] for r in written] == ids  # by replicate within the one essay and rubric
