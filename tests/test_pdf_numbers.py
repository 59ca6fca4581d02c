"""Print what you quote: every number the PDF's Part 2 quotes is printed by that task's notebook."""
import json
import os
import re
import subprocess
import sys

import pytest

from quoted_numbers import ROOT, assignment_numbers, notebook_output_text, printed_values, unprinted

TASKS = {"Task 1": "task1_init", "Task 2": "task2_magic_mlp", "Task 3": "task3_imagenette_cnn"}


@pytest.fixture(scope="module")
def part2(tmp_path_factory):
    """The rendered PDF's Part 2, as text, cut into its three tasks (figures as PNG: no axis labels)."""
    out = tmp_path_factory.mktemp("pdf")
    trace = out / "reads.json"               # what the report read, recorded on the way (hw2.reads)
    proc = subprocess.run([sys.executable, "-m", "hw2.render", "--engine", "fallback", "--out-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HW2_RASTER_FIGURES": "1", "HW2_TRACE_READS": str(trace)})
    assert proc.returncode == 0, proc.stderr
    text = subprocess.run(["pdftotext", "-layout", str(next(out.glob("*.pdf"))), "-"], capture_output=True,
                          text=True, check=True).stdout.replace("\f", "\n")
    body = text[text.index("Part 2 - Code Assignments", text.index("Part 2 - Code Assignments") + 1):]
    body = body[:body.index("\nAppendices")]
    cuts = [m.start() for m in re.finditer(r"^Task [123] - ", body, re.M)]
    assert len(cuts) == 3, cuts
    tasks = {f"Task {i + 1}": body[a:b] for i, (a, b) in enumerate(zip(cuts, cuts[1:] + [len(body)]))}
    return tasks, json.loads(trace.read_text())


@pytest.mark.slow
def test_report_reads_json_lists_what_the_report_reads(part2):
    """report/reads.json is what a render records: a result is validated against what is read."""
    assert part2[1] == json.loads((ROOT / "report" / "reads.json").read_text()), \
        "report/reads.json is out of date: run `python -m hw2.reads --update`"


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
def test_every_number_of_part2_is_printed_by_its_notebook(part2, task):
    printed = printed_values(notebook_output_text(ROOT / "results" / f"{TASKS[task]}.ipynb"))
    missing = unprinted(part2[0][task], printed, assignment_numbers())
    assert not missing, f"{task} quotes numbers its notebook does not print: {missing}"


@pytest.mark.slow
def test_a_planted_number_is_caught(part2):
    printed = printed_values(notebook_output_text(ROOT / "results" / "task3_imagenette_cnn.ipynb"))
    planted = part2[0]["Task 3"] + "\nThe ensemble reached 93.17% and a gap of 4.2 points.\n"
    assert unprinted(planted, printed, assignment_numbers()) == ["93.17%", "4.2 points"]
