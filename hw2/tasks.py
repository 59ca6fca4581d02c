"""Run a code task: execute its literate source, experiments/<name>.py, as a notebook in a fresh kernel.

    python -m experiments.<name> [--profile smoke|full] [--device auto|cpu|cuda] [--out DIR]
                                 [--resume] [--<parameter> VALUE ...] [--until LABEL]

A task source is a jupytext percent script: Markdown cells for the assignment's parts and the
answers, code cells for all of the task's code. Its code cell tagged `parameters` (the
convention papermill and Quarto share), declares what a run may set; every parameter there becomes
a flag of this command. Its comment may open with the values the parameter takes, in brackets:

    trials = None  # [int >= 1 | None] how many trials this run adds
    device = "auto"  # ["auto" | "cpu" | "cuda"] where to train
    ratio = 0.5  # [0 < float <= 1] the share kept
    resume = False  # [bool] keep the earlier trials

Alternatives are separated by `|`: a type (int, float, str, bool), a type with bounds written as a
Python comparison (`int >= 1`, `0 < float <= 1`), a quoted choice, or None (`none` on the command
line). The runner refuses any other value in one line naming the flag (a float must also be
finite), before any kernel starts and before anything is made; `--device cuda` is checked against
torch.cuda.is_available(). A parameter without brackets takes the type of its default (a None
default: none, a number or text). A run reads the source, injects the parameters that differ from
their defaults in a cell right after that one (as papermill does), and executes the notebook with
nbclient. It keeps three things, moved into place only after every cell ran without an error:

    results/<name>.ipynb                the executed notebook, which the submission is assembled from
    results/<name>.json                 what the notebook saved, wrapped with provenance (results.write_result)
    figures/<name>_<what>.{png,pdf}     the figures it saved

Only a full run writes the project's results/ and figures/; another profile without --out writes
.cache/runs/<name>-<profile>/.

The kernel runs in a scratch folder whose `data/` and `.cache/` are links to the datasets and to
the project's cache, so the notebook sees the relative paths a student's notebook would see, and
its checkpoints and caches outlive the scratch folder (that is what --resume continues from).
Problems end with one line naming the file, flag or cell and a non-zero exit. Every check (the
flags, the data, the output folders) runs before anything is created: a refused run leaves no
folder and no lock behind.
"""
from __future__ import annotations

import argparse
import ast
import io
import json
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import tokenize
import uuid
from pathlib import Path
from typing import NamedTuple

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


# --- what a parameter may be: its annotation ----------------------------------------------------
TYPES = {"int": int, "float": float, "str": str, "bool": bool}
COMPARE = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}    # `1 <= int` is `int >= 1`
HOLDS = {"<": lambda v, b: v < b, "<=": lambda v, b: v <= b, ">": lambda v, b: v > b, ">=": lambda v, b: v >= b}
ANNOTATION = re.compile(r"^\[([^\]]*)\]\s*(.*)$", re.S)


def split_alternatives(text: str) -> list[str]:
    """`"a|b" | None` -> ['"a|b"', 'None']: split on the `|` outside quotes."""
    parts, current, quote = [], "", None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "|":
            parts.append(current.strip())
            current = ""
            continue
        current += ch
    return parts + [current.strip()]


class Spec(NamedTuple):
    """The values a parameter may take, from its `[...]` annotation."""
    text: str                                          # as written, for --help
    none: bool                                         # None is allowed (`none` on the command line)
    choices: tuple                                     # literal values allowed
    types: tuple                                       # (type, ((op, bound), ...)) alternatives

    def describe(self) -> str:
        parts = [f"{'an' if t is int else 'a finite' if t is float else 'a'} {t.__name__}"
                 + "".join(f"{' and' if i else ''} {op} {b!r}" for i, (op, b) in enumerate(bounds))
                 for t, bounds in self.types]
        parts += [repr(c) for c in self.choices] + (["none"] if self.none else [])
        return ", ".join(parts[:-1]) + (" or " if len(parts) > 1 else "") + parts[-1]

    def allows(self, value) -> bool:
        if value is None:
            return self.none
        if any(value == c and type(value) is type(c) for c in self.choices):
            return True
        for typ, bounds in self.types:
            as_typ = float(value) if typ is float and type(value) is int else value   # 1 is a float too
            if type(as_typ) is typ and (typ is not float or math.isfinite(as_typ)) \
                    and all(HOLDS[op](as_typ, b) for op, b in bounds):
                return True
        return False

    def convert(self, text: str):
        """The value a flag's text stands for, or ValueError saying what is allowed."""
        if self.none and text.strip().lower() == "none":
            return None
        for choice in self.choices:
            if text == (choice if isinstance(choice, str) else repr(choice)):
                return choice
        for typ, _ in self.types:
            try:
                value = typ(text.strip()) if typ is not str else text
            except ValueError:
                continue
            if self.allows(value):
                return value
        raise ValueError(f"{text!r} is not {self.describe()}")


