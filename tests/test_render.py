"""The report: the fallback renderer's pieces, then the whole render end to end."""
import json
import re
import shutil
import subprocess
import sys
import zipfile

import nbformat
import pytest

from hw2 import render
from hw2.errors import UserError
from hw2.paths import REPORT, ROOT
from hw2.report import output_stem, students

HEADINGS = [  # every heading of the assignment, in its order
    "Part 1 - Theory",
    "Question 1 - Generalization in A Teacher-Student Setup",
    "Question 2 - \u201cTypical\u201d Generalization in Multilayer Neural Networks",
    "Question 3 - Deep Double Descent",
    "Question 4 - Initialization",
    "Question 5 - Invariance and Equivariance",
    "Question 6 - VGG Architecture",
    "Part 2 - Code Assignments",
    "Task 1 - The Importance of Activation and Initialization",
    "Task 2 - MLP-based Deep Classifier",
    "Task 3 - Design a CNN",
]
PLACEHOLDER = "Not yet answered."


# --- pieces ------------------------------------------------------------------------------------
def test_includes_resolve_recursively_and_name_missing_files(tmp_path):
    (tmp_path / "a.qmd").write_text("A\n{{< include sub/b.qmd >}}\nend\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.qmd").write_text("B\n{{< include c.qmd >}}\n")
    (tmp_path / "sub" / "c.qmd").write_text("C\n")
    assert render.expand_includes(tmp_path / "a.qmd") == "A\nB\nC\nend\n"
    (tmp_path / "sub" / "c.qmd").unlink()
    with pytest.raises(UserError, match="c.qmd does not exist"):
        render.expand_includes(tmp_path / "a.qmd")


def test_cell_options_are_parsed_and_stripped():
    opts, code = render.cell_options('#| label: fig-x\n#| fig-cap: "A: b"\n#| echo: false\nx = 1\n#| not-an-option')
    assert opts == {"label": "fig-x", "fig-cap": "A: b", "echo": False}
    assert code == "x = 1\n#| not-an-option"


def fake_notebook():
    nb = nbformat.v4.new_notebook()
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    nb.cells = [
        nbformat.v4.new_markdown_cell("See @fig-curve, @tbl-t and @eq-e.\n\n$$ a = b $$ {#eq-e}"),
        nbformat.v4.new_code_cell("#| echo: false\nsecret_code()", metadata={"quarto": {"echo": False}},
                                  outputs=[nbformat.v4.new_output("stream", name="stdout", text="printed\n")]),
        nbformat.v4.new_code_cell("#| label: fig-curve\n#| fig-cap: The curve\nshow()",
                                  metadata={"quarto": {"label": "fig-curve", "fig-cap": "The curve"}},
                                  outputs=[nbformat.v4.new_output("display_data", data={"image/png": png})]),
        nbformat.v4.new_code_cell("#| label: tbl-t\n#| tbl-cap: T\n#| echo: false\ntab()",
                                  metadata={"quarto": {"label": "tbl-t", "tbl-cap": "T", "echo": False}},
                                  outputs=[nbformat.v4.new_output("display_data", data={"text/markdown": "|a|b|\n|--|--|\n|1|2|"})]),
        nbformat.v4.new_code_cell("#| output: false\nvisible()", metadata={"quarto": {"output": False}},
                                  outputs=[nbformat.v4.new_output("stream", name="stdout", text="hidden output\n")]),
        nbformat.v4.new_code_cell("#| include: false\ngone()", metadata={"quarto": {"include": False}}),
    ]
    return nb


def test_markdown_honours_cell_options(tmp_path):
    nb = fake_notebook()
    refs = render.number_crossrefs(nb)
    assert refs == {"eq-e": ("Equation", 1), "fig-curve": ("Figure", 1), "tbl-t": ("Table", 1)}
    md = render.to_markdown(nb, refs, tmp_path, {"echo": True})
    assert "#|" not in md
    assert "secret_code" not in md and "printed" in md            # echo: false hides code, keeps output
    assert "![The curve](cell2_0.png){#fig-curve" in md and (tmp_path / "cell2_0.png").exists()
    assert "Table: T \\label{tbl-t}" in md
    assert "visible()" in md and "hidden output" not in md           # output: false
    assert "gone()" not in md                                        # include: false
    assert "Figure\\ \\ref{fig-curve}" in md and "(\\ref{eq-e})" in md   # "\\ " is pandoc's non-breaking space
    assert "\\begin{equation}\\label{eq-e}a = b\\end{equation}" in md


