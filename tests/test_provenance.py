"""Provenance at the edges (issue 18, cases 1 to 6), each in a temporary copy of the project.

A copy of the tracked files stands in for a clone: commands run there with its own hw2, so a test
may break its results/ and figures/ freely. The data is read where the real project finds it.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def clone(tmp_path):
    """The project's tracked (and new, not ignored) files, as they are now, in tmp_path/clone."""
    dest = tmp_path / "clone"
    listed = subprocess.run(["git", "ls-files", "-z", "-c", "-o", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def run(clone, *args, timeout=300, **env):
    from hw2 import data
    data_dir = data.find(data.MAGIC_FILE).parent           # the real data, wherever it was found
    return subprocess.run([sys.executable, *args], cwd=clone, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(clone), "HW2_DATA_DIR": str(data_dir), **env})


def one_line(proc, *words):
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_case1_a_smoke_run_never_writes_the_committed_results(clone):
    before = snapshot(clone / "results"), snapshot(clone / "figures")
    p = run(clone, "-m", "experiments.task1_init", "--profile", "smoke", "--quiet")
    assert p.returncode == 0, p.stderr
    assert "writes .cache/runs/task1_init-smoke/" in p.stderr
    assert (clone / ".cache" / "runs" / "task1_init-smoke" / "results" / "task1_init.json").exists()
    for flags, words in ((["--out", ""], ["--out: empty path"]),
                         (["--out", "results"], ["--out results", "inside the committed results/"]),
                         (["--out", "figures/x"], ["inside the committed figures/"]),
                         (["--out", "."], ["only a full run writes there"])):
        p = run(clone, "-m", "experiments.task1_init", "--profile", "smoke", *flags)
        assert p.returncode == 2
        one_line(p, *words)
    p = run(clone, "-m", "derivations.q6_vgg11", "--out", "")
    assert p.returncode == 2
    one_line(p, "--out: empty path")
    assert (snapshot(clone / "results"), snapshot(clone / "figures")) == before
    assert not (clone / "results" / "results").exists()


def test_case2_q3_is_stale_when_its_code_changes(clone):
    from hw2 import results
    source = next(p for p in (clone / "derivations" / "q3_double_descent.py",
                              clone / "experiments" / "q3_double_descent.py") if p.exists())
    assert "torch.optim.Adam(" in source.read_text()
    source.write_text(source.read_text().replace("torch.optim.Adam(", "torch.optim.SGD(", 1))
    p = run(clone, "-m", "hw2.pipeline", "check")
    assert p.returncode == 1
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("q3_double_descent"))
    assert "stale" in line and "derivations/q3_double_descent.py changed since the run" in line
    assert results.freshness("q3_double_descent")[0] == "fresh"                # the real one is untouched


def test_case3_an_edited_result_is_stale_and_rerun(clone):
    path = clone / "results" / "q6_vgg11.json"
    record = json.loads(path.read_text())
    total = record["metrics"]["total_params"]
    record["metrics"]["total_params"] = 1
    path.write_text(json.dumps(record, indent=2))
    p = run(clone, "-m", "hw2.pipeline", "check")
    assert p.returncode == 1 and "q6_vgg11" in p.stderr
    assert "payload edited after the run" in next(ln for ln in p.stdout.splitlines() if ln.startswith("q6_vgg11"))
    p = run(clone, "-m", "hw2.pipeline", "derivations")        # a derivation that is not fresh runs again
    assert p.returncode == 0, p.stderr
    assert "derivations.q6_vgg11\n" in p.stdout and "q1_bayes_risk: fresh" in p.stdout
    assert json.loads(path.read_text())["metrics"]["total_params"] == total


