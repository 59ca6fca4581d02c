"""The report: the fallback renderer's pieces, then the whole render end to end."""
import json
import re
import shutil
import subprocess
import sys
import time
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
    assert "Figure\\ \\ref{fig-curve}" in md and "Equation\\ \\ref{eq-e}" in md   # "\\ " is pandoc's non-breaking space
    assert "\\begin{equation}\\label{eq-e}a = b\\end{equation}" in md


def test_unlabelled_display_before_labelled_one_is_left_alone():
    text = "$$ a $$\n\n**Step**\n\n$$ b $$ {#eq-b}"
    out = render.equations_to_latex(text)
    assert out.startswith("$$ a $$\n\n**Step**") and "\\begin{equation}\\label{eq-b}b\\end{equation}" in out


# A tiny report rendered through the fallback: inline expressions and cross-references as Quarto
# documents them (quarto.org/docs/computations/inline-code.html, .../authoring/cross-references.html).
TINY_QMD = """---
title: Tiny
---

```{python}
from IPython.display import Markdown
x = 41
name = "a_b*c"
```

The answer is `{python} x + 1`; the name is `{python} name`; this is `{python} Markdown('**bold**')`.
Literal: ``{python} x``. See @fig-dot, @tbl-t and @eq-e, and [the methods](#sec-methods).

```{python}
x = 7
```

Now `{python} x`, after the cell that changed it.

$$ a = b $$ {#eq-e}

## Methods {#sec-methods}

```{python}
#| label: fig-dot
#| fig-cap: A dot
from IPython.display import display
display({"image/png": "PNG"}, raw=True)
```

```{python}
#| label: tbl-t
#| tbl-cap: T
Markdown("| a | b |\\n|--|--|\\n| 1 | 2 |")
```
"""


def render_tiny(tmp_path, qmd: str, pdf: bool = False):
    (tmp_path / "tiny.qmd").write_text(qmd.replace("PNG", fake_notebook().cells[2].outputs[0]["data"]["image/png"]))
    if pdf:
        return render.fallback_render("tiny", tmp_path, main=tmp_path / "tiny.qmd")
    _, nb = render.read_notebook(tmp_path / "tiny.qmd")
    refs = render.number_crossrefs(nb)
    render.execute(nb, tmp_path / "tiny.qmd")
    md = render.to_markdown(nb, refs, tmp_path, render.project_defaults())
    render.check_refs(md, refs, tmp_path / "tiny.qmd")
    return md


@pytest.mark.slow
def test_inline_expressions_and_references_in_a_tiny_report(tmp_path):
    md = render_tiny(tmp_path, TINY_QMD)
    assert "The answer is 42;" in md                          # evaluated after the cell before it
    assert "the name is a\\_b\\*c;" in md                      # a str: no quotes, Markdown escaped
    assert "this is **bold**." in md                          # IPython's Markdown(): Markdown
    assert "``{python} x``" in md                             # the escaped form stays literal
    assert "Now 7, after" in md                               # document order
    assert "Figure\\ \\ref{fig-dot}" in md and "Table\\ \\ref{tbl-t}" in md and "Equation\\ \\ref{eq-e}" in md
    assert "[the methods](#sec-methods)" in md and "{python}" not in md.replace("``{python} x``", "")
    pdf = render_tiny(tmp_path, TINY_QMD, pdf=True)
    text = " ".join(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout.split())
    assert "The answer is 42; the name is a_b*c; this is bold." in text
    assert "See Figure 1, Table 1 and Equation 1, and the methods." in text
    assert "Now 7, after" in text


@pytest.mark.slow
def test_a_bad_inline_expression_is_one_line_naming_it(tmp_path):
    with pytest.raises(UserError) as e:
        render_tiny(tmp_path, "Text `{python} undefined_name + 1` here.\n\nLater `{python} 1`.\n")
    assert str(e.value) == (f"{tmp_path / 'tiny.qmd'}: inline expression `{{python}} undefined_name + 1` failed: "
                            f"NameError: name 'undefined_name' is not defined")


