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
