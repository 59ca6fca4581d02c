"""Run a code task: execute its literate source, experiments/<name>.py, as a notebook in a fresh kernel.

    python -m experiments.<name> [--profile smoke|full] [--device auto|cpu|cuda] [--out DIR]
                                 [--resume] [--<parameter> VALUE ...] [--until LABEL]

A task source is a jupytext percent script: Markdown cells for the assignment's parts and the
answers, code cells for all of the task's code. Its code cell tagged `parameters` (the
convention papermill and Quarto share), declares what a run may set; every parameter there becomes
a flag of this command. A run reads the source, injects the parameters that differ from their
defaults in a cell right after that one (as papermill does), and executes the notebook with
nbclient. It keeps three things, moved into place only after every cell ran without an error:

    results/<name>.ipynb                the executed notebook, which the submission is assembled from
    results/<name>.json                 what the notebook saved, wrapped with provenance (results.write_result)
    figures/<name>_<what>.{png,pdf}     the figures it saved

Only a full run writes the project's results/ and figures/; another profile without --out writes
.cache/runs/<name>-<profile>/.

The kernel runs in a scratch folder whose `data/` and `.cache/` are links to the datasets and to
the project's cache, so the notebook sees the relative paths a student's notebook would see, and
its checkpoints and caches outlive the scratch folder (that is what --resume continues from).
Problems end with one line naming the file or cell and a non-zero exit.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

from .errors import UserError
from .paths import CACHE, ROOT
from .results import (atomic_write_bytes, atomic_write_text, environment, git_commit, now, output_base,
                      source_hash, write_result)

# The datasets each task reads, validated before any cell runs and linked into the kernel's data/.
TASK_DATA = {"task1_init": [], "task2_magic_mlp": ["magic"], "task3_imagenette_cnn": ["imagenette"]}
CHOICES = {"profile": ["smoke", "full"], "device": ["auto", "cpu", "cuda"]}
FLAG_NAMES = {"out_dir": "out"}          # parameter -> flag, where the flag is shorter
# Set by the runner, never from the command line: the kernel's own scratch folder decides them.
RUNNER_ONLY = {"data_dir", "cache_dir"}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def is_task_source(path: str | Path) -> bool:
    """A jupytext percent script (starts with a Markdown cell), not a harness module."""
    text = Path(path).read_text()
    return bool(re.match(r"\s*# %% \[markdown\]", text))


def task_sources() -> dict[str, Path]:
    return {p.stem: p for p in sorted((ROOT / "experiments").glob("*.py"))
            if not p.stem.startswith("_") and is_task_source(p)}


# --- reading the source --------------------------------------------------------------------------
def read_source(path: Path):
    """The notebook of a task source, without its script-only cells (jupytext's active="py")."""
    import jupytext
    try:
        nb = jupytext.read(path, fmt="py:percent")
    except Exception as e:   # jupytext raises many types for a malformed file
        raise UserError(f"{path}: not a readable percent-format notebook ({e})") from None
    nb.cells = [c for c in nb.cells if c.metadata.get("active") != "py"]
    for cell in nb.cells:
        cell.metadata.pop("lines_to_next_cell", None)
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    return nb


def parameters_cell(nb, path: Path) -> tuple[int, dict]:
    """(index, {name: (default, help)}) of the cell tagged `parameters`; only literal assignments."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            break
    else:
        raise UserError(f"{path}: no cell tagged `parameters`")
    params = {}
    lines = cell.source.splitlines()
    for node in ast.parse(cell.source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise UserError(f"{path}: the parameters cell may only assign literals (line {node.lineno})")
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            raise UserError(f"{path}: parameter {node.targets[0].id} is not a literal (line {node.lineno})") from None
        line = lines[node.lineno - 1]
        params[node.targets[0].id] = (value, line.split("#", 1)[1].strip() if "#" in line else "")
    return i, params


def inject(nb, index: int, values: dict):
    """Insert the values that differ from the defaults after the parameters cell (papermill's way)."""
    import nbformat
    if values:
        source = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items())
        nb.cells.insert(index + 1, nbformat.v4.new_code_cell(
            source.rstrip("\n"), metadata={"tags": ["injected-parameters"]}))
    return nb


# --- the command line ----------------------------------------------------------------------------
def build_parser(name: str, params: dict) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m experiments.{name}",
        description=f"Execute experiments/{name}.py as a notebook; keep results/{name}.ipynb, "
                    f"results/{name}.json and figures/{name}_*.")
    for key, (default, helptext) in params.items():
        if key in RUNNER_ONLY:
            continue
        flag = "--" + FLAG_NAMES.get(key, key).replace("_", "-")
        kw = {"dest": key, "default": argparse.SUPPRESS, "help": f"{helptext} (default: {default!r})"}
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif key == "out_dir":
            p.add_argument(flag, metavar="DIR", **{**kw, "help": (
                "write DIR/results/ and DIR/figures/ (and keep caches in DIR/work/); without it a "
                "full run writes the project's, any other profile a scratch folder under .cache/runs/")})
        else:
            typ = type(default) if isinstance(default, (int, float)) and not isinstance(default, bool) else str
            p.add_argument(flag, type=typ, choices=CHOICES.get(key), **kw)
    p.add_argument("--until", metavar="LABEL", default=None,
                   help="execute up to and including the cell labelled LABEL, then stop; a partial "
                        "run writes no result (e.g. extra Optuna workers)")
    p.add_argument("--quiet", action="store_true", help="do not echo the notebook's printed lines")
    return p


