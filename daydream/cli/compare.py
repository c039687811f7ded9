"""``daydream compare``: paired comparisons of a cohort's design levels, printed or as JSON lines.

The numbers come from ``daydream.read.compare`` (the same function the report uses); this module only
parses options and prints; ``daydream.cli`` adds the command to the group.
"""

from __future__ import annotations

from typing import Any

import click

from daydream.cli.common import db_option, echo_json_line, echo_table, json_option, open_ledger

# Copies of daydream.read.compare's constants, so that `daydream --help` need not import it (and the
# ledger behind it); tests/test_cli_style.py checks that they agree.
AXIS_NAMES = ("combo", "draft_template", "draft_llm", "draft_replicate", "essay_template", "essay_llm",
              "essay_replicate", "evaluation_template", "evaluation_llm", "evaluation_replicate")
DEFAULT_SEED = 20261130
DEFAULT_RESAMPLES = 2000


def _num(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f"[{low:.3f}, {high:.3f}]"


def _split(values: tuple[str, ...]) -> list[str]:
    """``--within a --within b`` and ``--within a,b`` both name two axes."""
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


@click.command("compare")
@db_option
@click.argument("cohort")
@click.option("--by", "by", required=True, metavar="FACTOR",
              help=f"Design axis whose levels are compared: {', '.join(AXIS_NAMES)} "
                   "(also draft_model, essay_model, rubric, evaluator).")
@click.option("--within", "within", multiple=True, metavar="FACTOR",
              help="One set of comparisons per level of this axis (repeat, or comma-separate, for several).")
@click.option("--rubric", default=None, metavar="R",
              help="Only this rubric's scores (by default rubrics are averaged within each unit).")
@json_option("JSON lines, one object per comparison (factor, a, b, within, n_pairs, n_unmatched, mean_a, "
             "mean_b, diff, ci_low, ci_high, wins, ties, losses, p, p_holm, n_units, p_method)")
@click.option("--seed", type=click.IntRange(min=0), default=DEFAULT_SEED, show_default=True, metavar="N",
              help="Seed of the bootstrap and permutation draws (same seed, same numbers).")
@click.option("--resamples", type=click.IntRange(min=1), default=DEFAULT_RESAMPLES, show_default=True,
              metavar="N", help="Bootstrap resamples (and random sign patterns for the p-value).")
def compare_cmd(db_path: str, cohort: str, by: str, within: tuple[str, ...], rubric: str | None,
                as_json: bool, seed: int, resamples: int) -> None:
    """Compare every pair of levels A, B of a factor: does A score higher than B, and how sure are we?

    Scores are paired when equal on every other design axis (combo, the other templates and models,
    replicates, rubric, evaluator); unpaired scores are counted as unmatched, never used. A draft
    with everything written from it (an essay when there are no drafts) is one independent unit:
    pairs are averaged within units, the 95% interval is a cluster bootstrap over units, and the
    p-value a sign-flip permutation test on the unit differences, Holm-adjusted over the comparisons
    shown. Reads the ledger only.
    """
    from daydream.read.compare import EXACT_SIGN_FLIP_UNITS, compare_cohort, few_units_note

    ledger = open_ledger(db_path, readonly=True)
    result = compare_cohort(ledger, cohort, by, _split(within), rubric=rubric, seed=seed, resamples=resamples)
    if as_json:
        for c in result.comparisons:
            echo_json_line(c.as_json())
        return
    scope = f", rubric {rubric}" if rubric else ""
    click.echo(f"cohort {cohort}: {result.factor}, A − B{scope} "
               f"({resamples:,} resamples, seed {seed})")
    header = [*result.within, "a", "b", "pairs", "units", "unmatched", "mean_a", "mean_b", "diff", "95% CI",
              "W/T/L", "p", "p_holm"]
    rows: list[list[Any]] = []
    for c in result.comparisons:
        rows.append([*((c.within or {}).get(w) if (c.within or {}).get(w) is not None else "(none)"
                       for w in result.within),
                     c.a, c.b, c.n_pairs, c.n_units, c.n_unmatched, _num(c.mean_a), _num(c.mean_b),
                     _num(c.diff), _interval(c.ci_low, c.ci_high), f"{c.wins}/{c.ties}/{c.losses}",
                     _num(c.p, 4), _num(c.p_holm, 4)])
    echo_table(header, rows)
    click.echo("")
    click.echo("unit: a draft with everything written from it (an essay when there is no draft); pairs are")
    click.echo("averaged within units. 95% CI: cluster bootstrap over units. p: sign-flip permutation test")
    n = len(result.comparisons)
    click.echo(f"on unit differences; p_holm: Holm-adjusted over the {n} comparison{'s' if n != 1 else ''} shown.")
    few = few_units_note(result.comparisons)
    if few:
        click.echo(f"note: {few.strip()}")
    if result.scales:
        click.echo(f"note: {result.scales}.")
    if any(c.n_units and c.n_units > EXACT_SIGN_FLIP_UNITS for c in result.comparisons):
        click.echo(f"p with more than {EXACT_SIGN_FLIP_UNITS} units is estimated from {resamples:,} random "
                   f"sign patterns (smallest possible {1 / (resamples + 1):.2g}).")
    unmatched = sum(c.n_unmatched for c in result.comparisons)
    if unmatched:
        click.echo(f"{unmatched:,} scores had no partner on the other axes and were left out (column unmatched).")
    for line in result.skipped:
        click.echo(f"skipped {line}")


# Added to the ``daydream`` group by daydream.cli.
COMMANDS = (compare_cmd,)
