"""Run chosen cells of a task notebook in-process, so tests can call the functions it defines.

The task sources are notebooks, not modules: importing one would execute all of it. A test names
the cells it needs by their `#| label:`; they run in order in one namespace, after the parameters
cell (with the test's overrides), with IPython magics left out. `check_install_cell` tests a task's
install cell with fake sets of present modules.
"""
import re
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parents[1]


def code_cells(task: str) -> dict[str, str]:
    """label -> source of every labelled code cell (and 'parameters' for the parameters cell)."""
    nb = jupytext.read(ROOT / "experiments" / f"{task}.py", fmt="py:percent")
    out = {}
    for cell in nb.cells:
        if cell.cell_type != "code" or cell.metadata.get("active") == "py":
            continue
        if "parameters" in cell.metadata.get("tags", []):
            out["parameters"] = cell.source
            continue
        m = re.search(r"^#\|\s*label:\s*(\S+)", cell.source, re.M)
        if m:
            out[m.group(1)] = cell.source
    return out


def run_cells(task: str, labels: list[str], **params) -> dict:
    cells = code_cells(task)
    ns: dict = {}
    exec(cells["parameters"], ns)
    ns.update(params)
    for label in labels:
        source = "\n".join(ln for ln in cells[label].splitlines() if not ln.lstrip().startswith("%"))
        exec(compile(source, f"<{task}:{label}>", "exec"), ns)
    return ns


def read_executed(path):
    """An executed notebook (results/<task>.ipynb), its multi-line strings joined."""
    import nbformat
    return nbformat.read(str(path), as_version=4)


def printed_text(nb) -> str:
    """Everything the notebook's code cells printed (stdout and stderr), in order."""
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


def pyproject_pins():
    import tomllib
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {d.split("==")[0]: d for d in deps}


def check_install_cell(task):
    """The install cell installs exactly the pins of what is missing, nothing when all is there."""
    ns = run_cells(task, ["install"])                       # here everything is present
    assert ns["present"] == set(ns["REQUIREMENTS"])
    requirements, calls = ns["REQUIREMENTS"], []
    pins = pyproject_pins()
    assert all(pins[spec.split("==")[0]] == spec for spec in requirements.values()), "pins differ from pyproject.toml"
    assert ns["install_missing"](requirements, set(requirements), pip=calls.append) == [] and calls == []
    colab = set(requirements) - {"optuna", "kornia"}        # Colab's image lacks optuna and kornia
    missing = ns["install_missing"](requirements, colab, pip=calls.append)
    assert calls == ([missing] if missing else []) and missing == [requirements[m] for m in requirements if m not in colab]
    calls.clear()
    everything = ns["install_missing"](requirements, set(), pip=calls.append)      # a bare Jupyter
    assert calls == [everything] and sorted(everything) == sorted(requirements.values())
