"""Q4 (ReLU initialisation) and Task 1 (initialisation experiments).

- xavier_init / kaiming_init, both the experiment module's and the ones the report's notebook cells
  define, draw exactly torch.nn.init's weights and have the right bound / variance / std; wrong
  formulas are caught.
- The report's visible Task 1 cells, executed as the notebook executes them, print the numbers the
  experiment module computes and the committed results/task1_init.json holds.
- Q4's derivation checks pass for the answer and fail for wrong formulas (one mutation test per
  check is in tests/test_theory.py).
"""
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from derivations import q4_relu_init as q4
from experiments import task1_init as t1

QMD_CELL = re.compile(r"```\{python\}\n(.*?)```", re.S)


def qmd_cells(path):
    """(label, source, hidden) for every python cell of a .qmd file."""
    out = []
    for src in QMD_CELL.findall(path.read_text()):
        label = re.search(r"^#\| label: (\S+)", src, re.M)
        out.append((label.group(1) if label else None, src, "#| echo: false" in src))
    return out


def notebook_namespace(root):
    """What the report's imports cell leaves: the assignment's imports and seed."""
    imports = [s for label, s, _ in qmd_cells(root / "report" / "hw2.qmd") if label == "imports"][0]
    ns = {}
    exec(imports.replace("%matplotlib inline", ""), ns)
    return ns


def notebook_task1(root, n_products=None):
    """Execute the visible Task 1 cells in order; return {label: namespace snapshot of interest}."""
    ns = notebook_namespace(root)
    seen = {}
    for label, src, hidden in qmd_cells(root / "report" / "_task1_init.qmd"):
        if hidden:
            continue
        assert label and label.startswith("task1-"), f"visible Task 1 cell without a task1- label:\n{src}"
        if n_products is not None:
            src = src.replace("n_products = 512, 10_000", f"n_products = 512, {n_products}")
        exec(src, ns)
        seen[label] = {k: ns.get(k) for k in ("x", "first_nan", "first_inf", "mean", "std")}
    return ns, seen


N_PRODUCTS = 200   # part 2's cell runs with 200 products here (10,000 in the slow test)


@pytest.fixture(scope="module")
def notebook():
    """The report's visible Task 1 cells, executed once for the tests of this file."""
    return notebook_task1(Path(__file__).resolve().parents[1], n_products=N_PRODUCTS)


CELL_VARIANT = {"task1-part1-given": "normal", "task1-part3": "scaled", "task1-part4": "normal_tanh",
                "task1-part4-scaled": "scaled_tanh", "task1-part5": "xavier_tanh",
                "task1-part6-kaiming": "kaiming_relu", "task1-part6-xavier": "xavier_relu"}


# ---------------------------------------------------------------- the init functions
def init_properties(xavier, kaiming):
    """Bound, empirical variance and std of a large draw; shape convention (fan_out, fan_in)."""
    torch.manual_seed(1)
    w = xavier(600, 400)
    bound = math.sqrt(6 / 1000)
    k = kaiming(600, 400)
    return {
        "xavier_shape": tuple(w.shape) == (400, 600),
        "xavier_inside_bound": float(w.abs().max()) <= bound,
        "xavier_reaches_bound": float(w.abs().max()) > 0.999 * bound,
        "xavier_variance": abs(float(w.var()) / (2 / 1000) - 1) < 0.02,
        "xavier_mean": abs(float(w.mean())) < 0.01 * bound,
        "kaiming_shape": tuple(k.shape) == (400, 600),
        "kaiming_std": abs(float(k.std()) / math.sqrt(2 / 600) - 1) < 0.01,
        "kaiming_mean": abs(float(k.mean())) < 0.01 * math.sqrt(2 / 600),
    }


def test_module_inits_match_torch_and_theory():
    checks, values = t1.check_inits()
    assert all(c["passed"] for c in checks), checks
    assert values["xavier_max_abs_300_200"] <= values["xavier_bound_300_200"]
    fans = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(200, 300))
    assert fans == (300, 200)                  # torch's fan convention is the one we mimic
    assert all(init_properties(t1.xavier_init, t1.kaiming_init).values())


def test_notebook_inits_match_torch_and_theory(notebook):
    ns, _ = notebook
    checks, _ = t1.check_inits(ns["xavier_init"], ns["kaiming_init"])
    assert all(c["passed"] for c in checks), checks
    assert all(init_properties(ns["xavier_init"], ns["kaiming_init"]).values())


@pytest.mark.parametrize("wrong", [
    ("xavier", lambda fi, fo: torch.empty(fo, fi).uniform_(-math.sqrt(6 / fi), math.sqrt(6 / fi))),   # fan_in only
    ("xavier", lambda fi, fo: torch.empty(fo, fi).uniform_(-math.sqrt(2 / (fi + fo)), math.sqrt(2 / (fi + fo)))),
    ("xavier", lambda fi, fo: torch.empty(fo, fi).normal_(0, math.sqrt(2 / (fi + fo)))),   # Xavier normal
    ("kaiming", lambda fi, fo: torch.empty(fo, fi).normal_(0, math.sqrt(1 / fi))),         # no factor 2
    ("kaiming", lambda fi, fo: torch.empty(fo, fi).normal_(0, math.sqrt(2 / fo))),         # fan_out mode
    ("kaiming", lambda fi, fo: torch.empty(fi, fo).normal_(0, math.sqrt(2 / fi))),         # transposed
])
def test_wrong_init_is_detected(wrong):
    kind, fn = wrong
    kw = {kind: fn}
    checks, _ = t1.check_inits(**kw)
    assert not all(c["passed"] for c in checks)
    props = init_properties(kw.get("xavier", t1.xavier_init), kw.get("kaiming", t1.kaiming_init))
    assert not all(props.values()), props


