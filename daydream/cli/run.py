"""CLI commands that execute work: ``daydream run``, ``daydream rerun`` and ``daydream demo``,
and ``daydream failures``, which lists what a run left failed and what to do about it.

Part of the CLI layer: the work itself is done by ``daydream.run.runner``, checked beforehand by
``daydream.run.preflight`` and estimated by ``daydream.run.estimate``; this module draws progress,
prints estimates, summaries and failures, and turns outcomes into exit codes: 0 = all done,
1 = error (a model stopped, a failed check, the ledger refused a write …), 2 = usage,
3 = finished with failures (or work left undone), 130 = interrupted.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from daydream.cli.common import (EXIT_FAILURES, EXIT_INTERRUPTED, db_option, echo_json, echo_table, init_ledger,
                                 json_option, note, open_ledger)
from daydream.errors import UsageError

if TYPE_CHECKING:
    from daydream.ledger.store import Ledger
    from daydream.read.failures import FailureGroup
    from daydream.run.estimate import Estimate
    from daydream.run.preflight import Preflight
    from daydream.run.runner import RunOptions, RunStats

DEMO_COHORT = "demo"
EXIT_CODES_HELP = ("Exit status: 0 all done; 1 error (a failed check before the run, an unknown cohort, a "
                   "model stopped: bad key, URL or an endpoint that failed every call; the ledger refused a "
                   "write); 2 usage error; 3 finished, but generations of this run failed or were left undone "
                   "(see the failure summary and 'daydream failures'); 130 interrupted.")


def _print_summary(stats: RunStats, counts: dict[str, dict[str, int]], as_json: bool) -> None:
    if as_json:
        echo_json({**stats.as_dict(), "ledger": counts})
        return
    rows = [[stage, c["total"], c["completed"], c["failed"], c["running"], c["ready"] + c["blocked"]]
            for stage, c in counts.items()]
    if rows:
        echo_table(["stage", "planned", "completed", "failed", "running", "pending"], rows)
    click.echo(f"this run: {stats.completed} completed ({stats.copied} copied), {stats.failed} failed, "
               f"{stats.calls} calls ({stats.failed_calls} failed), {stats.tokens:,} tokens, "
               f"${stats.spent_usd:.4f}, {time.monotonic() - stats.started:.1f}s")
    if stats.taken_over:
        click.echo(f"took over {stats.taken_over} claim(s) of stopped workers")
    if stats.lost_calls:
        unknown = f", {stats.lost_unestimated} without an estimate (no price or nothing to go by)" \
            if stats.lost_unestimated else ""
        click.echo(f"{stats.lost_calls} request(s) sent and never answered (outcome unknown): "
                   f"~${stats.lost_estimated_usd:.4f} estimated{unknown}; counted apart in status and spend")
    if stats.estimated_calls:
        click.echo(f"{stats.estimated_calls} answer(s) reported no usage: ${stats.estimated_usd:.6f} of the spend is "
                   "estimated from the texts' lengths (marked cost_estimated in the ledger)")
    if stats.truncated:
        click.echo(f"{stats.truncated} answer(s) over --max-response-bytes were cut and marked truncated")
    if stats.waited_s >= 1:
        click.echo(f"waited {stats.waited_s:.0f} s for claims held by other workers")
    if stats.stopped_reason:
        click.echo(f"stopped: {stats.stopped_reason}")


def _echo_groups(groups: list[FailureGroup], cohort: str | None) -> None:
    """One block per reason, stage and model: count, example and the next step (on stderr)."""
    from daydream.read.failures import next_step

    for g in groups:
        example = " ".join(g.example_reason.split())
        example = example if len(example) <= 150 else example[:149] + "…"
        click.echo(f"  {g.count} x {g.error_class} at {g.stage} on {g.model_id or '-'}, "
                   f"e.g. {g.example_gen_id}: {example}", err=True)
        click.echo(f"      next: {next_step(g, cohort)}", err=True)


class ReplaySource(click.Path):
    """A ledger to replay from: an existing file, or a PostgreSQL URL (checked when it is opened)."""

    name = "ledger"

    def __init__(self) -> None:
        super().__init__(exists=True, dir_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from daydream.ledger.pg_backend import is_postgres_url

        if isinstance(value, str) and is_postgres_url(value):
            return value
        return super().convert(value, param, ctx)


def _print_failures(stats: RunStats, cohort: str | None, replay_from: str | None) -> None:
    """What went wrong in this run, grouped by reason, with what to do (stderr)."""
    groups = stats.failure_groups()
    if groups:
        click.echo(f"{stats.failed} generation(s) of this run failed:", err=True)
        _echo_groups(groups, cohort)
    for model_id, message in stats.fatal_models.items():
        click.echo(f"error: model {model_id}: {message}; its remaining work was left pending "
                   "(fix the key, base URL or endpoint, then run again)", err=True)
    if stats.replay_misses:
        click.echo(f"{stats.replay_misses} generation(s) have no recorded answer in {replay_from} "
                   f"(e.g. {stats.replay_miss_example}) and were left pending: run without --replay-from "
                   "to call their models", err=True)


def _exit_code(stats: RunStats) -> int:
    if stats.stopped_reason and stats.stopped_reason.startswith("interrupted"):
        return EXIT_INTERRUPTED
    if stats.fatal_models:
        return 1
    if stats.failures or stats.replay_misses or stats.budget_left_pending:  # failed, or left undone
        return EXIT_FAILURES
    return 0


def execute(ledger: Ledger, options: RunOptions, *, quiet: bool = False) -> RunStats:
    """Run with progress display and Ctrl-C handling: the first Ctrl-C stops claiming, requests in
    flight are recorded as lost (sent, outcome unknown) and their claims released, the writer
    finishes, and the command exits 130."""
    import asyncio
    import signal

    from daydream.run.runner import Runner

    from daydream.cli.progress import make_view

    view = make_view(quiet)
    # Notices (waiting for other workers, claims taken over) show even with --quiet.
    runner = Runner(ledger, options, view, notice=lambda line: click.echo(f"note: {line}", err=True))
    interrupted = {"hit": False}

    async def main() -> RunStats:
        loop = asyncio.get_running_loop()

        def on_sigint() -> None:
            if not interrupted["hit"]:
                interrupted["hit"] = True
                runner.request_stop("interrupted (Ctrl-C)")

        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
            loop.add_signal_handler(signal.SIGTERM, on_sigint)
        except (NotImplementedError, RuntimeError):
            pass
        return await runner.run()

    try:
        stats = asyncio.run(main())
    finally:
        if view is not None:
            view.close()  # a live display gives the terminal back even when the run fails
    if interrupted["hit"]:
        stats.stopped_reason = "interrupted (Ctrl-C)"
    return stats


def _run_options(**kw: Any) -> RunOptions:
    from daydream.run.runner import RunOptions

    options = RunOptions()
    for key, value in kw.items():
        if value is not None:
            setattr(options, key, value)
    return options


# ----------------------------------------------------------------------------- estimates and checks
def _tokens(value: float | None) -> str:
    return "?" if value is None else f"{round(value):,}"


def _usd(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}" if value >= 1 else f"{value:.4f}"


def _range(low: Any, high: Any, fmt: Any) -> str:
    return fmt(low) if fmt(low) == fmt(high) else f"{fmt(low)} – {fmt(high)}"


def print_estimate(estimate: Estimate) -> None:
    """The estimate as a table per stage and model (expected – worst case), its total and notes."""
    if not estimate.rows:
        click.echo("estimate: no LLM calls pending")
        return
    total = estimate.total
    click.echo(f"estimate of the {total['calls']:,} pending LLM calls (expected – worst case):")
    rows = [[r.stage, r.model_id or "-", f"{r.calls:,}", _range(r.prompt_tokens, r.prompt_tokens_max, _tokens),
             _range(r.output_tokens, r.output_tokens_max, _tokens),
             _range(r.cost_usd, r.cost_usd_max, _usd) if r.price == "known" else f"? (price {r.price})"]
            for r in estimate.rows]
    rows.append(["total", "", f"{total['calls']:,}", _range(total["prompt_tokens"], total["prompt_tokens_max"], _tokens),
                 _range(total["output_tokens"], total["output_tokens_max"], _tokens),
                 _range(total["cost_usd"], total["cost_usd_max"], _usd)])
    echo_table(["stage", "model", "calls", "prompt tokens", "output tokens", "cost USD"], rows)
    for line in estimate.notes:
        click.echo(f"  note: {line}")


def print_preflight(preflight: Preflight, *, dry_run: bool) -> None:
    """--verbose: every model's check; a dry run also says what a real run would refuse."""
    for check in preflight.models:
        note(f"preflight: {check.describe()}")
    if dry_run:
        if preflight.ok:
            click.echo(f"preflight: ok ({len(preflight.models)} model(s) checked: keys, base URLs, prices)")
        else:
            click.echo("preflight: a run would refuse to start: " + "; ".join(preflight.problems))


