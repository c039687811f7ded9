"""Browsing a ledger in Datasette: read-only, on loopback, with every view titled and explained.

``build_datasette`` returns a configured ``Datasette`` for one ledger file: opened read-only (the
file is never written through it), no CORS, metadata from ``daydream.read.views`` describing every view
and column, canned queries for the questions people ask most, the projection and bookkeeping
tables hidden (one click away), and our plugin (``daydream.read.browse_plugin``) with the templates and
stylesheet under ``daydream/read/datasette/``: a home page per ledger, a page per generation, rows that
link to each other, model text rendered as escaped Markdown. ``serve`` runs it.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasette.app import Datasette
from datasette.database import Database
from datasette.plugins import pm

from daydream.read import browse_plugin, views
from daydream.ledger import db
from daydream.ledger.db import check_path
from daydream.errors import UsageError
from daydream.ledger.store import Ledger

DATABASE = "ledger"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
FILES = Path(__file__).resolve().parent / "datasette"

TABLES: dict[str, tuple[str, str]] = {
    "events": ("Events (the ledger)", "Every fact daydream recorded, in order, hash-chained. Append-only."),
    "texts": ("Texts", "Prompts, responses, parsed outputs, templates and specs, stored once by sha256."),
    "gen_state": ("Generation state (projection)",
                  "Current state of each generation, kept by triggers from the events; prefer the "
                  "generations view, which resolves texts."),
    "cohort_members": ("Cohort members (projection)", "Which generations belong to which cohort."),
    "combos": ("Concept combinations", "Each combination of concepts (JSON array of ids), level and k."),
    "cohort_totals": ("Cohort totals (projection)",
                      "Running sums per cohort, stage and model behind cohort_progress and spend."),
    "cohort_essay_scores": ("Cohort essay scores (projection)",
                            "Running score sums per cohort and essay behind essay_rankings, with the "
                            "essay's lineage."),
    "cohort_scales": ("Cohort scales (projection)",
                      "Scored evaluations per cohort and rubric scale: whether a cohort's rubrics mix "
                      "scales (then essay_rankings ranks on score_norm)."),
    "chain_head": ("Chain head", "The seq and hash of the last event, moved by every append; "
                                 "daydream verify checks that the chain ends there."),
    "open_plans": ("Open plans (projection)",
                   "Plans appended in several transactions and not completed yet (a dead one stays): the "
                   "rows they staged (plan_id in gen_state and cohort_members) are shown nowhere."),
    "plan_totals": ("Open plans' new generations (projection)",
                    "Per open plan, cohort, stage and model: the new generations it staged, added to "
                    "cohort_totals when it completes."),
    "plan_links": ("Open plans' links (projection)",
                   "The generations an open plan links, counted in their cohort when it completes."),
    "workers": ("Workers (runs)", "One row per daydream run: host, process, last heartbeat and grace. "
                "Operational state, not part of the hash chain: a claim is live while its worker's "
                "heartbeat is recent."),
}

CANNED_QUERIES: dict[str, dict[str, Any]] = {
    "top_essays": {
        "title": "Top essays of a cohort",
        "description": "The cohort's best essays by mean score, with their lineage and full text.",
        "sql": """SELECT r.rank, r.essay_gen_id, r.mean, r.n, r.draft_template, r.draft_model,
       r.essay_template, r.essay_model, r.combo_id, g.parsed AS essay
FROM essay_rankings r JOIN generations g ON g.gen_id = r.essay_gen_id
WHERE r.cohort_id = :cohort
ORDER BY r.rank, r.essay_gen_id
LIMIT 50""",
    },
    "essay_with_evaluations": {
        "title": "One essay with all its evaluations",
        "description": "The essay first, then every evaluation of it: rubric, evaluator, score and answer.",
        "sql": """SELECT gen_id, stage, template_id AS template_or_rubric, model_id AS model_or_evaluator,
       replicate, status, score, error,
       CASE stage WHEN 'essay' THEN COALESCE(parsed, response) ELSE response END AS text
FROM generations
WHERE gen_id = :essay OR (parent_gen_id = :essay AND stage = 'evaluation')
ORDER BY stage = 'evaluation', template_id, model_id, replicate, gen_id""",
    },
    "spend_by_model": {
        "title": "Spend by model",
        "description": "Calls, tokens and money per model and stage over the whole ledger (each "
                       "generation counted once, however many cohorts reuse it). unpriced: "
                       "generations whose calls have no recorded price (e.g. imported), left out of "
                       "cost_usd.",
        "sql": """SELECT model_id, stage, COUNT(*) AS generations, SUM(calls) AS calls,
       SUM(failed_calls) AS failed_calls, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,
       COALESCE(SUM(completion_tokens), 0) AS completion_tokens,
       ROUND(COALESCE(SUM(cost_usd), 0), 6) AS cost_usd,
       SUM(calls > failed_calls AND cost_usd IS NULL) AS unpriced
FROM gen_state
GROUP BY model_id, stage
ORDER BY cost_usd DESC, model_id, stage""",
    },
    "failures": {
        "title": "Failures",
        "description": "Generations whose current attempt failed, newest first, with the reason. "
                       "Leave cohort empty for every cohort.",
        "sql": """SELECT gen_id, stage, kind, reason, template_id, model_id, attempt, failed_calls,
       blocked_children, failed_seq
