"""Orchestration for the Makefile: run derivations, check every result, run the task notebooks.

    python -m hw2.pipeline derivations [--recheck]   # every derivation whose committed result is not fresh
    python -m hw2.pipeline check [--allow-stale V]   # every committed result present and fresh
    python -m hw2.pipeline experiments --profile full [--device auto]

Fresh means one thing everywhere (hw2.results.freshness). A derivation that is not fresh is run
again (it takes seconds to minutes); a task notebook that is not fresh is refused: its execution is
the deliverable, and only `python -m experiments.<task> --profile full` makes a new one.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

from .errors import UserError
from .paths import ROOT
from .reads import validate_file
from .results import freshness
from . import tasks


def modules(kind: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / kind).glob("*.py") if not p.stem.startswith("_"))


def yes_no(value: str | None, flag: str = "ALLOW_STALE") -> bool:
    """1/true/yes is yes; 0/false/no or empty is no; anything else is an error, not a guess."""
    text = (value or "").strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("", "0", "false", "no"):
        return False
    raise UserError(f"{flag}={value!r}: say 1, true or yes (or 0, false, no, or leave it empty)")


def run_all(kind: str, extra: list[str], device: str | None = None, recheck: bool = True) -> int:
    failed = []
    sources = tasks.task_sources()
    for name in modules(kind):
        if kind == "derivations" and not recheck and freshness(name)[0] == "fresh":
            print(f"== {kind}.{name}: fresh (its committed run is today's code; `make report RECHECK=1` reruns it)")
            continue
        args = list(extra)
        if device and name in sources and "device" in tasks.parameters_cell(
                tasks.read_source(sources[name]), sources[name])[1]:
            args += ["--device", device]          # Task 1 draws on the CPU and takes no --device
        print(f"== {kind}.{name}", flush=True)
        rc = subprocess.run([sys.executable, "-m", f"{kind}.{name}", *args], cwd=ROOT).returncode
        if rc != 0:
            failed.append(f"{name} (exit {rc})")
    if failed:
        print(f"error: {kind} failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def check(allow_stale: bool) -> int:
    problems, unreadable = [], []
    for name in modules("derivations") + sorted(tasks.task_sources()):
        state, reason = freshness(name)
        if state != "missing":
            try:
                validate_file(name)
            except UserError as e:
                state, reason = "unreadable", str(e)
        print(f"{name:28s} {state}" + (f"  ({reason})" if reason else ""))
        if state == "unreadable":
            unreadable.append(name)
        elif state != "fresh":
            problems.append(name)
    if unreadable:
        print(f"error: the report cannot read {', '.join(unreadable)} (see above); no ALLOW_STALE renders that",
              file=sys.stderr)
        return 1
    if problems and not allow_stale:
        print(f"error: results not fresh: {', '.join(problems)}. Run `make experiments` (or "
              f"`python -m experiments.<name> --profile full`), or `make report ALLOW_STALE=1` "
              f"to render anyway (the PDF then says so).", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw2.pipeline")
    p.add_argument("step", choices=["derivations", "check", "experiments"])
    p.add_argument("--allow-stale", nargs="?", const="1", default="", metavar="YES|NO",
                   help="check: report stale results without failing (1/true/yes; 0/false/no)")
    p.add_argument("--recheck", action="store_true", help="derivations: run every one, fresh or not")
    p.add_argument("--profile", default="full", choices=["smoke", "full"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = p.parse_args(argv)
    try:
        allow_stale = yes_no(args.allow_stale)
        if args.step == "derivations":
            return run_all("derivations", [], recheck=args.recheck)
        if args.step == "check":
            return check(allow_stale)
        return run_all("experiments", ["--profile", args.profile], device=args.device)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
