"""The task runner (hw2.tasks): a percent-format notebook becomes a command, its execution a result.

A small task source written into tmp_path stands in for the real ones: the runner's flags come from
its parameters cell, a failing cell gives one line and writes nothing, the output folder is locked
and checked before anything runs, Ctrl-C ends cleanly, and staleness follows the source's hash.
"""
import json
import os
import re
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
    profile = "full"  # ["full" | "smoke"] the profile
    out_dir = "."  # [str] where results/ go
    steps = 3  # [int >= 1] how many steps
    fail = False  # [bool] raise in the middle
    sleep = 0.0  # seconds to sleep in the middle (not annotated: a float, as its default)
    crash = False  # the kernel process dies in the middle
    threads = 0  # [int >= 0] CPU threads (0: the default)
    torch_compile = "auto"  # ["auto" | "yes" | "no"] compile or not
    device = "auto"  # ["auto" | "cpu" | "cuda"] where to run
    ratio = 0.5  # [0 < float <= 1] a share
    label = None  # [str | None] a name, "#1" or "123" alike

    # %%
    #| label: compute
    import json, os, time
    total = sum(range(steps))
    print(f"total = {total}, label is a {type(label).__name__}")

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


def run(src, *args, root=None, env_extra=None, **kw):
    env = {**os.environ, "PYTHONPATH": str(root or tasks.ROOT), **(env_extra or {})}
    return subprocess.run([sys.executable, str(src), *args], capture_output=True, text=True,
                          env=env, timeout=120, **kw)


