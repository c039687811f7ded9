"""A Datasette plugin of ours: show essays, prompts and responses as rendered Markdown.

It implements Datasette's ``render_cell`` hook for the text columns of the daydream views (and of
the canned queries, which have no table). Raw HTML inside model output is escaped, never passed
through, and it only acts on Datasette instances built by ``daydream.browse`` (which set a flag), so
registering it in Datasette's global plugin manager changes nothing for other instances.
"""

from __future__ import annotations

from typing import Any

from datasette import hookimpl
from markupsafe import Markup

from daydream.report import render_markdown

FLAG = "_daydream_markdown_columns"
# Columns holding Markdown, by view; None is for canned and ad-hoc queries.
MARKDOWN_COLUMNS: dict[str | None, frozenset[str]] = {
    "generations": frozenset({"prompt", "response", "parsed"}),
    "failures": frozenset({"response"}),
    None: frozenset({"essay", "prompt", "response", "parsed", "text"}),
}


def markdown_cell(text: str) -> Markup:
    """One cell's Markdown as HTML that keeps its own line breaks only where Markdown puts them."""
    rendered = render_markdown(text).strip().replace(">\n<", "><")
    # Datasette's stylesheet shows <em> in cells small and grey (its marker for NULL); undo that.
    rendered = rendered.replace("<em>", '<em style="font-size: inherit; color: inherit">')
    return Markup(f'<div class="daydream-markdown" style="white-space: normal; max-width: 60em">{rendered}</div>')


@hookimpl
def render_cell(value: Any, column: str, table: str | None, database: str, datasette: Any) -> Markup | None:
    """Render Markdown columns of daydream's views; leave every other cell to Datasette."""
    databases = getattr(datasette, FLAG, None)
    if not databases or database not in databases or not isinstance(value, str) or not value:
        return None
    if column not in MARKDOWN_COLUMNS.get(table, frozenset()):
        return None
    return markdown_cell(value)
