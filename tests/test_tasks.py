"""The task runner (hw2.tasks): a percent-format notebook becomes a command, its execution a result.

A small task source written into tmp_path stands in for the real ones: the runner's flags come from
its parameters cell, a failing cell gives one line and writes nothing, the output folder is locked
and checked before anything runs, Ctrl-C ends cleanly, and staleness follows the source's hash.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hw2 import tasks

TOY = textwrap.dedent('''\
    # %% [markdown]
    # ---
    # title: "Toy task"
    # jupyter: python3
    # ---

    # %% active="py"
    import sys
    if __name__ == "__main__" and "ipykernel" not in sys.modules:
        from hw2.tasks import run_task
        sys.exit(run_task(__file__))

    # %% tags=["parameters"]
    profile = "full"  # the profile
    out_dir = "."  # where results/ go
    steps = 3  # how many steps
    fail = False  # raise in the middle
    sleep = 0.0  # seconds to sleep in the middle
    crash = False  # the kernel process dies in the middle

    # %%
    #| label: compute
    import json, os, time
    total = sum(range(steps))
    print(f"total = {total}")

    # %%
    #| label: middle
    open("middle-started", "w").close()
    time.sleep(sleep)
    if crash:
        os._exit(3)
    if fail:
        raise ValueError("the toy failed on purpose")

    # %%
    #| label: save
    os.makedirs(os.path.join(out_dir, "results"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "figures"), exist_ok=True)
    open(os.path.join(out_dir, "figures", "toy_line.png"), "wb").write(b"png")
    json.dump({"config": {"steps": steps}, "metrics": {"total": total, "all_checks_passed": True}},
              open(os.path.join(out_dir, "results", "toy.json"), "w"))
''')


@pytest.fixture
def toy(tmp_path, root):
    src = tmp_path / "toy.py"
    src.write_text(TOY)
    return src


def run(src, *args, root=None, **kw):
    env = {**os.environ, "PYTHONPATH": str(root or tasks.ROOT)}
    return subprocess.run([sys.executable, str(src), *args], capture_output=True, text=True,
                          env=env, timeout=120, **kw)


def test_parameters_become_flags_and_values_are_injected(toy, tmp_path):
    nb = tasks.read_source(toy)
    assert all(c.metadata.get("active") != "py" for c in nb.cells)       # the script-only cell is gone
    index, params = tasks.parameters_cell(nb, toy)
    assert params["steps"] == (3, "how many steps") and params["fail"][0] is False
    help_text = tasks.build_parser("toy", params).format_help()
    for flag in ("--profile", "--out", "--steps", "--fail", "--no-fail", "--until"):
        assert flag in help_text
    p = run(toy, "--steps", "5", "--out", str(tmp_path / "o"))
    assert p.returncode == 0, p.stderr
    record = json.loads((tmp_path / "o" / "results" / "toy.json").read_text())
    assert record["metrics"]["total"] == 10 and record["parameters"]["steps"] == 5
    assert record["source_hash"] == tasks.source_hash(toy) and record["profile"] == "full"
    executed = json.loads((tmp_path / "o" / "results" / "toy.ipynb").read_text())
    assert executed["metadata"]["hw2"]["run_id"] == record["run_id"]
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and "steps = 5" in "".join(injected[0]["source"])
    assert "".join(executed["cells"][0]["source"]) == "# Toy task"               # the YAML title became a heading
    assert (tmp_path / "o" / "figures" / "toy_line.png").read_bytes() == b"png"
    assert "total = 10" in p.stdout                                        # printed lines are echoed


def test_defaults_inject_nothing(toy, tmp_path):
    assert run(toy, "--out", str(tmp_path / "o")).returncode == 0
    executed = json.loads((tmp_path / "o" / "results" / "toy.ipynb").read_text())
    assert not [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]


def assert_one_error_line(proc, *needles):
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in err[0], err[0]


def test_a_failing_cell_is_one_line_and_writes_nothing(toy, tmp_path):
    p = run(toy, "--fail", "--out", str(tmp_path / "o"))
    assert p.returncode == 2
    assert_one_error_line(p, "toy.py", "cell 'middle'", "ValueError: the toy failed on purpose")
    assert not list((tmp_path / "o" / "results").glob("toy*")) and not list((tmp_path / "o" / "figures").iterdir())
    assert not [d for d in (tmp_path / "o" / "results").iterdir() if d.name.startswith(".toy-run")]


def test_until_stops_early_and_writes_nothing(toy, tmp_path):
    p = run(toy, "--until", "compute", "--out", str(tmp_path / "o"))
    assert p.returncode == 0 and "partial run" in p.stderr and "total = 3" in p.stdout
    assert not list((tmp_path / "o" / "results").glob("toy*"))
    p = run(toy, "--until", "nonexistent", "--out", str(tmp_path / "o"))
    assert p.returncode == 2
    assert_one_error_line(p, "no cell labelled 'nonexistent'")


def test_unwritable_out_is_refused_before_anything_runs(toy, tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        t0 = time.perf_counter()
        p = run(toy, "--out", str(locked / "o"))
        assert p.returncode == 2 and time.perf_counter() - t0 < 30
        assert_one_error_line(p, str(locked / "o"), "not writable")
    finally:
        locked.chmod(0o700)


def test_unwritable_out_as_root_is_caught_too(toy, tmp_path):
    """Root can write anywhere; a file where the folder should be still fails the check."""
    (tmp_path / "o").write_text("a file, not a folder")
    p = run(toy, "--out", str(tmp_path / "o"))
    assert p.returncode == 2
    assert_one_error_line(p, str(tmp_path / "o"), "not writable")


def test_a_second_run_on_the_same_output_names_the_holder(toy, tmp_path):
    first = subprocess.Popen([sys.executable, str(toy), "--sleep", "20", "--out", str(tmp_path / "o")],
                             env={**os.environ, "PYTHONPATH": str(tasks.ROOT)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "o" / "results" / ".toy.lock"
    try:
        for _ in range(200):
            if lock.exists() and lock.read_text().strip():
                break
            time.sleep(0.05)
        p = run(toy, "--out", str(tmp_path / "o"))
        assert p.returncode == 2
        assert_one_error_line(p, ".toy.lock", "another run", f"pid {first.pid}")
    finally:
        first.kill()
        first.communicate()


def interrupt_in_the_middle(toy, tmp_path, send, sleep, timeout):
    """Start the toy, wait until its kernel is in the sleeping cell, call send(proc), and return
    the ended process's (returncode, stdout, stderr)."""
    proc = subprocess.Popen([sys.executable, str(toy), "--sleep", str(sleep), "--out", str(tmp_path / "o")],
                            env={**os.environ, "PYTHONPATH": str(tasks.ROOT)}, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):
            if list((tmp_path / "o" / "results").glob(".toy-run-*/middle-started")):
                break
            time.sleep(0.05)
        send(proc)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess([], proc.returncode, out, err)