def test_case4_an_unreadable_result_is_one_line_naming_file_and_key(clone):
    from hw2 import results
    path = clone / "results" / "q6_vgg11.json"
    good = path.read_text()
    path.write_text("[]")
    for flags in ([], ["--allow-stale", "1"]):
        p = run(clone, "-m", "hw2.pipeline", "check", *flags)
        assert p.returncode == 1 and "Traceback" not in p.stderr + p.stdout
        assert "results/q6_vgg11.json: a result is a JSON object, not list" in p.stdout
    # a producer that saved another type (its record intact): named with the key, even with ALLOW_STALE
    for change, words in (("str", ["key 'metrics.total_params' is str, the report reads int"]),
                          ("missing", ["key 'metrics.total_params' missing"])):
        record = json.loads(good)
        if change == "str":
            record["metrics"]["total_params"] = "many"
        else:
            del record["metrics"]["total_params"]
        record["digest"] = results.payload_digest(record)
        path.write_text(json.dumps(record))
        p = run(clone, "-m", "hw2.pipeline", "check", "--allow-stale", "1")
        assert p.returncode == 1 and "Traceback" not in p.stderr + p.stdout
        assert "results/q6_vgg11.json: " + words[0] in p.stdout, p.stdout
        p = run(clone, "-m", "hw2.render", "--allow-stale", "1", "--out-dir", str(clone / "o"))
        assert p.returncode == 2
        one_line(p, "results/q6_vgg11.json", *words)
        assert not (clone / "o").exists() or not list((clone / "o").iterdir())


def test_case5_allow_stale_means_what_it_says(clone):
    path = clone / "results" / "q6_vgg11.json"
    record = json.loads(path.read_text())
    record["metrics"]["total_params"] = 1
    path.write_text(json.dumps(record))
    for value, rc in (("0", 1), ("no", 1), ("false", 1), ("", 1), ("1", 0), ("yes", 0), ("TRUE", 0)):
        assert run(clone, "-m", "hw2.pipeline", "check", "--allow-stale", value).returncode == rc, value
    p = run(clone, "-m", "hw2.pipeline", "check", "--allow-stale", "maybe")
    assert p.returncode == 2
    one_line(p, "ALLOW_STALE='maybe'")
    # make passes the value through as it was given, to both steps
    dry = subprocess.run(["make", "-n", "-o", "setup", "report", "ALLOW_STALE=0"], cwd=clone,
                         capture_output=True, text=True).stdout
    steps = [ln for ln in dry.splitlines() if "hw2.pipeline check" in ln or "hw2.render" in ln]
    assert len(steps) == 2 and all('--allow-stale "0"' in ln for ln in steps), dry


DRIVER = textwrap.dedent('''\
    """The render, with a run that finishes between its check and its kernel's reads."""
    import json, sys
    import nbformat
    from hw2 import render, results
    from hw2.paths import ROOT

    def tiny_report(main=None):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("from hw2 import report as R\\n"
                                              "R.md(f\\"Total: {R.metric('q6_vgg11', 'total_params')} parameters\\")")]
        nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
        return {"title": "t"}, nb

    real_execute = render.execute

    def execute_after_another_run(nb, *args):
        path = ROOT / "results" / "q6_vgg11.json"          # another run's numbers land now
        record = json.loads(path.read_text())
        record["metrics"]["total_params"] = 424242
        record["digest"] = results.payload_digest(record)
        path.write_text(json.dumps(record))
        task = ROOT / "results" / "task1_init.ipynb"
        task.write_text(task.read_text().replace("Task 1", "Task 1 OF ANOTHER RUN"))
        return real_execute(nb, *args)

    render.read_notebook, render.execute = tiny_report, execute_after_another_run
    sys.exit(render.main(sys.argv[1:]))
''')


def test_case6_the_render_reads_what_it_checked(clone):
    (clone / "driver.py").write_text(DRIVER)
    total = json.loads((clone / "results" / "q6_vgg11.json").read_text())["metrics"]["total_params"]
    out = clone / "o"
    p = run(clone, "driver.py", "--engine", "fallback", "--out-dir", str(out))
    assert p.returncode == 0, p.stderr
    pdf = next(out.glob("*.pdf"))
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
    assert f"Total: {total} parameters" in text and "424242" not in text
    ipynb = next(out.glob("*.ipynb")).read_text()
    assert "OF ANOTHER RUN" not in ipynb
