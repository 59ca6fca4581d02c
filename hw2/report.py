"""Helpers the report's cells call. The report reads only results/*.json and figures/*.

Numbers in prose are Quarto inline expressions (`{python} pct(x)`) of values a hidden cell just before
prepares; generated tables are cells that emit Markdown (`md(table(...))`). Quarto and the fallback
renderer treat both alike.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import string
import subprocess
import tomllib
import unicodedata
from functools import lru_cache
from pathlib import Path

from .errors import UserError
from .paths import ROOT, STUDENTS


def base() -> Path:
    """The folder holding results/ and figures/ the report reads: the render's snapshot of them
    (HW2_SNAPSHOT, set by hw2.render), else the project's own."""
    return Path(os.environ.get("HW2_SNAPSHOT") or ROOT)


def results_dir() -> Path:
    return base() / "results"


def figures_dir() -> Path:
    return base() / "figures"


@lru_cache(maxsize=None)
def result(name: str) -> dict:
    """results/<name>.json of the snapshot, refused in one line if it lacks a key the report reads
    (report/reads.json) or holds another type there."""
    from . import reads
    record = reads.validate_file(name, base())   # a stale record (ALLOW_STALE) is shown if it holds these
    return reads.Recorder(name, record).wrap(record, ()) if os.environ.get("HW2_TRACE_READS") else record


def metric(name: str, key: str):
    """metric('q6_vgg11', 'total_params') or a dotted path: metric('x', 'model_wise.critical_point')."""
    value = result(name)["metrics"]
    for part in key.split("."):
        try:
            value = value[part]
        except (KeyError, TypeError):
            raise UserError(f"results/{name}.json: no metric '{key}'") from None
    return value


def md(text: str):
    """Emit Markdown as a cell output (rendered as Markdown by Quarto and by the fallback)."""
    from IPython.display import Markdown, display
    display(Markdown(text))


def table(rows, columns: list[str] | None = None, align: str | None = None, widths: list[int] | None = None) -> str:
    """A pandoc pipe table from a list of dicts (or lists with columns given). widths: relative
    column widths (pandoc reads them from the dashes of the separator line once a row wraps)."""
    if rows and isinstance(rows[0], dict):
        columns = columns or list(rows[0])
        rows = [[r.get(c, "") for c in columns] for r in rows]
    align = align or ("l" + "r" * (len(columns) - 1))
    widths = widths or [1] * len(columns)
    rule = {"l": ":{}", "r": "{}:", "c": ":{}:"}
    out = ["| " + " | ".join(map(str, columns)) + " |",
           "|" + "|".join(rule[a].format("-" * (4 * w)) for a, w in zip(align, widths)) + "|"]
    out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(out)


def pct(x: float, digits: int = 2) -> str:
    return f"{100 * x:.{digits}f}%"


def figure(name: str):
    """Show figures/<name>.png (and its vector PDF twin, which PDF output prefers)."""
    from IPython.display import display
    png = figures_dir() / f"{name}.png"
    if not png.exists():
        raise UserError(f"{png}: figure missing (run the experiment that makes it)")
    bundle = {"image/png": base64.b64encode(png.read_bytes()).decode()}
    pdf = png.with_suffix(".pdf")
    # HW2_RASTER_FIGURES=1: PNG only, so that a test reading the PDF's text sees no axis labels
    if pdf.exists() and not os.environ.get("HW2_RASTER_FIGURES"):
        bundle["application/pdf"] = base64.b64encode(pdf.read_bytes()).decode()
    display(bundle, raw=True)


def data_figure(path: str | Path):
    """Show a PNG from the data layer (e.g. the assignment's Q3 figures) without copying it."""
    from IPython.display import display
    bundle = {"image/png": base64.b64encode(Path(path).read_bytes()).decode()}
    display(bundle, raw=True)