def test_references_to_nothing_or_to_unnumbered_sections_are_one_line(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## Intro {#sec-intro}\n\nSee @fig-none.")]
    refs = render.number_crossrefs(nb)
    assert refs == {"sec-intro": ("Section", 1)}
    (tmp_path / "a.qmd").write_text("See @fig-none.")
    with pytest.raises(UserError, match=r"a.qmd: cross-reference @fig-none names no figure"):
        render.check_refs(render.replace_refs("See @fig-none.", refs), refs, tmp_path / "a.qmd")
    with pytest.raises(UserError, match=r"@sec-intro needs `number-sections: true`.*\[the section's name\]\(#sec-intro\)"):
        render.check_refs(render.replace_refs("See @sec-intro.", refs), refs, tmp_path / "a.qmd")
    assert render.replace_refs("mail a@fig-x.org", refs) == "mail a@fig-x.org"     # an address, not a reference


def test_inline_values_follow_quartos_rules():
    def value(data):
        return render.inline_value({"outputs": [{"output_type": "execute_result", "data": data}]})
    assert value({"text/plain": "'12.5%'"}) == "12\\.5%"                 # quotes dropped, '.' escaped
    assert value({"text/plain": "3"}) == "3"                             # not a str: as printed
    assert value({"text/plain": "<Markdown>", "text/markdown": "$x_1$"}) == "$x_1$"
    assert value({"text/plain": "x", "text/latex": "\\alpha"}) == "`\\alpha`{=tex}"
    assert render.inline_value({"outputs": []}) == "None"


def test_check_names_render_as_written():
    """The checks table shows each check's name as Markdown: a formula is code (`...`), so pandoc
    reads the name back to the same text, and no '|' splits the table's cell."""
    names = [c["check"] for p in sorted((ROOT / "results").glob("*.json"))
             for c in json.loads(p.read_text()).get("metrics", {}).get("checks", [])]
    assert names and not [n for n in names if "|" in n]
    plain = subprocess.run(["pandoc", "-f", "markdown-smart", "-t", "plain", "--wrap=none"], input="\n\n".join(names),
                           capture_output=True, text=True, check=True).stdout
    assert plain.rstrip("\n").split("\n\n") == [n.replace("`", "") for n in names]


def test_section_links_resolve_and_name_their_appendix():
    """Sections are unnumbered, so the report links them ([Appendix E](#sec-x)); every link names a
    heading's {#sec-x}, and "Appendix X" in its text is the appendix that heading is in."""
    text = render.expand_includes(render.MAIN)
    appendix_of, current = {}, None
    for m in re.finditer(r"^#+ (.*?)\s*(?:\{#(sec-[\w-]+)\})?[ \t]*$", text, re.M):
        current = re.match(r"Appendix [A-Z]\b", m.group(1)).group(0) if m.group(1).startswith("Appendix ") else (
            None if m.group(0).startswith("# ") else current)
        if m.group(2):
            appendix_of[m.group(2)] = current
    links = re.findall(r"\[([^\]]*)\]\(#(sec-[\w-]+)\)", text)
    assert links and [t for _, t in links if t not in appendix_of] == []
    assert [(label, t) for label, t in links if label.startswith("Appendix ") and label != appendix_of[t]] == []


def test_students_config_names_the_files(tmp_path, monkeypatch):
    assert output_stem() == "ece046211_hw2_" + "_".join(s["id"] for s in students())
    cfg = tmp_path / "s.toml"
    cfg.write_text('[[students]]\nname="A"\nemail="a@x.il"\nid="000000018"\n[[students]]\nname="B"\nemail="b@x.il"\nid="123456782"\n')
    monkeypatch.setenv("HW2_STUDENTS", str(cfg))
    assert output_stem() == "ece046211_hw2_000000018_123456782"
    cfg.write_text('[[students]]\nname="A"\n')
    with pytest.raises(UserError, match="needs exactly two"):
        output_stem()


def test_the_quarto_project_names_files_that_are_committed():
    """Quarto resolves _quarto.yml's paths from the project root; each must be a tracked file."""
    import yaml
    config = yaml.safe_load((ROOT / "_quarto.yml").read_text())
    paths = list(config["project"]["render"]) + [config["format"]["pdf"]["include-in-header"]]
    tracked = set(subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT).stdout.split())
    if not tracked:
        pytest.skip("not a git checkout")
    assert [p for p in paths if p not in tracked] == []