def parse_none(value):
    """A flag's text for a parameter whose default is None: "none", a number, or a string."""
    if not isinstance(value, str):
        return value
    if value.lower() == "none":
        return None
    try:
        number = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
    return number if isinstance(number, (int, float)) and not isinstance(number, bool) else value


# --- checks before any compute -------------------------------------------------------------------
def check_writable(folder: Path):
    """Make folder (and parents) and prove a file can be written there, or say which folder fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{folder}: output folder is not writable ({e.strerror or e})") from None


class OutputLock:
    """An exclusive lock on an output folder for one task; a second run names the holder."""

    def __init__(self, folder: Path, name: str):
        self.path = folder / f".{name}.lock"
        self.fd = None

    def __enter__(self):
        import fcntl
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 300, 0).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            raise UserError(f"{self.path}: another run of this task holds the output folder "
                            f"({holder}); wait for it or use another --out") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} on {socket.gethostname()} since {now()}\n".encode(), 0)
        return self

    def __exit__(self, *exc):
        os.ftruncate(self.fd, 0)
        os.close(self.fd)   # closing releases the flock


def check_data(datasets: list[str]) -> dict[str, Path]:
    """Validate each dataset the task reads completely (`make check-data`'s own code, JPEGs not
    decoded) and return where each lies, to be linked into the kernel's data/ folder."""
    from . import data
    data.check_datasets(datasets, decode=False)
    found = {}
    if "magic" in datasets:
        found[data.MAGIC_FILE] = data.magic_path()
    if "imagenette" in datasets:
        found[data.IMAGENETTE_DIR] = data.imagenette_root() / data.IMAGENETTE_DIR
    return found


# --- execution -----------------------------------------------------------------------------------
def cell_name(cell) -> str:
    """A cell's `#| label:` or its first line of code, for messages."""
    m = re.search(r"^#\|\s*label:\s*(\S+)", cell.source, re.M)
    if m:
        return m.group(1)
    code = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.startswith("#")]
    return (code[0][:60] if code else "?")


