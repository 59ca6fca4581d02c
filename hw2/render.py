"""Build the submission: _output/ece046211_hw2_<id1>_<id2>.{pdf,ipynb,zip}. Nothing here trains.

    python -m hw2.render [--engine auto|quarto|fallback] [--allow-stale 1|0]

The PDF answer file comes from report/hw2.qmd, which reads only results/ and figures/.
Primary path: `quarto render` (the project's _quarto.yml declares the pdf format). Fallback, used
when Quarto is absent: resolve `{{< include >}}`s, read the .qmd with jupytext's Rmd reader,
execute it with nbclient, and turn the executed cells into pandoc Markdown -> PDF with the same
LaTeX engine, honouring the cell options the report uses (`#| echo/output/include/label/fig-cap/
tbl-cap`), Quarto's inline expressions (`{python} expr`) and its cross-references. The notebook is assembled from the executed task
notebooks (hw2.submission). Everything is built in a temporary folder and moved into _output/ only
when all three files exist.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from datetime import date
from pathlib import Path

import yaml

from .errors import UserError
from .paths import CACHE, OUTPUT, REPORT, ROOT

MAIN = REPORT / "hw2.qmd"
# A failed LaTeX run keeps its intermediate Markdown here, named in the error line.
KEPT = CACHE / "render"
INCLUDE = re.compile(r"^\{\{<\s*include\s+(\S+)\s*>\}\}[ \t]*$", re.M)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# $$ ... $$ {#eq-x}: the body may not contain $$, so an earlier unlabelled display is never swallowed.
LABELLED_EQ = re.compile(r"\$\$((?:(?!\$\$).)+?)\$\$[ \t]*\{#(eq-[\w-]+)\}", re.S)
# Quarto's inline expression (src/core/execute-inline.ts, applied line by line): `{python} expr`,
# not preceded by a backtick (``{python} x`` is the escaped, literal form).
INLINE = re.compile(r"(^|[^`])`\{python\}[ \t]([^`\n]+)`", re.M)
# @fig-x, @tbl-x, @eq-x, @sec-x; not inside a word (an e-mail address) and not ending on a dot or dash.
REF = re.compile(r"(?<![\w.@])@((?:fig|tbl|eq|sec)-[\w-]*\w)")


# --- reading the .qmd --------------------------------------------------------------------------
def expand_includes(path: Path, seen: tuple = ()) -> str:
    """Inline every {{< include file >}} (paths relative to the including file), recursively."""
    if path in seen:
        raise UserError(f"{path}: include cycle ({' -> '.join(p.name for p in seen)})")
    if not path.exists():
        raise UserError(f"{seen[-1] if seen else path}: included file {path} does not exist")
    text = path.read_text()

    def sub(m):
        return expand_includes((path.parent / m.group(1)).resolve(), seen + (path,)).rstrip("\n")
    return INCLUDE.sub(sub, text)


def split_front_matter(text: str) -> tuple[dict, str]:
    m = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    if not m:
        return {}, text
    return yaml.safe_load(m.group(1)) or {}, text[m.end():]


def cell_options(source: str) -> tuple[dict, str]:
    """Quarto's leading `#| key: value` lines -> (options, code without them)."""
    lines = source.split("\n")
    n = 0
    while n < len(lines) and lines[n].startswith("#|"):
        n += 1
    opts = yaml.safe_load("\n".join(line[2:].strip() for line in lines[:n])) if n else {}
    return opts or {}, "\n".join(lines[n:])


def quarto_project() -> dict:
    path = ROOT / "_quarto.yml"
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"{path}: cannot read the Quarto project ({str(e).splitlines()[0]})") from None


def project_defaults() -> dict:
    return quarto_project().get("execute", {}) or {}


def pdf_format() -> dict:
    """_quarto.yml's `format: pdf:` options: the fallback renderer follows the same ones."""
    return (quarto_project().get("format", {}) or {}).get("pdf", {}) or {}


