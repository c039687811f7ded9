"""Read-side commands: ``status``, ``show``, ``report`` and ``browse``.

They only read the ledger through the SQL views (``daydream.read.views``), except ``report``, which
also records one ``ReportPublished`` event (when the ledger is writable). ``daydream.cli`` adds the
commands to the group. ``status`` imports nothing beyond the ledger and its views.
"""

from __future__ import annotations

import json
from typing import Any

import click

from daydream.cli.common import db_option, echo_json, echo_table, json_option, open_ledger
from daydream.errors import LedgerReadOnly, NotFound

STATUS_COLUMNS = ["stage", "planned", "completed", "failed", "pending", "running", "blocked", "calls",
                  "tokens", "cost_usd"]
# In --json only; the table notes them next to the calls and the cost.
JSON_EXTRA = ["unpriced", "lost_calls", "estimated_cost_usd"]
# The texts `show` prints, and the gen_state hash column behind each.
TEXT_COLUMNS = {"prompt": "prompt", "response": "raw", "parsed": "parsed"}


def cost_cell(cost: float | None, unpriced: int, estimated: float | None = None) -> str:
    """Known spend, plus how many generations made calls with no recorded price (not free), plus
    the estimate for calls whose outcome is unknown (lost in a crash)."""
    text = f"{cost or 0:.4f}"
    if estimated:
        text += f" (+~{estimated:.4f} est.)"
    return f"{text} ({unpriced} unpriced)" if unpriced else text


def calls_cell(calls: int | None, lost: int | None) -> str:
    """Calls with a recorded outcome, plus those sent and never answered (outcome unknown)."""
    return f"{calls or 0} (+{lost} lost)" if lost else str(calls or 0)


@click.command()
@db_option
@click.argument("cohort", required=False)
@json_option("one JSON document: {cohorts: {COHORT: {STAGE: {planned, completed, failed, pending, running, "
             "blocked, calls, tokens, cost_usd, unpriced, lost_calls, estimated_cost_usd}}}}")
def status(db_path: str, cohort: str | None, as_json: bool) -> None:
    """Progress per stage (planned / completed / failed / pending), calls, tokens and spend.

    With COHORT, only that cohort (exit 1 if it has no generations); without, every cohort.
    """
    from daydream.read import views

    ledger = open_ledger(db_path, readonly=True)
    rows = views.cohort_status(ledger, cohort)
    if as_json:
        cohorts: dict[str, Any] = {}
        for r in rows:
            cohorts.setdefault(r["cohort_id"], {})[r["stage"]] = {k: r[k] for k in STATUS_COLUMNS[1:] + JSON_EXTRA}
        echo_json({"cohorts": cohorts})
        return
    if not rows:
        click.echo("no cohorts in this ledger yet (plan one with 'daydream cohort plan SPEC')")
        return
    current = None
    for r in rows:
        if r["cohort_id"] != current:
            if current is not None:
                click.echo("")
            current = r["cohort_id"]
            group = [x for x in rows if x["cohort_id"] == current]
            click.echo(f"cohort {current}")
            table = [[x[k] for k in STATUS_COLUMNS[:-3]] + [calls_cell(x["calls"], x["lost_calls"]), x["tokens"],
                      cost_cell(x["cost_usd"], x["unpriced"], x["estimated_cost_usd"])] for x in group]
            total: list[Any] = ["total"] + [sum(x[k] or 0 for x in group) for k in STATUS_COLUMNS[1:-3]]
            total += [calls_cell(sum(x["calls"] or 0 for x in group), sum(x["lost_calls"] for x in group)),
                      sum(x["tokens"] or 0 for x in group),
                      cost_cell(sum(x["cost_usd"] or 0 for x in group), sum(x["unpriced"] for x in group),
                                sum(x["estimated_cost_usd"] or 0 for x in group))]
            echo_table(STATUS_COLUMNS, table + [total])


def _gen_line(g: dict[str, Any], marker: str = "") -> str:
    bits = [g["stage"], g["gen_id"], g["template_id"] or "-", g["model_id"] or "-", f"r{g['replicate']}",
            g["status"]]
    if g["blocked"]:
        bits.append("(blocked)")
    if g["score"] is not None:
        bits.append(f"score {g['score']:g}")
    return "  ".join(str(b) for b in bits) + marker


