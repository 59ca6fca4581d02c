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
from .paths import FIGURES, RESULTS, ROOT


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


def result_path(name: str, out_dir: str | Path | None = None) -> Path:
    return (Path(out_dir) / "results" if out_dir else RESULTS) / f"{name}.json"


def figures_dir(out_dir: str | Path | None = None) -> Path:
    return Path(out_dir) / "figures" if out_dir else FIGURES


def write_result(name: str, *, profile: str, config: dict, metrics: dict, started: str,
                 wall_seconds: float, seed=None, device: str | None = "cpu",
                 source: str | Path | None = None, out_dir=None, extra: dict | None = None,
                 code_at_start: tuple[str | None, str] | None = None, figures: list[str] | None = None) -> Path:
    """code_at_start: (source hash, git commit) taken when the run began, so that code edited while
    a long run is going is not credited to it; without it they are read now."""
    digest, commit = code_at_start or (source_hash(source) if source else None, None)
    record = {
        "name": name,
        "profile": profile,
        "config": config,
        "config_hash": config_hash(config),
        "source_hash": digest,
        "metrics": metrics,
        "environment": environment(seed, device, commit),
        "started": started,
        "finished": now(),
        "wall_seconds": round(wall_seconds, 3),
    }
    if figures:
        record["figures"] = figures   # the suffixes of figures/<name>_<suffix>.{pdf,png} the run saved
    if extra:
        record["extra"] = extra
    text = json.dumps(record, indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    return atomic_write_text(result_path(name, out_dir), text + "\n")


def _json_default(obj):
    """numpy / torch scalars and arrays become plain JSON."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


REQUIRED_KEYS = ("name", "profile", "config", "config_hash", "metrics", "environment",
                 "started", "finished", "wall_seconds")


def load_result(name: str, results_dir: str | Path | None = None) -> dict:
    path = Path(results_dir or RESULTS) / f"{name}.json"
    if not path.exists():
        raise UserError(f"{path}: missing result (run `python -m <experiments|derivations>.{name}`)")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise UserError(f"{path}: result lacks keys {', '.join(missing)}")
    return record


def freshness(name: str, full_config: dict, source: str | Path | None = None,
              results_dir: str | Path | None = None) -> tuple[str, str]:
    """('fresh'|'stale'|'missing', reason). Stale: not the full profile, or its config changed."""
    path = Path(results_dir or RESULTS) / f"{name}.json"
    if not path.exists():
        return "missing", f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} does not exist"
    try:
        record = load_result(name, results_dir)
    except UserError as e:
        return "stale", str(e)
    if record["profile"] != "full":
        return "stale", f"{name}: committed result is the '{record['profile']}' profile, not 'full'"
    if record["config_hash"] != config_hash(full_config):
        return "stale", f"{name}: config changed since the run (hash {record['config_hash']} != {config_hash(full_config)})"
    return "fresh", ""