# ---------------------------------------------------------------- notebook == experiment == committed
def test_notebook_cells_equal_experiment_and_committed_result(root, notebook):
    _, seen = notebook
    cfg = dict(t1.PROFILES["full"], n_products=N_PRODUCTS)
    committed = json.loads((root / "results" / "task1_init.json").read_text())["metrics"]
    assert set(CELL_VARIANT) | {"task1-part1-locate", "task1-part2"} == set(seen)
    for label, variant in CELL_VARIANT.items():
        x_nb = seen[label]["x"]
        x_mod, _, _ = t1.network(variant, cfg, cfg["seed"])
        assert torch.equal(x_nb, x_mod) or (variant == "normal" and torch.isnan(x_nb).all()
                                            and torch.isnan(x_mod).all()), label
        assert f"{str(x_nb.mean())} {str(x_nb.std())}" == committed["parts"][variant]["printed"], label
    first_inf, first_nan, _, _ = t1.locate_overflow(cfg, cfg["seed"])
    loc = seen["task1-part1-locate"]
    assert (loc["first_nan"], loc["first_inf"]) == (first_nan, first_inf)
    assert (first_nan, first_inf) == (committed["first_nan_loop_index"], committed["first_inf_loop_index"])
    assert committed["first_nan_layer"] == committed["first_nan_loop_index"] + 1
    assert (seen["task1-part2"]["mean"], seen["task1-part2"]["std"]) == t1.products(cfg, cfg["seed"])


def test_report_reseeds_every_part(root):
    """Each visible cell that draws random numbers re-seeds first, so the cells' order does not matter."""
    for label, src, hidden in qmd_cells(root / "report" / "_task1_init.qmd"):
        if not hidden and ("randn" in src or "_init(512" in src):
            assert "torch.manual_seed(seed)" in src, label


@pytest.mark.slow
def test_full_part2_cell_equals_committed_result(root):
    """The notebook's full 10,000-product cell gives exactly the committed empirical mean and std."""
    _, seen = notebook_task1(root)
    committed = json.loads((root / "results" / "task1_init.json").read_text())["metrics"]
    assert (seen["task1-part2"]["mean"], seen["task1-part2"]["std"]) == (
        committed["empirical_mean"], committed["empirical_std"])


def test_smoke_profile_end_to_end(root, tmp_path):
    r = subprocess.run([sys.executable, "-m", "experiments.task1_init", "--profile", "smoke", "--device", "cpu",
                        "--out", str(tmp_path)], cwd=root, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "results" / "task1_init.json").read_text())["metrics"]
    for key in ("first_nan_loop_index", "first_nan_layer", "empirical_std", "sqrt_fan_in"):
        assert key in m
    assert m["first_nan_layer"] == m["first_nan_loop_index"] + 1 == 29
    assert m["all_checks_passed"]
    for v in t1.VARIANTS:
        assert {"mean", "std", "printed"} <= set(m["parts"][v])
    for suffix in ("activations", "gradients"):
        assert (tmp_path / "figures" / f"task1_init_{suffix}.png").exists()


def test_predictions_follow_q4():
    """The mean-field lines: Kaiming+ReLU keeps E[u^2]; Xavier+ReLU halves it per layer."""
    cfg = t1.PROFILES["smoke"]
    act, grad = t1.predict("kaiming_relu", cfg)
    assert abs(act[-1] - math.sqrt(1 - 1 / math.pi)) < 1e-3 and abs(grad[0] - 1) < 0.01
    act, _ = t1.predict("xavier_relu", cfg)
    assert abs(act[-1] / act[-2] - math.sqrt(0.5)) < 1e-3


# ---------------------------------------------------------------- Q4 derivation
Q4_FAST = dict(q4.PROFILES["full"], mc_samples=300_000, clt_widths=[16, 128, 512], clt_samples=50_000,
               deep_width=256, deep_layers=20, deep_batch=16, deep_networks=12)


def test_q4_checks_pass_for_the_answer():
    out = q4.run(Q4_FAST)
    assert out.metrics["all_checks_passed"], [c for c in out.metrics["checks"] if not c["passed"]]


def test_q4_wrong_formula_is_detected():
    import numpy as np
    import sympy as sp
    s, d = sp.symbols("s d", positive=True)
    wrong = q4.run(Q4_FAST, claimed={"second_moment": s**2 / 4, "sigma": sp.sqrt(1 / d), "ratio": 0.25,
                                     "sigma_fn": lambda n: np.sqrt(1 / n)})
    failed = [c["check"] for c in wrong.metrics["checks"] if not c["passed"]]
    assert not wrong.metrics["all_checks_passed"]
    assert any("sympy: int_0^inf" in c for c in failed)          # the Gaussian integral
    assert any("claimed sigma_l" in c for c in failed)           # the lecture's formula
    assert any("symmetric uniform" in c for c in failed)         # Monte Carlo, part 1
    assert any("deep ReLU net" in c for c in failed)             # the deep network


def test_q4_committed_result(root):
    r = json.loads((root / "results" / "q4_relu_init.json").read_text())
    assert r["metrics"]["all_checks_passed"] is True
    assert r["metrics"]["symbolic"]["gaussian_relu_second_moment"] == "s**2/2"
