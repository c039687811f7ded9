"""The Datasette plugin behind ``daydream browse``: rows that link to each other, cells a person can
read, a home page for the ledger and a page per generation.

``render_cell`` turns generation ids into links to the generation's page, event numbers into links
to the event, 64-character hashes into a short prefix (the full value on hover) that links to the
text it names, JSON into a pretty-printed block folded behind a one-line summary, Markdown columns
into rendered (escaped) HTML, and each essay of ``essay_rankings`` into its title and concepts.
``extra_template_vars`` gives the ledger's database page its home-page data (cohorts with progress,
latest events) and ``/ledger/generations?gen_id=…`` the lineage, texts and events of that
generation, read with the same functions ``daydream status`` and ``daydream show`` use.

Datasette's plugin manager is global, so every hook does nothing unless the Datasette instance was
built by ``daydream.read.browse`` (which attaches a ``Browsed`` under ``FLAG``).

Why not the registry's plugins (checked against Datasette 0.65.5): datasette-render-markdown keeps a
model's own ``<img src>`` and ``<a href>`` tags as live HTML (it sanitises rather than escapes) and
renders with a second Markdown engine unlike report.html's; datasette-pretty-json pretty-prints but
cannot fold, and would format every JSON cell of every Datasette in the environment;
datasette-json-html turns any JSON cell shaped like a link or image, a model's answer included,
into HTML; datasette-template-sql would move into templates the queries that ``daydream.read.views``
already runs for ``status`` and ``show``.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from datasette import hookimpl
from markupsafe import Markup, escape

from daydream.contracts import PIPELINE_STAGES
from daydream.read import views
from daydream.read.datasette_markdown import (FOLDED_TABLES, MARKDOWN_COLUMNS, first_line, folded, markdown_cell,
                                         plain_text)
from daydream.errors import NotFound
from daydream.ledger.store import Ledger

FLAG = "_daydream_browse"
STATIC = "daydream-static"  # where browse.py mounts daydream/read/datasette/static

GEN_ID_COLUMNS = frozenset({"gen_id", "parent_gen_id", "essay_gen_id", "draft_gen_id", "evaluation_gen_id"})
SEQ_COLUMNS = frozenset({"seq", "causation_seq", "failed_seq", "planned_seq", "updated_seq"})
# Hashes that name a row of ``texts``; other hashes (the chain's) are only shortened.
TEXT_HASH_COLUMNS = frozenset({"prompt_hash", "raw_hash", "parsed_hash", "template_hash", "text_hash"})
HASH_COLUMNS = TEXT_HASH_COLUMNS | {"hash", "prev_hash", "sha256", "spec_hash", "catalog_hash"}
COHORT_COLUMNS = frozenset({"cohort_id", "origin_cohort_id"})
SHA256 = re.compile(r"[0-9a-f]{64}")
SHORT_HASH = 12
# JSON this short reads fine on one line; anything longer is folded.
INLINE_JSON_CHARS = 72
STAGE_ORDER = {name: i for i, name in enumerate(PIPELINE_STAGES)}
# Views that are machinery, not reading (the append path of migration 0004).
PLUMBING_VIEWS = frozenset({"projection_feed"})


@dataclass
class Browsed:
    """One daydream Datasette: the name of its ledger database and a read-only ``Ledger`` on it."""

    database: str
    ledger: Ledger
    # Concept names of the newest catalog, keyed by the seq of its CatalogImported event.
    concepts: tuple[int | None, dict[str, str]] = field(default=(None, {}))

    def concept_names(self, catalog_seq: int | None) -> dict[str, str]:
        if catalog_seq != self.concepts[0]:
            self.concepts = (catalog_seq, views.concept_names(self.ledger))
        return self.concepts[1]


def browsed(datasette: Any, database: str | None = None) -> Browsed | None:
    """The ``Browsed`` of a daydream Datasette (for ``database``, when given), else None."""
    state = getattr(datasette, FLAG, None)
    if state is None or (database is not None and database != state.database):
        return None
    return state


class Links:
    """URLs and small HTML pieces shared by the cell renderer and the templates."""

    def __init__(self, datasette: Any, database: str) -> None:
        self.urls = datasette.urls
        self.database = database

    def table(self, name: str, **args: Any) -> str:
        url = self.urls.table(self.database, name)
        return f"{url}?{urlencode(args)}" if args else url

    def table_json(self, name: str, **args: Any) -> str:
        url = self.urls.table(self.database, name, format="json")
        return f"{url}?{urlencode(args)}" if args else url

    def generation(self, gen_id: str) -> str:
        return self.table("generations", gen_id=gen_id)

    def event(self, seq: int) -> str:
        return f"{self.urls.table(self.database, 'events')}/{seq}"

    def text(self, sha256: str) -> str:
        return f"{self.urls.table(self.database, 'texts')}/{quote(sha256)}"

    def combo(self, combo_id: str) -> str:
        return f"{self.urls.table(self.database, 'combos')}/{quote(combo_id, safe='')}"

    def query(self, name: str, **args: Any) -> str:
        url = self.urls.query(self.database, name)
        return f"{url}?{urlencode(args)}" if args else url

    def gen_link(self, gen_id: str) -> Markup:
        return Markup(f'<a class="dd-id" href="{escape(self.generation(gen_id))}">{escape(gen_id)}</a>')

    def hash(self, value: str, link: bool = True) -> Markup:
        """The first characters of a hash, the whole of it on hover; a link to the text it names."""
        short = escape(value[:SHORT_HASH]) + Markup("…")
        if link:
            return Markup(f'<a class="dd-hash" title="{escape(value)}" href="{escape(self.text(value))}">{short}</a>')
        return Markup(f'<span class="dd-hash" title="{escape(value)}">{short}</span>')


# Fields a reader looks for first in a payload's one-line summary.
PREVIEW_FIRST = ("stage", "type", "cohort_id", "template_id", "model_id", "score", "rubric", "evaluator",
                 "reason", "error_class", "message", "status", "attempt")


def json_preview(data: Any) -> str:
    """A one-line summary of a JSON value: telling fields first, nulls left out, hashes last."""
    def short(v: Any) -> str:
        if isinstance(v, dict):
            return "{…}"
        if isinstance(v, list):
            return f"[{len(v)}]"
        if isinstance(v, str) and SHA256.fullmatch(v):
            return v[:8] + "…"
        text = json.dumps(v, ensure_ascii=False)
        return text if len(text) <= 32 else text[:31] + "…\""

    def order(item: tuple[str, Any]) -> tuple[int, int]:
        key, v = item
        if key in PREVIEW_FIRST:
            return 0, PREVIEW_FIRST.index(key)
        return (3 if isinstance(v, str) and SHA256.fullmatch(v) else 2 if isinstance(v, (dict, list)) else 1), 0

    if isinstance(data, dict):
        fields = sorted(((k, v) for k, v in data.items() if v is not None), key=order)
        return ", ".join(f"{k}: {short(v)}" for k, v in fields) or "{}"
    if isinstance(data, list):
        return f"{len(data)} items: " + ", ".join(short(v) for v in data[:8])
    return short(data)


def json_html(data: Any) -> Markup:
    """A JSON value pretty-printed; folded behind a one-line summary unless it is short."""
    compact = json.dumps(data, ensure_ascii=False)
    if len(compact) <= INLINE_JSON_CHARS:
        return Markup(f'<code class="dd-json">{escape(compact)}</code>')
    pretty = json.dumps(data, ensure_ascii=False, indent=2)
    return folded(json_preview(data), Markup(f'<pre class="dd-json">{escape(pretty)}</pre>'))


def parse_json(value: str) -> Any:
    """The JSON object or array in ``value``, or None when it holds none."""
    stripped = value.strip()
    if not stripped or stripped[0] + stripped[-1] not in ("{}", "[]"):
        return None
    try:
        return json.loads(stripped)
    except ValueError:
        return None


async def in_thread(datasette: Any, fn: Any, *args: Any) -> Any:
    """Run a blocking ledger read off the event loop, on Datasette's own executor."""
    return await asyncio.get_running_loop().run_in_executor(datasette.executor, fn, *args)