@click.command()
@db_option
@click.argument("gen_id")
@json_option("one JSON document: generation, combo, ancestors, children, cohorts, events, missing_texts")
@click.option("--no-text", is_flag=True, help="Leave out the prompt and response texts.")
def show(db_path: str, gen_id: str, as_json: bool, no_text: bool) -> None:
    """One generation's lineage, texts, scores and the events behind it.

    Shows the concept combination, the chain draft → essay → evaluations with templates and
    models, the prompt and response, and every event of the generation's stream. An unknown
    GEN_ID exits 1.
    """
    from daydream.ledger.events import LLM_CALL_COMPLETED, LLM_CALL_LOST
    from daydream.read import views

    ledger = open_ledger(db_path, readonly=True)
    found = views.lineage(ledger, gen_id)
    g = found["generation"]
    # A hash whose text is gone (deleted behind daydream's back) is said, never silently skipped.
    missing = {label: g[f"{column}_hash"] for label, column in TEXT_COLUMNS.items()
               if g[f"{column}_hash"] and g[label] is None}
    if as_json:
        echo_json({**found, "missing_texts": missing})
        return
    combo = found["combo"]
    if combo:
        names = ", ".join(f"{c['name']} ({c['id']})" for c in combo["concepts"]) or "(concepts unknown)"
        click.echo(f"combo {combo['combo_id']}  level {combo['level'] or '-'}: {names}")
    depth = 0
    for a in found["ancestors"]:
        click.echo("  " * depth + _gen_line(a))
        depth += 1
    click.echo("  " * depth + _gen_line(g, "   ◀"))
    for c in found["children"]:
        click.echo("  " * (depth + 1) + _gen_line(c))
    click.echo("")
    details = [
        ("cohorts", ", ".join(found["cohorts"]) or "-"),
        ("attempt", g["attempt"]),
        ("template", f"{g['template_id']} ({(g['template_hash'] or '-')[:16]})"),
        ("model", f"{g['model_id'] or '-'} → {g['resolved_model'] or '-'}"),
        ("tokens", f"{g['prompt_tokens'] or 0} prompt + {g['completion_tokens'] or 0} completion"),
        ("cost_usd", f"{g['cost_usd']:.6f}" if g["cost_usd"] is not None
         else "unknown (no price recorded)" if (g["calls"] or 0) > (g["failed_calls"] or 0) else "-"),
        ("latency_s", g["latency_s"] if g["latency_s"] is not None else "-"),
        ("calls", f"{g['calls'] or 0} ({g['failed_calls'] or 0} failed)"),
    ]
    if g["error"]:
        details.append(("error", g["error"]))
    cut = [e["payload"] for e in found["events"] if e["type"] == LLM_CALL_COMPLETED and e["payload"].get("truncated")]
    if cut:
        details.append(("truncated", f"the answer was cut at {cut[-1]['max_response_bytes']:,} of "
                                     f"{cut[-1]['original_bytes']:,} bytes (--max-response-bytes)"))
    lost = [e["payload"] for e in found["events"] if e["type"] == LLM_CALL_LOST]
    if lost:
        estimate = sum(p.get("estimated_cost_usd") or 0 for p in lost)
        details.append(("lost", f"{len(lost)} request(s) sent, outcome unknown (est. ${estimate:.6f})"))
    for key, value in details:
        click.echo(f"{key:>10}: {value}")
    if not no_text:
        for label in TEXT_COLUMNS:
            if label in missing:
                click.echo(f"\n--- {label} ---\n(missing: text {missing[label][:16]}… is not in the ledger; "
                           "run 'daydream verify')")
            elif g[label] is not None and not (label == "parsed" and g["parsed"] == g["response"]):
                click.echo(f"\n--- {label} ---\n{g[label].rstrip()}")
    if missing:
        click.echo(f"warning: {len(missing)} text(s) of {gen_id} missing from the ledger "
                   f"({', '.join(missing)}): run 'daydream verify'", err=True)
    click.echo("\n--- events ---")
    echo_table(["seq", "v", "type", "payload"],
               [[e["seq"], e["version"], e["type"], json.dumps(e["payload"], ensure_ascii=False, sort_keys=True)]
                for e in found["events"]])


def check_reportable(progress: list[dict[str, Any]], cohort: str) -> str | None:
    """NotFound (exit 1) when nothing in the cohort is scored; else the partial-report note, if any."""
    from daydream.read.report import partial_note

    total = sum(p["planned"] or 0 for p in progress)
    done = sum(p["completed"] or 0 for p in progress)
    scored = sum(p["completed"] or 0 for p in progress if p["stage"] == "evaluation")
    evaluations = sum(p["planned"] or 0 for p in progress if p["stage"] == "evaluation")
    if scored == 0:
        what = ("it plans no evaluations, so there is nothing to rank" if evaluations == 0 else
                f"0 of {evaluations:,} evaluations scored; run 'daydream run --cohort {cohort}' first")
        raise NotFound(f"cohort {cohort!r}: nothing scored: {done:,} of {total:,} generations done ({what}); "
                       "no report written")
    return partial_note(progress)