def test_unlabelled_display_before_labelled_one_is_left_alone():
    text = "$$ a $$\n\n**Step**\n\n$$ b $$ {#eq-b}"
    out = render.equations_to_latex(text)
    assert out.startswith("$$ a $$\n\n**Step**") and "\\begin{equation}\\label{eq-b}b\\end{equation}" in out


def test_notebook_crossrefs_become_numbers():
    refs = {"fig-curve": ("Figure", 3), "eq-e": ("Equation", 2)}
    assert render.replace_refs("in @fig-curve and @eq-e.", refs, latex=False) == "in Figure 3 and (2)."
    assert render.equations_for_notebook("$$ x $$ {#eq-e}", refs) == "$$ x \\tag{2}$$"


def test_students_config_names_the_files(tmp_path, monkeypatch):
    assert output_stem() == "ece046211_hw2_" + "_".join(s["id"] for s in students())
    cfg = tmp_path / "s.toml"
    cfg.write_text('[[students]]\nname="A"\nemail="a@x"\nid="000000018"\n[[students]]\nname="B"\nemail="b@x"\nid="123456782"\n')
    monkeypatch.setenv("HW2_STUDENTS", str(cfg))
    assert output_stem() == "ece046211_hw2_000000018_123456782"
    cfg.write_text('[[students]]\nname="A"\n')
    with pytest.raises(UserError, match="needs exactly two"):
        output_stem()


def test_remaining_placeholders_are_listed():
    """Passes always; prints which parts are still unanswered (run with -s or see -ra)."""
    remaining = {}
    for path in sorted(REPORT.glob("*.qmd")):
        n = path.read_text().count(PLACEHOLDER)
        if n:
            remaining[path.name] = n
    print(f"\n{sum(remaining.values())} part(s) not yet answered: {remaining}")


# --- end to end --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    if not (shutil.which("xelatex") or shutil.which("lualatex")) or not shutil.which("pandoc"):
        pytest.skip("no LaTeX engine or pandoc (make test installs them)")
    out = tmp_path_factory.mktemp("render")
    proc = subprocess.run([sys.executable, "-m", "hw2.render", "--engine", "fallback", "--out-dir", str(out),
                           "--allow-stale"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stem = output_stem()
    text = subprocess.run(["pdftotext", "-layout", str(out / f"{stem}.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    return out, stem, text, proc


@pytest.mark.slow
def test_three_files_and_zip(rendered):
    out, stem, _, proc = rendered
    for ext in ("pdf", "ipynb", "zip"):
        assert (out / f"{stem}.{ext}").stat().st_size > 0
    with zipfile.ZipFile(out / f"{stem}.zip") as z:
        assert sorted(z.namelist()) == [f"{stem}.ipynb", f"{stem}.pdf"]
    assert "Quarto not found" in proc.stderr


@pytest.mark.slow
def test_pdf_shows_students_headings_and_q6(rendered):
    _, _, text, _ = rendered
    flat = re.sub(r"\s+", " ", text)
    for s in students():
        assert s["id"] in flat and s["name"] in flat
    for heading in HEADINGS:
        assert heading in flat, heading
    total = json.loads((ROOT / "results" / "q6_vgg11.json").read_text())["metrics"]["total_params"]
    assert f"{total:,}" in flat
    assert "Rendered without Quarto" in flat
    assert "#|" not in text and "R.md(" not in text           # options and hidden code stay hidden
    assert flat.index(HEADINGS[0]) > flat.index(students()[0]["id"])   # students block first


@pytest.mark.slow
def test_notebook_is_a_valid_submission(rendered):
    out, stem, _, _ = rendered
    nb = nbformat.read(str(out / f"{stem}.ipynb"), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert all(s.strip() for s in markdown)                              # no empty cells
    assert not any(re.search(r"^#+ .*\{[.#]", s, re.M) for s in markdown)  # no pandoc attributes
    first = "\n".join(c.source if c.cell_type == "markdown" else
                      "".join(o.get("data", {}).get("text/markdown", "") for o in c.outputs)
                      for c in nb.cells[:5])
    for s in students():
        assert s["id"] in first and s["email"] in first


@pytest.mark.skipif(shutil.which("quarto") is None, reason="quarto is not on PATH (pip install quarto-cli needs GitHub)")
def test_quarto_path(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hw2.render", "--engine", "quarto", "--out-dir", str(tmp_path),
                           "--allow-stale"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stem = output_stem()
    assert all((tmp_path / f"{stem}.{ext}").exists() for ext in ("pdf", "ipynb", "zip"))