# ----------------------------------------------------------------------------- commands
@click.command("run", epilog=EXIT_CODES_HELP)
@db_option
@click.option("--cohort", metavar="ID", help="Only generations of this cohort (exit 1 if it has none).")
@click.option("--stage", metavar="S", help="Only this stage (draft, essay, evaluation).")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Process at most N generations.")
@click.option("--concurrency", type=click.IntRange(min=1, max=1000), default=16, show_default=True,
              metavar="N", help="Calls in flight at once, across models (per-model limits still apply).")
@click.option("--budget", type=click.FloatRange(min=0), metavar="USD",
              help="A hard ceiling on what this run's calls may cost: a call is sent only if the spend so "
                   "far, the worst case of the calls in flight and its own worst case (prompt tokens x "
                   "price_in + max_tokens x price_out) fit in USD; calls that do not fit stay pending.")
@click.option("--allow-unpriced", is_flag=True,
              help="With --budget: also run models whose price is unknown ('price: unknown'); only a cost "
                   "their provider reports counts against the budget.")
@click.option("--dry-run", is_flag=True,
              help="Show what is pending, the estimate and the preflight checks; call nothing, record nothing.")
@click.option("--replay-from", type=ReplaySource(), metavar="PATH|URL",
              help="Answer every call from another ledger's recorded calls (same prompt and model): a ledger "
                   "file or a postgresql:// URL.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), metavar="S",
              help="Seconds to wait for one LLM answer (default 300).")
