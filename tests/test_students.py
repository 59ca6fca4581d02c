"""students.toml (issue 14, case 9): every problem is one line naming the student, the field and
what is wrong, reported by the render entry point before any cell runs and before anything is written."""
import os
import subprocess
import sys

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