def read_notebook(main: Path = MAIN):
    import jupytext
    meta, body = split_front_matter(expand_includes(main))
    # Raw blocks (```{=latex}) are Markdown, not code: tilde fences keep jupytext's reader off them.
    body = re.sub(r"^```(\{=\w+\})\n(.*?)\n```[ \t]*$", r"~~~\1\n\2\n~~~", body, flags=re.S | re.M)
    nb = jupytext.reads(body, fmt="Rmd")
    for cell in nb.cells:
        cell.metadata.pop("lines_to_next_cell", None)
        if cell.cell_type == "code":
            opts, _ = cell_options(cell.source)
            if opts:
                cell.metadata["quarto"] = opts
    title = meta.get("title", "")
    header = f"# {title}\n" + (f"\n*{meta['subtitle']}*\n" if meta.get("subtitle") else "")
    # The notebook needs the title as a cell; the PDF takes it from pandoc's title block instead.
    nb.cells.insert(0, __import__("nbformat").v4.new_markdown_cell(header, metadata={"hw2": "title"}))
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    return meta, nb


# --- cross-references --------------------------------------------------------------------------
def number_crossrefs(nb) -> dict:
    """fig-/tbl- labels of code cells, {#eq-...} and {#sec-...} in markdown, numbered in order of
    appearance (a section's number is LaTeX's: it is referred to by \\ref only)."""
    refs, counts = {}, {"fig": 0, "tbl": 0, "eq": 0, "sec": 0}
    names = {"fig": "Figure", "tbl": "Table", "eq": "Equation", "sec": "Section"}
    for cell in nb.cells:
        labels = []
        if cell.cell_type == "code":
            label = str(cell.metadata.get("quarto", {}).get("label", ""))
            if label[:4] in ("fig-", "tbl-"):
                labels.append(label)
        else:
            labels += re.findall(r"\{#(eq-[\w-]+)\}", cell.source)
            labels += re.findall(r"^#+ .*\{[^}]*#(sec-[\w-]+)[^}]*\}[ \t]*$", cell.source, re.M)
        for label in labels:
            kind = label.split("-")[0]
            counts[kind] += 1
            refs[label] = (names[kind], counts[kind])
    return refs


def replace_refs(text: str, refs: dict) -> str:
    """@label -> "Figure~\\ref{label}", as Quarto writes a reference for PDF. Unknown labels, and a
    section while sections are unnumbered, are left for check_refs."""
    def sub(m):
        label = m.group(1)
        if label not in refs or (label.startswith("sec-") and not pdf_format().get("number-sections")):
            return m.group(0)
        return f"{refs[label][0]}\\ \\ref{{{label}}}"      # "\\ " is pandoc's non-breaking space
    return REF.sub(sub, text)


def check_refs(markdown: str, refs: dict, main: Path):
    """A reference replace_refs left is one error line. A section reference needs numbered sections,
    as Quarto's docs say: in a PDF without them LaTeX prints the number of whatever came last."""
    m = REF.search(markdown)
    if not m:
        return
    where, label = source_of(m.group(0), main), m.group(1)
    if label in refs:
        raise UserError(f"{where}: @{label} needs `number-sections: true` in _quarto.yml's pdf format; "
                        f"with unnumbered sections link it instead: [the section's name](#{label})")
    raise UserError(f"{where}: cross-reference @{label} names no figure, table, equation or section "
                    f"(labels: a cell's fig-/tbl- label, {{#eq-...}} after $$, {{#sec-...}} on a heading)")


def source_of(text: str, main: Path) -> Path:
    """The first .qmd beside `main` (the included files) whose source contains `text`, for messages."""
    return next((p for p in sorted(main.parent.glob("*.qmd")) if text in p.read_text()), main)


def equations_to_latex(text: str) -> str:
    """$$ ... $$ {#eq-x}  ->  a numbered, labelled equation environment."""
    return re.sub(LABELLED_EQ,
                  lambda m: f"\\begin{{equation}}\\label{{{m.group(2)}}}{m.group(1).strip()}\\end{{equation}}",
                  text)