async def essay_card(datasette: Any, state: Browsed, gen_id: str) -> Markup:
    """An essay in a ranking: its title linking to its page (with its evaluations), its concepts."""
    db = datasette.get_database(state.database)
    # Straight from gen_state and texts: the generations view would also fetch the prompt.
    found = (await db.execute(
        "SELECT (SELECT text FROM texts WHERE sha256 = COALESCE(g.parsed_hash, g.raw_hash)) AS text, "
        "c.concept_ids, (SELECT MAX(seq) FROM events WHERE type = 'CatalogImported') AS catalog_seq "
        "FROM gen_state g LEFT JOIN combos c ON c.combo_id = g.combo_id WHERE g.gen_id = ?", [gen_id])).first()
    links = Links(datasette, state.database)
    if found is None:
        return links.gen_link(gen_id)
    title = views.essay_title(found["text"], fallback=gen_id)
    seq = found["catalog_seq"]
    names = state.concepts[1] if seq == state.concepts[0] else await in_thread(datasette, state.concept_names, seq)
    concepts = [names.get(c, c) for c in parse_json(found["concept_ids"] or "[]") or []]
    href = escape(links.generation(gen_id))
    html = f'<a class="dd-title" href="{href}">{escape(title)}</a>'
    if concepts:
        html += f'<span class="dd-concepts">{escape(" · ".join(concepts))}</span>'
    html += f'<a class="dd-id" href="{href}">{escape(gen_id)}</a>'
    return Markup(f'<div class="dd-essay">{html}</div>')


