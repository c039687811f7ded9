"""``daydream parse PARSER [--scale MIN-MAX] [FILE|-]``: one parser on one saved answer, for people and scripts."""

from __future__ import annotations

import subprocess
from pathlib import Path

from click.testing import CliRunner

from daydream.cli import cli
from tests.runner_fixtures import daydream_cmd, subprocess_env

JUDGED = "The essay is original.\n\n**Final Score:** 8/10\n\nIt would be 9 with evidence.\n"


def invoke(*args: str, stdin: str | bytes | None = None):
    return CliRunner().invoke(cli, ["parse", *args], input=stdin)


def test_score_prints_the_number_alone(tmp_path: Path) -> None:
    answer = tmp_path / "answer.txt"
    answer.write_text(JUDGED)
    result = invoke("score", "--scale", "0-10", str(answer))
    assert (result.exit_code, result.stdout) == (0, "8\n")
    assert invoke("score", "--scale", "1-5", "-", stdin="Rating: 3.5/5").stdout == "3.5\n"
    assert invoke("score", stdin="SCORE: 7").stdout == "7\n"  # 0-9 by default, stdin by default


def test_a_refused_answer_exits_1_with_the_reason_on_one_line(tmp_path: Path) -> None:
    result = invoke("score", "-", stdin=JUDGED)  # 8/10 on the default 0-9 scale
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "'8/10' is a score out of 10, but the rubric's scale is 0-9" in result.stderr
    two = invoke("score", "--scale", "0-10", stdin="Final score: 6\nFinal score: 8\n")
    assert two.exit_code == 1 and "two different final scores, 6 (line 1) and 8 (line 2)" in two.stderr


def test_other_parsers_print_their_text() -> None:
    result = invoke("essay_idea_last", stdin="<essay-idea>one</essay-idea><essay-idea>two</essay-idea>")
    assert (result.exit_code, result.stdout) == (0, "two\n")


def test_usage_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    bad_scale = invoke("score", "--scale", "ten", stdin="SCORE: 7")
    assert bad_scale.exit_code == 2 and "--scale 'ten'; expected MIN-MAX" in bad_scale.stderr
    no_scale = invoke("identity", "--scale", "0-10", stdin="text")
    assert no_scale.exit_code == 2 and "parser 'identity' does not read scores on a scale" in no_scale.stderr
    unknown = invoke("scores", stdin="SCORE: 7")
    assert unknown.exit_code == 1 and "no parser named 'scores'" in unknown.stderr
    missing = invoke("score", str(tmp_path / "nope.txt"))
    assert missing.exit_code == 2 and "nope.txt" in missing.stderr and "No such file" in missing.stderr
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("SCORE: 7, très bien".encode("latin-1"))
    binary = invoke("score", str(latin))
    assert binary.exit_code == 2 and "latin1.txt: the answer is not UTF-8 text" in binary.stderr
    for result in (bad_scale, no_scale, unknown, missing, binary):
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_a_script_reads_stdout_and_the_exit_code(tmp_path: Path) -> None:
    ok = subprocess.run(daydream_cmd("parse", "score", "--scale", "0-10"), input=JUDGED, text=True,
                        capture_output=True, env=subprocess_env(), timeout=60)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "8\n", "")
    refused = subprocess.run(daydream_cmd("parse", "score", "--scale", "0-10"), input="No score.", text=True,
                             capture_output=True, env=subprocess_env(), timeout=60)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("error: score: no labelled score") and refused.stderr.count("\n") == 1