class Parameter(NamedTuple):
    default: object
    help: str               # the comment, without its annotation
    spec: Spec | None       # None: not annotated, the flag takes the type of the default


def read_spec(text: str) -> Spec:
    """`int >= 1 | None` -> Spec; ValueError for anything else."""
    none, choices, types = False, [], []
    for alt in split_alternatives(text):
        if not alt:
            raise ValueError("an empty alternative")
        try:
            node = ast.parse(alt, mode="eval").body
        except SyntaxError:
            raise ValueError(f"cannot read {alt!r}") from None
        if isinstance(node, ast.Constant) and node.value is None:
            none = True
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)):
            choices.append(node.value)
        elif isinstance(node, ast.Name) and node.id in TYPES:
            types.append((TYPES[node.id], ()))
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            names = [o.id for o in operands if isinstance(o, ast.Name)]
            if len(names) != 1 or names[0] not in ("int", "float"):
                raise ValueError(f"{alt!r}: a bound applies to one int or float, by numbers")
            bounds = []
            for (a, b), op in zip(zip(operands, operands[1:]), node.ops):
                if type(op) not in COMPARE or not (isinstance(a, ast.Name) or isinstance(b, ast.Name)):
                    raise ValueError(f"{alt!r}: use <, <=, > or >= next to the type")
                other = b if isinstance(a, ast.Name) else a
                try:
                    bound = ast.literal_eval(other)
                except ValueError:
                    bound = None
                if not isinstance(bound, (int, float)) or isinstance(bound, bool):
                    raise ValueError(f"{alt!r}: a bound must be a number")
                sign = COMPARE[type(op)]
                bounds.append((sign if isinstance(a, ast.Name) else FLIP[sign], bound))
            types.append((TYPES[names[0]], tuple(bounds)))
        else:
            raise ValueError(f"cannot read {alt!r}")
    if (bool, ()) in types and (len(types) > 1 or choices or none):
        raise ValueError("bool stands alone (the flag is --x/--no-x)")
    return Spec(text.strip(), none, tuple(choices), tuple(types))