@click.option("--max-tries", type=click.IntRange(min=1, max=20), metavar="N",
              help="Attempts per call on retryable errors (default 4).")
@click.option("--claim-grace", "claim_grace_s", type=click.FloatRange(min=0.5, max=3600), metavar="S",
              help="Seconds without a heartbeat after which this run's claims may be taken over by "
                   "another run, on any host (default 30, or $DAYDREAM_CLAIM_GRACE_S).")
@click.option("--max-response-bytes", type=click.IntRange(min=1024), metavar="N",
              help="Cut longer answers at N bytes and mark them truncated (default 1000000, or "
                   "$DAYDREAM_MAX_RESPONSE_BYTES).")
@json_option("one JSON document: the run's summary (stages, calls, tokens, spent_usd, completed, failed, "
             "stopped_reason …) and 'ledger', the counts per stage afterwards; with --dry-run, 'ledger', "
             "'estimate' (per stage and model) and 'preflight'")
@click.option("--quiet", is_flag=True, help="No progress display.")
def run_cmd(db_path: str, cohort: str | None, stage: str | None, limit: int | None, concurrency: int,
            budget: float | None, allow_unpriced: bool, dry_run: bool, replay_from: str | None,
            timeout_s: float | None, max_tries: int | None, claim_grace_s: float | None,
            max_response_bytes: int | None, as_json: bool, quiet: bool) -> None:
    """Run pending generations until nothing is left: render, call, parse, score.

    Before claiming anything, every model the pending work needs is checked: its key variable set,
    its base URL well formed, its price known or 'price: unknown' (refused with --budget unless
    --allow-unpriced). A failed check exits 1 naming the models and what to fix; nothing is
    recorded.

    --dry-run prints, per stage and model, the pending calls, expected and worst-case tokens and the
    cost range. Prompt tokens come from the rendered prompts (a child whose parent is not written
    yet counts the parent's text at the median length of finished ones of its template and model,
    else at its expected output; worst case at its max_tokens); output tokens are max_tokens at
    worst, and the median of completed calls of the same template and model where the ledger has
    some.

    Safe to interrupt and re-run: completed calls are never repeated, and a claim left by a crashed
    run is picked up again (at once on this machine, after the grace elsewhere). Several `daydream
    run` processes, on one or several hosts, may work on one ledger at once; a run with nothing left
    but claims held by other live runs waits for them and says so. Every request is recorded before
    it is sent, so one whose answer was lost in a crash is counted (outcome unknown, cost estimated).
    Ends with the failures of this run grouped by reason, with the next step for each.
    """
    from daydream.run.estimate import estimate_pending
    from daydream.run.pending import pending_counts
    from daydream.run.preflight import check_run, require_cohort, require_ready

    ledger = open_ledger(db_path)
    if cohort:
        require_cohort(ledger, cohort)
    _check_stage(stage)
    preflight = check_run(ledger, cohort=cohort, stage=stage, budget=budget, allow_unpriced=allow_unpriced,
                          replay=replay_from is not None)
    if dry_run:
        counts = pending_counts(ledger, cohort, stage)
        estimate = estimate_pending(ledger, cohort=cohort, stage=stage)
        if as_json:
            echo_json({"dry_run": True, "ledger": counts, "estimate": estimate.as_dict(),
                       "preflight": preflight.as_dict()})
            return
        rows = [[s, c["total"], c["completed"], c["failed"], c["ready"], c["blocked"]] for s, c in counts.items()]
        echo_table(["stage", "planned", "completed", "failed", "ready", "blocked"], rows)
        click.echo("")
        print_estimate(estimate)
        print_preflight(preflight, dry_run=True)
        click.echo("dry run: nothing called, nothing recorded")
        return
    print_preflight(preflight, dry_run=False)
    require_ready(preflight)
    options = _run_options(cohort=cohort, stage=stage, limit=limit, concurrency=concurrency, budget=budget,
                           dry_run=dry_run, replay_from=replay_from, timeout_s=timeout_s, max_tries=max_tries,
                           claim_grace_s=claim_grace_s, max_response_bytes=max_response_bytes)
    stats = execute(ledger, options, quiet=quiet or as_json)
    _print_summary(stats, pending_counts(ledger, cohort, stage), as_json)
    _print_failures(stats, cohort, replay_from)
    sys.exit(_exit_code(stats))