def kernel_manager_class(sockets: Path):
    """Kernels that talk over IPC sockets in a scratch folder (no TCP ports, no warning about
    them). nbclient creates, owns and shuts down the kernel as it does for its default class.
    The folder's path must be short: a Unix socket's path has at most 107 bytes."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs, transport="ipc", ip=str(sockets / "kernel"))
    return IPCKernelManager


def make_client(nb, cwd: Path, sockets: Path, echo: bool):
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    class Client(NotebookClient):
        """nbclient, echoing the notebook's printed lines to the console while a cell runs."""

        def signalled(self) -> bool:
            # While it executes, nbclient answers SIGINT/SIGTERM itself: it shuts the kernel down
            # and leaves this future behind.
            return hasattr(self, "_async_cleanup_kernel_future")

        async def _async_check_alive(self):
            # Once nbclient has shut the kernel down and dropped its client, its liveness poll fails
            # on an assert and the wait for the running cell's reply never ends (a plain `kill` would
            # hang the run). Report the kernel dead instead: execute() ends.
            if self.kc is None or self.signalled():
                raise DeadKernelError("the kernel was shut down by a signal")
            await super()._async_check_alive()

        def output(self, outs, msg, display_id, cell_index):
            if echo and msg["msg_type"] == "stream":
                stream = sys.stdout if msg["content"]["name"] == "stdout" else sys.stderr
                stream.write(msg["content"]["text"])
                stream.flush()
            return super().output(outs, msg, display_id, cell_index)

    return Client(nb, kernel_manager_class=kernel_manager_class(sockets), kernel_name="python3", timeout=None,
                  resources={"metadata": {"path": str(cwd)}}, record_timing=False)


def execute(nb, cwd: Path, path: Path, echo: bool):
    from nbclient.exceptions import CellExecutionError, DeadKernelError
    sockets = Path(tempfile.mkdtemp(prefix="hw2-kernel-"))   # short, whatever cwd's length
    client = make_client(nb, cwd, sockets, echo)

    def interrupted():
        # after a signal, whatever the execution raises is that interruption
        return client.signalled()
    # The kernel process's own stderr (not the cells' output, which comes as messages) goes to a
    # log: it is noise when a signal shuts the kernel down, and the clue when the kernel dies.
    kernel_log = sockets / "kernel.log"
    try:
        with open(kernel_log, "w") as log:
            client.execute(stderr=log)
    except CellExecutionError as e:
        cell = next((c for c in nb.cells if c.cell_type == "code" and any(
            o.get("output_type") == "error" for o in c.get("outputs", []))), None)
        err = next((o for o in (cell.outputs if cell else []) if o.get("output_type") == "error"), None)
        # the last line of the message: a worker's error carries its whole traceback before it
        what = (f"{err['ename']}: {(err['evalue'].strip().splitlines() or [''])[-1]}" if err
                else (str(e).strip().splitlines() or ["?"])[-1])
        if interrupted() or (err and err["ename"] == "KeyboardInterrupt"):
            raise KeyboardInterrupt from None
        what = ANSI.sub("", what)
        raise UserError(f"{path}: cell '{cell_name(cell) if cell else '?'}' failed: {what}") from None
    except DeadKernelError as e:
        if interrupted():
            raise KeyboardInterrupt from None
        last = [ln for ln in kernel_log.read_text(errors="replace").splitlines() if ln.strip()][-1:]
        raise UserError(f"{path}: the kernel died ({e}){': ' + last[0].strip() if last else ''}") from None
    except BaseException:
        if interrupted():
            raise KeyboardInterrupt from None
        raise
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    return nb


def title_to_heading(nb):
    """The source's Quarto YAML title cell becomes a `# Title` heading in the executed notebook."""
    import yaml
    first = nb.cells[0] if nb.cells else None
    if first is not None and first.cell_type == "markdown":
        m = re.match(r"^---\n(.*?)\n---\s*$", first.source, re.S)
        if m:
            meta = yaml.safe_load(m.group(1)) or {}
            first.source = f"# {meta.get('title', '')}".rstrip()
    return nb


def run_task(source: str | Path, argv=None) -> int:
    path = Path(source).resolve()
    name = path.stem
    t_start = time.perf_counter()
    try:
        digest_at_start = source_hash(path)        # what runs, not what is on disk at the end
        commit_at_start = git_commit()
        nb = read_source(path)
        index, params = parameters_cell(nb, path)
        args = build_parser(name, params).parse_args(argv)
        chosen = {k: parse_none(v) for k, v in vars(args).items() if k in params and k != "out_dir"}
        profile = chosen.get("profile", params.get("profile", ("full",))[0])
        out = vars(args).get("out_dir")
        base = output_base(name, profile, out)
        cache_dir = (base / "work" / ".cache") if out is not None else CACHE
        found = check_data(TASK_DATA.get(name, []))
        results_dir, figures_dir = base / "results", base / "figures"
        for folder in (results_dir, figures_dir, cache_dir):
            check_writable(folder)
        if out is None and base != ROOT and not args.until:
            print(f"{name}: the {profile} profile writes {base.relative_to(ROOT)}/ "
                  f"(only a full run writes results/ and figures/)", file=sys.stderr)
        with OutputLock(results_dir, name):
            return _run(nb, index, params, chosen, args, path, name, profile, base, cache_dir,
                        found, digest_at_start, commit_at_start, t_start)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"error: {name} interrupted; no result written", file=sys.stderr)
        return 130


