"""Task 1: the notebook's initializations equal torch.nn.init's (and wrong ones are caught), its
mean-field lines follow Q4, and its smoke execution prints exactly the numbers it saves."""
import json
import math
import re
import subprocess
import sys

import pytest
import torch

from notebook_cells import check_install_cell, printed_text, read_executed, run_cells

TASK = "task1_init"


@pytest.fixture(scope="module")
def ns():
    return run_cells(TASK, ["imports", "task1-part5", "task1-part6-kaiming", "task1-layers"], profile="smoke")


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
        "kaiming_shape": tuple(k.shape) == (400, 600),
        "kaiming_std": abs(float(k.std()) / math.sqrt(2 / 600) - 1) < 0.01,
        "kaiming_mean": abs(float(k.mean())) < 0.01 * math.sqrt(2 / 600),
    }


def test_inits_match_torch_and_theory(ns):
    out = run_cells(TASK, ["imports", "task1-part5", "task1-part6-kaiming", "task1-check-inits"], profile="smoke")
    assert out["same_x"] and out["same_k"]
    assert torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(200, 300)) == (300, 200)   # torch's convention
    assert all(init_properties(ns["xavier_init"], ns["kaiming_init"]).values())


WRONG = {
    "xavier fan_in only": ("xavier_init", lambda fi, fo: torch.empty(fo, fi).uniform_(-math.sqrt(6 / fi), math.sqrt(6 / fi))),
    "xavier bound sqrt(2/n)": ("xavier_init", lambda fi, fo: torch.empty(fo, fi).uniform_(-math.sqrt(2 / (fi + fo)), math.sqrt(2 / (fi + fo)))),
    "xavier normal": ("xavier_init", lambda fi, fo: torch.empty(fo, fi).normal_(0, math.sqrt(2 / (fi + fo)))),
    "kaiming without 2": ("kaiming_init", lambda fi, fo: torch.empty(fo, fi).normal_(0, math.sqrt(1 / fi))),
    "kaiming fan_out": ("kaiming_init", lambda fi, fo: torch.empty(fo, fi).normal_(0, math.sqrt(2 / fo))),
    "kaiming transposed": ("kaiming_init", lambda fi, fo: torch.empty(fi, fo).normal_(0, math.sqrt(2 / fi))),
}


@pytest.mark.parametrize("name", WRONG)
def test_the_notebooks_check_catches_a_wrong_init(ns, name):
    """The notebook's own check cell (which asserts equality with torch.nn.init) fails for it."""
    from notebook_cells import code_cells
    which, fn = WRONG[name]
    env = {**ns, which: fn}
    with pytest.raises(AssertionError, match="differ from torch.nn.init"):
        exec(code_cells(TASK)["task1-check-inits"], env)
    props = init_properties(env["xavier_init"], env["kaiming_init"])
    assert not all(props.values()), props


def test_mean_field_lines_follow_q4(ns):
    """Kaiming + ReLU keeps E[u^2] (output std sqrt(1 - 1/pi)); Xavier + ReLU halves it per layer."""
    act, grad = ns["mean_field"]("kaiming_relu")
    assert abs(act[-1] - math.sqrt(1 - 1 / math.pi)) < 1e-3 and abs(grad[0] - 1) < 0.01
    act, _ = ns["mean_field"]("xavier_relu")
    assert abs(act[-1] / act[-2] - math.sqrt(0.5)) < 1e-3


def test_every_part_reseeds(root):
    """Each cell that draws the network's weights re-seeds first, so the cells' order does not matter."""
    from notebook_cells import code_cells
    for label, src in code_cells(TASK).items():
        if label.startswith("task1-part") and ("randn" in src or "_init(512" in src):
            assert "torch.manual_seed(seed)" in src, label


def printed_pairs(nb):
    """The `print(x.mean(), x.std())` lines of the notebook, in order."""
    return re.findall(r"^(tensor\(.+?\)) (tensor\(.+?\))$", printed_text(nb), re.M)


def test_install_cell_installs_only_what_is_missing():
    check_install_cell(TASK)
    assert set(run_cells(TASK, ["install"])["REQUIREMENTS"]) == {"torch", "numpy", "matplotlib"}