@hookimpl
def render_cell(row: Any, value: Any, column: str, table: str | None, database: str, datasette: Any) -> Any:
    """Links, short hashes, folded JSON and rendered Markdown for the ledger's cells."""
    state = browsed(datasette, database)
    if state is None or value is None or value == "":
        return None
    links = Links(datasette, database)
    if isinstance(value, str):
        if column in GEN_ID_COLUMNS:
            if table == "essay_rankings" and column == "essay_gen_id":
                return essay_card(datasette, state, value)
            return links.gen_link(value)
        if column == "stream" and value.startswith("gen:"):
            return Markup(f'<a href="{escape(links.generation(value[4:]))}">{escape(value)}</a>')
        if column in HASH_COLUMNS and SHA256.fullmatch(value):
            return links.hash(value, link=column in TEXT_HASH_COLUMNS)
        if column == "combo_id":
            return Markup(f'<a href="{escape(links.combo(value))}">{escape(value)}</a>')
        if column in COHORT_COLUMNS:
            href = links.table("cohort_progress", cohort_id=value)
            return Markup(f'<a href="{escape(href)}">{escape(value)}</a>')
        if column in MARKDOWN_COLUMNS.get(table, frozenset()):
            return markdown_cell(value, fold=table in FOLDED_TABLES)
        if column == "recorded_at" and len(value) > 19:
            # To the second; the full timestamp (microseconds, zone) on hover.
            return Markup(f'<span title="{escape(value)}">{escape(value[:19].replace("T", " "))}</span>')
        if table == "texts" and column == "text":
            return folded(first_line(value) or "(blank)", plain_text(value))
        data = parse_json(value)
        if data is not None:
            return json_html(data)
        return None
    if isinstance(value, int) and column in SEQ_COLUMNS and not (table == "events" and column == "seq"):
        return Markup(f'<a href="{escape(links.event(value))}">{value}</a>')
    return None


@hookimpl
def extra_css_urls(datasette: Any) -> list[str]:
    if browsed(datasette) is None:
        return []
    return [datasette.urls.path(f"/{STATIC}/daydream.css")]


@hookimpl
def extra_body_script(view_name: str, datasette: Any) -> str:
    # A row page shows one row: its folded cells (a text, a payload) open, ready to read.
    if browsed(datasette) is None or view_name != "row":
        return ""
    return "document.querySelectorAll('details.dd-fold').forEach(d => { d.open = true; });"


@hookimpl
def extra_template_vars(template: str, database: str | None, table: str | None, view_name: str,
                        request: Any, datasette: Any) -> Any:
    """``dd`` (links and renderers) on every page; home-page and generation-page data where due."""
    state = browsed(datasette)
    if state is None:
        return {}

    async def inner() -> dict[str, Any]:
        found: dict[str, Any] = {"dd": Helpers(datasette, state.database)}
        if request is None or database != state.database:
            return found
        if view_name == "database" and template.startswith("database") and not request.args.get("sql"):
            found["daydream_home"] = await in_thread(datasette, home, state.ledger)
        elif view_name == "table" and table == "generations" and _one_gen_id(request.args):
            found["daydream_generation"] = await in_thread(datasette, generation, state.ledger,
                                                           request.args.get("gen_id"))
        return found

    return inner


def _one_gen_id(args: Any) -> bool:
    """True for ``?gen_id=X`` alone (Datasette's own ``_`` options aside): a generation's page."""
    keys = [k for k in args.keys() if not k.startswith("_")]
    return keys == ["gen_id"] and bool(args.get("gen_id"))


class Helpers(Links):
    """What the templates call: links, short hashes, JSON, Markdown and plain text."""

    json = staticmethod(json_html)
    plain = staticmethod(plain_text)

    @staticmethod
    def markdown(text: str | None) -> Markup:
        return markdown_cell(text or "")

    @staticmethod
    def fold_markdown(text: str | None) -> Markup:
        return markdown_cell(text or "", fold=True)