def test_the_fallback_renderer_takes_the_preamble_and_page_from_quarto_yml(tmp_path, monkeypatch):
    """One source of truth: the fallback reads _quarto.yml's pdf options, not a copy of them."""
    fmt = render.pdf_format()
    assert fmt["include-in-header"] and fmt["geometry"] and fmt["fontsize"]
    assert r"\usepackage{fvextra}" in render.latex_header(fmt)
    (tmp_path / "_quarto.yml").write_text("format:\n  pdf:\n    include-in-header: [a.tex, missing.tex]\n"
                                          "    geometry: margin=1cm\n")
    (tmp_path / "a.tex").write_text("% a comment, not text\n\\usepackage{xcolor}\n")
    monkeypatch.setattr(render, "ROOT", tmp_path)
    assert render.pdf_format()["geometry"] == "margin=1cm"
    with pytest.raises(UserError, match="include-in-header names missing.tex, which does not exist"):
        render.latex_header(render.pdf_format())
    header = render.latex_header({"include-in-header": "a.tex"})
    assert r"\usepackage{xcolor}" in header and "a comment" not in header


def test_no_part_is_left_unanswered():
    remaining = {p.name: p.read_text().count(PLACEHOLDER) for p in sorted(REPORT.glob("*.qmd"))}
    assert not {k: v for k, v in remaining.items() if v}, remaining


# --- end to end --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    if not (shutil.which("xelatex") or shutil.which("lualatex")) or not shutil.which("pandoc"):
        pytest.skip("no LaTeX engine or pandoc (make test installs them)")
    out = tmp_path_factory.mktemp("render")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hw2.render", "--engine", "fallback", "--out-dir", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]        # the committed results are fresh: no --allow-stale
    stem = output_stem()
    pages = []
    n = int(re.search(r"Pages:\s+(\d+)", subprocess.run(["pdfinfo", str(out / f"{stem}.pdf")], capture_output=True,
                                                       text=True, check=True).stdout).group(1))
    for i in range(1, n + 1):
        pages.append(subprocess.run(["pdftotext", "-layout", "-f", str(i), "-l", str(i), str(out / f"{stem}.pdf"), "-"],
                                    capture_output=True, text=True, check=True).stdout)
    return out, stem, pages, proc, time.perf_counter() - t0


def page_of(pages, pattern, start=0):
    """1-based number of the first page from `start` on whose text matches the pattern."""
    return next(i + 1 for i, p in enumerate(pages) if i >= start and re.search(pattern, p, re.M))


@pytest.mark.slow
def test_three_files_and_zip(rendered):
    out, stem, _, proc, _ = rendered
    for ext in ("pdf", "ipynb", "zip"):
        assert (out / f"{stem}.{ext}").stat().st_size > 0
    with zipfile.ZipFile(out / f"{stem}.zip") as z:
        assert sorted(z.namelist()) == [f"{stem}.ipynb", f"{stem}.pdf"]
    assert "Quarto not found" in proc.stderr                       # said on the console, not in the PDF


@pytest.mark.slow
def test_pdf_shows_students_headings_and_reads_as_answers(rendered):
    _, _, pages, _, _ = rendered
    flat = re.sub(r"\s+", " ", "".join(pages))
    for s in students():
        assert s["id"] in flat and s["name"] in flat
    for heading in HEADINGS:
        assert heading in flat, heading
    assert flat.index(HEADINGS[0]) > flat.index(students()[0]["id"])   # students block first
    assert "#|" not in flat and "R.md(" not in flat                     # options and hidden code stay hidden
    appendix = page_of(pages, r"^\s*Appendices\s*$", start=2)
    answers = re.sub(r"\s+", " ", "".join(pages[:appendix - 1]))
    for banned in ("Rendered without Quarto", ".json", "results/", "commit", "tests/", "experiments/", "derivations/", ".cache"):
        assert banned not in answers, banned


