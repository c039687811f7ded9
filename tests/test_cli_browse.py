"""`daydream browse -p 0` takes a free port and prints it; `--open` opens that URL in a browser.

A real `daydream browse` process, a real Datasette answering on the port it printed; the browser is
a script named by $BROWSER (which Python's webbrowser module honours) that records the URL it got.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.read_fixtures import demo_ledger
from tests.runner_fixtures import daydream_cmd, subprocess_env

READY = re.compile(r"^Datasette on (http://127\.0\.0\.1:(\d+)/ledger) \(read-only\)")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_ledger(tmp_path_factory)


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    procs: list[subprocess.Popen] = []

    def launch(*args: str, **env: str) -> tuple[subprocess.Popen, str, int]:
        proc = subprocess.Popen(daydream_cmd("browse", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=subprocess_env(**env))
        procs.append(proc)
        line = proc.stdout.readline()  # printed once the socket listens
        found = READY.match(line)
        assert found, (line, proc.stderr.read() if proc.poll() is not None else "")
        return proc, found.group(1), int(found.group(2))

    yield launch
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def test_port_0_takes_a_free_port_and_prints_it(finished: Path, start) -> None:
    _proc, url, port = start("-p", "0", "--db", str(finished))
    assert port != 0
    page = httpx.get(url, timeout=30)
    assert page.status_code == 200 and "demo" in page.text
    # A second one gets another free port rather than colliding with the first.
    _other, _url, second = start("--port", "0", "--db", str(finished))
    assert second not in (0, port)


def test_open_opens_the_printed_url_in_the_browser(finished: Path, start, tmp_path: Path) -> None:
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "fake-browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s" "$1" > "{opened}"\n')
    browser.chmod(0o755)
    _proc, url, _port = start("-p", "0", "--open", "--db", str(finished), BROWSER=str(browser))
    deadline = time.monotonic() + 30
    while not opened.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert opened.read_text() == url
    assert httpx.get(url, timeout=30).status_code == 200
