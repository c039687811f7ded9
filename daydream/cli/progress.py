"""How ``daydream run`` shows its progress (on stderr): rich's live display on a terminal, plain lines
otherwise.

One bar per stage: done/total, where done counts every finished generation of the stage in scope
(completed or failed, this run's or earlier ones'), the percentage, this run's rate and the time
left at that rate, and the stage's calls in flight (requests sent and not answered: never more than
the models' concurrency). Below the bars: calls, tokens and money. A resumed run's first line says
how much was already done. rich is imported only when a terminal display starts (start-up stays
light for every other command).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from daydream.run.pending import STAGE_ORDER
from daydream.run.stats import RunStats, StageStats

# Seconds between two plain progress lines (a log gets one now and then, not a flood).
PLAIN_EVERY_S = 5.0


def _stages(stats: RunStats) -> list[tuple[str, StageStats]]:
    return sorted(((n, s) for n, s in stats.stages.items() if s.total or s.done or s.failed),
                  key=lambda kv: (STAGE_ORDER.get(kv[0], 9), kv[0]))


def resume_line(stats: RunStats) -> str | None:
    """The first line of a resumed run: how much of the work in scope was done before it."""
    stages = _stages(stats)
    before = sum(s.done_before for _n, s in stages)
    if not before:
        return None
    total = sum(s.total for _n, s in stages)
    parts = ", ".join(f"{name} {s.done_before}/{s.total}" for name, s in stages)
    return f"resuming: {before} of {total} generations already done before this run ({parts})"


def money_line(stats: RunStats) -> str:
    """Calls, tokens and money so far (the line under the bars)."""
    from daydream.run.budget import usd

    failed = f" ({stats.failed_calls} failed)" if stats.failed_calls else ""
    budget = f" of {usd(stats.budget_usd)} budget" if stats.budget_usd is not None else ""
    estimated = f" ({usd(stats.estimated_usd)} estimated)" if stats.estimated_calls else ""
    return (f"calls {stats.calls}{failed}, {stats.calls_in_flight} in flight · tokens {stats.tokens:,} · "
            f"spent {usd(stats.spent_usd)}{estimated}{budget} · {time.monotonic() - stats.started:.0f}s")


def _rate_eta(stage: StageStats, elapsed: float) -> tuple[float | None, float | None]:
    """This run's generations finished per second, and seconds left at that rate."""
    made = stage.finished - stage.done_before
    if made <= 0 or elapsed <= 0:
        return None, None
    rate = made / elapsed
    return rate, max(0, stage.total - stage.finished) / rate


def plain_lines(stats: RunStats) -> list[str]:
    """The progress as plain text: one line per stage and the money line."""
    elapsed = time.monotonic() - stats.started
    out = []
    for name, s in _stages(stats):
        rate, eta = _rate_eta(s, elapsed)
        pct = 100.0 * s.finished / s.total if s.total else 100.0
        speed = f"{rate:.1f}/s, ETA {_clock(eta)}" if rate is not None and eta is not None else "-/s"
        failed = f", {s.failed} failed" if s.failed else ""
        out.append(f"{name} {s.finished}/{s.total} done ({pct:.0f}%){failed}, {speed}, "
                   f"{s.calls_in_flight} calls in flight")
    out.append(money_line(stats))
    return out


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class PlainView:
    """Plain lines (a log, a pipe): the resume line first, then the progress every few seconds."""

    def __init__(self, stream: Any = None, interval_s: float = PLAIN_EVERY_S) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval_s
        self.last = 0.0
        self.started = False

    def __call__(self, stats: RunStats, final: dict[str, dict[str, int]]) -> None:
        if not self.started:
            self.started = True
            self.last = time.monotonic()
            line = resume_line(stats)
            if line:
                self._write([line])
            return
        now = time.monotonic()
        if final or now - self.last < self.interval:
            return  # the run's summary follows the last report
        self.last = now
        self._write(["progress: " + " | ".join(plain_lines(stats))])

    def close(self) -> None:
        """Nothing to give back."""

    def _write(self, lines: list[str]) -> None:
        for line in lines:
            self.stream.write(line + "\n")
        self.stream.flush()


class RichView:
    """rich's live progress display: a bar per stage and the money line, redrawn in place."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}

    def _start(self, stats: RunStats) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn,
                                   TaskProgressColumn, TextColumn, TimeRemainingColumn)
        from rich.text import Text

        class RateColumn(ProgressColumn):
            """Generations finished per second by this run (rich's speed of the task)."""

            def render(self, task: Any) -> Text:
                return Text(f"{task.speed:.1f}/s" if task.speed else "-/s", style="progress.data.speed")

        class RunProgress(Progress):
            """The bars, then the money line."""

            summary = ""

            def get_renderables(self) -> Any:
                yield self.make_tasks_table(self.tasks)
                yield Text(self.summary)

        console = Console(file=self.stream)
        line = resume_line(stats)
        if line:
            console.print(line, highlight=False)
        self.progress = RunProgress(
            TextColumn("{task.description:<11}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
            RateColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[extra]}"),
            console=console, refresh_per_second=4, transient=False)
        for name, s in _stages(stats):
            # Work done before this run is where the bar starts, not part of this run's rate.
            self.tasks[name] = self.progress.add_task(name, total=s.total or None, completed=s.finished, extra="")
        self.progress.summary = money_line(stats)
        self.progress.start()

    def __call__(self, stats: RunStats, final: dict[str, dict[str, int]]) -> None:
        if self.progress is None:
            self._start(stats)
        for name, s in _stages(stats):
            if name not in self.tasks:
                self.tasks[name] = self.progress.add_task(name, total=s.total or None, completed=0, extra="")
            failed = f"{s.failed} failed · " if s.failed else ""
            self.progress.update(self.tasks[name], total=s.total or None, completed=s.finished,
                                 extra=f"{failed}{s.calls_in_flight} in flight")
        self.progress.summary = money_line(stats)
        if final:
            self.close()

    def close(self) -> None:
        """Draw the last state and stop redrawing (idempotent)."""
        if self.progress is not None and self.progress.live.is_started:
            self.progress.refresh()
            self.progress.stop()


def make_view(quiet: bool, stream: Any = None) -> Any:
    """The progress callback for a run: None with ``quiet``, rich's display on a terminal, else plain lines."""
    if quiet:
        return None
    stream = stream or sys.stderr
    if bool(getattr(stream, "isatty", lambda: False)()):
        return RichView(stream)
    return PlainView(stream)