@pytest.mark.slow
def test_answers_fit_the_page_budget(rendered):
    """The answers end by page 16 (the appendices start on a new page), 30 pages in all."""
    _, _, pages, _, _ = rendered
    assert page_of(pages, r"^\s*Part 2 - Code Assignments\s*$", start=2) <= 13
    assert page_of(pages, r"^\s*Appendices\s*$", start=2) <= 17
    assert len(pages) <= 30


@pytest.mark.slow
def test_pdf_numbers_come_from_the_results(rendered):
    _, _, pages, _, _ = rendered
    flat = re.sub(r"\s+", " ", "".join(pages))
    total = json.loads((ROOT / "results" / "q6_vgg11.json").read_text())["metrics"]["total_params"]
    assert f"{total:,}" in flat
    t3 = json.loads((ROOT / "results" / "task3_imagenette_cnn.json").read_text())["metrics"]
    for stage in ("noaug", "aug"):
        assert f"{100 * t3[stage]['test_accuracy_mean']:.2f}%" in flat
    t2 = json.loads((ROOT / "results" / "task2_magic_mlp.json").read_text())["metrics"]
    assert f"{100 * t2['test_accuracy_mean']:.2f}%" in flat


@pytest.mark.skipif(render.quarto_bin() is None, reason="quarto is not on PATH (pip install quarto-cli needs GitHub)")
def test_quarto_path(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hw2.render", "--engine", "quarto", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stem = output_stem()
    assert all((tmp_path / f"{stem}.{ext}").exists() for ext in ("pdf", "ipynb", "zip"))


@pytest.mark.slow
def test_ctrl_c_during_the_render_is_one_line_and_leaves_no_output(tmp_path):
    import os
    import signal
    proc = subprocess.Popen([sys.executable, "-m", "hw2.render", "--engine", "fallback", "--out-dir", str(tmp_path / "o"),
                             "--allow-stale"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    err = ""
    while "fallback renderer" not in err:        # the report's cells are about to run
        line = proc.stderr.readline()
        assert line, "the render ended before it could be interrupted"
        err += line
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGINT)           # a terminal's Ctrl-C reaches the whole group
    _, rest = proc.communicate(timeout=120)
    err += rest
    assert proc.returncode == 130, err
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == ["error: render interrupted; nothing written"]
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


# --- the output folder and interruptions (issue 19, cases 11 to 14) ------------------------------
# The render with what it reads stubbed out (the results' check, the task notebooks, the data
# check): these tests reach the step they are about in a second or two, not a full render's minute.
STUBS = """
import sys
from pathlib import Path
import nbformat
from hw2 import data, render, submission
data.check_datasets = lambda *a, **k: None
render.check_snapshot = lambda base, allow_stale: []
submission.assemble = lambda *a, **k: nbformat.v4.new_notebook()
"""


def stub_the_render(monkeypatch, fallback_render):
    from hw2 import data, submission
    monkeypatch.setattr(data, "check_datasets", lambda *a, **k: None)
    monkeypatch.setattr(render, "check_snapshot", lambda base, allow_stale: [])
    monkeypatch.setattr(submission, "assemble", lambda *a, **k: nbformat.v4.new_notebook())
    monkeypatch.setattr(render, "fallback_render", fallback_render)


def fake_pdf(stem, build):
    (build / f"{stem}.pdf").write_bytes(b"%PDF-1.5 new\n")
    return build / f"{stem}.pdf"


def no_cell_may_run(stem, build):
    raise AssertionError("the report's cells ran before the output folder was checked")


@pytest.fixture
def unwritable(tmp_path):
    """A folder nobody may write, root included (chattr +i), or not this user (chmod)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    import os
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("running as root where chattr +i is not allowed: no folder is unwritable")
        yield folder
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def test_an_out_dir_that_is_a_file_or_unwritable_is_one_line_before_any_cell_runs(tmp_path, monkeypatch, capsys,
                                                                                  unwritable):
    stub_the_render(monkeypatch, no_cell_may_run)
    afile = tmp_path / "out"
    afile.write_text("not a folder")
    cases = [(afile, f"error: {afile}: --out-dir is a file, not a folder"),
             (afile / "sub", f"error: {afile / 'sub'}: --out-dir cannot be made: {afile} is a file"),
             (unwritable, f"error: {unwritable}: --out-dir is not writable"),
             (unwritable / "a" / "b", f"error: {unwritable / 'a' / 'b'}: --out-dir cannot be made: {unwritable} "
                                      f"is not writable")]
    for out, line in cases:
        t0 = time.perf_counter()
        assert render.main(["--engine", "fallback", "--out-dir", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(line) and err.count("\n") == 1 and "Traceback" not in err, err
        assert time.perf_counter() - t0 < 2
    assert afile.read_text() == "not a folder" and list(unwritable.iterdir()) == []


def test_a_link_planted_in_the_out_dir_is_not_written_through(tmp_path, monkeypatch, capsys):
    import os
    stub_the_render(monkeypatch, fake_pdf)
    stem, out = output_stem(), tmp_path / "out"
    out.mkdir()
    victims = {}
    for name in [f".{stem}.{ext}.tmp" for ext in ("pdf", "ipynb", "zip")] + [f"{stem}.pdf"]:
        victims[name] = tmp_path / f"victim-{name}"        # the old temporary names, and an output's own
        victims[name].write_text("precious")
        (out / name).symlink_to(victims[name])
    assert render.main(["--engine", "fallback", "--out-dir", str(out)]) == 0, capsys.readouterr().err
    assert [v.name for v in victims.values() if v.read_bytes() != b"precious"] == []
    pdf = out / f"{stem}.pdf"
    assert not pdf.is_symlink() and pdf.read_bytes() == b"%PDF-1.5 new\n"     # the link replaced, not followed
    umask = os.umask(0)
    os.umask(umask)
    assert pdf.stat().st_mode & 0o777 == 0o666 & ~umask                     # not mkstemp's 0600
    left = sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp") and not p.is_symlink())
    assert left == []


FAKE_PANDOC = """#!/bin/sh
# pandoc making its temporary folder, then running LaTeX for a long while
mkdir "$TMPDIR/tex2pdf.fake"
echo $$ > "$PANDOC_PID"
exec sleep 120
"""


def survivors(tmp_path) -> list[int]:
    """The processes still running with the render's TMPDIR: its children (kernel, pandoc, LaTeX)."""
    from pathlib import Path
    mark, found = f"TMPDIR={tmp_path / 'tmp'}\0".encode(), []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if mark in (proc / "environ").read_bytes() and (proc / "stat").read_text().split()[2] != "Z":
                found.append(int(proc.name))
        except OSError:       # ended meanwhile, or not ours to read
            pass
    return found


def sigterm_the_render(tmp_path, patches: str, ready=None):
    """Run the stubbed render with --out-dir tmp_path/out and TMPDIR tmp_path/tmp, send it SIGTERM
    (as `kill PID` does) once ready() holds (ready None: the patches send it), and return
    (returncode, stderr)."""
    import os
    import signal
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "PANDOC_PID": str(tmp_path / "pandoc.pid"),
           "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([sys.executable, "-c", STUBS + patches + "sys.exit(render.main(sys.argv[1:]))",
                             "--engine", "fallback", "--out-dir", str(tmp_path / "out")],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    t0 = time.perf_counter()
    while ready and not ready() and proc.poll() is None and time.perf_counter() - t0 < 60:
        time.sleep(0.05)
    if ready:
        assert proc.poll() is None, "the render ended before it could be terminated: " + proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def assert_interrupted_cleanly(tmp_path, returncode, err):
    assert returncode in (130, 143), err
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == ["error: render interrupted; nothing written"]
    assert "Traceback" not in err and "InvalidStateError" not in err, err
    assert list((tmp_path / "tmp").iterdir()) == []             # no hw2-render-*, tex2pdf.*, hw2-kernel-*
    assert not (tmp_path / "out").exists()
    t0 = time.perf_counter()
    while survivors(tmp_path) and time.perf_counter() - t0 < 5:
        time.sleep(0.05)
    assert survivors(tmp_path) == [], "a child outlived the render"


def test_sigterm_during_pandoc_is_one_line_kills_it_and_cleans_up(tmp_path):
    (tmp_path / "bin").mkdir()
    for tool in ("pandoc", "xelatex"):
        (tmp_path / "bin" / tool).write_text(FAKE_PANDOC)
        (tmp_path / "bin" / tool).chmod(0o755)
    pid_file = tmp_path / "pandoc.pid"
    patches = ("render.fallback_render = lambda stem, build: render.pandoc_pdf("
               "'Text.\\n', {'title': 'T'}, build, build / f'{stem}.pdf')\n")
    returncode, err = sigterm_the_render(tmp_path, patches, lambda: pid_file.exists() and pid_file.read_text())
    assert_interrupted_cleanly(tmp_path, returncode, err)


def test_sigterm_at_kernel_start_is_one_line_and_cleans_up(tmp_path):
    """SIGTERM just after the kernel process started, twice: nbclient's clean-ups race the start on
    jupyter_client's `ready` future (the InvalidStateError the issue saw once), made certain here by
    a slow shutdown."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "tiny.qmd").write_text("```{python}\nx = 1\n```\n\nText.\n")
    patches = f"""
import asyncio, os, signal
from jupyter_client.manager import AsyncKernelManager
launch = AsyncKernelManager._async_launch_kernel
async def launch_then_sigterm(self, cmd, **kw):
    await launch(self, cmd, **kw)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.2)
    os.kill(os.getpid(), signal.SIGTERM)       # a second one, as an impatient supervisor sends