def line_comments(source: str) -> dict[int, str]:
    """line number -> the text of its comment (tokenize: a `#` inside a string is no comment)."""
    try:
        return {tok.start[0]: tok.string[1:].strip() for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    except (tokenize.TokenError, SyntaxError):
        return {}


def parameters_cell(nb, path: Path) -> tuple[int, dict[str, Parameter]]:
    """(index, {name: Parameter}) of the cell tagged `parameters`; only literal assignments, each
    default allowed by its own annotation."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            break
    else:
        raise UserError(f"{path}: no cell tagged `parameters`")
    params = {}
    try:
        body = ast.parse(cell.source).body
    except SyntaxError as e:
        raise UserError(f"{path}: the parameters cell is not valid Python ({e.msg}, line {e.lineno})") from None
    comments = line_comments(cell.source)
    for node in body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise UserError(f"{path}: the parameters cell may only assign literals (line {node.lineno})")
        key = node.targets[0].id
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            raise UserError(f"{path}: parameter {key} is not a literal (line {node.lineno})") from None
        comment, spec = comments.get(node.lineno, ""), None
        m = ANNOTATION.match(comment)
        if m:
            try:
                spec = read_spec(m.group(1))
            except ValueError as e:
                raise UserError(f"{path}: parameter {key}: annotation [{m.group(1)}] is not "
                                f"types, bounds, choices or None joined by | ({e})") from None
            comment = m.group(2)
            if not spec.allows(value):
                raise UserError(f"{path}: parameter {key}: its default {value!r} is not {spec.describe()}")
            if isinstance(value, bool) != (spec.types == ((bool, ()),) and not spec.choices and not spec.none):
                raise UserError(f"{path}: parameter {key}: a bool parameter is annotated [bool], and only it")
        params[key] = Parameter(value, comment, spec)
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
class FlagParser(argparse.ArgumentParser):
    """argparse whose complaints are one line naming the flag (a UserError), not usage and exit."""

    def error(self, message):
        message = re.sub(r"^argument ", "", message)
        if message.startswith("unrecognized arguments"):
            message += f" ({self.prog} --help lists the flags)"
        raise UserError(message)


def flag_type(spec: Spec):
    """argparse's `type` for an annotated parameter: the value, or the reason it is refused."""
    def convert(text: str):
        try:
            return spec.convert(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = spec.text
    return convert


def finite_float(text: str) -> float:
    """A float flag of a parameter without annotation: inf and nan would be injected as names."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite float")
    return value


def build_parser(name: str, params: dict[str, Parameter]) -> argparse.ArgumentParser:
    p = FlagParser(
        prog=f"python -m experiments.{name}",
        description=f"Execute experiments/{name}.py as a notebook; keep results/{name}.ipynb, "
                    f"results/{name}.json and figures/{name}_*.")
    for key, (default, helptext, spec) in params.items():
        if key in RUNNER_ONLY:
            continue
        flag = "--" + FLAG_NAMES.get(key, key).replace("_", "-")
        shown = (f"[{spec.text}] " if spec else "") + helptext
        if "(default:" not in shown:     # the comment may say what the default means
            shown += f" (default: {default!r})"
        kw = {"dest": key, "default": argparse.SUPPRESS, "help": shown.replace("%", "%%")}
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif key == "out_dir":
            p.add_argument(flag, metavar="DIR", **{**kw, "help": (
                "write DIR/results/ and DIR/figures/ (and keep caches in DIR/work/); without it a "
                "full run writes the project's, any other profile a scratch folder under .cache/runs/")})
        elif spec:
            metavar = ("{" + ",".join(map(str, spec.choices)) + "}" if spec.choices and not spec.types
                       and not spec.none else key.upper())
            p.add_argument(flag, type=flag_type(spec), metavar=metavar, **kw)
        else:   # not annotated: the type of the default, as before annotations
            typ = finite_float if isinstance(default, float) else int if isinstance(default, int) else str
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


def parse_flags(name: str, params: dict[str, Parameter], argv=None) -> tuple[argparse.Namespace, dict]:
    """The parsed command line and the parameters it sets, each value checked against its annotation."""
    args = build_parser(name, params).parse_args(argv)
    chosen = {}
    for key, value in vars(args).items():
        if key in params and key != "out_dir":
            unannotated_none = params[key].spec is None and params[key].default is None
            chosen[key] = parse_none(value) if unannotated_none else value
    return args, chosen


# what a loaded GPU driver provides: NVIDIA's, or AMD's ROCm one (torch's ROCm builds call their device "cuda")
NVIDIA_DRIVER_FILES = ("/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/kfd")


def check_device(params: dict[str, Parameter], chosen: dict):
    """`--device cuda` on a machine where torch sees no GPU: one line now, not a driver error later.
    Without an NVIDIA driver that is known at once; with one, torch is imported (it takes seconds)."""
    if "device" not in params or chosen.get("device", params["device"].default) != "cuda":
        return
    if not any(os.path.exists(p) for p in NVIDIA_DRIVER_FILES):   # no driver: torch would see no GPU either
        raise UserError("--device: cuda asked for, but there is no CUDA GPU here (no NVIDIA driver: "
                        f"{NVIDIA_DRIVER_FILES[0]} is missing); use --device auto or cpu")
    import torch
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise UserError(f"--device: cuda asked for, but torch {torch.__version__} ({build}) sees no CUDA "
                        f"GPU here; use --device auto or cpu")


def until_index(nb, label: str | None, path: Path) -> int | None:
    """The index of the cell `--until` names (checked before anything runs)."""
    if not label:
        return None
    at = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"
               and re.search(rf"^#\|\s*label:\s*{re.escape(label)}\s*$", c.source, re.M)), None)
    if at is None:
        raise UserError(f"{path}: no cell labelled {label!r} (--until)")
    return at


# --- checks before any compute: they create nothing ----------------------------------------------
def check_writable(folder: Path):
    """Say which folder fails if folder could not be made and written, without making anything:
    the nearest folder that exists on its path must be one this process may write into."""
    existing = folder
    while not existing.is_dir():         # follows links; a loop or a broken link is no folder
        if os.path.lexists(existing):
            what = "a link to no folder" if existing.is_symlink() else "not a folder"
            raise UserError(f"{folder}: output folder is not writable ({existing} is {what})")
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{folder}: output folder is not writable ({existing}: permission denied)")


def make_folders(folders):
    """After every check passed: make the output folders and prove a file can be written in each."""
    for folder in folders:
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
        if interrupted():        # a signal while the kernel was starting: nbclient carried on
            raise KeyboardInterrupt
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
        nb = read_source(path)
        index, params = parameters_cell(nb, path)
        # every check first, in order of cost; nothing is created until all have passed
        args, chosen = parse_flags(name, params, argv)
        until_index(nb, args.until, path)
        profile = chosen.get("profile", params["profile"].default if "profile" in params else "full")
        out = vars(args).get("out_dir")
        base = output_base(name, profile, out)
        cache_dir = (base / "work" / ".cache") if out is not None else CACHE
        results_dir, figures_dir = base / "results", base / "figures"
        for folder in (results_dir, figures_dir, cache_dir):
            check_writable(folder)
        check_device(params, chosen)
        found = check_data(TASK_DATA.get(name, []))
        commit_at_start = git_commit()            # two git calls: after the quick refusals
        make_folders((results_dir, figures_dir, cache_dir))
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
    injected = {k: v for k, v in chosen.items() if v != params[k].default}
    inject(nb, index, injected)
    if args.until:
        nb.cells = nb.cells[:until_index(nb, args.until, path) + 1]
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
        defaults = {k: v.default for k, v in params.items() if k not in RUNNER_ONLY | {"out_dir"}}
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
