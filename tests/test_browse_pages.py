"""``daydream browse`` as a reader sees it: real pages in headless Chromium, checked from the DOM.

A copy of the committed demo ledger, plus one essay and its evaluation whose model text carries
``<script>`` and ``<img onerror>`` payloads, is served by ``daydream browse`` on a free loopback
port. Chromium is driven over the DevTools protocol on a pipe (no extra package): each page is
opened at 1,400 px, screenshotted whole under the test's temporary folder, and measured in the
rendered DOM (nothing wider than the viewport, links that resolve, titles, no injected script run).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest

from daydream.read import views
from daydream.ledger.store import Ledger, NewEvent, text_hash
from tests.runner_fixtures import daydream_cmd

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH = 1400
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

# Model text that would run script if a page passed it through as HTML: each payload, if it ran,
# would record itself in window.__dd_pwned.
EVIL_ESSAY = ("# Night <script>window.__dd_pwned = 'title'</script> Lanterns\n\n"
              "A paragraph <img src=x onerror=\"window.__dd_pwned = 'img'\"> with "
              "<script>window.__dd_pwned = 'body'</script> inline tags and "
              "[a link](javascript:window.__dd_pwned='link').\n\n"
              "<svg onload=\"window.__dd_pwned = 'svg'\"></svg>")
EVIL_PROMPT = "Write an essay. <script>window.__dd_pwned = 'prompt'</script>"
EVIL_ANSWER = "<img src=x onerror=\"window.__dd_pwned = 'answer'\">\nSCORE: 9"
EVIL_TITLE = views.essay_title(EVIL_ESSAY)


# --------------------------------------------------------------------------------------------------
# Chromium over the DevTools protocol (--remote-debugging-pipe: JSON messages ending in NUL, read
# from fd 3 and written to fd 4 of the browser process).

class Chromium:
    def __init__(self, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_pipes() -> None:
            # Through fds above 4 first, in case a pipe end already sits on fd 3 or 4.
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(3, 4), preexec_fn=wire_pipes, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page.enable", "Runtime.enable"):
            self.call(domain, session=True)
        self.resize(1000)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: bool = False, timeout: float = 60, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            found = self._read(deadline)
            if found.get("id") == self._next_id:
                if "error" in found:
                    raise RuntimeError(f"{method}: {found['error']}")
                return found["result"]
            self.events.append(found)

    def wait_for(self, method: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            found = self._read(deadline)
            if found.get("method") == method:
                return found
            self.events.append(found)

    def resize(self, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=WIDTH, height=height,
                  deviceScaleFactor=1, mobile=False)

    def open(self, url: str) -> None:
        self.events.clear()
        self.resize(1000)
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")

    def js(self, expression: str) -> Any:
        found = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                          awaitPromise=True)
        if "exceptionDetails" in found:
            raise RuntimeError(f"{expression}: {found['exceptionDetails']}")
        return found["result"].get("value")

    def screenshot(self, path: Path) -> None:
        """The whole page at 1,400 px wide, as a PNG."""
        height = int(self.js("document.documentElement.scrollHeight"))
        self.resize(min(height, 12000))
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        self.resize(1000)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


# --------------------------------------------------------------------------------------------------
# The ledger and the server.

def add_evil_essay(ledger: Ledger) -> dict[str, str]:
    """Append an essay and an evaluation (score 9) to the demo cohort with script in their text."""
    draft = ledger.query("SELECT gen_id, combo_id FROM gen_state WHERE stage = 'draft' AND status = 'completed' "
                         "ORDER BY gen_id LIMIT 1")[0]
    cohort = ledger.query("SELECT cohort_id FROM cohort_members WHERE gen_id = ?", (draft[0],))[0][0]
    essay, evaluation = "e_evil", "v_evil"
    events: list[NewEvent] = []
    for gen_id, stage, parent, template, text in ((essay, "essay", draft[0], "essay-evil", EVIL_ESSAY),
                                                  (evaluation, "evaluation", essay, "rubric-evil", EVIL_ANSWER)):
        stream = f"gen:{gen_id}"
        events += [
            NewEvent(stream, "GenerationPlanned", {
                "gen_id": gen_id, "stage": stage, "parent_gen_id": parent, "combo_id": draft[1],
                "template_id": template, "template_hash": None, "generator": "llm", "parser": "identity",
                "model_id": "offline", "replicate": 1, "cohort_id": cohort, "catalog_hash": None}),
            NewEvent(stream, "PromptRendered", {
                "gen_id": gen_id, "attempt": 1, "prompt_hash": text_hash(EVIL_PROMPT), "chars": len(EVIL_PROMPT),
                "template_id": template, "template_hash": None}),
            NewEvent(stream, "LLMCallStarted", {
                "gen_id": gen_id, "attempt": 1, "call": 1, "model_id": "offline", "provider": "offline",
                "provider_model": "offline", "lease_until": "2026-11-30T00:10:00Z", "worker": {"pid": 1}}),
            NewEvent(stream, "LLMCallCompleted", {
                "gen_id": gen_id, "attempt": 1, "call": 1, "text_hash": text_hash(text), "chars": len(text),
                "finish_reason": "stop", "prompt_tokens": 10, "completion_tokens": 10, "cost_usd": 0.0,
                "latency_s": 0.1, "model_id": "offline", "provider": "offline", "requested_model": "offline",
                "resolved_model": "offline", "request_id": None, "offline": True}),
            NewEvent(stream, "ResponseParsed", {
                "gen_id": gen_id, "attempt": 1, "parser": "identity", "parsed_hash": text_hash(text),
                "chars": len(text), "copied_from": None}),
        ]
    events.append(NewEvent(f"gen:{evaluation}", "ScoreRecorded", {
        "gen_id": evaluation, "attempt": 1, "essay_gen_id": essay, "score": 9.0, "rubric": "rubric-evil",
        "evaluator": "offline", "replicate": 1}))
    ledger.append(events, texts=[EVIL_ESSAY, EVIL_ANSWER, EVIL_PROMPT])
    return {"essay": essay, "evaluation": evaluation, "draft": draft[0], "cohort": cohort}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Site:
    def __init__(self, base: str, db: Path, evil: dict[str, str], digest: str) -> None:
        self.base = base
        self.db = db
        self.evil = evil
        self.digest = digest  # of the ledger file before the server opened it

    def url(self, path: str, **args: Any) -> str:
        return f"{self.base}{path}" + (f"?{urlencode(args)}" if args else "")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    db = tmp_path_factory.mktemp("pages") / "demo.db"
    shutil.copyfile(REPO / "ledger.db.example", db)
    ledger = Ledger.open(db)  # brings an older example up to this schema
    evil = add_evil_essay(ledger)
    ledger.close()
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DAYDREAM_DB"}
    proc = subprocess.Popen(daydream_cmd("browse", "--db", str(db), "--port", str(port)),
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/-/versions.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"daydream browse did not start: {proc.stderr.read()[-800:] if proc.stderr else ''}")
            time.sleep(0.2)
        yield Site(base, db, evil, digest)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    chrome = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield chrome
    finally:
        chrome.close()


# --------------------------------------------------------------------------------------------------
# What every page must satisfy.

PAGE_WIDTH = """(() => {
  const doc = document.documentElement;
  const wide = [...document.querySelectorAll('.table-wrapper')]
      .filter(w => w.scrollWidth > w.clientWidth + 1)
      .map(w => [w.querySelector('table')?.className || '?', w.scrollWidth, w.clientWidth]);
  return {page: doc.scrollWidth, viewport: window.innerWidth, wide};
})()"""

NOT_RUN = """(() => ({
  pwned: window.__dd_pwned === undefined ? null : window.__dd_pwned,
  handlers: document.querySelectorAll('[onerror], [onload], [onclick]').length,
  scripts: [...document.scripts].filter(s => s.textContent.includes('__dd_pwned')).length,
  jsLinks: [...document.querySelectorAll('a[href]')].filter(a => a.href.startsWith('javascript:')).length,
  text: document.body.innerText,
}))()"""


def look(browser: Chromium, site: Site, name: str, url: str, out: Path, tables_fit: bool = True) -> dict[str, Any]:
    """Open ``url``, keep a whole-page screenshot as ``out/name.png``, check width and injection."""
    browser.open(url)
    assert browser.js("document.title") != "", url
    width = browser.js(PAGE_WIDTH)
    assert width["page"] <= width["viewport"] == WIDTH, f"{name} is wider than the window: {width}"
    if tables_fit:
        assert width["wide"] == [], f"{name} has a table that scrolls sideways: {width['wide']}"
    shot = out / f"{name}.png"
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    safety = browser.js(NOT_RUN)
    assert safety["pwned"] is None, f"script from model text ran on {name}: {safety['pwned']}"
    assert (safety["handlers"], safety["scripts"], safety["jsLinks"]) == (0, 0, 0), (name, safety)
    return safety


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def gen_page(site: Site, gen_id: str) -> str:
    return site.url("/ledger/generations", gen_id=gen_id)


def hrefs(browser: Chromium, selector: str) -> list[str]:
    return browser.js(f"[...document.querySelectorAll({json.dumps(selector)})].map(a => a.href)")


# --------------------------------------------------------------------------------------------------

def test_home_page_shows_cohorts_with_progress_latest_events_and_their_links(
        site: Site, browser: Chromium, shots: Path) -> None:
    look(browser, site, "home", site.url("/ledger"), shots)
    cohort = site.evil["cohort"]
    cells = browser.js("[...document.querySelectorAll('table.dd-cohorts tbody tr')].map(r => r.innerText)")
    ledger = Ledger.open(site.db, readonly=True)
    progress = {r["stage"]: r for r in views.cohort_status(ledger, cohort)}
    row = next(c for c in cells if c.startswith(cohort))
    for stage, r in progress.items():
        assert f"{r['completed']} / {r['planned']} done" in row
    links = hrefs(browser, "table.dd-cohorts a")
    for expected in (f"/ledger/essay_rankings?cohort_id={cohort}&_sort=rank", f"/ledger/failures?cohort={cohort}",
                     f"/ledger/spend?cohort_id={cohort}", f"/ledger/top_essays?cohort={cohort}",
                     f"/ledger/comparisons?cohort_id={cohort}"):
        assert site.base + expected in links
    for link in links:
        assert httpx.get(link, timeout=30).status_code == 200, link
    latest = hrefs(browser, "table.dd-latest a")
    last_seq = ledger.count()
    assert latest[0] == site.base + f"/ledger/events/{last_seq}"
    assert site.url("/ledger/generations", gen_id=site.evil["evaluation"]) in latest


def test_index_hides_datasettes_memory_database_until_asked(site: Site, browser: Chromium, shots: Path) -> None:
    text = look(browser, site, "index", site.url("/"), shots)["text"]
    assert "_memory" not in text and "1 hidden database" in text
    assert site.url("/ledger") in hrefs(browser, "h2 a")
    browser.open(site.url("/", _show_hidden=1))
    assert "_memory" in browser.js("document.body.innerText")


def test_internal_tables_are_hidden_but_one_click_away(site: Site, browser: Chromium) -> None:
    browser.open(site.url("/ledger"))
    listed = browser.js("[...document.querySelectorAll('.db-table h3 a')].map(a => a.textContent)")
    assert set(listed) == {"events", "texts", "combos"}
    browser.open(site.url("/ledger", _show_hidden=1))
    listed = browser.js("[...document.querySelectorAll('.db-table h3 a')].map(a => a.textContent)")
    assert {"gen_state", "cohort_members", "cohort_totals", "alembic_version"} <= set(listed)


def test_draft_essays_and_evaluations_link_to_each_other_both_ways(site: Site, browser: Chromium, shots: Path) -> None:
    ledger = Ledger.open(site.db, readonly=True)
    draft = site.evil["draft"]
    essays = {r[0] for r in ledger.query("SELECT gen_id FROM gen_state WHERE parent_gen_id = ?", (draft,))}
    assert len(essays) >= 2
    look(browser, site, "draft", gen_page(site, draft), shots)
    assert set(hrefs(browser, "a[rel=down]")) == {gen_page(site, e) for e in essays}
    for essay in sorted(essays):
        evaluations = {r[0] for r in ledger.query("SELECT gen_id FROM gen_state WHERE parent_gen_id = ?", (essay,))}
        browser.open(gen_page(site, essay))
        assert browser.js("document.querySelector('.dd-status code').textContent") == essay
        assert gen_page(site, draft) in hrefs(browser, "a[rel=up]")
        assert set(hrefs(browser, "a[rel=down]")) == {gen_page(site, v) for v in evaluations}
        for evaluation in sorted(evaluations)[:2]:
            browser.open(gen_page(site, evaluation))
            assert browser.js("document.querySelector('.dd-status code').textContent") == evaluation
            assert hrefs(browser, "a[rel=up]")[-1] == gen_page(site, essay)  # the parent, after the lineage


def test_generation_page_reads_without_sideways_scrolling(site: Site, browser: Chromium, shots: Path) -> None:
    ledger = Ledger.open(site.db, readonly=True)
    essay = ledger.query("SELECT gen_id FROM gen_state WHERE stage = 'essay' AND gen_id != 'e_evil' "
                         "AND status = 'completed' AND prompt_hash IS NOT NULL ORDER BY gen_id LIMIT 1")[0][0]
    g = views.generation(ledger, essay)
    text = look(browser, site, "essay", gen_page(site, essay), shots)["text"]
    assert views.essay_title(g["parsed"]) in browser.js("document.querySelector('h1').innerText")
    # The essay is rendered Markdown, not a raw cell; the prompt is one click away.
    assert browser.js("document.querySelector('#parsed .dd-markdown p') !== null")
    assert browser.js("document.querySelector('details#prompt').open") is False
    # Hashes are shortened, the full value on hover.
    full = browser.js("[...document.querySelectorAll('.dd-hash')].map(h => [h.textContent, h.title])")
    assert full and all(len(t) <= 13 and len(title) == 64 and title.startswith(t[:-1]) for t, title in full)
    assert g["parsed_hash"] not in text
    # Event payloads: folded, pretty-printed when opened.
    folded = browser.js("[...document.querySelectorAll('.dd-events details')].map(d => d.open)")
    assert folded and not any(folded)
    pretty = browser.js("document.querySelector('.dd-events pre.dd-json').textContent")
    assert json.loads(pretty) and "\n  " in pretty
    # Column notes are reachable from every table page, folded.
    browser.open(site.url("/ledger/generations"))
    assert browser.js("document.querySelector('details.dd-column-notes').open") is False
    assert browser.js("getComputedStyle(document.querySelector('section.content > dl.column-descriptions'))"
                      ".display") == "none"


def test_rankings_show_each_essays_title_and_concepts_linking_to_it(site: Site, browser: Chromium, shots: Path) -> None:
    ledger = Ledger.open(site.db, readonly=True)
    cohort = site.evil["cohort"]
    look(browser, site, "rankings", site.url("/ledger/essay_rankings", cohort_id=cohort, _sort="rank"), shots)
    cards = browser.js("""[...document.querySelectorAll('td.col-essay_gen_id')].map(td => ({
        title: td.querySelector('.dd-title')?.textContent, href: td.querySelector('.dd-title')?.href,
        concepts: td.querySelector('.dd-concepts')?.textContent, id: td.querySelector('.dd-id')?.textContent}))""")
    ranked = ledger.query("SELECT essay_gen_id, combo_id, rank FROM essay_rankings WHERE cohort_id = ? "
                          "ORDER BY rank", (cohort,))
    rank_of = {essay: rank for essay, _, rank in ranked}
    shown = [c["id"] for c in cards]
    assert sorted(shown) == sorted(rank_of) and shown[0] == site.evil["essay"]  # scored 9: first
    assert [rank_of[e] for e in shown] == sorted(rank_of[e] for e in shown)  # in rank order (ties any way)
    names = views.concept_names(ledger)
    combo_of = {essay: combo_id for essay, combo_id, _ in ranked}
    for card in cards:
        essay = card["id"]
        g = views.generation(ledger, essay)
        assert card["title"] == views.essay_title(g["parsed"] or g["response"], fallback=essay)
        concepts = json.loads(ledger.query("SELECT concept_ids FROM combos WHERE combo_id = ?",
                                           (combo_of[essay],))[0][0])
        assert card["concepts"] == " · ".join(names.get(c, c) for c in concepts)
        assert card["href"] == gen_page(site, essay)
    assert EVIL_TITLE == cards[0]["title"]
    # An essay's title leads to the essay with its evaluations and their scores.
    browser.open(cards[1]["href"])
    scores = browser.js("[...document.querySelectorAll('.dd-children tbody tr')].map(r => r.cells[5].innerText)")
    evaluations = ledger.query("SELECT score FROM gen_state WHERE parent_gen_id = ? ORDER BY template_id, model_id, "
                               "replicate, gen_id", (cards[1]["id"],))
    assert scores == [str(s) for (s,) in evaluations]


def test_events_page_folds_payloads_and_shortens_hashes(site: Site, browser: Chromium, shots: Path) -> None:
    look(browser, site, "events", site.url("/ledger/events"), shots)
    hashes = browser.js("[...document.querySelectorAll('td.col-hash .dd-hash')].map(h => h.title)")
    first = Ledger.open(site.db, readonly=True).query("SELECT hash FROM events ORDER BY seq LIMIT 1")[0][0]
    assert hashes[0] == first
    assert browser.js("document.querySelectorAll('td.col-payload details:not([open])').length") >= 10
    look(browser, site, "events-newest", site.url("/ledger/events", _sort_desc="seq"), shots)


@pytest.mark.parametrize("name,path,args,shown", [
    ("evil-essay", "/ledger/generations", {"gen_id": "e_evil"}, "<script>"),
    ("evil-evaluation", "/ledger/generations", {"gen_id": "v_evil"}, "onerror"),
    ("evil-rankings", "/ledger/essay_rankings", {"_sort": "rank"}, EVIL_TITLE),
    ("evil-top-essays", "/ledger/top_essays", {"cohort": "demo"}, "<script>"),
    ("evil-essay-with-evaluations", "/ledger/essay_with_evaluations", {"essay": "e_evil"}, "<script>"),
    ("evil-generations", "/ledger/generations", {"stage": "essay"}, None),
    ("evil-texts", "/ledger/texts", {}, None),
])
def test_script_in_model_text_is_shown_as_text_and_never_runs(
        site: Site, browser: Chromium, shots: Path, name: str, path: str, args: dict[str, str],
        shown: str | None) -> None:
    # Long text views keep their width inside the table's own scroller; the rest must fit.
    safety = look(browser, site, name, site.url(path, **args), shots,
                  tables_fit=name not in ("evil-generations", "evil-texts", "evil-essay-with-evaluations",
                                          "evil-top-essays"))
    if shown is not None:
        assert shown in safety["text"]
    # Open every fold: what was hidden must not run either.
    browser.js("document.querySelectorAll('details').forEach(d => d.open = true)")
    time.sleep(0.2)
    again = browser.js(NOT_RUN)
    assert again["pwned"] is None and again["handlers"] == 0
    if name == "evil-essay":
        assert "<script>window.__dd_pwned = 'prompt'</script>" in again["text"]
        assert re.search(r"<img src=x onerror=", again["text"])


def test_the_injection_check_catches_a_page_that_passes_model_text_through(browser: Chromium) -> None:
    # The same payloads served as raw HTML do run, so the checks above would see it if ours did.
    browser.open("data:text/html," + quote(EVIL_ESSAY))
    found = browser.js(NOT_RUN)
    assert found["pwned"] is not None and found["handlers"] > 0


def test_browsing_every_page_left_the_ledger_file_as_it_was(site: Site) -> None:
    # Runs last in this module: every page above was served from this file, read-only.
    assert hashlib.sha256(site.db.read_bytes()).hexdigest() == site.digest
    assert not Path(f"{site.db}-wal").exists() or Path(f"{site.db}-wal").stat().st_size == 0
