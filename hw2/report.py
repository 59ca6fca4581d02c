"""Helpers the report's cells call. The report reads only results/*.json and figures/*.

Numbers in prose come from a hidden cell that emits Markdown (`md(f"... {metric(...)} ...")`), so
the same source renders identically through Quarto and through the fallback renderer.
"""
from __future__ import annotations

import base64
import os
import tomllib
from functools import lru_cache
from pathlib import Path

from .errors import UserError
from .paths import FIGURES, RESULTS, ROOT, STUDENTS
from .results import load_result


def results_dir() -> Path:
    return Path(os.environ.get("HW2_RESULTS_DIR", RESULTS))


def figures_dir() -> Path:
    return Path(os.environ.get("HW2_FIGURES_DIR", FIGURES))


@lru_cache(maxsize=None)
def result(name: str) -> dict:
    return load_result(name, results_dir())


def metric(name: str, key: str):
    """metric('q6_vgg11', 'total_params') or a dotted path: metric('x', 'model_wise.critical_point')."""
    value = result(name)["metrics"]
    for part in key.split("."):
        try:
            value = value[part]
        except (KeyError, TypeError):
            raise UserError(f"{results_dir() / (name + '.json')}: no metric '{key}'") from None
    return value


def md(text: str):
    """Emit Markdown as a cell output (rendered as Markdown by Quarto and by the fallback)."""
    from IPython.display import Markdown, display
    display(Markdown(text))


def table(rows, columns: list[str] | None = None, align: str | None = None) -> str:
    """A pandoc pipe table from a list of dicts (or lists with columns given)."""
    if rows and isinstance(rows[0], dict):
        columns = columns or list(rows[0])
        rows = [[r.get(c, "") for c in columns] for r in rows]
    align = align or ("l" + "r" * (len(columns) - 1))
    rule = {"l": ":--", "r": "--:", "c": ":-:"}
    out = ["| " + " | ".join(map(str, columns)) + " |",
           "|" + "|".join(rule[a] for a in align) + "|"]
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
    if pdf.exists():
        bundle["application/pdf"] = base64.b64encode(pdf.read_bytes()).decode()
    display(bundle, raw=True)


def data_figure(path: str | Path):
    """Show a PNG from the data layer (e.g. the assignment's Q3 figures) without copying it."""
    from IPython.display import display
    bundle = {"image/png": base64.b64encode(Path(path).read_bytes()).decode()}
    display(bundle, raw=True)


def reproducibility_rows() -> list[list[str]]:
    """One row per result: what it is, its profile, where and when it ran, the commit, the wall time."""
    import json
    rows = []
    for path in sorted(results_dir().glob("*.json")):
        try:
            r = json.loads(path.read_text())
        except ValueError:
            continue
        env = r.get("environment", {})
        rows.append([path.stem, r.get("profile", "?"), str(env.get("device", "?")), str(r.get("finished", "?"))[:16].replace("T", " "),
                     str(env.get("git_commit", "?"))[:10], f"{r.get('wall_seconds', 0):,.0f} s"])
    return rows


def students() -> list[dict]:
    path = Path(os.environ.get("HW2_STUDENTS", STUDENTS))
    try:
        data = tomllib.loads(path.read_text())
        people = data["students"]
        assert len(people) == 2 and all({"name", "email", "id"} <= set(p) for p in people)
    except FileNotFoundError:
        raise UserError(f"{path}: missing (copy the two students' name, email, id into it)") from None
    except (tomllib.TOMLDecodeError, KeyError, AssertionError, TypeError):
        raise UserError(f"{path}: needs exactly two [[students]] with name, email and id") from None
    return people


def output_stem() -> str:
    ids = [str(s["id"]) for s in students()]
    return f"ece046211_hw2_{ids[0]}_{ids[1]}"


def students_block():
    rows = [[s["name"], s["email"], s["id"]] for s in students()]
    md(table(rows, ["Name", "Campus e-mail", "ID"], "lll"))


def stale_note():
    """Said in the PDF only when `make report ALLOW_STALE=1` used results whose code changed since."""
    stale = [t for t in os.environ.get("HW2_STALE", "").split(",") if t]
    if stale:
        md("> **Rendered with stale results** (`ALLOW_STALE=1`): the code of " + ", ".join(f"`{t}`" for t in stale)
           + " changed after the run whose numbers are shown here.")