def test_parameters_become_flags_and_values_are_injected(toy, tmp_path):
    nb = tasks.read_source(toy)
    assert all(c.metadata.get("active") != "py" for c in nb.cells)       # the script-only cell is gone
    index, params = tasks.parameters_cell(nb, toy)
    assert params["steps"].default == 3 and params["steps"].help == "how many steps"
    assert params["steps"].spec.text == "int >= 1" and params["fail"].default is False
    assert params["sleep"].spec is None                                     # not annotated
    help_text = tasks.build_parser("toy", params).format_help()
    for flag in ("--profile", "--out", "--steps", "--fail", "--no-fail", "--until", "[int >= 1]"):
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
    assert "total = 10, label is a NoneType" in p.stdout                    # printed lines are echoed


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


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder this user cannot write into (skipped for a user who can write anywhere, e.g. root)."""
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        yield locked
    finally:
        locked.chmod(0o700)


def test_unwritable_out_is_refused_before_anything_runs(toy, read_only_dir):
    locked = read_only_dir
    t0 = time.perf_counter()
    p = run(toy, "--out", str(locked / "o"))
    assert p.returncode == 2 and time.perf_counter() - t0 < 30
    assert_one_error_line(p, str(locked / "o"), "not writable")


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


# --- issue 19, case 9: each flag's value is checked against the parameters cell's annotation --------
def test_annotations_are_read_and_a_bad_one_is_named(tmp_path):
    spec = tasks.read_spec('int >= 1 | None')
    assert spec.convert("5") == 5 and spec.convert("none") is None
    for bad in ("0", "abc", "1e400", "2.5", ""):
        with pytest.raises(ValueError, match="is not an int >= 1 or none"):
            spec.convert(bad)
    share = tasks.read_spec("0 < float <= 1")
    assert share.convert("1") == 1.0 and share.convert("0.25") == 0.25
    for bad in ("0", "1.5", "inf", "nan", "1e400"):
        with pytest.raises(ValueError, match="finite float > 0 and <= 1"):
            share.convert(bad)
    assert tasks.read_spec('str | None').convert("123") == "123"        # a name stays text
    assert tasks.read_spec('"a|b" | "c"').choices == ("a|b", "c")         # `|` inside quotes
    for bad_annotation in ("int ||", "list", "int == 1", "int >= x", "bool | None"):
        with pytest.raises(ValueError):
            tasks.read_spec(bad_annotation)
    # in a source: a bad annotation, and a default its own annotation refuses, name the parameter
    for line, needle in [("steps = 3  # [int >>= 1] how many", "parameter steps: annotation [int >>= 1]"),
                         ("steps = 0  # [int >= 1] how many", "parameter steps: its default 0 is not an int >= 1"),
                         ("steps = 3  # [bool] how many", "parameter steps: its default 3 is not a bool"),
                         ("steps = True  # [True | False] how many", "parameter steps: a bool parameter")]:
        src = tmp_path / "bad.py"
        src.write_text(TOY.replace("steps = 3  # [int >= 1] how many steps", line))
        with pytest.raises(tasks.UserError, match=re.escape(needle)):
            tasks.parameters_cell(tasks.read_source(src), src)
    # a `#` inside a default is no comment
    src = tmp_path / "hash.py"
    src.write_text(TOY.replace('label = None  # [str | None]', 'label = "#1"  # [str | None]'))
    assert tasks.parameters_cell(tasks.read_source(src), src)[1]["label"].default == "#1"


def refused(proc, out, *needles, seconds=2.0, elapsed=None):
    """One line naming the flag, exit 2, no traceback, in time, and no output folder made."""
    assert proc.returncode == 2, proc.stderr
    assert_one_error_line(proc, *needles)
    assert elapsed is None or elapsed < seconds, f"{elapsed:.1f} s: {proc.stderr}"
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))


def timed_run(src, *args, **kw):
    t0 = time.perf_counter()
    p = run(src, *args, **kw)
    return p, time.perf_counter() - t0


@pytest.mark.parametrize("args, needles", [
    (["--steps", "0"], ["error: --steps: '0' is not an int >= 1"]),
    (["--steps", "abc"], ["error: --steps: 'abc' is not an int >= 1"]),
    (["--ratio", "1e400"], ["error: --ratio: '1e400' is not a finite float > 0 and <= 1"]),
    (["--ratio", "0"], ["error: --ratio: '0' is not a finite float"]),
    (["--threads", "-1"], ["error: --threads: '-1' is not an int >= 0"]),
    (["--torch-compile", "maybe"], ["error: --torch-compile: 'maybe' is not 'auto', 'yes' or 'no'"]),
    (["--profile", "fast"], ["error: --profile: 'fast' is not 'full' or 'smoke'"]),
    (["--sleep", "abc"], ["error: --sleep: 'abc' is not a finite float"]),   # not annotated: one line too
    (["--sleep", "1e400"], ["error: --sleep: '1e400' is not a finite float"]),      # was injected as `inf`
    (["--steps"], ["error: --steps: expected one argument"]),
    (["--nonsense", "1"], ["error: unrecognized arguments: --nonsense 1", "--help"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) and v[0].startswith("--") else "")
def test_a_bad_flag_value_is_one_line_before_any_kernel(toy, tmp_path, args, needles):
    out = tmp_path / "o"
    p, elapsed = timed_run(toy, *args, "--out", str(out))
    refused(p, out, *needles, elapsed=elapsed)


@pytest.mark.parametrize("task, args, needle", [
    ("task2_magic_mlp", ["--trials", "1e400"], "error: --trials: '1e400' is not an int >= 1 or none"),
    ("task2_magic_mlp", ["--trials", "abc"], "error: --trials: 'abc' is not an int >= 1 or none"),
    ("task2_magic_mlp", ["--trials", "0"], "error: --trials: '0' is not an int >= 1 or none"),
    ("task2_magic_mlp", ["--profile", "fast"], "error: --profile: 'fast' is not 'full' or 'smoke'"),
    ("task1_init", ["--profile", "fast"], "error: --profile: 'fast' is not 'full' or 'smoke'"),
    ("task3_imagenette_cnn", ["--threads", "-1"], "error: --threads: '-1' is not an int >= 0"),
    ("task3_imagenette_cnn", ["--threads", "x"], "error: --threads: 'x' is not an int >= 0"),
    ("task3_imagenette_cnn", ["--torch-compile", "maybe"], "error: --torch-compile: 'maybe' is not 'auto', 'yes' or 'no'"),
    ("task3_imagenette_cnn", ["--device", "tpu"], "error: --device: 'tpu' is not 'auto', 'cpu' or 'cuda'"),
])
def test_the_real_sources_refuse_bad_flags_before_any_kernel(root, tmp_path, task, args, needle):
    """Nothing executes, so this is fast; `--trials 0` used to wipe the study and then fail."""
    out = tmp_path / "o"
    p, elapsed = timed_run(root / "experiments" / f"{task}.py", *args, "--out", str(out))
    refused(p, out, needle, elapsed=elapsed)


def test_the_real_sources_declare_their_flags(root):
    help2 = run(root / "experiments" / "task2_magic_mlp.py", "--help")
    assert help2.returncode == 0
    for shown in ("[int >= 1 | None]", "[str | None]", "{auto,cpu,cuda}", "{full,smoke}"):
        assert shown in help2.stdout, help2.stdout
    sources = tasks.task_sources()
    for name in ("task1_init", "task2_magic_mlp", "task3_imagenette_cnn"):
        _, params = tasks.parameters_cell(tasks.read_source(sources[name]), sources[name])
        assert all(p.spec is not None for p in params.values()), name
    _, params = tasks.parameters_cell(tasks.read_source(sources["task2_magic_mlp"]), sources["task2_magic_mlp"])
    _, chosen = tasks.parse_flags("task2_magic_mlp", params, ["--study-name", "123", "--trials", "7"])
    assert chosen == {"study_name": "123", "trials": 7}


def test_a_name_that_looks_like_a_number_stays_text(toy, tmp_path):
    p = run(toy, "--label", "123", "--out", str(tmp_path / "o"))
    assert p.returncode == 0, p.stderr
    assert "label is a str" in p.stdout
    record = json.loads((tmp_path / "o" / "results" / "toy.json").read_text())
    assert record["parameters"]["label"] == "123"


@pytest.mark.parametrize("source", ["toy", "task2_magic_mlp", "task3_imagenette_cnn"])
def test_device_cuda_without_a_gpu_is_one_line(toy, root, tmp_path, source):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    src = toy if source == "toy" else root / "experiments" / f"{source}.py"
    out = tmp_path / "o"
    p, elapsed = timed_run(src, "--device", "cuda", "--out", str(out))
    # without an NVIDIA driver, known before torch is imported (that import takes seconds)
    no_driver = not any(os.path.exists(f) for f in tasks.NVIDIA_DRIVER_FILES)
    refused(p, out, "error: --device: cuda asked for", "no CUDA GPU", seconds=2 if no_driver else 10, elapsed=elapsed)


# --- issue 19, case 10: a refused run creates nothing in --out ---------------------------------------
def test_a_refused_run_creates_nothing(toy, root, tmp_path):
    out = tmp_path / "o"
    refused(run(toy, "--steps", "0", "--out", str(out)), out, "--steps")           # a bad flag
    refused(run(toy, "--until", "nowhere", "--out", str(out)), out, "no cell labelled 'nowhere'")
    data = tmp_path / "data"                                                        # bad data
    data.mkdir()
    (data / "magic04.data").write_text("not, the, data\n")
    p = run(root / "experiments" / "task2_magic_mlp.py", "--out", str(out),
            env_extra={"HW2_DATA_DIR": str(data)})
    refused(p, out, str(data / "magic04.data"))
    # a bad --out: its work/ is a file, so the cache folder cannot be made; results/ and figures/
    # used to be made before that was found, and stayed behind
    out.mkdir()
    (out / "work").write_text("a file where the caches would go")
    p = run(toy, "--out", str(out))
    assert p.returncode == 2
    assert_one_error_line(p, str(out / "work" / ".cache"), "not writable", "is not a folder")
    assert sorted(x.name for x in out.iterdir()) == ["work"]                      # no results/, figures/, lock


def test_an_unwritable_parent_is_found_without_making_anything(toy, read_only_dir):
    locked = read_only_dir
    p = run(toy, "--out", str(locked / "a" / "b"))
    assert p.returncode == 2
    assert_one_error_line(p, str(locked / "a" / "b"), "permission denied")
    assert not list(locked.iterdir())