def _check_stage(stage: str | None) -> None:
    """A usage error (exit 2) for a --stage no plugin registers."""
    if stage is None:
        return
    from daydream import plugins

    known = plugins.stages().items
    if stage not in known:
        raise UsageError(f"--stage {stage!r} is not a stage (known: {', '.join(sorted(known))})")


@click.command("rerun")
@db_option
@click.argument("gen_ids", nargs=-1, metavar="[GEN_ID]...")
@click.option("--cohort", metavar="ID", help="Rerun generations of this cohort (exit 1 if it has none).")
@click.option("--stage", metavar="S", help="With --cohort: only this stage.")
@click.option("--failed", "failed_only", is_flag=True, help="With --cohort: only failed generations.")
@click.option("--reason", default="rerun requested", show_default=True, help="Why (recorded in the event).")
@json_option("one JSON document: retried (the gen_ids given a new attempt)")
def rerun_cmd(db_path: str, gen_ids: tuple[str, ...], cohort: str | None, stage: str | None,
              failed_only: bool, reason: str, as_json: bool) -> None:
    """Record a new attempt for generations; the next `daydream run` performs it.

    Give GEN_IDs, or --cohort (optionally with --stage and --failed). The old attempt stays in the
    ledger's history. An unknown GEN_ID or cohort exits 1 and records nothing.
    """
    from daydream.run.preflight import require_cohort
    from daydream.run.retry import retry_generations

    if bool(gen_ids) == bool(cohort):
        raise UsageError("give either GEN_ID arguments or --cohort, not both and not neither")
    if (stage or failed_only) and not cohort:
        raise UsageError("--stage and --failed go with --cohort")
    ledger = open_ledger(db_path)
    if cohort:
        require_cohort(ledger, cohort)
        _check_stage(stage)
    retried = retry_generations(ledger, list(gen_ids) or None, cohort=cohort, stage=stage,
                                failed_only=failed_only, reason=reason)
    if as_json:
        echo_json({"retried": retried})
        return
    click.echo(f"{len(retried)} generation(s) will be run again by 'daydream run'")