# --- interruptions and child processes ------------------------------------------------------------
def sigterm_as_interrupt(signum, frame):
    """SIGTERM ends the render as Ctrl-C does: the temporary folder and the children are cleaned up
    on the way out, and main() says so in one line."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)      # a second one must not cut the clean-up short
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_kept():
    """nbclient answers SIGTERM itself while the kernel runs, then resets it to the default, which
    would end the rest of the render (pandoc) with no message and no clean-up: put back the handler
    there was."""
    previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def drop_the_cleanup_race(record: logging.LogRecord) -> bool:
    """A signal while the kernel starts: nbclient's clean-up shuts the kernel down, then fails on
    jupyter_client's `ready` future, which the start has already set (InvalidStateError). Nobody
    awaits that task, so asyncio prints its traceback when it is collected. The kernel is down by
    then; the render says it was interrupted in its one line. Every other asyncio record passes."""
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.InvalidStateError)
                and "_async_cleanup_kernel" in record.getMessage())


def run_child(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """subprocess.run with its output captured, in a process group of its own: an interruption
    (Ctrl-C, SIGTERM) kills it and its children (pandoc's LaTeX) before going on, so that none of
    them outlives the render or writes into the folder being removed."""
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


# --- execution ---------------------------------------------------------------------------------
def add_inline_cells(nb):
    """Each inline expression becomes a hidden code cell just before its Markdown cell: it runs in
    the report's kernel in document order, after the code cells before it, as Quarto runs it."""
    import nbformat
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cells += [nbformat.v4.new_code_cell(m.group(2).strip(), metadata={"hw2": "inline"})
                      for m in INLINE.finditer(cell.source)]
        cells.append(cell)
    nb.cells = cells


def inline_value(cell) -> str:
    """An expression's value as Quarto inserts it (src/core/jupyter/jupyter-inline.ts): text/markdown
    as it is (IPython's Markdown()), text/latex as raw TeX, else text/plain, where a str loses its
    quotes and has its Markdown characters escaped (it reads as plain text)."""
    data = next((o["data"] for o in cell.get("outputs", []) if o.get("output_type") == "execute_result"),
                {"text/plain": "None"})
    if "text/markdown" in data:
        return data["text/markdown"]
    if "text/latex" in data:
        return f"`{data['text/latex']}`{{=tex}}"
    text = data.get("text/plain", "")
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].replace("\\", "\\\\")
        text = re.sub(r"([\\`*_{}\[\]()>#+,\-.!])", r"\\\1", text)
    return text


def resolve_inline(nb):
    """Put each expression's value into its Markdown cell and drop the expression cells."""
    cells, values = [], []
    for cell in nb.cells:
        if cell.metadata.get("hw2") == "inline":
            values.append(inline_value(cell))
            continue
        if cell.cell_type == "markdown" and values:
            queue = iter(values)
            # as Quarto: an empty value leaves the expression as written
            cell.source = INLINE.sub(lambda m: m.group(1) + (next(queue) or m.group(0)[len(m.group(1)):]),
                                     cell.source)
            values = []
        cells.append(cell)
    nb.cells = cells


def execute(nb, main: Path = MAIN):
    """Run the report's cells from the project root; a failing cell (or Ctrl-C) is one line, and a
    failing inline expression is named as written in its .qmd."""
    from .tasks import execute as execute_notebook
    add_inline_cells(nb)
    logging.getLogger("asyncio").addFilter(drop_the_cleanup_race)
    try:
        with sigterm_kept():
            execute_notebook(nb, ROOT, main, echo=False)
    except UserError:
        failed = next((c for c in nb.cells if c.metadata.get("hw2") == "inline"
                       and any(o.get("output_type") == "error" for o in c.get("outputs", []))), None)
        if failed is None:
            raise
        err = next(o for o in failed.outputs if o.get("output_type") == "error")
        expr = f"`{{python}} {failed.source}`"
        what = ANSI.sub("", (err["evalue"].strip().splitlines() or [""])[-1])
        raise UserError(f"{source_of(failed.source, main)}: inline expression {expr} failed: "
                        f"{err['ename']}: {what}") from None
    resolve_inline(nb)
    return nb