def check_quoted_numbers_printed(nb, record):
    """Every number the report's Task 1 answer quotes is a printed line of the notebook."""
    text, metrics = printed_text(nb), record["metrics"]
    parts = metrics["parts"]
    assert f"seed = {record['config']['seed']};" in text
    assert f"grows {metrics['max_abs_growth_per_layer']:.1f}-fold per layer" in text
    assert f"at l = {metrics['predicted_overflow_layer']:.1f}" in text
    assert f"({metrics['nan_at_first_nan']} of 512 entries NaN)" in text
    assert f"over {metrics['n_products']:,} draws: mean = {metrics['empirical_mean']:.4f}" in text
    assert f"{metrics['empirical_std_rel_error']:+.2%}" in text
    assert f"{parts['normal_tanh']['mean_saturated_fraction']:.1%} on average" in text
    assert f"a @ x: {parts['normal_tanh']['mean_preactivation_std']:.1f} on average" in text
    assert f"= {parts['scaled_tanh']['predicted_std_one_over_sqrt_2l']:.3f} after the 100 layers" in text
    assert f"2^-50 = {parts['xavier_relu']['predicted_ratio_2_pow_minus_50']:.1e}" in text
    band = parts["scaled"]["band_final_std"]
    assert f"the final std of {band['n']} other seeds" in text
    forward = next(ln for ln in text.splitlines() if ln.startswith(parts["scaled"]["label"]))
    assert f"{band['min']:10.3g} {band['max']:10.3g}" in forward
    backward = text[text.index("Backward:"):].splitlines()
    for v, q in parts.items():          # the backward table: one row per variant, by its label
        row = next(ln for ln in backward if ln.startswith(q["label"] + " "))
        for key in ("grad_std_input", "predicted_grad_std_input", "grad_factor_per_layer",
                    "predicted_grad_factor_per_layer"):
            if q[key] is not None:
                assert f"{q[key]:10.3g}" in row, (v, key, row)


def check_printed_equals_saved(nb, metrics):
    parts = metrics["parts"]
    pairs = printed_pairs(nb)
    order = ["normal", "scaled", "normal_tanh", "scaled_tanh", "xavier_tanh", "kaiming_relu", "xavier_relu"]
    assert len(pairs) == len(order)
    for (mean, std), v in zip(pairs, order):
        if v == "normal":                # NaN: saved as null (JSON has no NaN)
            assert (mean, std, parts[v]["mean"]) == ("tensor(nan)", "tensor(nan)", None)
            continue
        # the saved float32 values, printed as torch prints them, are the printed lines
        assert (mean, std) == (str(torch.tensor(parts[v]["mean"])), str(torch.tensor(parts[v]["std"]))), v
    text = printed_text(nb)
    assert f"in layer {metrics['first_nan_layer']} of 100" in text
    assert f"std = {metrics['empirical_std']:.4f}" in text


@pytest.mark.slow
def test_smoke_execution_prints_what_it_saves(root, tmp_path):
    p = subprocess.run([sys.executable, "-m", f"experiments.{TASK}", "--profile", "smoke", "--out", str(tmp_path), "--quiet"],
                       cwd=root, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    record = json.loads((tmp_path / "results" / f"{TASK}.json").read_text())
    m = record["metrics"]
    assert m["first_nan_layer"] == m["first_nan_loop_index"] + 1 == 29 and m["all_checks_passed"]
    nb = read_executed(tmp_path / "results" / f"{TASK}.ipynb")
    check_printed_equals_saved(nb, m)
    check_quoted_numbers_printed(nb, record)
    warnings = [o["text"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                if o.get("name") == "stderr"]
    assert not warnings, warnings                    # e.g. NumPy's RuntimeWarning with a site-packages path
    for suffix in ("activations", "gradients"):
        assert (tmp_path / "figures" / f"{TASK}_{suffix}.png").exists()


def test_committed_execution_prints_what_it_saves(root):
    nb = read_executed(root / "results" / f"{TASK}.ipynb")
    record = json.loads((root / "results" / f"{TASK}.json").read_text())
    assert nb.metadata["hw2"]["run_id"] == record["run_id"] and record["profile"] == "full"
    check_printed_equals_saved(nb, record["metrics"])
    check_quoted_numbers_printed(nb, record)