def reproducibility_rows() -> list[list[str]]:
    """One row per result: the answers it feeds, the code that produced it (`experiments/`: a task
    notebook, which the zip holds executed), where and when it ran, the commit, the wall time; a profile other than full is said."""
    from .results import producer_source
    rows = []
    for path in sorted(results_dir().glob("*.json")):
        try:
            r = json.loads(path.read_text())
            source = producer_source(path.stem)
        except (ValueError, UserError):
            continue
        task = source.parent.name == "experiments"
        answers = (f"Task {path.stem[4]}" if task else f"Q{path.stem[1]}" + (", App. A" if path.stem.startswith("q3") else ""))
        env = r.get("environment", {})
        code = source.relative_to(ROOT).as_posix().replace("_", "\\_")
        profile = "" if r.get("profile") == "full" else f" ({r.get('profile')} profile)"
        rows.append([answers, code + profile, str(env.get("device", "?")), str(r.get("finished", "?"))[:16].replace("T", " "),
                     f"`{str(env.get('git_commit', '?'))[:10]}`" + ("\\*" if str(env.get("git_commit")).endswith("-dirty") else ""),
                     f"{r.get('wall_seconds', 0):,.0f} s"])
    return rows


PLACEHOLDER_NAMES = {"Student 1", "Student 2"}        # the template's students
PLACEHOLDER_IDS = {"123456789", "987654321"}
STUDENT_FIELDS = ("name", "email", "id")
EMAIL = re.compile(r"[^@\s]+@(?:[^@\s.]+\.)+[^@\s.]+")      # name@domain.tld: no spaces, a dot in the domain
CAMPUS_DOMAIN = "technion.ac.il"                                 # or a subdomain: campus.technion.ac.il
# Hebrew letters and points; a run of them (with the spaces and marks between) is set right to left.
HEBREW = "\u0590-\u05ff\ufb1d-\ufb4f"
RTL_RUN = re.compile(f"[{HEBREW}](?:[{HEBREW} '\".,-]*[{HEBREW}])?")
# The fonts that typeset the students block: the templates' Latin Modern, and the Hebrew font that
# report/preamble.tex gives \RL (keep the two in step). How to find each font's file.
LATIN_FONT = ("Latin Modern Roman", ["kpsewhich", "lmroman10-regular.otf"])
HEBREW_FONT = ("DejaVu Sans", ["fc-match", "--format=%{family}\n%{file}", "DejaVu Sans"])


def students_path() -> Path:
    return Path(os.environ.get("HW2_STUDENTS", STUDENTS))


