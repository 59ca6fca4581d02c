"""students.toml (issue 14, case 9; issue 19, cases 1-4): every problem is one line naming the student,
the field and what is wrong, reported by the render entry point before any cell runs and before
anything is written; what it holds comes out in the PDF and the notebook as written."""
import json
import os
import re
import subprocess
import sys
from html import unescape

import pytest

from hw2 import report
from hw2.errors import UserError
from hw2.paths import ROOT

GOOD = ("000000018", "123456782")        # pass the Israeli ID check digit


def toml(*people):
    return "".join("[[students]]\n" + "".join(f"{k} = {v}\n" for k, v in p.items()) for p in people)


def person(name="Dana Levi", email='"dana@campus.technion.ac.il"', id='"000000018"'):
    p = {"name": f'"{name}"' if name is not None else None, "email": email, "id": id}
    return {k: v for k, v in p.items() if v is not None}


def render_cli(tmp_path, students_file, data_dir=None):
    """`python -m hw2.render` (the last step of `make report`) into tmp_path/out; asserts nothing written."""
    env = {**os.environ, "HW2_STUDENTS": str(students_file), "HW2_NO_DOWNLOAD": "1"}
    if data_dir:
        env["HW2_DATA_DIR"] = str(data_dir)
    before, had_output = sorted(tmp_path.rglob("*")), (ROOT / "_output").exists()
    proc = subprocess.run([sys.executable, "-m", "hw2.render", "--engine", "fallback", "--out-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert sorted(tmp_path.rglob("*")) == before and not (tmp_path / "out").exists()
    assert (ROOT / "_output").exists() == had_output
    assert "Traceback" not in proc.stderr and "render: executed" not in proc.stderr
    return proc


def error_line(proc):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


BAD = [
    ('[[students]]\nname = "A\nemail = "a@x"\n', "TOML syntax error: ", "Illegal character '\\n' (at line 2, column 10)"),
    ('[[students]]\nname = "A"\nemail "a@x"\n', "TOML syntax error: ", "(at line 3, column 7)"),
    (toml(person()), "needs exactly two [[students]]", "(found 1)"),
    (toml(person(), person(name="Noa", id='"12345678a"')), "student 2 ('Noa'): field 'id' '12345678a' contains characters other than digits", "exactly 9 digits"),
    (toml(person(), person(name="Noa", id='""')), "student 2 ('Noa'): field 'id' is empty", ""),
    (toml(person(), person(name="Noa", id='"123 456"')), "student 2 ('Noa'): field 'id' '123 456' contains a space", ""),
    (toml(person(), person(name="Noa", id='"../../../tmp/x"')), "student 2 ('Noa'): field 'id' '../../../tmp/x' contains characters", ""),
    (toml(person(id='"12345678"'), person(name="Noa")), "student 1 ('Dana Levi'): field 'id' '12345678' has 8 digits", ""),
    (toml(person(), person(name="Noa", id="123456782")), "student 2 ('Noa'): field 'id' must be a quoted string, not 123456782", 'id = "012345678"'),
    (toml(person(), person(name="Noa", email=None, id='"123456782"')), "student 2 ('Noa'): field 'email' missing", ""),
    (toml(person(), person(name=None, id='"123456782"')), "student 2: field 'name' missing", ""),
    (toml(person(), person(name="Noa", email='"noa.campus"', id='"123456782"')), "student 2 ('Noa'): field 'email' 'noa.campus' is not an e-mail", ""),
    (toml(person(), person(name="Noa")), "student 2 ('Noa'): field 'id' '000000018' is the same as student 1's", ""),
]


@pytest.mark.parametrize("content, problem, detail", BAD)
def test_bad_students_file_is_one_line_before_any_cell(tmp_path, content, problem, detail):
    cfg = tmp_path / "students.toml"
    cfg.write_text(content)
    line = error_line(render_cli(tmp_path, cfg))
    assert line.startswith(f"error: {cfg}: {problem}") and detail in line, line


@pytest.mark.parametrize("content, problem, detail", BAD[2:])
def test_students_raises_the_same_in_process(tmp_path, monkeypatch, content, problem, detail):
    cfg = tmp_path / "students.toml"
    cfg.write_text(content)
    monkeypatch.setenv("HW2_STUDENTS", str(cfg))
    with pytest.raises(UserError) as e:
        report.output_stem()
    assert str(e.value).startswith(f"{cfg}: {problem}") and detail in str(e.value)


def test_good_students_name_the_files_without_warnings(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "students.toml"
    cfg.write_text(toml(person(id=f'"{GOOD[0]}"'), person(name="Noa", id=f'"{GOOD[1]}"')))
    monkeypatch.setenv("HW2_STUDENTS", str(cfg))
    report.check_students()
    assert report.output_stem() == f"ece046211_hw2_{GOOD[0]}_{GOOD[1]}"
    assert capsys.readouterr().err == ""


def test_failing_check_digit_only_warns_once(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "students.toml"
    cfg.write_text(toml(person(), person(name="Noa", id='"123456780"')))
    monkeypatch.setenv("HW2_STUDENTS", str(cfg))
    report.check_students()
    report.check_students()
    assert report.output_stem() == "ece046211_hw2_000000018_123456780"
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: {cfg}: student 2 ('Noa'): field 'id' '123456780' fails the Israeli ID "
                   f"check digit (a typo?); used as written"]


def test_placeholder_students_warn_loudly_before_the_render(tmp_path):
    """The template's students: `make report`'s render step says so first (the data error then
    stops it here, so the test renders nothing)."""
    cfg = tmp_path / "students.toml"
    cfg.write_text((ROOT / "students.toml").read_text())
    bad = tmp_path / "data" / "hw2-figures" / "double_descent_resnet.PNG"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not the course's figure")
    proc = render_cli(tmp_path, cfg, data_dir=tmp_path / "data")
    assert error_line(proc) == f"error: {bad}: sha256 does not match the course's figure"
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 3 and set(warnings[0][9:]) == {"!"}
    assert "placeholder students" in warnings[1] and "NOT ATTRIBUTABLE" in warnings[1]
    assert "check digit" not in proc.stderr           # the placeholders' IDs are known to fail it
    assert proc.stderr.index("NOT ATTRIBUTABLE") < proc.stderr.index("error:")


@pytest.mark.parametrize("name, id", [("Student 1", GOOD[0]), ("Dana Levi", "987654321")])
def test_one_placeholder_student_is_enough_to_warn(tmp_path, monkeypatch, name, id):
    cfg = tmp_path / "students.toml"
    cfg.write_text(toml(person(name=name, id=f'"{id}"'), person(name="Noa", id=f'"{GOOD[1]}"')))
    monkeypatch.setenv("HW2_STUDENTS", str(cfg))
    (w,) = report.students_warnings()
    assert "student 1" in w and "NOT ATTRIBUTABLE" in w


# --- issue 19, cases 1-4: what the PDF and the notebook show is what students.toml says ------------
def toml_string(value):
    """A TOML basic string holding value exactly (JSON's escapes are TOML's)."""
    return json.dumps(value, ensure_ascii=False)


def students_file(tmp_path, *people):
    """students.toml of (name, email, id) triples, any characters in them."""
    cfg = tmp_path / "students.toml"
    cfg.write_text(toml(*({"name": toml_string(n), "email": toml_string(e), "id": toml_string(i)} for n, e, i in people)))
    return cfg


def students_pdf_columns(tmp_path, monkeypatch, cfg) -> list[str]:
    """The students block of report/hw2.qmd rendered alone, through the fallback renderer's own
    steps (its cell executed in a kernel, the Markdown of its output, pandoc + xelatex with the
    report's preamble). Returns the text of each of the table's columns (Name, Campus e-mail, ID),
    its two cells one after the other, without whitespace (a long cell wraps) and without the marks
    pdftotext puts around right-to-left runs. A cell running into the next column spoils both."""
    from hw2 import render
    monkeypatch.setenv("HW2_STUDENTS", str(cfg))
    cell = re.search(r"^```\{python\}\n#\| label: students\n.*?^```\n", (ROOT / "report" / "hw2.qmd").read_text(), re.S | re.M)
    build = tmp_path / "build"
    build.mkdir()
    (build / "students.qmd").write_text('---\ntitle: "Students"\n---\n\n```{python}\nfrom hw2 import report as R\n```\n\n'
                                        + cell.group())
    meta, nb = render.read_notebook(build / "students.qmd")
    render.execute(nb)
    render.pandoc_pdf(render.to_markdown(nb, {}, build, render.project_defaults()), meta, build, build / "students.pdf")
    text = subprocess.run(["pdftotext", "-layout", str(build / "students.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    lines = re.sub("[\u202a-\u202e]", "", text).splitlines()
    head = next(k for k, ln in enumerate(lines) if ln.split() == ["Name", "Campus", "e-mail", "ID"])
    starts = [lines[head].index(word) for word in ("Name", "Campus", "ID")]
    rows = lines[head + 1:lines.index("", head + 1)]               # the table's lines end at the first blank one
    return [squeeze("".join(ln[a:b] for ln in rows)) for a, b in zip(starts, starts[1:] + [None])]


def notebook_cells(people) -> list[list[str]]:
    """The notebook's students cell as Jupyter shows it: the text of each table row's cells."""
    from markdown_it import MarkdownIt
    from hw2.submission import students_markdown
    html = MarkdownIt("commonmark").enable("table").render(students_markdown(people))
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    return [[unescape(re.sub(r"<[^>]+>", "", cell)) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in rows if "<td" in row]


def squeeze(text):
    """Without whitespace: a long cell wraps onto several lines of the PDF."""
    return "".join(text.split())


def test_hebrew_names_appear_right_to_left_in_pdf_and_notebook(tmp_path, monkeypatch):
    """Case 1: a Hebrew name vanished from the PDF (its font has no Hebrew). Left to right, the
    words of 'ישראל ישראלי' would come out of pdftotext swapped."""
    people = [("ישראל ישראלי", "israel@campus.technion.ac.il", GOOD[0]), ("Dana דנה Cohen", "dana@campus.technion.ac.il", GOOD[1])]
    columns = students_pdf_columns(tmp_path, monkeypatch, students_file(tmp_path, *people))
    assert columns == [squeeze(a + b) for a, b in zip(*people)]
    assert notebook_cells(report.students()) == [list(p) for p in people]


TEX_SPECIALS = "& % $ # _ { } ~ ^ \\"


def test_tex_and_markdown_syntax_in_fields_comes_out_as_written(tmp_path, monkeypatch):
    """Cases 2 and 3: a | shifted the table's columns, \\input{file} printed the file, a \\ vanished.
    Every character must come out as itself, in the PDF and in the notebook."""
    secret = tmp_path / "secret.txt"
    secret.write_text("THE SECRET FILE\n")
    name1 = f"Dana \\input{{{secret}}} \\relax\\def\\x{{Y}}\\x $x^2$ \\\\ \\par {TEX_SPECIALS} | Levi"
    email1 = f"o'brien+a&b%c$d#e_f{{g}}h~i^j\\k|l\\input{{{secret}}}@campus.technion.ac.il"
    name2 = "Noa | *em* _u_ `c` \"q\" ''two'' ,, << >> -- --- !` ?` @fig-x <b>h</b> [l](u) {{< include x >}} &amp;"
    people = [(name1, email1, GOOD[0]), (name2, "noa@campus.technion.ac.il", GOOD[1])]
    columns = students_pdf_columns(tmp_path, monkeypatch, students_file(tmp_path, *people))
    assert columns == [squeeze(a + b) for a, b in zip(*people)]       # nothing of the secret file either
    assert notebook_cells(report.students()) == [list(p) for p in people]


BAD_19 = [
    (("Dana\nLevi", "dana@campus.technion.ac.il"), "student 1 ('Dana\\nLevi'): field 'name' contains the control character U+000A; a field is one line"),
    (("Dana Levi", "dana@campus.technion.ac.il\t"), "student 1 ('Dana Levi'): field 'email' contains the control character U+0009"),
    (("Dana \u202eiveL", "dana@campus.technion.ac.il"), "field 'name' contains the control character U+202E RIGHT-TO-LEFT OVERRIDE"),
    (("Dana\u2028Levi", "dana@campus.technion.ac.il"), "field 'name' contains the control character U+2028 LINE SEPARATOR"),
    (("Иван Петров", "ivan@campus.technion.ac.il"), "student 1 ('Иван Петров'): field 'name' 'Иван Петров': the PDF's font (Latin Modern Roman) cannot show 'И' (U+0418 CYRILLIC CAPITAL LETTER I); write it in Latin or Hebrew letters"),
    (("Dana 😀", "dana@campus.technion.ac.il"), "field 'name' 'Dana 😀': the PDF's font (Latin Modern Roman) cannot show"),
    (("Dana Levi", "dana@localhost"), "student 1 ('Dana Levi'): field 'email' 'dana@localhost' is not an e-mail address (name@domain, a dot in the domain, no spaces)"),
    (("Dana Levi", "dana levi@campus.technion.ac.il"), "field 'email' 'dana levi@campus.technion.ac.il' is not an e-mail address"),
    (("Dana Levi", "@campus.technion.ac.il"), "field 'email' '@campus.technion.ac.il' is not an e-mail address"),
    (("Dana Levi", "dana@campus..ac.il"), "field 'email' 'dana@campus..ac.il' is not an e-mail address"),
    (("Dana Levi", "dana@a@campus.technion.ac.il"), "field 'email' 'dana@a@campus.technion.ac.il' is not an e-mail address"),
]


@pytest.mark.parametrize("student, problem", BAD_19)
def test_control_characters_unprintable_letters_and_bad_emails_are_one_line(tmp_path, student, problem):
    """Cases 2 and 4: refused before any cell runs, one line naming the student and the field."""
    cfg = students_file(tmp_path, (*student, GOOD[0]), ("Noa", "noa@campus.technion.ac.il", GOOD[1]))
    line = error_line(render_cli(tmp_path, cfg))
    assert line.startswith(f"error: {cfg}: student 1") and problem in line, line


@pytest.mark.parametrize("email, warned", [("dana@campus.technion.ac.il", False), ("dana@technion.ac.il", False),
                                           ("dana@cs.technion.ac.il", False), ("Dana@Campus.Technion.AC.IL", False),
                                           ("dana@gmail.com", True), ("dana@nottechnion.ac.il", True),
                                           ("dana@technion.ac.il.example.com", True)])
def test_an_email_off_campus_is_warned_about(tmp_path, monkeypatch, email, warned):
    """Case 4: a valid address that is not a Technion one is used, with one warning line."""
    monkeypatch.setenv("HW2_STUDENTS", str(students_file(tmp_path, ("Dana Levi", email, GOOD[0]),
                                                         ("Noa", "noa@campus.technion.ac.il", GOOD[1]))))
    expected = [f"{tmp_path / 'students.toml'}: student 1 ('Dana Levi'): field 'email' {email!r} is not a Technion "
                f"address (@technion.ac.il or a subdomain such as @campus.technion.ac.il); used as written"]
    assert report.students_warnings() == (expected if warned else [])
