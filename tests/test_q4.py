"""Q4 (ReLU initialisation): the derivation's checks pass for the answer and fail for wrong formulas."""
import json

from derivations import q4_relu_init as q4

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
    assert any("sympy: `int_0^inf" in c for c in failed)         # the Gaussian integral
    assert any("claimed `sigma_l`" in c for c in failed)          # the lecture's formula
    assert any("symmetric uniform" in c for c in failed)         # Monte Carlo, part 1
    assert any("deep ReLU net" in c for c in failed)             # the deep network


def test_q4_committed_result(root):
    r = json.loads((root / "results" / "q4_relu_init.json").read_text())
    assert r["metrics"]["all_checks_passed"] is True
    assert r["metrics"]["symbolic"]["gaussian_relu_second_moment"] == "s**2/2"