def home(ledger: Ledger) -> dict[str, Any]:
    """The home page's data: each cohort's progress and spend, the latest events, what exists."""
    cohorts: dict[str, dict[str, Any]] = {}
    for r in views.cohort_status(ledger):
        c = cohorts.setdefault(r["cohort_id"], {"cohort_id": r["cohort_id"], "stages": {}, "cost_usd": 0.0,
                                                "unpriced": 0, "calls": 0, "failed": 0, "pending": 0})
        planned = r["planned"] or 0
        c["stages"][r["stage"]] = {**r, "done_pct": _pct(r["completed"], planned),
                                   "failed_pct": _pct(r["failed"], planned)}
        c["cost_usd"] += r["cost_usd"] or 0
        c["unpriced"] += r["unpriced"]
        c["calls"] += r["calls"] or 0
        c["failed"] += r["failed"] or 0
        c["pending"] += r["pending"] or 0
    stages = sorted({s for c in cohorts.values() for s in c["stages"]}, key=lambda s: (STAGE_ORDER.get(s, 9), s))
    existing = {r["name"] for r in views.query(
        ledger, "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    comparison_columns = [r["name"] for r in views.query(ledger, "SELECT name FROM pragma_table_info('comparisons')")] \
        if "comparisons" in existing else []
    latest = views.query(ledger, "SELECT seq, stream, type, recorded_at FROM events ORDER BY seq DESC LIMIT 12")
    # Every view of the ledger, the documented ones with their title; plumbing stays out.
    guide = [(name, doc.title, doc.description) for name, doc in views.VIEWS.items() if name in existing]
    guide += [(r["name"], r["name"], "") for r in views.query(
        ledger, "SELECT name FROM sqlite_master WHERE type = 'view' ORDER BY name")
        if r["name"] not in views.VIEWS and r["name"] not in PLUMBING_VIEWS]
    return {
        "cohorts": list(cohorts.values()), "stages": stages, "latest": latest,
        "last_seq": latest[0]["seq"] if latest else 0, "file": ledger.path.name, "path": str(ledger.path),
        "views": guide,
        "comparisons": "comparisons" in existing,
        "comparisons_by_cohort": "cohort_id" in comparison_columns,
    }


# Whether a cohort's rubrics use more than one scale (a ledger from before migration 0010 has no scales).
MIXED = ("(SELECT COUNT(*) FROM cohort_scales k WHERE k.cohort_id = c.cohort_id AND k.n > 0 "
         "AND k.scale != '') > 1")


STANDINGS = f"""
    SELECT cohort_id, n, CASE WHEN mixed THEN mean_norm ELSE mean END AS mean,
           CASE WHEN mixed THEN (SELECT COUNT(*) FROM cohort_essay_scores o WHERE o.cohort_id = s.cohort_id
                                 AND o.mean_norm > s.mean_norm)
                ELSE (SELECT COUNT(*) FROM cohort_essay_scores o WHERE o.cohort_id = s.cohort_id
                      AND o.mean > s.mean) END + 1 AS rank,
           (SELECT COUNT(*) FROM cohort_essay_scores o WHERE o.cohort_id = s.cohort_id
                AND o.mean IS NOT NULL) AS essays
    FROM (SELECT c.*, {MIXED} AS mixed FROM cohort_essay_scores c WHERE c.essay_gen_id = ? AND c.n > 0) s
    ORDER BY cohort_id"""


def _has_table(ledger: Ledger, name: str) -> bool:
    return bool(views.query(ledger, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))


def _pct(part: int | None, whole: int) -> float:
    return round(100.0 * (part or 0) / whole, 1) if whole else 0.0


def generation(ledger: Ledger, gen_id: str) -> dict[str, Any] | None:
    """One generation's page: ``views.lineage`` plus titles, its scores' standing, raw payloads."""
    try:
        found = views.lineage(ledger, gen_id)
    except NotFound:
        return None
    # Essays have titles (their first heading); drafts and evaluations are known by their id.
    for g in (found["generation"], *found["ancestors"], *found["children"]):
        g["title"] = views.essay_title(g["parsed"] or g["response"]) if g["stage"] == "essay" else None
    found["title"] = found["generation"]["title"]
    # An essay's standing in each cohort that scores it: rank = 1 + essays with a higher mean (the
    # RANK() of essay_rankings), read from the per-cohort sums so no whole cohort is ranked. A cohort
    # whose rubrics mix scales ranks on mean_norm, as essay_rankings does (migration 0010).
    found["standings"] = views.query(ledger, STANDINGS if _has_table(ledger, "cohort_scales")
                                     else STANDINGS.replace("mean_norm", "mean").replace(MIXED, "0"), (gen_id,))
    return found