@click.command()
@db_option
@click.argument("cohort")
@click.option("--out", "out_dir", metavar="DIR", default=None,
              help="Folder to write into (default: reports/COHORT).")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True, metavar="N",
              help="How many of the best essays to include in full (and as results/<gen_id>.md).")
@click.option("--seed", type=click.IntRange(min=0), default=None, metavar="N",
              help="Seed of the bootstrap draws (default: the one daydream compare uses).")
@click.option("--resamples", type=click.IntRange(min=1), default=None, metavar="N",
              help="Bootstrap resamples (default: as daydream compare, 2000).")
@json_option("one JSON document: cohort_id, out_dir, files (name → sha256), seq of the ReportPublished event "
             "(null when the ledger is read-only), partial (the note of a partly finished cohort, or null)")
def report(db_path: str, cohort: str, out_dir: str | None, top: int, seed: int | None,
           resamples: int | None, as_json: bool) -> None:
    """Write the cohort's report (CSV tables, report.md, report.html, top essays) and record it.

    Files: scores.csv, pivot.csv, rankings.csv, summary.csv, comparisons.csv, template_model.csv,
    reliability.csv, judges.csv, self_preference.csv, report.md, report.html and
    results/<gen_id>.md. The comparisons are those of 'daydream compare COHORT --by FACTOR' for
    every template and model factor. Running it again on the same ledger gives identical files.

    A cohort with nothing scored yet exits 1 (saying how many generations are done) and writes
    nothing; a partly finished cohort's report says so at its top.
    """
    from daydream.read import views
    from daydream.read.compare import DEFAULT_RESAMPLES, DEFAULT_SEED
    from daydream.read.report import default_out_dir, publish_report

    try:
        ledger = open_ledger(db_path)
    except LedgerReadOnly:
        ledger = open_ledger(db_path, readonly=True)  # a report is worth having unrecorded too
    partial = check_reportable(views.cohort_status(ledger, cohort), cohort)
    published = publish_report(ledger, cohort, out_dir or default_out_dir(cohort), top=top,
                               seed=DEFAULT_SEED if seed is None else seed,
                               resamples=DEFAULT_RESAMPLES if resamples is None else resamples)
    if as_json:
        echo_json({"cohort_id": cohort, "out_dir": str(published.out_dir), "files": published.files,
                   "seq": published.seq, "partial": partial})
        return
    if partial:
        click.echo(f"note: {partial}")
    recorded = (f"ReportPublished seq {published.seq}" if published.seq is not None
                else "not recorded: the ledger is read-only")
    click.echo(f"report for cohort {cohort} written to {published.out_dir}/ "
               f"({len(published.files)} files, {recorded}):")
    for name in published.files:
        click.echo(f"  {published.out_dir / name}")


@click.command()
@db_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback by default; anything else exposes the ledger).")
@click.option("-p", "--port", type=click.IntRange(0, 65535), default=8001, show_default=True,
              help="Port to listen on; 0 takes a free port (the URL printed names it).")
@click.option("--open", "open_browser", is_flag=True,
              help="Open the home page in a web browser once the server listens ($BROWSER chooses which).")
def browse(db_path: str, host: str, port: int, open_browser: bool) -> None:
    """Browse the ledger in Datasette (read-only), starting from its home page.

    Cohorts with progress and links, a page per generation with its lineage, texts and events,
    essay rankings with titles, every view and canned query; model text is shown, never run.
    Prints one line with the URL once it listens (a server: no --json); Ctrl-C stops it.
    """
    from daydream.read.browse import LOOPBACK, serve

    if host not in LOOPBACK:
        click.echo(f"warning: listening on {host}: anyone who can reach it can read the ledger", err=True)

    def ready(url: str) -> None:
        click.echo(f"Datasette on {url} (read-only); Ctrl-C to stop")
        if open_browser:
            import webbrowser

            if not webbrowser.open(url):
                click.echo("warning: --open: no web browser could be started; open the URL yourself", err=True)

    if db_path.startswith(("postgresql://", "postgres://")):  # Datasette reads SQLite: serve a fresh copy
        from daydream.transfer.copy import refresh_snapshot

        snapshot, copied = refresh_snapshot(db_path)
        click.echo(f"serving a snapshot of {copied.src} taken at seq {copied.dest_seq:,} (a SQLite copy made by "
                   f"'daydream copy': {snapshot}); restart browse to refresh it")
        db_path = str(snapshot)
    serve(db_path, host=host, port=port, on_ready=ready)


# Added to the ``daydream`` group by daydream.cli.
COMMANDS = (status, show, report, browse)
