"""The command-line harness every derivation (the theory checks, Q3's reproduction) runs through.

    python -m derivations.<name> [--profile full|smoke] [--out DIR]

A module supplies NAME, PROFILES (profile -> config dict) and run(config, ctx) -> Outcome.
The harness times the run, saves figures, writes results/<name>.json through results.write_result
(only after the run succeeded, so a failure leaves no partial result), and turns problems into
one-line errors. Only the full profile writes the committed results/ and figures/; another profile
writes .cache/runs/<name>-<profile>/ unless --out DIR says where.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import UserError
from .paths import ROOT
from .results import (atomic_write_bytes, environment, figures_dir, freshness, git_commit, load_result, now,
                      output_base, source_hash, write_result)


@dataclass
class Context:
    profile: str
    device: str
    base: Path            # the run writes base/results/ and base/figures/
    args: argparse.Namespace

    def figure_path(self, name: str, suffix: str, ext: str) -> Path:
        return figures_dir(self.base) / f"{name}_{suffix}.{ext}"


@dataclass
class Outcome:
    metrics: dict
    figures: dict = field(default_factory=dict)   # suffix -> matplotlib Figure
    extra: dict = field(default_factory=dict)     # bulky per-epoch histories etc.
    seed: int | None = None


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


def same_results(name, base, source, metrics) -> bool:
    """The committed result is fresh and already says exactly this: a rerun (RECHECK=1) that finds
    the same keeps the file, so git stays clean. Timings are not results: they differ every run."""
    if freshness(name, base, source)[0] != "fresh":
        return False
    old = load_result(name, base)["metrics"]
    new = json.loads(json.dumps(metrics, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    drop = lambda m: {k: v for k, v in m.items() if k != "timings"}
    return drop(old) == drop(new)


def main(*, name: str, profiles: dict, run: Callable[[dict, Context], Outcome], source: str,
         add_arguments: Callable | None = None, argv=None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m derivations.{name}", description=(sys.modules.get("__main__").__doc__ or "").strip().split("\n")[0] or None)
    parser.add_argument("--profile", choices=sorted(profiles), default="full",
                        help="full: the committed result; any other profile writes a scratch "
                             "folder under .cache/runs/ unless --out is given")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="write DIR/results/<name>.json and DIR/figures/ instead")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        base = output_base(name, args.profile, args.out)
        if args.out is None and base != ROOT:
            print(f"{name}: the {args.profile} profile writes {base.relative_to(ROOT)}/ "
                  f"(only a full run writes results/ and figures/)", file=sys.stderr)
        config = profiles[args.profile]
        ctx = Context(profile=args.profile, device="cpu", base=base, args=args)
        digest_at_start, commit_at_start = source_hash(source), git_commit()   # what runs, not what is there at the end
        started, t0 = now(), time.perf_counter()
        outcome = run(config, ctx)
        wall = time.perf_counter() - t0
        import matplotlib.pyplot as plt
        figures = []
        for suffix, fig in outcome.figures.items():
            figures += save_figure(fig, ctx.figure_path(name, suffix, "pdf"))
            plt.close(fig)
        passed = outcome.metrics.get("all_checks_passed", True)
        if same_results(name, base, source, outcome.metrics):
            print(f"{name}: unchanged, all checks {'passed' if passed else 'FAILED'}")
            return 0 if passed else 1
        path = write_result(name, profile=args.profile, config=config, metrics=outcome.metrics,
                            started=started, wall_seconds=wall, source_hash=digest_at_start,
                            environment=environment(outcome.seed, "none", commit_at_start),
                            base=base, files=figures, extra=outcome.extra or None)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no result written", file=sys.stderr)
        return 130
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"{name}: wrote {shown} in {wall:.1f} s" + ("" if passed else " -- SOME CHECKS FAILED"))
    return 0 if passed else 1
