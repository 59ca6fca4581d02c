"""The results layer: every derivation and experiment writes results/<name>.json through here.

A result records what ran (config and its hash), what came out (metrics), and where and when it
ran (environment, timestamps). The report reads only these files and the figures beside them.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from .errors import UserError
from .paths import CACHE, FIGURES, RESULTS, ROOT


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: dict) -> str:
    """Hash of a config, stable across runs and key order; what staleness is judged by."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def source_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + ("-dirty" if dirty else "")


def device_name(device: str | None) -> str:
    if device and device.startswith("cuda"):
        import torch
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def environment(seed=None, device: str | None = "cpu", commit: str | None = None) -> dict:
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "device": device_name(device), "git_commit": commit or git_commit(), "seed": seed}
    if "torch" in sys.modules or device != "none":
        try:
            import torch
            env["torch"] = torch.__version__
        except ImportError:
            env["torch"] = None
    return env


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- where a result lives ------------------------------------------------------------------------
# A run writes into a base folder holding results/ and figures/: the project root for a full run,
# a scratch folder under .cache/runs/ for any other profile, or --out DIR.
def result_path(name: str, base: str | Path | None = None) -> Path:
    return Path(base or ROOT) / "results" / f"{name}.json"


def figures_dir(base: str | Path | None = None) -> Path:
    return Path(base or ROOT) / "figures"


def scratch_base(name: str, profile: str) -> Path:
    return CACHE / "runs" / f"{name}-{profile}"


def output_base(name: str, profile: str, out: str | Path | None, flag: str = "--out") -> Path:
    """Where a run writes. Only a full run writes the committed results/ and figures/; any other
    profile without --out goes to a scratch folder under .cache/runs/. Checked before any compute."""
    if out is None:
        return ROOT if profile == "full" else scratch_base(name, profile)
    if str(out).strip() == "":
        raise UserError(f"{flag}: empty path (give a folder, or leave {flag} out)")
    base = Path(out).expanduser().resolve()
    for committed in (RESULTS, FIGURES):
        if base == committed or base.is_relative_to(committed):
            raise UserError(f"{flag} {out}: inside the committed {committed.name}/ folder; "
                            f"{flag} DIR writes DIR/results/ and DIR/figures/")
    if base == ROOT and profile != "full":
        raise UserError(f"{flag} {out}: the project root holds the committed results; only a full "
                        f"run writes there (this is the '{profile}' profile)")
    return base


def producer_source(name: str) -> Path:
    """The one file whose code produces results/<name>.json: a derivation script or a task notebook."""
    for kind in ("derivations", "experiments"):
        path = ROOT / kind / f"{name}.py"
        if path.exists():
            return path
    raise UserError(f"results/{name}.json: no producer derivations/{name}.py or experiments/{name}.py")


def producers() -> list[str]:
    return sorted(p.stem for kind in ("derivations", "experiments") for p in (ROOT / kind).glob("*.py")
                  if not p.stem.startswith("_"))


# --- writing -------------------------------------------------------------------------------------
def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def payload_digest(record: dict) -> str:
    """sha256 of everything in a record but the digest itself: any edit of the payload changes it."""
    return hashlib.sha256(canonical_json({k: v for k, v in record.items() if k != "digest"}).encode()).hexdigest()


def write_result(name: str, *, profile: str, config: dict, metrics: dict, started: str,
                 wall_seconds: float, source_hash: str | None, environment: dict, base=None,
                 files: list[str | Path] = (), extra: dict | None = None, **more) -> Path:
    """The one way a result is written: results/<name>.json under base, with the digest of each file
    the run made (figures, the executed notebook: paths relative to base) and of its own payload.
    `source_hash` is taken when the run began, so code edited during a long run is not credited
    to it. `more`: producer-specific fields (run_id, parameters)."""
    base = Path(base or ROOT)
    record = {"name": name, "profile": profile, "config": config, "config_hash": config_hash(config),
              "source_hash": source_hash, **more, "metrics": metrics, "environment": environment,
              "started": started, "finished": now(), "wall_seconds": round(wall_seconds, 3)}
    if extra:
        record["extra"] = extra
    record["files"] = {Path(f).resolve().relative_to(base.resolve()).as_posix(): file_digest(f) for f in sorted(files)}
    try:
        # through JSON first, so the digest is of exactly what a reader will load
        record = json.loads(json.dumps(record, default=_json_default, allow_nan=False))
    except ValueError:
        raise UserError(f"{name}: the results hold NaN or infinity where a number belongs") from None
    record["digest"] = payload_digest(record)
    return atomic_write_text(result_path(name, base), json.dumps(record, indent=2) + "\n")


def _json_default(obj):
    """numpy / torch scalars and arrays become plain JSON."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# --- reading -------------------------------------------------------------------------------------
FIELDS = {"name": str, "profile": str, "config": dict, "source_hash": str, "metrics": dict,
          "environment": dict, "started": str, "finished": str, "wall_seconds": (int, float),
          "files": dict, "digest": str}


def load_result(name: str, base: str | Path | None = None) -> dict:
    """results/<name>.json under base, parsed and its fields' types checked: one line otherwise."""
    path = result_path(name, base)
    shown = path.relative_to(Path(base or ROOT))       # results/<name>.json, wherever its base is
    if not path.exists():
        raise UserError(f"{shown}: missing result (run `python -m <derivations|experiments>.{name}`)")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{shown}: cannot be read ({getattr(e, 'strerror', None) or e})") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{shown}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(record, dict):
        raise UserError(f"{shown}: a result is a JSON object, not {type(record).__name__}")
    for key, kind in FIELDS.items():
        if key not in record:
            raise UserError(f"{shown}: key '{key}' missing")
        if not isinstance(record[key], kind) or isinstance(record[key], bool):
            raise UserError(f"{shown}: key '{key}' is {type(record[key]).__name__}, not "
                            f"{getattr(kind, '__name__', 'a number')}")
    return record


# --- the one freshness rule ----------------------------------------------------------------------
def freshness(name: str, base: str | Path | None = None, producer: str | Path | None = None) -> tuple[str, str]:
    """('fresh'|'stale'|'missing', reason) of results/<name>.json under base (default: the project).

    Fresh only if all hold: the producer's source today has the hash the run recorded; the profile
    is full; its checks passed; the payload is unedited (its digest); every file it made is there,
    unedited (their digests). Every producer and reader asks this one question."""
    base = Path(base or ROOT)
    path = result_path(name, base)
    shown = path.relative_to(base)
    if not path.exists():
        return "missing", f"{shown} does not exist: run `python -m <derivations|experiments>.{name}`"
    try:
        record = load_result(name, base)
    except UserError as e:
        return "stale", str(e)
    source = Path(producer) if producer else producer_source(name)
    if record["digest"] != payload_digest(record):
        return "stale", f"{shown}: payload edited after the run (its digest does not match)"
    if record["profile"] != "full":
        return "stale", f"{shown}: the '{record['profile']}' profile, not 'full'"
    if record["source_hash"] != source_hash(source):
        return "stale", (f"{source.relative_to(ROOT) if source.is_relative_to(ROOT) else source} changed "
                         f"since the run (hash {record['source_hash']} != {source_hash(source)})")
    if record["metrics"].get("all_checks_passed", True) is not True:
        return "stale", f"{shown}: its checks did not all pass"
    for rel, digest in record["files"].items():
        f = base / rel
        if not f.is_file():
            return "stale", f"{rel}, made by the run of {shown}, is missing"
        if file_digest(f) != digest:
            return "stale", f"{rel} changed after the run of {shown} (its digest does not match)"
    return "fresh", ""
