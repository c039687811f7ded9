"""A known model of scores for the comparison tests: template effects, draft and essay effects, judge noise.

``true_quality`` and ``judge_score`` are the model itself; ``simulate_scores`` draws a whole cohort
from it as ``daydream.read.compare.Score`` rows (what ``read_scores`` returns), and the loopback server of
``test_compare_pipeline`` answers real LLM calls with the same two functions, so the library-level
replications and the end-to-end runs are draws from one and the same model.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from daydream.read.compare import Score


@dataclass(frozen=True)
class Model:
    """score = base + effect[level] + draft effect + judge noise, clipped to 0–9."""

    effects: dict[str, float]
    base: float = 4.5
    sd_draft: float = 1.0  # what one draft (and everything written from it) shares
    sd_judge: float = 0.6  # independent noise of every single evaluation

    def true_difference(self, a: str, b: str) -> float:
        """The difference A − B the comparison estimates."""
        return self.effects[a] - self.effects[b]


def seeded(*parts: object) -> random.Random:
    """A generator seeded by ``parts`` (stable across runs and processes)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def true_quality(model: Model, level: str, *key: object) -> float:
    """The quality of the draft written at ``level``: its level's effect plus the draft's own effect."""
    return model.base + model.effects[level] + seeded("draft", *key).gauss(0.0, model.sd_draft)


def judge_score(model: Model, quality: float, *key: object) -> float:
    """One judge's score of a text of ``quality``: plus independent noise, clipped to 0–9, 3 decimals."""
    return round(min(9.0, max(0.0, quality + seeded("judge", *key).gauss(0.0, model.sd_judge))), 3)


def simulate_scores(model: Model, n_combos: int, *, rubrics: int = 2, evaluators: int = 1,
                    replicates: int = 2, seed: object = 0) -> list[Score]:
    """One cohort drawn from ``model``: every combo x factor level gets one draft (a draft-level
    factor, ``draft_template``), copied as its essay, and scored on every rubric by every evaluator
    ``replicates`` times."""
    rows = []
    for c in range(n_combos):
        for level in model.effects:
            draft = f"d_{c}_{level}"
            quality = true_quality(model, level, seed, c, level)
            for r in range(rubrics):
                for j in range(evaluators):
                    for k in range(1, replicates + 1):
                        score = judge_score(model, quality, seed, c, level, r, j, k)
                        rows.append(Score(f"v_{draft}_{r}_{j}_{k}", f"e_{draft}", draft, f"combo_{c}", level,
                                          "writer", 1, "copy-draft", None, 1, f"rubric_{r}", f"judge_{j}", k,
                                          score, 0, 1))
    return rows