AsyncKernelManager._async_launch_kernel = launch_then_sigterm
finish = AsyncKernelManager._async_finish_shutdown
async def slow_finish(self, *a, **kw):
    await asyncio.sleep(1)     # the start completes first
    return await finish(self, *a, **kw)
AsyncKernelManager._async_finish_shutdown = slow_finish
AsyncKernelManager.finish_shutdown = slow_finish
import atexit, gc
atexit.register(gc.collect)    # the failed clean-up task is collected, and reported, before the end
tiny = render.fallback_render
render.fallback_render = lambda stem, build: tiny(stem, build, main=Path({str(tmp_path / 'tiny.qmd')!r}))
"""
    returncode, err = sigterm_the_render(tmp_path, patches)
    assert_interrupted_cleanly(tmp_path, returncode, err)


@pytest.mark.slow
def test_a_latex_error_names_the_qmd_line_and_keeps_the_markdown(tmp_path, monkeypatch):
    if not (shutil.which("xelatex") or shutil.which("lualatex")) or not shutil.which("pandoc"):
        pytest.skip("no LaTeX engine or pandoc (make test installs them)")
    monkeypatch.setattr(render, "KEPT", tmp_path / "kept", raising=False)
    kept = tmp_path / "kept" / "tiny.failed.md"
    # a macro typed in the source: its .qmd line
    qmd = "---\ntitle: Tiny\n---\n\nFirst paragraph.\n\nA **bold** claim \\undefinedmacro{} here.\n"
    with pytest.raises(UserError) as e:
        render_tiny(tmp_path, qmd, pdf=True)
    md_line = next(n for n, ln in enumerate(kept.read_text().splitlines(), 1) if "\\undefinedmacro" in ln)
    assert str(e.value) == (f"{tmp_path / 'tiny.qmd'}:7: pandoc/LaTeX failed at `A \\textbf{{bold}} claim "
                            f"\\undefinedmacro`: Undefined control sequence. (intermediate Markdown kept: "
                            f"{kept}:{md_line})")
    # TeX made by a cell: not in any .qmd, so the kept Markdown is named
    qmd = "```{python}\nfrom IPython.display import Markdown\nMarkdown('$\\\\frac{a$')\n```\n"
    with pytest.raises(UserError) as e:
        render_tiny(tmp_path, qmd, pdf=True)
    assert str(e.value) == (f"{kept}: pandoc/LaTeX failed: File ended while scanning use of \\frac . "
                            f"(the intermediate Markdown, kept)")
    assert "\\frac{a" in kept.read_text()