@click.command("demo")
@db_option
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="Essays to print.")
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.option("--compact", is_flag=True,
              help="Afterwards leave one self-contained file (no write-ahead log; vacuumed), as for "
                   "ledger.db.example.")
@json_option("one JSON document: cohort, planned (new generations per stage), run (the run's summary), ledger "
             "(counts per stage), top (the best essays: gen_id, mean, scores, templates, first line)")
def demo_cmd(db_path: str, top: int, quiet: bool, compact: bool, as_json: bool) -> None:
    """Plan the reference demo cohort on the offline model, run it, and print the top essays.

    Needs no network and no API key. Creates the ledger if it does not exist; running it again
    repeats nothing.
    """
    from daydream.design.catalog import repo_catalog_dir
    from daydream.design.planner import plan_cohort
    from daydream.run.pending import pending_counts
    from daydream.run.preflight import check_run, require_ready
    from daydream.run.runner import RunOptions

    spec = repo_catalog_dir().parent / "cohorts" / "demo.yaml"
    ledger, _before, _after = init_ledger(db_path)
    result = plan_cohort(ledger, spec, cohort_id=DEMO_COHORT)
    if not as_json:
        click.echo(f"planned cohort {DEMO_COHORT}: "
                   + ", ".join(f"{stage} {sum(c.values())}" for stage, c in result.counts.items()))
    preflight = check_run(ledger, cohort=DEMO_COHORT)
    print_preflight(preflight, dry_run=False)
    require_ready(preflight)
    stats = execute(ledger, RunOptions(cohort=DEMO_COHORT), quiet=quiet or as_json)
    counts = pending_counts(ledger, DEMO_COHORT)
    code = _exit_code(stats)
    best = [] if code else _top(ledger, DEMO_COHORT, top)
    if compact and not code:
        ledger.compact()
    if as_json:
        echo_json({"cohort": DEMO_COHORT, "planned": {s: c["new"] for s, c in result.counts.items()},
                   "run": stats.as_dict(), "ledger": counts, "top": best, "db": db_path})
    else:
        _print_summary(stats, counts, False)
    _print_failures(stats, DEMO_COHORT, None)
    if code:
        sys.exit(code)
    if as_json:
        return
    click.echo(f"\ntop {len(best)} essays of {DEMO_COHORT} (mean score over rubrics and evaluators):")
    for rank, essay in enumerate(best, 1):
        click.echo(f"{rank}. {essay['gen_id']}  mean {essay['mean']:.2f} over {essay['scores']} scores  "
                   f"(draft {essay['draft_template'] or '-'}, essay {essay['essay_template']})")
        click.echo(f"   {essay['first_line'][:110]}")
    click.echo(f"\nledger: {db_path}  (try: daydream status {DEMO_COHORT} --db {db_path}; "
               f"daydream report {DEMO_COHORT} --db {db_path}; daydream browse --db {db_path})")