FROM failures
WHERE :cohort = '' OR gen_id IN (SELECT gen_id FROM cohort_members WHERE cohort_id = :cohort)
ORDER BY failed_seq DESC""",
    },
    "pending_work": {
        "title": "Pending work",
        "description": "Generations not yet completed or failed (blocked ones wait on a failed "
                       "parent). Leave cohort empty for every cohort.",
        "sql": """SELECT gen_id, stage, status, blocked, template_id, model_id, replicate, parent_gen_id,
       origin_cohort_id
FROM generations
WHERE status IN ('planned', 'running')
  AND (:cohort = '' OR gen_id IN (SELECT gen_id FROM cohort_members WHERE cohort_id = :cohort))
ORDER BY planned_seq""",
    },
}


# Listed only under "hidden tables": projections a view already shows in readable form ...
HIDDEN = ("gen_state", "cohort_members", "cohort_totals", "cohort_essay_scores", "cohort_scales", "chain_head",
          "workers", "open_plans", "plan_totals", "plan_links")
# ... and plumbing, not data: the schema revision, and the always-empty view (with its list of
# event types) through which each append applies its events to the projections (migration 0004).
PLUMBING = ("alembic_version", "projection_feed", "projected_types")


def metadata() -> dict[str, Any]:
    """Datasette metadata: titles and descriptions of every view, column and table; canned queries."""
    tables: dict[str, Any] = {}
    for name, doc in views.VIEWS.items():
        tables[name] = {"title": doc.title, "description": doc.description, "columns": dict(doc.columns)}
    for name, (title, description) in TABLES.items():
        tables[name] = {"title": title, "description": description}
    for name in HIDDEN:
        tables[name]["hidden"] = True
    for name in PLUMBING:
        tables[name] = {"hidden": True}
    return {
        "title": "daydream ledger",
        "description": "Structured LLM experiments recorded as events. The ledger's page starts with "
                       "its cohorts: progress, rankings, failures and spend.",
        "databases": {DATABASE: {"title": "daydream ledger", "tables": tables, "queries": CANNED_QUERIES}},
    }


SETTINGS = {
    "truncate_cells_html": 0,  # essays are read in full
    "default_page_size": 50,
    "sql_time_limit_ms": 5000,
    "allow_download": False,
    "suggest_facets": False,  # facet suggestions scan big views on every page load
}


def build_datasette(db_path: str | os.PathLike[str]) -> Datasette:
    """A read-only Datasette on the ledger at ``db_path`` with daydream's metadata and plugin."""
    path = check_path(db_path, create=False)
    # A daydream ledger, not just any SQLite file; the plugin reads it through the same query
    # functions as 'daydream status' and 'daydream show'.
    ledger = Ledger(Path(path), db.open_backend(path, readonly=True))
    if not pm.is_registered(browse_plugin):
        pm.register(browse_plugin, name="daydream_browse")
    # Datasette prints every error's exception with its locals through rich whenever rich can be
    # imported (it can: ``daydream run`` draws its progress with it), a screenful per refused query.
    # A refused query is no crash: the terminal keeps the URL and real errors (500s still print).
    # (Imported here, after datasette.app: imported first, it would register itself half-built.)
    from datasette import handle_exception as datasette_errors

    datasette_errors.rich = None
    ds = Datasette(metadata=metadata(), settings=SETTINGS, cors=False, template_dir=str(FILES / "templates"),
                   static_mounts=[(browse_plugin.STATIC, str(FILES / "static"))])
    # Datasette reads a mutable file through mode=ro connections and we never ask it to write. In a
    # read-only folder SQLite cannot make the log's shared-memory file that mode=ro needs for a
    # ledger in WAL mode; our own reader then opens it immutable (nothing can be writing there), and
    # Datasette must too.
    ledger.backend.query("SELECT 1")
    immutable = "immutable=1" in (ledger.backend.readonly_options or "")
    ds.add_database(Database(ds, path=str(Path(path).resolve()), is_mutable=not immutable), name=DATABASE)
    setattr(ds, browse_plugin.FLAG, browse_plugin.Browsed(DATABASE, ledger))
    return ds


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a one-line ``UsageError`` (port in use, bad host).

    Port 0 asks the system for a free port (``sock.getsockname()[1]`` says which).
    """
    if not 0 <= port < 65536:
        raise UsageError(f"--port must be between 0 (any free port) and 65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise UsageError(f"--host {host!r} is not an address this machine can listen on: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    # The same option uvicorn sets, so a just-closed earlier browse does not block the port.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        reason = "is already in use; stop what holds it or pick another --port" \
            if exc.errno == errno.EADDRINUSE else f"cannot be opened: {exc.strerror}"
        raise UsageError(f"port {port} on {host} {reason}") from None
    return sock


def serve(db_path: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8001,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Run Datasette on ``host:port`` until interrupted; ``on_ready`` gets the URL once it listens.

    The socket is bound before anything is announced, so a port in use is one clean error rather
    than a greeting followed by the web server's own complaint. Port 0 takes a free port; the URL
    names the one taken.
    """
    import uvicorn

    ds = build_datasette(db_path)
    sock = listen(host, port)
    port = sock.getsockname()[1]
    if on_ready is not None:
        shown = f"[{host}]" if ":" in host else host
        on_ready(f"http://{shown}:{port}/{DATABASE}")
    server = uvicorn.Server(uvicorn.Config(ds.app(), host=host, port=port, log_level="warning"))
    server.run(sockets=[sock])
