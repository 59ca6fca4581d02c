"""The one command-line harness every derivation and experiment runs through.

    python -m experiments.<name> --profile {smoke,full} [--device auto|cpu|cuda] [--out DIR]
    python -m derivations.<name> [--out DIR]

A module supplies NAME, PROFILES (profile -> config dict) and run(config, ctx) -> Outcome.
The harness times the run, saves figures, writes results/<name>.json atomically (only after the
run succeeded, so a failure leaves no partial result), and turns problems into one-line errors.
With --out DIR the files go to DIR/results and DIR/figures instead of the committed ones.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import UserError
from .results import atomic_write_bytes, figures_dir, git_commit, now, source_hash, write_result


@dataclass
class Context:
    profile: str
    device: str
    out_dir: Path | None
    args: argparse.Namespace

    def figure_path(self, name: str, suffix: str, ext: str) -> Path:
        return figures_dir(self.out_dir) / f"{name}_{suffix}.{ext}"

    @property
    def work_dir(self) -> Path:
        """Scratch space for checkpoints and caches of this run (ignored by git)."""
        from .paths import CACHE
        return (self.out_dir / "work") if self.out_dir else CACHE


@dataclass
class Outcome:
    metrics: dict
    figures: dict = field(default_factory=dict)   # suffix -> matplotlib Figure
    extra: dict = field(default_factory=dict)     # bulky per-epoch histories etc.
    seed: int | None = None


def resolve_device(choice: str) -> str:
    if choice == "cpu":
        return "cpu"
    import torch
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available on this machine")
        return "cuda"
    return "cuda" if torch.cuda.is_available() else "cpu"


def save_figure(fig, path_pdf: Path) -> list[Path]:
    """Vector PDF for the report, PNG for the notebook; each written atomically."""
    import io
    written = []
    # No creation date in the PDF: the same figure gives the same bytes, and an unchanged file is
    # not rewritten (git stays clean).
    for ext, kw in (("pdf", {"metadata": {"CreationDate": None}}), ("png", {"dpi": 150})):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, bbox_inches="tight", **kw)
        path = path_pdf.with_suffix(f".{ext}")
        if not (path.exists() and path.read_bytes() == buf.getvalue()):
            atomic_write_bytes(path, buf.getvalue())
        written.append(path)
    return written


def unchanged(name, profile, config, metrics, source, out_dir, figures=()) -> bool:
    """The committed result already says exactly this (same profile, config, code, metrics and figures)."""
    import json
    from .results import config_hash, result_path, source_hash
    path = result_path(name, out_dir)
    try:
        old = json.loads(path.read_text())
        new_metrics = json.loads(json.dumps(metrics, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    except (OSError, ValueError):
        return False
    def results_only(m):   # timings are not results: they differ on every run
        return {k: v for k, v in (m or {}).items() if k != "timings"}
    return (old.get("profile") == profile and old.get("config_hash") == config_hash(config)
            and old.get("source_hash") == source_hash(source)
            and old.get("figures", []) == sorted(figures)
            and results_only(old.get("metrics")) == results_only(new_metrics))


def main(*, name: str, profiles: dict, run: Callable[[dict, Context], Outcome], source: str,
         kind: str = "experiment", add_arguments: Callable | None = None, argv=None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {kind}s.{name}", description=(sys.modules.get("__main__").__doc__ or "").strip().split("\n")[0] or None)
    parser.add_argument("--profile", choices=sorted(profiles), default="full",
                        help="smoke: tiny and fast (what the tests run); full: the committed result")
    if kind == "experiment":
        parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--out", type=Path, default=None,
                        help="write DIR/results/<name>.json and DIR/figures/ instead of the project's")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device) if kind == "experiment" else "cpu"
        config = profiles[args.profile]
        ctx = Context(profile=args.profile, device=device, out_dir=args.out, args=args)
        code_at_start = (source_hash(source), git_commit())   # what actually runs, not what is there at the end
        started, t0 = now(), time.perf_counter()
        outcome = run(config, ctx)
        wall = time.perf_counter() - t0
        import matplotlib.pyplot as plt
        for suffix, fig in outcome.figures.items():
            save_figure(fig, ctx.figure_path(name, suffix, "pdf"))
            plt.close(fig)
        if kind == "derivation" and unchanged(name, args.profile, config, outcome.metrics, source, args.out,
                                             outcome.figures):
            # A rerun that finds the same (RECHECK=1, an edit that changes nothing) keeps the file and git clean.
            print(f"{name}: unchanged, all checks {'passed' if outcome.metrics.get('all_checks_passed', True) else 'FAILED'}")
            return 0 if outcome.metrics.get("all_checks_passed", True) else 1
        path = write_result(name, profile=args.profile, config=config, metrics=outcome.metrics,
                            started=started, wall_seconds=wall, seed=outcome.seed,
                            device=device if kind == "experiment" else "none", source=source,
                            out_dir=args.out, extra=outcome.extra or None, code_at_start=code_at_start,
                            figures=sorted(outcome.figures))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no result written", file=sys.stderr)
        return 130
    passed = outcome.metrics.get("all_checks_passed", True)
    print(f"{name}: wrote {path} in {wall:.1f} s" + ("" if passed else " -- SOME CHECKS FAILED"))
    return 0 if passed else 1