def _top(ledger: Ledger, cohort: str, top: int) -> list[dict[str, Any]]:
    """The cohort's best essays by mean score, with the first line of each."""
    from daydream.read import views

    rows = views.query(ledger, """
        SELECT e.gen_id, e.template_id AS essay_template, d.template_id AS draft_template, AVG(v.score) AS mean,
               COUNT(v.score) AS scores, e.parsed_hash
        FROM cohort_members m
        JOIN gen_state e ON e.gen_id = m.gen_id AND e.stage = 'essay'
        LEFT JOIN gen_state d ON d.gen_id = e.parent_gen_id
        JOIN gen_state v ON v.parent_gen_id = e.gen_id AND v.stage = 'evaluation' AND v.status = 'completed'
        WHERE m.cohort_id = ?
        GROUP BY e.gen_id, d.template_id ORDER BY mean DESC, e.gen_id LIMIT ?""", (cohort, top))
    for row in rows:
        text = ledger.get_text(row.pop("parsed_hash")) or ""
        row["first_line"] = next((line.strip("# ").strip() for line in text.splitlines() if line.strip()), "")
    return rows


@click.command("failures")
@db_option
@click.option("--cohort", metavar="ID", help="Only generations of this cohort.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True, metavar="N",
              help="List at most N generations after the summary (0: all).")
@json_option("one JSON document: the groups (with next steps) and every failed generation")
def failures_cmd(db_path: str, cohort: str | None, limit: int, as_json: bool) -> None:
    """Generations whose current attempt failed, grouped by reason, with the next step.

    A group is one reason (ServerError, ParseFailed, ValidationFailed …) at one stage on one model:
    how many, one example, and what to do. Then one line per generation, newest failure first.
    Exit 0 whether or not there are failures (listing them is not an error).
    """
    from daydream.read.failures import group_rows, list_failures, next_step
    from daydream.run.preflight import require_cohort

    ledger = open_ledger(db_path, readonly=True)
    if cohort:
        require_cohort(ledger, cohort)
    rows = list_failures(ledger, cohort)
    groups = group_rows(rows)
    if as_json:
        echo_json({"cohort": cohort, "failed": len(rows),
                   "groups": [g.as_dict(cohort) for g in groups],
                   "failures": [{k: r[k] for k in ("gen_id", "stage", "model_id", "template_id", "attempt",
                                                   "error_class", "reason", "cohort_id", "blocked_children",
                                                   "failed_seq")} for r in rows]})
        return
    if not rows:
        click.echo(f"no failed generations{f' in cohort {cohort}' if cohort else ''}")
        return
    click.echo(f"{len(rows)} failed generation(s){f' in cohort {cohort}' if cohort else ''}, by reason:")
    for g in groups:
        example = " ".join(g.example_reason.split())
        click.echo(f"  {g.count} x {g.error_class} at {g.stage} on {g.model_id or '-'}, e.g. {g.example_gen_id}: "
                   f"{example if len(example) <= 150 else example[:149] + '…'}")
        click.echo(f"      next: {next_step(g, cohort)}")
    shown = rows if limit == 0 else rows[:limit]
    click.echo("")
    echo_table(["gen_id", "stage", "model", "attempt", "reason", "cohort", "blocked", "why"],
               [[r["gen_id"], r["stage"], r["model_id"] or "-", r["attempt"], r["error_class"],
                 r["cohort_id"] or "-", r["blocked_children"], " ".join((r["reason"] or "").split())]
                for r in shown])
    if len(shown) < len(rows):
        click.echo(f"… {len(rows) - len(shown)} more (--limit 0 lists all, --json gives every one)")


# Added to the ``daydream`` group by daydream.cli.
COMMANDS = (run_cmd, rerun_cmd, demo_cmd, failures_cmd)
