"""No typed numbers: prose quotes a result through an inline expression or a cell's print, never by hand.

Scanned: the Markdown cells of the three task sources (a number there must be one that task's
executed notebook prints, or the assignment's own) and the prose of report/*.qmd (outside code
cells, inline expressions, code spans and labels; in math only decimals, since integers there are a
formula's constants). What is left must be the assignment's own number or on the allow-list below,
each entry with its reason.
"""
import re

import jupytext
import pytest

from quoted_numbers import ROOT, assignment_numbers, notebook_output_text, printed_values, unprinted

TASKS = ["task1_init", "task2_magic_mlp", "task3_imagenette_cnn"]

# Numbers that are definitions, not results: what they are is said beside each.
ALLOWED = {
    "0": "zero", "1": "one", "2": "two (a pair, a factor)", "3": "RGB channels, kernel sizes",
    "4": "bytes per float32", "6": "10^6 bytes per MB", "9": "digits of an ID", "10": "ten classes / features",
    "32": "float32, a 32-pixel size", "64": "the 64x64 images", "100": "percent",
    "1000": "ImageNet's classes (VGG)", "1.0": "a probability of one", "255": "the largest uint8 value",
}


# Per report file: numbers that are not results of ours.
QMD_ALLOWED = {
    "_q3_double_descent.qmd": {"2020": "Nakkiran et al., 2020", "2021": "Heckel and Yilmaz, 2021",
                               "1912.02292": "an arXiv identifier", "2007.10099": "an arXiv identifier",
                               "80": "80K steps: the assignment figure's caption", "12": "width 12: the assignment figure's legend"},
    "_appendix_q3.qmd": {"2021": "Heckel and Yilmaz, ICLR 2021", "2007.10099": "an arXiv identifier"},
    "_appendix_part1.qmd": {"2013": "Lin et al., 2013", "2014": "GoogLeNet, 2014", "2015": "ResNet, 2015",
                            "1.5": "a worked example's point (1, 1.5)", "1.05": "the factor of a deliberately wrong bound"},
    "_appendix_checks.qmd": {"1.01": "the factor of the deliberately wrong formulas"},
}


def strip_prose(text: str) -> str:
    """Prose only: no code cells, raw blocks, front matter, inline expressions, code spans, labels,
    links' targets, or math integers."""
    text = re.sub(r"^```.*?^```[ \t]*$", "", text, flags=re.S | re.M)           # code cells, raw blocks
    text = re.sub(r"^~~~.*?^~~~[ \t]*$", "", text, flags=re.S | re.M)
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)                   # front matter
    text = re.sub(r"\{\{<.*?>\}\}", "", text)                                   # shortcodes
    text = re.sub(r"`\{python\}[^`]*`", "", text)                               # inline expressions
    text = re.sub(r"`[^`\n]*`", "", text)                                       # code spans
    text = re.sub(r"\{#[^}]*\}|@(?:sec|fig|tbl|eq)-[\w-]+", "", text)            # labels, references
    text = re.sub(r"\]\([^)]*\)", "]", text)                                    # link targets
    text = re.sub(r"^#+ .*$", "", text, flags=re.M)                             # headings (their numbering)
    text = re.sub(r"^\s*\d+\.\s", "", text, flags=re.M)                         # list numbers

    def math(m):                                                                # math: decimals only
        return " ".join(re.findall(r"\d+\.\d+", m.group(0)))
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]+\$", math, text, flags=re.S)
    return text


def typed(text: str, printed: set, extra=()) -> list[str]:
    allowed = assignment_numbers() | {__import__("decimal").Decimal(k) for k in [*ALLOWED, *extra]}
    return unprinted(strip_prose(text), printed, allowed)


@pytest.mark.parametrize("task", TASKS)
def test_task_markdown_types_only_printed_numbers(task):
    nb = jupytext.read(ROOT / "experiments" / f"{task}.py", fmt="py:percent")
    printed = printed_values(notebook_output_text(ROOT / "results" / f"{task}.ipynb"))
    found = {i: typed(c.source, printed) for i, c in enumerate(nb.cells) if c.cell_type == "markdown"}
    bad = {i: f for i, f in found.items() if f}
    assert not bad, f"{task}: Markdown cells (by index) type numbers no cell prints: {bad}"


@pytest.mark.parametrize("qmd", sorted(p.name for p in (ROOT / "report").glob("*.qmd")))
def test_report_prose_types_no_number(qmd):
    found = typed((ROOT / "report" / qmd).read_text(), set(), QMD_ALLOWED.get(qmd, {}))
    assert not found, f"report/{qmd} types numbers (use an inline expression): {found}"


def test_a_planted_typed_number_is_caught():
    prose = "The network reached **91.23%** on the test set, `{python} R.pct(x)` in all, $p = 0.37$."
    assert typed(prose, set()) == ["91.23%", "0.37"]
    assert typed("Reached `{python} R.pct(x)` and $2^{-50}$ (see @fig-a).", set()) == []