# --- notebook -> pandoc Markdown -> PDF ----------------------------------------------------------
def _wrap(text: str, width: int = 100) -> str:
    out = []
    for line in text.splitlines():
        while len(line) > width:
            out.append(line[:width])
            line = "  " + line[width:]
        out.append(line)
    return "\n".join(out)


def to_markdown(nb, refs: dict, img_dir: Path, defaults: dict) -> str:
    parts = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            if cell.metadata.get("hw2") != "title":
                parts.append(uncount_tables(replace_refs(equations_to_latex(cell.source), refs)))
            continue
        if cell.cell_type != "code":
            continue
        opts = {**defaults, **cell.metadata.get("quarto", {})}
        if opts.get("include") is False:
            continue
        _, code = cell_options(cell.source)
        if opts.get("echo", True) and code.strip():
            parts.append(f"```python\n{code.strip()}\n```")
        if opts.get("output", True) is False:
            continue
        label = str(opts.get("label", ""))
        caption = replace_refs(str(opts.get("fig-cap") or opts.get("tbl-cap") or ""), refs)
        for k, out in enumerate(cell.get("outputs", [])):
            kind = out.get("output_type")
            if kind == "stream":
                if out.get("name") == "stderr" and not opts.get("warning", False):
                    continue
                text = ANSI.sub("", out.get("text", "")).rstrip()
                if text:
                    parts.append(f"```\n{_wrap(text)}\n```")
            elif kind in ("display_data", "execute_result"):
                data = out.get("data", {})
                if "text/markdown" in data:
                    text = data["text/markdown"]
                    if label.startswith("tbl-") and caption:
                        text = f"{text}\n\nTable: {caption} \\label{{{label}}}"
                    parts.append(uncount_tables(replace_refs(text, refs)))
                elif "application/pdf" in data or "image/png" in data:
                    ext = "pdf" if "application/pdf" in data else "png"
                    path = img_dir / f"cell{i}_{k}.{ext}"
                    path.write_bytes(base64.b64decode(data["application/pdf" if ext == "pdf" else "image/png"]))
                    width = str(opts.get("out-width", "85%"))      # Quarto's option, as in LaTeX: a share of the text width
                    if label.startswith("fig-") and caption:
                        parts.append(f"![{caption}]({path.name}){{#{label} width={width}}}")
                    else:
                        parts.append(f"![]({path.name}){{width={width}}}\n")
                elif "text/latex" in data:
                    parts.append(data["text/latex"])
                elif "text/plain" in data:
                    parts.append(f"```\n{_wrap(ANSI.sub('', data['text/plain']))}\n```")
    return "\n\n".join(parts) + "\n"


def uncount_tables(markdown: str) -> str:
    """longtable steps the table counter even without a caption; undo that for uncaptioned tables."""
    tables = len(re.findall(r"^\|\s*:?-{2,}", markdown, re.M))
    captions = len(re.findall(r"^Table: ", markdown, re.M))
    return markdown + (f"\n\n\\addtocounter{{table}}{{-{tables - captions}}}" if tables > captions else "")


# What Quarto's own LaTeX template provides and pandoc's default one lacks.
TEMPLATE_EXTRAS = r"""
\usepackage{amsmath,amssymb}
\usepackage{float}
\floatplacement{figure}{H}
"""


def latex_header(fmt: dict) -> str:
    """The files _quarto.yml's include-in-header names (project-relative, as Quarto resolves them),
    plus the template extras. Comment lines are left out: in pandoc's header-includes they would be
    read as text."""
    names = fmt.get("include-in-header") or []
    header = ""
    for name in [names] if isinstance(names, str) else names:
        path = ROOT / name
        if not path.is_file():
            raise UserError(f"{ROOT / '_quarto.yml'}: include-in-header names {name}, which does not exist")
        header += "".join(ln for ln in path.read_text().splitlines(True) if not ln.lstrip().startswith("%"))
    return header + TEMPLATE_EXTRAS