def test_ctrl_c_ends_with_one_line_and_nothing_written(toy, tmp_path):
    # what a terminal's Ctrl-C does: SIGINT to the whole group
    p = interrupt_in_the_middle(toy, tmp_path, lambda proc: os.killpg(proc.pid, signal.SIGINT), 30, 60)
    assert p.returncode == 130, p.stderr
    assert_one_error_line(p, "interrupted")
    assert not list((tmp_path / "o" / "results").glob("toy*"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_runner_alone_ends_the_run(toy, tmp_path, sig):
    """`kill PID`, a scheduler's stop: only the runner gets the signal, not the kernel. nbclient shuts
    the kernel down; the run must then end (it used to wait for the running cell for ever)."""
    p = interrupt_in_the_middle(toy, tmp_path, lambda proc: proc.send_signal(sig), 60, 30)
    assert p.returncode == 130, p.stderr
    assert_one_error_line(p, "interrupted")
    assert not list((tmp_path / "o" / "results").glob("toy*"))
    assert not list((tmp_path / "o" / "results").glob(".toy-run-*"))


def test_a_dying_kernel_is_one_line_and_writes_nothing(toy, tmp_path):
    p = run(toy, "--crash", "--out", str(tmp_path / "o"))
    assert p.returncode == 2
    assert_one_error_line(p, "toy.py: the kernel died")
    assert not list((tmp_path / "o" / "results").glob("toy*"))


def test_a_run_is_recorded_by_the_one_rule(toy, tmp_path):
    """The record carries the digests of the notebook and figures it made; the rule then follows
    the source (the one freshness rule is tested in full in test_results.py)."""
    from hw2 import results
    out = tmp_path / "o"
    assert run(toy, "--out", str(out)).returncode == 0
    record = results.load_result("toy", out)
    assert set(record["files"]) == {"figures/toy_line.png", "results/toy.ipynb"}
    assert results.freshness("toy", out, toy) == ("fresh", "")
    toy.write_text(toy.read_text() + "\n# an edit\n")
    state, reason = results.freshness("toy", out, toy)
    assert state == "stale" and "changed since the run" in reason


def test_the_real_task_sources_are_recognised(root):
    assert set(tasks.task_sources()) == {"task1_init", "task2_magic_mlp", "task3_imagenette_cnn"}
    for name, path in tasks.task_sources().items():
        nb = tasks.read_source(path)
        _, params = tasks.parameters_cell(nb, path)
        assert {"profile", "out_dir"} <= set(params), name
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "hw2" not in code and "from experiments" not in code and "derivations" not in code, name
