"""Benchmark: how long the CLI takes to start, side by side with ``python -c "import click"``.

Target (issue 15): ``daydream --help`` and ``daydream status`` on a small ledger each take at most 3x
the time of ``python -c "import click"`` measured in the same run. Every command runs as a fresh
process with the project's own interpreter, interleaved round by round so that load on the machine
hits all of them alike; the figures are medians.

Start-up is measured with compiled bytecode, as an installed package has it: the project's own
sources are compiled first (``compileall``, which writes ``__pycache__`` even where
PYTHONDONTWRITEBYTECODE is set), and the dependencies are compiled by ``uv sync`` (pyproject.toml
sets uv's ``compile-bytecode``). ``--no-compile`` skips the first step, to see what a missing cache costs.

    uv run python bench/startup.py [--runs 15] [--no-compile]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = 3.0


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds (each runs every command once)")
    parser.add_argument("--no-compile", action="store_true", help="do not compile the project's sources first")
    args = parser.parse_args()

    python = sys.executable
    daydream = shutil.which("daydream", path=str(Path(python).parent)) or "daydream"
    if not args.no_compile:
        for folder in ("daydream", "plugins"):
            compileall.compile_dir(REPO / folder, quiet=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAYDREAM_")}

    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "ledger.db")
        subprocess.run([daydream, "demo", "--db", db, "--quiet"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        commands = {
            'python -c "import click"': [python, "-c", "import click"],
            "python -c pass": [python, "-c", "pass"],
            "daydream --help": [daydream, "--help"],
            "daydream status demo": [daydream, "status", "demo", "--db", db],
        }
        for argv in commands.values():  # warm the page cache
            timed(argv, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                times[name].append(timed(argv, env))

    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians['python -c "import click"']
    print(f"start-up, medians of {args.runs} interleaved runs "
          f"({'sources compiled' if not args.no_compile else 'sources not compiled'}):")
    for name, median in medians.items():
        spread = f"{min(times[name]) * 1000:6.0f}-{max(times[name]) * 1000:.0f} ms"
        ratio = median / base
        verdict = ""
        if name.startswith("daydream"):
            verdict = f"  {'PASS' if ratio <= TARGET else 'FAIL'} (target <= {TARGET:.0f}x import click)"
        print(f"  {name:28s} {median * 1000:6.0f} ms  (min-max {spread})  {ratio:5.2f}x{verdict}")


if __name__ == "__main__":
    main()