def latex_engine() -> str:
    for engine in ("xelatex", "lualatex"):
        if shutil.which(engine):
            return engine
    raise UserError("no LaTeX engine: install xelatex (apt-get install texlive-xetex "
                    "texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended "
                    "texlive-plain-generic lmodern) or run `make report`, which does")


def pandoc_pdf(markdown: str, meta: dict, build: Path, out_pdf: Path, main: Path = MAIN):
    if not shutil.which("pandoc"):
        raise UserError("pandoc not found: apt-get install pandoc (or run `make report`, which does)")
    when, fmt = meta.get("date", ""), pdf_format()
    front = {"title": meta.get("title", ""), "subtitle": meta.get("subtitle", ""),
             "date": date.today().isoformat() if when == "today" else str(when),
             "documentclass": fmt.get("documentclass", "article"), "geometry": fmt.get("geometry", "margin=2.2cm"),
             "colorlinks": fmt.get("colorlinks", True), "fontsize": fmt.get("fontsize", "10pt"),
             "header-includes": latex_header(fmt)}
    (build / "report.md").write_text("---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n" + markdown)
    cmd = ["pandoc", "report.md", "-o", out_pdf.name, f"--pdf-engine={latex_engine()}",
           "--from=markdown+tex_math_dollars+raw_tex+implicit_figures+link_attributes+pipe_tables",
           "--highlight-style=tango"] + (["--number-sections"] if fmt.get("number-sections") else [])
    # pandoc's own temporary folder (tex2pdf.*) goes into the build folder: it is removed with it
    proc = run_child(cmd, build, {**os.environ, "TMPDIR": str(build)})
    if proc.returncode != 0:
        raise pandoc_failure(proc.stderr, build / "report.md", main, out_pdf.stem)


