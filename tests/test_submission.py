"""The submission notebook: assembled from the executed task notebooks, it stands alone.

It holds the students, a pointer to the PDF and the three tasks as they ran; no cell imports the
project or reads a result; every code cell ran, without errors; figures are PNG; it stays small.
Copied alone into an empty folder beside the data, it executes top to bottom in one kernel.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from hw2 import submission
from hw2.report import students

FORBIDDEN = re.compile(r"import hw2|from hw2|from experiments|import experiments|derivations|results/")


@pytest.fixture(scope="module")
def notebook():
    return submission.assemble(students(), "answers.pdf", allow_stale=True)


def test_structure_students_first_then_the_three_tasks(notebook):
    cells = notebook.cells
    assert cells[0].cell_type == "markdown"
    for s in students():
        assert s["name"] in cells[0].source and s["id"] in cells[0].source and s["email"] in cells[0].source
    assert "answers.pdf" in cells[1].source and "Part 1" in cells[1].source
    headings = [c.source.splitlines()[0] for c in cells if c.cell_type == "markdown" and c.source.startswith("#")]
    tasks = [h for h in headings if h.startswith("## Task")]
    assert tasks == ["## Task 1 - The Importance of Activation and Initialization",
                     "## Task 2 - MLP-based Deep Classifier", "## Task 3 - Design a CNN"]
    assert headings.index("# Part 2 - Code Assignments") < headings.index(tasks[0])


def test_it_stands_alone(notebook):
    text = nbformat.writes(notebook)
    assert not FORBIDDEN.findall("\n".join(c.source for c in notebook.cells)), FORBIDDEN.findall(text)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not [c for c in code if c.source.lstrip().startswith("#|")]            # Quarto's options dropped
    images = [k for c in code for o in c.outputs for k in o.get("data", {}) if k.startswith("image/")]
    assert images and set(images) == {"image/png"}
    assert len(text.encode()) < 3_000_000
    task3 = "\n".join(c.source for c in code[[i for i, c in enumerate(code) if "NAME = \"task3" in c.source][0]:])
    assert "import kornia" in task3 and "K.RandomHorizontalFlip" in task3     # the kornia bonus is visible
    nbformat.validate(notebook)


def test_a_stale_task_is_refused(tmp_path, root):
    import json
    import shutil
    from hw2 import results
    shutil.copytree(root / "results", tmp_path / "results")
    shutil.copytree(root / "figures", tmp_path / "figures")
    path = tmp_path / "results" / "task3_imagenette_cnn.json"
    record = json.loads(path.read_text())
    record["source_hash"] = "0" * 16                       # a run of other code, its record intact
    record["digest"] = results.payload_digest(record)
    path.write_text(json.dumps(record))
    from hw2.errors import UserError
    with pytest.raises(UserError, match="task3_imagenette_cnn: experiments/task3_imagenette_cnn.py changed since the run"):
        submission.task_cells("task3_imagenette_cnn", tmp_path)
    cells, meta = submission.task_cells("task3_imagenette_cnn", tmp_path, allow_stale=True)
    assert cells and meta["status"] == "stale"
    (tmp_path / "results" / "task2_magic_mlp.json").unlink()
    with pytest.raises(UserError, match="task2_magic_mlp.json does not exist"):
        submission.task_cells("task2_magic_mlp", tmp_path, allow_stale=True)


@pytest.mark.slow
def test_it_runs_alone_in_an_empty_folder(tmp_path, notebook):
    """The zip's notebook, copied alone beside the data, with every task's profile set to smoke,
    executes top to bottom in one fresh kernel, and never imports the project."""
    from nbclient import NotebookClient
    from hw2.data import imagenette_root, magic_path
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "magic04.data").symlink_to(magic_path())
    (tmp_path / "data" / "imagenette2-160").symlink_to(imagenette_root() / "imagenette2-160")
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(notebook), as_version=4))
    for cell in [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]:
        nb.cells.insert(nb.cells.index(cell) + 1, nbformat.v4.new_code_cell('profile = "smoke"\ndevice = "cpu"'))
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    nb.cells.append(nbformat.v4.new_code_cell(
        "import sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('hw2', 'experiments', 'derivations')))"))
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert nb.cells[-1].outputs[0]["text"].strip() == "[]"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cache", "data", "figures", "results"]


def fresh_venv_without(tmp_path, missing=("optuna", "kornia")):
    """A new virtual environment that sees every package of ours except `missing` (and not this
    project): a symlinked copy of our site-packages, listed in a .pth file, minus those."""
    import site
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    ours = Path(next(p for p in site.getsitepackages() if p.endswith("site-packages")))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    skip = ("pip", "setuptools", "_distutils_hack", "distutils-precedence", "__editable__", "hw2", *missing)
    for entry in ours.iterdir():
        if not entry.name.lower().replace("-", "_").startswith(skip):
            (mirror / entry.name).symlink_to(entry)
    vsite = next((venv / "lib").glob("python3*/site-packages"))
    (vsite / "ours.pth").write_text(str(mirror) + "\n")
    return venv / "bin" / "python"


@pytest.mark.slow
def test_the_tasks_run_in_a_fresh_environment_that_lacks_optuna_and_kornia(tmp_path, notebook):
    """Colab has torch, pandas, scikit-learn and matplotlib but not optuna or kornia: the install
    cells put in what is missing (from the package registry), and the notebook runs, all three
    tasks (smoke profile, CPU)."""
    python = fresh_venv_without(tmp_path)
    assert subprocess.run([str(python), "-c", "import optuna"], capture_output=True).returncode != 0
    assert subprocess.run([str(python), "-c", "import torch, sklearn, nbclient"]).returncode == 0
    from hw2.data import imagenette_root, magic_path
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "magic04.data").symlink_to(magic_path())
    (work / "data" / "imagenette2-160").symlink_to(imagenette_root() / "imagenette2-160")
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(notebook), as_version=4))
    for cell in [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]:
        nb.cells.insert(nb.cells.index(cell) + 1, nbformat.v4.new_code_cell('profile = "smoke"\ndevice = "cpu"'))
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    nb.cells.append(nbformat.v4.new_code_cell("import sys, optuna, kornia\nprint(sys.executable, optuna.__version__, kornia.__version__)"))
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nbformat.write(nb, str(tmp_path / "nb.ipynb"))
    runner = ("import sys, nbformat\nfrom nbclient import NotebookClient\n"
              "nb = nbformat.read(sys.argv[1], as_version=4)\n"
              "NotebookClient(nb, timeout=900, kernel_name='python3', resources={'metadata': {'path': sys.argv[2]}}).execute()\n"
              "nbformat.write(nb, sys.argv[1])\n")
    proc = subprocess.run([str(python), "-c", runner, str(tmp_path / "nb.ipynb"), str(work)], capture_output=True,
                          text=True, timeout=1200, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = nbformat.read(str(tmp_path / "nb.ipynb"), as_version=4)
    assert ran.cells[-1].outputs[0]["text"].split() == [str(python), "5.0.0", "0.9.0"]
    printed = "".join(o.get("text", "") for c in ran.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "optuna==5.0.0" in printed and "kornia==0.9.0" in printed      # the install cells installed them
