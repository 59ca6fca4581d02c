"""Tests never download and never write over the committed results."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["HW2_NO_DOWNLOAD"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def root():
    return ROOT


def _committed_files() -> dict:
    import hashlib
    return {p.relative_to(ROOT).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in ("results", "figures") for p in sorted((ROOT / folder).glob("*")) if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def committed_results_untouched():
    """The whole session leaves results/ and figures/ exactly as they were (a test that wrote there
    would have replaced a full run with its own)."""
    before = _committed_files()
    yield
    after = _committed_files()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the tests changed committed files: {changed}"