def pandoc_failure(stderr: str, report_md: Path, main: Path, stem: str) -> UserError:
    """pandoc's error as one line that names where it is: the .qmd line holding the text LaTeX
    stopped at, where that text is found in the sources exactly once; and the intermediate Markdown,
    kept in KEPT (the build folder is about to go), at the line holding it."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    error = next((ln[2:] for ln in lines if ln.startswith("! ")), lines[-1] if lines else "(no message)")
    # TeX shows the input line up to the failing token: "l.60 Some line \foo"
    at = next((m.group(1).strip() for ln in lines if (m := re.match(r"l\.\d+ (.*)", ln))), "")
    kept = KEPT / f"{stem}.failed.md"
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(report_md, kept)
    except OSError as e:
        return UserError(f"{main}: pandoc/LaTeX failed: {error} (the intermediate Markdown could not be kept: "
                         f"{e.strerror or e})")
    # LaTeX's text is pandoc's rendering of the Markdown: try its tail, from the longest to the last token
    words = at.split()
    tails = [t for t in (" ".join(words[-k:]) for k in range(len(words), 0, -1)) if len(t) >= 3]
    sources = [main] + sorted(p for p in main.parent.glob("*.qmd") if p != main)
    in_qmd = next((hits[0] for t in tails if len(hits := lines_holding(t, sources)) == 1), None)
    in_md = next((hits[0] for t in tails if (hits := lines_holding(t, [kept]))), None)
    kept_at = f"{kept}:{in_md[1]}" if in_md else str(kept)
    said = f"pandoc/LaTeX failed{f' at `{at}`' if at else ''}: {error}"
    if in_qmd:
        return UserError(f"{in_qmd[0]}:{in_qmd[1]}: {said} (intermediate Markdown kept: {kept_at})")
    return UserError(f"{kept_at}: {said} (the intermediate Markdown, kept)")


def lines_holding(text: str, paths: list[Path]) -> list[tuple[Path, int]]:
    """(file, 1-based line) of each line of the files that contains text."""
    return [(p, n) for p in paths if p.is_file()
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if text in line]


def fallback_render(stem: str, build: Path, main: Path = MAIN) -> Path:
    meta, nb = read_notebook(main)
    refs = number_crossrefs(nb)
    t0 = time.perf_counter()
    execute(nb, main)
    print(f"render: executed {sum(c.cell_type == 'code' for c in nb.cells)} report cells in "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    markdown = to_markdown(nb, refs, build, project_defaults())
    check_refs(markdown, refs, main)
    pdf = build / f"{stem}.pdf"
    pandoc_pdf(markdown, meta, build, pdf, main)
    return pdf


# --- Quarto ------------------------------------------------------------------------------------
def quarto_bin() -> str | None:
    """quarto on PATH, or the one `pip install quarto-cli` put beside this Python (the venv's bin/)."""
    beside = Path(sys.executable).parent / "quarto"
    return shutil.which("quarto") or (str(beside) if beside.exists() else None)


def quarto_render(stem: str, build: Path) -> Path:
    # Quarto runs Jupyter with QUARTO_PYTHON (else the python3 on PATH): make it this environment's.
    env = {**os.environ, "QUARTO_PYTHON": sys.executable}
    cmd = [quarto_bin(), "render", str(MAIN.relative_to(ROOT)), "--to", "pdf", "--output", f"{stem}.pdf", "--execute"]
    proc = run_child(cmd, ROOT, env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise UserError(f"{MAIN}: quarto render --to pdf failed: {tail}")
    found = sorted(OUTPUT.rglob(f"{stem}.pdf"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(f"{OUTPUT}: quarto reported success but wrote no {stem}.pdf")
    return Path(shutil.move(str(found[-1]), build / f"{stem}.pdf"))


# --- entry point -------------------------------------------------------------------------------
def snapshot(dest: Path) -> Path:
    """Copy results/ and figures/ into dest. The render checks this copy and reads only it, so a run
    that finishes meanwhile cannot put its numbers into a PDF checked against another run's."""
    for folder in ("results", "figures"):
        (dest / folder).mkdir(parents=True)
        src = ROOT / folder
        for f in sorted(src.iterdir()) if src.is_dir() else []:
            if f.is_file() and not f.name.startswith("."):
                shutil.copy2(f, dest / folder / f.name)
    return dest


def check_snapshot(base: Path, allow_stale: bool) -> list[str]:
    """Every result the deliverables use, judged by the one freshness rule on the snapshot: the
    names of the stale ones (allowed), or a UserError naming them."""
    from .reads import validate_file
    from .results import freshness, producers
    stale = []
    for name in producers():
        state, reason = freshness(name, base)
        if state == "missing" or (state == "stale" and not allow_stale):
            raise UserError(f"{name}: {reason}" + ("" if state == "missing" else
                            " (run it again, or `make report ALLOW_STALE=1`)"))
        validate_file(name, base)          # even a stale one must hold what the report reads
        if state == "stale":
            print(f"render: STALE, rendered anyway (ALLOW_STALE): {name}: {reason}", file=sys.stderr)
            stale.append(name)
    return stale


def check_out_dir(out_dir: Path):
    """--out-dir must be a folder, or one that can be made, that this process can write: checked
    before any cell runs, and nothing is created (the folder is made when the outputs are moved)."""
    existing = out_dir
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent                       # the nearest folder that exists
    made = "" if existing == out_dir else f"cannot be made: {existing} "     # a folder above it
    if existing.is_file():
        raise UserError(f"{out_dir}: --out-dir {made}is a file" + ("" if made else ", not a folder"))
    if not existing.is_dir():
        raise UserError(f"{out_dir}: --out-dir {made}is not a folder")
    try:    # a probe, not os.access: root passes os.access on a read-only or immutable folder
        os.rmdir(tempfile.mkdtemp(prefix=".hw2-write-probe-", dir=existing))
    except OSError as e:
        raise UserError(f"{out_dir}: --out-dir {made}is not writable ({e.strerror or e})") from None


def publish(files: list[Path], out_dir: Path) -> list[Path]:
    """Copy the built files into out_dir, each to a temporary file created there exclusively (mkstemp
    never opens a link planted at its name), then rename all of them over the old outputs (os.replace
    replaces a link at the destination, never its target)."""
    temps = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in files:
            fd, tmp = tempfile.mkstemp(prefix=f".{f.name}.", suffix=".tmp", dir=out_dir)
            temps.append(Path(tmp))
            os.fchmod(fd, f.stat().st_mode & 0o777)           # mkstemp's 0600 -> the build file's mode
            with os.fdopen(fd, "wb") as dst, open(f, "rb") as src:
                shutil.copyfileobj(src, dst)
        for f, tmp in zip(files, temps):
            os.replace(tmp, out_dir / f.name)
    except OSError as e:
        raise UserError(f"{out_dir}: cannot write the outputs into --out-dir ({e.strerror or e})") from None
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return [out_dir / f.name for f in files]


def render(engine: str = "auto", allow_stale: bool = False, out_dir: Path = OUTPUT) -> list[Path]:
    """The PDF (rendered from report/hw2.qmd), the submission notebook (assembled from the executed
    task notebooks) and the zip of both, all from one snapshot of results/ and figures/; written to
    out_dir only when all three exist."""
    import nbformat

    from .data import check_datasets
    from .report import check_students, output_stem
    from .submission import assemble
    # Everything the cells will need is validated before any of them runs: the students (their
    # IDs name the files; warnings printed once), the Q3 figures the report shows (the only data it
    # reads), and every result (stale ones are refused unless allowed).
    check_out_dir(out_dir)
    people = check_students()
    stem = output_stem()
    check_datasets(["figures"], decode=False)
    use_quarto = engine == "quarto" or (engine == "auto" and quarto_bin())
    if engine == "quarto" and not quarto_bin():
        raise UserError("quarto not found on PATH or in the venv (pip install quarto-cli needs GitHub access)")
    with tempfile.TemporaryDirectory(prefix="hw2-render-") as tmp:
        base = snapshot(Path(tmp) / "snapshot")
        stale = check_snapshot(base, allow_stale)
        notebook = assemble(people, f"{stem}.pdf", base=base, allow_stale=allow_stale)
        if not use_quarto:
            print("render: Quarto not found (quarto on PATH or `pip install quarto-cli`); "
                  "rendering the PDF with the fallback renderer (jupytext + nbclient + pandoc)", file=sys.stderr)
        build = Path(tmp) / "build"
        build.mkdir()
        # the report's kernel (ours or Quarto's) inherits these: it reads the snapshot, and says
        # in the PDF which results were stale
        saved = {k: os.environ.get(k) for k in ("HW2_SNAPSHOT", "HW2_STALE")}
        os.environ.update(HW2_SNAPSHOT=str(base), HW2_STALE=",".join(stale))
        try:
            pdf = quarto_render(stem, build) if use_quarto else fallback_render(stem, build)
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        ipynb = build / f"{stem}.ipynb"
        nbformat.write(notebook, str(ipynb))
        zpath = build / f"{stem}.zip"
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
            z.write(ipynb, ipynb.name)
            z.write(pdf, pdf.name)
        # all three exist: only now replace the old outputs
        return publish([pdf, ipynb, zpath], out_dir)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw2.render", description=__doc__.split("\n")[0])
    p.add_argument("--engine", choices=["auto", "quarto", "fallback"], default="auto")
    p.add_argument("--allow-stale", nargs="?", const="1", default="", metavar="YES|NO",
                   help="render even with stale results, said in the PDF (1/true/yes; 0/false/no)")
    p.add_argument("--out-dir", type=Path, default=OUTPUT)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    try:
        from .pipeline import yes_no
        files = render(args.engine, yes_no(args.allow_stale), args.out_dir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: render interrupted; nothing written", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    for f in files:
        print(f"render: wrote {f.relative_to(ROOT) if f.is_relative_to(ROOT) else f}")
    print(f"render: done in {time.perf_counter() - t0:.0f} s")
    from .report import students_warnings
    for w in students_warnings():
        if "NOT ATTRIBUTABLE" in w:     # said before the render too; said again where it is seen
            print(f"warning: {w}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
