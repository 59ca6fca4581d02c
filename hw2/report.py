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
from .results import config_hash, load_result, source_hash


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


def provenance(name: str, kind: str = "experiments") -> str:
    """One line saying where a result came from and whether it is still current."""
    r = result(name)
    env = r["environment"]
    line = (f"*Result `{name}` (profile `{r['profile']}`) ran on {env.get('device', '?')} "
            f"in {r['wall_seconds']:.1f} s, finished {r['finished']}, commit `{str(env.get('git_commit'))[:12]}`.*")
    module = ROOT / kind / f"{name}.py"
    if kind == "experiments" and module.exists():
        import importlib
        mod = importlib.import_module(f"{kind}.{name}")
        if r["profile"] != "full" or r["config_hash"] != config_hash(mod.PROFILES["full"]):
            line += " **STALE: the experiment's full config changed since this run.**"
        elif r.get("source_hash") and r["source_hash"] != source_hash(module):
            line += " *(The experiment's code has been edited since this run; its config is unchanged.)*"
    return line


def show_provenance(name: str, kind: str = "experiments"):
    md(provenance(name, kind))


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


def render_notes():
    """Notes the renderer asks to be printed (fallback renderer, stale results allowed)."""
    notes = []
    if os.environ.get("HW2_RENDERER") == "fallback":
        notes.append("Rendered without Quarto (Quarto was not available): the project's fallback "
                     "renderer (jupytext, nbclient, pandoc) built this file from the same `.qmd` sources.")
    if os.environ.get("HW2_ALLOW_STALE"):
        notes.append("**Rendered with `--allow-stale`: some results may not match their experiment's "
                     "current configuration; each result's provenance line says which.**")
    if notes:
        md("\n\n".join(f"> {n}" for n in notes))