def _run(nb, index, params, chosen, args, path, name, profile, base, cache_dir,
         found, digest_at_start, commit_at_start, t_start) -> int:
    import nbformat
    results_dir, figures_dir = base / "results", base / "figures"
    injected = {k: v for k, v in chosen.items() if v != params[k][0]}
    inject(nb, index, injected)
    if args.until:
        at = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                   and re.search(rf"^#\|\s*label:\s*{re.escape(args.until)}\s*$", c.source, re.M)), None)
        if at is None:
            raise UserError(f"{path}: no cell labelled {args.until!r} (--until)")
        nb.cells = nb.cells[:at + 1]
    started, run_id = now(), uuid.uuid4().hex[:12]
    with tempfile.TemporaryDirectory(prefix=f".{name}-run-", dir=results_dir) as tmp:
        work = Path(tmp)
        (work / "data").mkdir()
        for entry, target in found.items():
            (work / "data" / entry).symlink_to(target)
        cache_dir.mkdir(parents=True, exist_ok=True)
        (work / ".cache").symlink_to(cache_dir)
        settings = [f"{profile} profile"] + [f"{k}={v!r}" for k, v in injected.items() if k != "profile"]
        print(f"{name}: executing {path.name} ({', '.join(settings)}) in a fresh kernel", file=sys.stderr, flush=True)
        execute(nb, work, path, echo=not args.quiet)
        wall = time.perf_counter() - t_start
        if args.until:
            print(f"{name}: stopped after cell {args.until!r} (partial run: no result written) "
                  f"in {wall:.0f} s", file=sys.stderr)
            return 0
        saved = work / "results" / f"{name}.json"
        if not saved.exists():
            raise UserError(f"{path}: the notebook ran but saved no results/{name}.json")
        try:
            payload = json.loads(saved.read_text())
        except ValueError as e:
            raise UserError(f"{saved.name}: the notebook saved invalid JSON ({e})") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("metrics"), dict) \
                or not isinstance(payload.get("config"), dict):
            raise UserError(f"{path}: the saved results lack `metrics` or `config`")
        nb.metadata["hw2"] = {"task": name, "source_hash": digest_at_start, "run_id": run_id,
                              "profile": profile, "started": started, "finished": now()}
        title_to_heading(nb)
        # everything made: move it into place, the JSON last (it is what marks a run complete, and
        # it carries the digest of every file before it)
        made = []
        for fig in sorted((work / "figures").glob(f"{name}_*")) if (work / "figures").exists() else []:
            made.append(atomic_write_bytes(figures_dir / fig.name, fig.read_bytes()))
        made.append(atomic_write_text(results_dir / f"{name}.ipynb", nbformat.writes(nb) + "\n"))
        defaults = {k: v[0] for k, v in params.items() if k not in RUNNER_ONLY | {"out_dir"}}
        write_result(name, profile=profile, config=payload["config"], metrics=payload["metrics"],
                     started=started, wall_seconds=wall, source_hash=digest_at_start,
                     environment={**environment(device="none", commit=commit_at_start), **payload.get("environment", {})},
                     base=base, files=made, extra=payload.get("extra") or None,
                     run_id=run_id, parameters={**defaults, **injected})
    ok = payload["metrics"].get("all_checks_passed", True)
    shown = results_dir.relative_to(ROOT) if results_dir.is_relative_to(ROOT) else results_dir
    print(f"{name}: wrote {shown / (name + '.json')}, {name}.ipynb and figures in {wall:.0f} s"
          + ("" if ok else " -- SOME CHECKS FAILED"), file=sys.stderr)
    return 0 if ok else 1
