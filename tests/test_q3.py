"""Q3 double descent: the critical-point finder, and the smoke profile end to end."""
import json
import subprocess
import sys

import numpy as np
import pytest

from derivations.q3_double_descent import critical_point


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
    proc = subprocess.run([sys.executable, "-m", "derivations.q3_double_descent", "--profile", "smoke",
                           "--out", str(tmp_path)], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    m = json.loads((tmp_path / "results" / "q3_double_descent.json").read_text())["metrics"]
    mw = m["model_wise"]
    assert mw["interpolation_threshold"] == mw["n_train"]          # measured: residual 0 iff N >= n
    assert abs(mw["critical_point"] / mw["interpolation_threshold"] - 1) <= 0.1
    assert m["sample_wise"]["critical_point"] is not None
    ew = m["epoch_wise"]
    assert isinstance(ew["reproduced"], bool)
    two = [a for a in ew["attempts"] if a.get("kind") == "two_time_scale_closed_form_gd"]
    assert len(two) == 1 and two[0]["closed_form_vs_explicit_gd_rel_diff"] < 1e-6
    if ew["reproduced"]:
        assert ew["critical_epoch"] is not None
    for suffix in ("model_wise", "sample_wise", "epoch_wise"):
        assert (tmp_path / "figures" / f"q3_double_descent_{suffix}.png").exists()


def test_two_scale_closed_form_is_gradient_descent():
    # the closed-form iterate must equal explicit full-batch GD, and differ from a wrong step count
    from derivations.q3_double_descent import gd_closed_form, gd_explicit
    rng = np.random.default_rng(0)
    F = np.c_[rng.standard_normal((40, 15)), 1e-3 * rng.standard_normal((40, 3))]
    y = np.sign(rng.standard_normal(40))
    v_at = gd_closed_form(F, y, 100)
    assert np.allclose(v_at(37), gd_explicit(F, y, 37), rtol=1e-8, atol=1e-10)
    assert not np.allclose(v_at(38), gd_explicit(F, y, 37), rtol=1e-8, atol=1e-10)
    # the slow (small-scale) directions are still unlearned after many steps, learned at the end
    lstsq = np.linalg.lstsq(F, y, rcond=None)[0]
    assert np.abs(v_at(1e4)[-3:] - lstsq[-3:]).max() > 1.0
    assert np.allclose(v_at(1e16), lstsq, atol=1e-6)
