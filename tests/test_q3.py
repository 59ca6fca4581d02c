"""Q3 double descent: the critical-point finder, and the smoke profile end to end."""
import json
import subprocess
import sys

import numpy as np
import pytest

from experiments.q3_double_descent import critical_point


def test_finder_finds_a_known_peak():
    x = np.arange(1, 201, dtype=float)
    rng = np.random.default_rng(0)
    # classical U (minimum near x=30), a bump peaking at x=100, then a second descent
    y = 0.3 + 1e-4 * (x - 30) ** 2 * (x < 30) + 0.4 * np.exp(-((x - 100) / 15) ** 2) - 0.0005 * x
    y = y + 0.003 * rng.standard_normal(len(x))
    cp = critical_point(x, y)
    assert cp is not None
    assert abs(cp["x"] - 100) <= 3
    assert cp["classical_min_x"] < 80
    assert cp["end_error"] < cp["peak_error"]


@pytest.mark.parametrize("kind", ["decreasing", "increasing", "overfitting_u"])
def test_finder_finds_no_peak_without_a_second_descent(kind):
    x = np.geomspace(1, 1000, 60)
    rng = np.random.default_rng(1)
    if kind == "decreasing":
        y = 0.2 + 0.5 * np.exp(-x / 50)
    elif kind == "increasing":
        y = 0.2 + 0.3 * (1 - np.exp(-x / 100))
    else:                        # falls, then rises to the end (plain over-fitting, like figure c's
        y = 0.25 + 0.1 * (np.log(x) - np.log(30)) ** 2 / 20   # intermediate model): no critical point
    y = y + 0.002 * rng.standard_normal(len(x))
    assert critical_point(x, y) is None


def test_finder_is_not_fooled_by_the_argmax_of_the_whole_curve():
    # the global maximum is at the start (under-fitting); the critical point is the later bump
    x = np.arange(50, dtype=float)
    y = np.concatenate([np.linspace(0.9, 0.3, 20), 0.3 + 0.2 * np.sin(np.linspace(0, np.pi, 20)),
                        np.linspace(0.3, 0.25, 10)])
    cp = critical_point(x, y)
    assert cp is not None and 25 <= cp["x"] <= 34


def test_smoke_profile(tmp_path, root):
    proc = subprocess.run([sys.executable, "-m", "experiments.q3_double_descent", "--profile", "smoke",
                           "--device", "cpu", "--out", str(tmp_path)], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    m = json.loads((tmp_path / "results" / "q3_double_descent.json").read_text())["metrics"]
    mw = m["model_wise"]
    assert mw["interpolation_threshold"] == mw["n_train"]          # measured: residual 0 iff N >= n
    assert abs(mw["critical_point"] / mw["interpolation_threshold"] - 1) <= 0.1
    assert m["sample_wise"]["critical_point"] is not None
    assert isinstance(m["epoch_wise"]["reproduced"], bool)
    for suffix in ("model_wise", "sample_wise", "epoch_wise"):
        assert (tmp_path / "figures" / f"q3_double_descent_{suffix}.png").exists()