def students() -> list[dict]:
    """The two students of students.toml, validated: each has a name, an e-mail and a 9-digit ID
    (the IDs name the output files). A UserError names the student, the field and the problem."""
    path = students_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: missing (copy the two students' name, email, id into it)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot be read ({getattr(e, 'strerror', None) or e})") from None
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: TOML syntax error: {e}") from None
    people = config.get("students")
    if not isinstance(people, list) or len(people) != 2 or not all(isinstance(p, dict) for p in people):
        found = len(people) if isinstance(people, list) else 0
        raise UserError(f"{path}: needs exactly two [[students]] with name, email and id (found {found})")
    for i, person in enumerate(people, start=1):
        who = _who(i, person)
        for field in STUDENT_FIELDS:
            if field not in person:
                raise UserError(f"{path}: {who}: field '{field}' missing")
            value = person[field]
            if not isinstance(value, str):
                hint = ' (quote it: id = "012345678", an ID may start with 0)' if field == "id" else ""
                raise UserError(f"{path}: {who}: field '{field}' must be a quoted string, not {value!r}{hint}")
            control = next((c for c in value if _is_control(c)), None)
            if control:
                raise UserError(f"{path}: {who}: field '{field}' contains the control character {_char(control)}; "
                                f"a field is one line of visible text")
            if not value.strip():
                raise UserError(f"{path}: {who}: field '{field}' is empty")
            lacking = _font_lacking(value) if field != "id" else None    # an ID gets its own message below
            if lacking:
                raise UserError(f"{path}: {who}: field '{field}' {value!r}: {lacking}; write it in Latin or Hebrew letters")
        if not EMAIL.fullmatch(person["email"].strip()):
            raise UserError(f"{path}: {who}: field 'email' {person['email']!r} is not an e-mail address "
                            f"(name@domain, a dot in the domain, no spaces)")
        if not re.fullmatch(r"[0-9]{9}", person["id"]):
            raise UserError(f"{path}: {who}: field 'id' {person['id']!r} {_id_problem(person['id'])}; "
                            f"an ID is exactly 9 digits 0-9")
    if people[0]["id"] == people[1]["id"]:
        raise UserError(f"{path}: {_who(2, people[1])}: field 'id' {people[1]['id']!r} is the same as student 1's")
    return people


def _who(i: int, person: dict) -> str:
    name = person.get("name")
    return f"student {i}" + (f" ({name.strip()!r})" if isinstance(name, str) and name.strip() else "")


def _is_control(c: str) -> bool:
    """Control and invisible format characters (a newline would end the table row, a bidi override
    would reorder what the reader sees), line and paragraph separators, unassigned code points."""
    return unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def _char(c: str) -> str:
    name = unicodedata.name(c, "")
    return f"U+{ord(c):04X}" + (f" {name}" if name else "")


@lru_cache(maxsize=None)
def _font_letters(family: str, locate: tuple) -> frozenset | None:
    """The characters a font has glyphs for; None when its file cannot be found here (then the
    LaTeX run itself fails or decides)."""
    if not shutil.which(locate[0]):
        return None
    try:
        from fontTools.ttLib import TTFont
        out = subprocess.run(list(locate), capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
        if family == HEBREW_FONT[0] and (len(out) != 2 or family not in out[0]):
            return None                    # fc-match names a substitute when the font is missing
        return frozenset(chr(c) for c in TTFont(out[-1], fontNumber=0).getBestCmap())
    except Exception:                      # no fontTools, unreadable file: the check is skipped
        return None


def _font_lacking(value: str) -> str | None:
    """What the PDF cannot show of value (a letter its font has no glyph for), or None."""
    for c in value:
        if c.isspace():
            continue
        family, locate = HEBREW_FONT if re.fullmatch(f"[{HEBREW}]", c) else LATIN_FONT
        letters = _font_letters(family, tuple(locate))
        if letters is not None and c not in letters:
            return f"the PDF's font ({family}) cannot show {c!r} ({_char(c)})"
    return None


def _id_problem(value: str) -> str:
    if any(c.isspace() for c in value):
        return "contains a space"
    if not all(c in "0123456789" for c in value):
        return "contains characters other than digits"
    return f"has {len(value)} digits"


def israeli_id_ok(value: str) -> bool:
    """The check digit of an Israeli ID (Teudat Zehut): alternate weights 1, 2, digit sums, mod 10."""
    total = 0
    for k, c in enumerate(value):
        d = int(c) * (1 + k % 2)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def is_placeholder(person: dict) -> bool:
    return person["name"].strip() in PLACEHOLDER_NAMES or person["id"] in PLACEHOLDER_IDS


def students_warnings(people: list[dict] | None = None) -> list[str]:
    """What is valid but suspicious: the template's placeholder students still there (the
    submission is not attributable), or an ID whose check digit fails (a typo?)."""
    people = people if people is not None else students()
    path = students_path()
    warnings = []
    placeholders = [_who(i, p) for i, p in enumerate(people, start=1) if is_placeholder(p)]
    if placeholders:
        warnings.append(f"{path} still holds the template's placeholder students ({', '.join(placeholders)}): "
                        f"THE SUBMISSION IS NOT ATTRIBUTABLE YET. Put your names, campus e-mails and IDs there.")
    for i, p in enumerate(people, start=1):
        if is_placeholder(p):
            continue
        if not israeli_id_ok(p["id"]):
            warnings.append(f"{path}: {_who(i, p)}: field 'id' {p['id']!r} fails the Israeli ID check digit "
                            f"(a typo?); used as written")
        domain = p["email"].strip().rsplit("@", 1)[1].lower()
        if domain != CAMPUS_DOMAIN and not domain.endswith("." + CAMPUS_DOMAIN):
            warnings.append(f"{path}: {_who(i, p)}: field 'email' {p['email']!r} is not a Technion address "
                            f"(@{CAMPUS_DOMAIN} or a subdomain such as @campus.{CAMPUS_DOMAIN}); used as written")
    return warnings


_warned: set[str] = set()


def check_students(stream=None) -> list[dict]:
    """students(), then each warning printed on stderr once per process (the placeholder one loudly)."""
    import sys
    people = students()
    stream = stream or sys.stderr
    for w in students_warnings(people):
        if w in _warned:
            continue
        _warned.add(w)
        if "NOT ATTRIBUTABLE" in w:
            bar = "!" * 100
            print(f"warning: {bar}\nwarning: {w}\nwarning: {bar}", file=stream, flush=True)
        else:
            print(f"warning: {w}", file=stream, flush=True)
    return people


def output_stem() -> str:
    ids = [str(s["id"]) for s in students()]
    return f"ece046211_hw2_{ids[0]}_{ids[1]}"


def pandoc_text(value: str) -> str:
    """value as pandoc Markdown text that renders as itself: every ASCII punctuation character is
    backslash-escaped (pandoc reads that as the character itself), so no |, *, $, \\, @, {, ^, ~,
    <, -- ... in a name acts as table, emphasis, math, TeX, citation, attribute or smart-dash syntax."""
    return "".join("\\" + c if c in string.punctuation else c for c in value)


def notebook_text(value: str) -> str:
    """value as Markdown text for the notebook (GitHub-flavoured, as Jupyter renders it) that renders
    as itself: the characters with a meaning there are backslash-escaped ($ is Jupyter's math); an
    underscore inside a word is no emphasis and stays as it is (student_1@...)."""
    out = ""
    for k, c in enumerate(value):
        inside_word = c == "_" and value[k - 1:k].isalnum() and value[k + 1:k + 2].isalnum()
        out += "\\" + c if c in "\\|*_`[]<>&$~" and not inside_word else c
    return out


# XeTeX's TeX ligatures (tex-text.map) would still turn ' " ` into curly quotes and ,, << >> into
# other marks; these fixed LaTeX snippets (never the field's text) keep each character as itself.
STRAIGHT = {"'": r"\textquotesingle{}", '"': r"\textquotedbl{}", "`": r"\textasciigrave{}"}
BREAK_AFTER = "@./\\"       # a long e-mail (or other word) may wrap there instead of covering the next column


def pdf_text(value: str) -> str:
    """value as pandoc Markdown text for the PDF: escaped as in pandoc_text, each run of Hebrew
    a right-to-left span (pandoc's LaTeX writer makes it \\RL{...}, which the preamble defines)."""
    def escape(piece):
        out = ""
        for k, c in enumerate(piece):
            out += f"`{STRAIGHT[c]}`{{=latex}}" if c in STRAIGHT else pandoc_text(c)
            if c in ",<>" and piece[k + 1:k + 2] == c:
                out += "`\\/`{=latex}"            # an italic correction: the two stay two characters
            elif c in BREAK_AFTER and k + 1 < len(piece):
                out += "`\\allowbreak{}`{=latex}"
        return out
    out, at = "", 0
    for run in RTL_RUN.finditer(value):
        out += escape(value[at:run.start()]) + f"[{escape(run.group())}]{{dir=rtl}}"
        at = run.end()
    return out + escape(value[at:])


def students_block():
    """The students as a table, each field passed as text (escaped), never as Markdown or TeX."""
    rows = [[pdf_text(s[f].strip()) for f in STUDENT_FIELDS] for s in students()]
    # a long row wraps: then name and e-mail get 3/7 of the width each, the 9 digits 1/7
    md(table(rows, ["Name", "Campus e-mail", "ID"], "lll", widths=[3, 3, 1]))


def stale_note():
    """Said in the PDF only when `make report ALLOW_STALE=1` used results whose code changed since."""
    stale = [t for t in os.environ.get("HW2_STALE", "").split(",") if t]
    if stale:
        md("> **Rendered with stale results** (`ALLOW_STALE=1`): the code of " + ", ".join(f"`{t}`" for t in stale)
           + " changed after the run whose numbers are shown here.")
