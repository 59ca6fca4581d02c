"""Where things live. Every path is derived from the project root, never the working directory."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
FIGURES = ROOT / "figures"
OUTPUT = ROOT / "_output"
REPORT = ROOT / "report"
CACHE = ROOT / ".cache"          # ignored: decoded-image caches, study databases, checkpoints
STUDENTS = ROOT / "students.toml"
