"""Orchestration for the Makefile: run derivations, check experiment results, run experiments.

    python -m hw2.pipeline derivations [--recheck] # every derivation whose committed result is not fresh
    python -m hw2.pipeline check [--allow-stale]  # every experiment's committed result present and fresh
    python -m hw2.pipeline experiments --profile full [--device auto]
"""
from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys

from .paths import FIGURES, RESULTS, ROOT
from .results import freshness, source_hash
from . import tasks


def modules(kind: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / kind).glob("*.py") if not p.stem.startswith("_"))


def derivation_checked(name: str) -> str | None:
    """When the derivation's committed result is the full profile of today's source, every check in it
    passed and its figures are there: the date of that run (like Quarto's freeze, no need to run it
    again). Otherwise None."""
    try:
        record = json.loads((RESULTS / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    figures = [FIGURES / f"{name}_{suffix}.{ext}" for suffix in record.get("figures", []) for ext in ("pdf", "png")]
    if (record.get("profile") == "full" and record.get("source_hash") == source_hash(ROOT / "derivations" / f"{name}.py")
            and (record.get("metrics") or {}).get("all_checks_passed") is True and all(f.exists() for f in figures)):
        return str(record.get("finished", "?"))[:10]
    return None


def run_all(kind: str, extra: list[str], device: str | None = None, recheck: bool = True) -> int:
    failed = []
    sources = tasks.task_sources()
    for name in modules(kind):
        if kind == "derivations" and not recheck and (when := derivation_checked(name)):
            print(f"== {kind}.{name}: source unchanged since its run of {when}, every check passed (`make report RECHECK=1` reruns it)")
            continue
        args = list(extra)
        if device and (name not in sources or "device" in tasks.parameters_cell(
                tasks.read_source(sources[name]), sources[name])[1]):
            args += ["--device", device]          # Task 1 draws on the CPU and takes no --device
        print(f"== {kind}.{name}", flush=True)
        rc = subprocess.run([sys.executable, "-m", f"{kind}.{name}", *args], cwd=ROOT).returncode
        if rc != 0:
            failed.append(f"{name} (exit {rc})")
    if failed:
        print(f"error: {kind} failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def status(name: str) -> tuple[str, str]:
    """A code task (a notebook source) is judged by its source hash, like Quarto's freeze; a
    harness experiment (Q3's reproduction) by its full profile's config hash."""
    if name in tasks.task_sources():
        return tasks.freshness(name)
    mod = importlib.import_module(f"experiments.{name}")
    return freshness(name, mod.PROFILES["full"])


def check(allow_stale: bool) -> int:
    problems = []
    for name in modules("experiments"):
        state, reason = status(name)
        print(f"{name:28s} {state}" + (f"  ({reason})" if reason else ""))
        if state != "fresh":
            problems.append(name)
    if problems and not allow_stale:
        print(f"error: results not fresh: {', '.join(problems)}. Run `make experiments` (or "
              f"`python -m experiments.<name> --profile full`), or `make report ALLOW_STALE=1` "
              f"to render anyway (the PDF then says so).", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw2.pipeline")
    p.add_argument("step", choices=["derivations", "check", "experiments"])
    p.add_argument("--allow-stale", action="store_true")
    p.add_argument("--recheck", action="store_true", help="derivations: run every one, fresh or not")
    p.add_argument("--profile", default="full", choices=["smoke", "full"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = p.parse_args(argv)
    if args.step == "derivations":
        return run_all("derivations", [], recheck=args.recheck)
    if args.step == "check":
        return check(args.allow_stale)
    return run_all("experiments", ["--profile", args.profile], device=args.device)


if __name__ == "__main__":
    sys.exit(main())
