"""Model text as HTML for ``daydream browse``: rendered Markdown, or plain wrapped text, never raw HTML.

Essays, drafts, prompts and answers are Markdown written by a model, so they are untrusted: they go
through the report's renderer (markdown-it with HTML disabled), which escapes any tag a model wrote
(``<script>`` or ``<img onerror=…>`` reads as text). Long texts in a table can be folded into a
``<details>`` whose summary is their first line. ``daydream.read.browse_plugin`` decides which cells use
which.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from daydream.read.report import render_markdown

# Columns holding Markdown, by view; None is for canned and ad-hoc queries.
MARKDOWN_COLUMNS: dict[str | None, frozenset[str]] = {
    "generations": frozenset({"prompt", "response", "parsed"}),
    "failures": frozenset({"response"}),
    None: frozenset({"essay", "prompt", "response", "parsed", "text"}),
}
# In these views a row holds whole texts next to many short columns, so each text is folded.
FOLDED_TABLES = frozenset({"generations", "failures"})
SUMMARY_CHARS = 120


def markdown_html(text: str) -> Markup:
    """Markdown as HTML that keeps its own line breaks only where Markdown puts them."""
    rendered = render_markdown(text).strip().replace(">\n<", "><")
    return Markup(f'<div class="dd-markdown">{rendered}</div>')


def first_line(text: str, limit: int = SUMMARY_CHARS) -> str:
    """The first non-empty line of ``text`` without Markdown heading marks, shortened to ``limit``."""
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
    return ""


def folded(summary: str, body: Markup, extra_class: str = "") -> Markup:
    """``body`` inside a closed ``<details>`` whose one-line summary is ``summary`` (escaped)."""
    classes = f"dd-fold {extra_class}".strip()
    return Markup(f'<details class="{classes}"><summary>{escape(summary)}</summary>{body}</details>')


def markdown_cell(text: str, fold: bool = False) -> Markup:
    """One cell's Markdown; with ``fold``, closed behind its first line."""
    html = markdown_html(text)
    return folded(first_line(text) or "(blank)", html) if fold else html


def plain_text(text: str) -> Markup:
    """Text shown exactly as written, wrapped to the page (templates, specs, raw answers)."""
    return Markup(f'<div class="dd-plain">{escape(text)}</div>')
