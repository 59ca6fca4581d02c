"""The submission notebook, assembled from the executed task notebooks (nothing here trains).

    ece046211_hw2_<id1>_<id2>.ipynb = the students block
                                      + one Markdown cell: the theory answers are in the PDF
                                      + results/task1_init.ipynb, task2_magic_mlp.ipynb, task3_imagenette_cnn.ipynb

Each task notebook is the record of one execution of experiments/<task>.py (see hw2.tasks). A task
whose result is not fresh (hw2.results.freshness: its source changed, its files were edited, ...) is
refused unless stale results are explicitly allowed. The cells are kept as they ran, outputs and
execution counts included; only presentation changes: headings move one level down (the tasks sit
under "Part 2"), and Quarto's `#|` cell-option comments are dropped.
"""
from __future__ import annotations

import re

import nbformat

from .errors import UserError
from .paths import ROOT
from .results import freshness

TASKS = ["task1_init", "task2_magic_mlp", "task3_imagenette_cnn"]
KEEP_TAGS = {"parameters", "injected-parameters"}


def students_markdown(students: list[dict]) -> str:
    """The students cell; each field escaped so that it renders as written (a | stays in its cell)."""
    from .report import STUDENT_FIELDS, notebook_text
    rows = "\n".join("| " + " | ".join(notebook_text(s[f].strip()) for f in STUDENT_FIELDS) + " |" for s in students)
    return ("# ECE 046211 Deep Learning, HW2: Multilayer NNs and Convolutional NNs\n\n"
            "## Students Information\n\n| Name | Campus e-mail | ID |\n|:--|:--|:--|\n" + rows)


def intro_markdown(pdf_name: str) -> str:
    return (f"**Part 1 (theory) is answered in `{pdf_name}`**, the PDF in this zip, which also holds the "
            "written answers of Part 2 in full. This notebook is Part 2, the code tasks. Each task below was "
            "executed top to bottom in a fresh kernel, and every number it prints was computed by the code "
            "above it; the execution counts restart at 1 with each task.\n\n"
            "To run it again: each task's parameters cell, near its top, holds `profile` (`\"smoke\"` runs a "
            "quick check in minutes on a CPU; `\"full\"` is the run shown); Tasks 1 and 2 install what a fresh "
            "Colab lacks in their first code cell, Task 3 needs `%pip install kornia==0.9.0`. The data is read from `data/` "
            "(`data/magic04.data`, `data/imagenette2-160/`) and downloaded there when missing.")


def demote_headings(markdown: str) -> str:
    return re.sub(r"^(#{1,5}) ", r"#\1 ", markdown, flags=re.M)


def clean_cell(cell):
    """A cell as it ran, without Quarto's `#|` option lines and the project's metadata."""
    tags = [t for t in cell.metadata.get("tags", []) if t in KEEP_TAGS]
    cell.metadata = {"tags": tags} if tags else {}
    if cell.cell_type == "code":
        cell.source = "\n".join(ln for ln in cell.source.split("\n") if not ln.startswith("#|")).lstrip("\n")
    else:
        cell.source = demote_headings(cell.source)
    return cell


def task_cells(name: str, base=None, allow_stale: bool = False) -> tuple[list, dict]:
    """The cells of results/<name>.ipynb under base (the render's snapshot), if fresh."""
    base = base or ROOT
    status, reason = freshness(name, base)
    if status == "missing" or (status == "stale" and not allow_stale):
        raise UserError(f"{name}: {reason}" + ("" if status == "missing" else
                        " (run it again, or `make report ALLOW_STALE=1`)"))
    path = base / "results" / f"{name}.ipynb"
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as e:   # nbformat raises several types for a broken file
        raise UserError(f"{path}: not a readable notebook ({e})") from None
    return [clean_cell(c) for c in nb.cells], {**nb.metadata.get("hw2", {}), "status": status}


def assemble(students: list[dict], pdf_name: str, base=None, allow_stale: bool = False):
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}, "hw2": {"tasks": {}}}
    nb.cells = [nbformat.v4.new_markdown_cell(students_markdown(students)),
                nbformat.v4.new_markdown_cell(intro_markdown(pdf_name)),
                nbformat.v4.new_markdown_cell("# Part 2 - Code Assignments")]
    for name in TASKS:
        cells, meta = task_cells(name, base, allow_stale)
        nb.cells += cells
        nb.metadata["hw2"]["tasks"][name] = {k: meta.get(k) for k in ("run_id", "source_hash", "status")}
    nbformat.validate(nb)
    return nb
