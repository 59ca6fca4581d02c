"""Q1, Q2, Q5 derivation checks: each script's full run passes, and each check catches a wrong formula."""
import copy
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

from derivations import q1_bayes_risk as q1
from derivations import q2_guess_and_check as q2
from derivations import q5_invariance as q5


def run_module(root, tmp_path, name):
    proc = subprocess.run([sys.executable, "-m", f"derivations.{name}", "--out", str(tmp_path)],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads((tmp_path / "results" / f"{name}.json").read_text())["metrics"]


# ---------------------------------------------------------------- full runs (what results/ holds)
def test_q1_full_run(root, tmp_path):
    m = run_module(root, tmp_path, "q1_bayes_risk")
    assert m["all_checks_passed"] is True
    assert m["mc_max_rel_error"] < 0.01
    assert len(m["mc"]) == 6 and {r["N"] for r in m["mc"]} == {60, 8}   # N > d and N < d


def test_q2_full_run(root, tmp_path):
    m = run_module(root, tmp_path, "q2_guess_and_check")
    assert m["all_checks_passed"] is True
    for e in m["enumeration"]:
        assert e["p_star"] >= e["bound"] and e["event_all_match"]


def test_q5_full_run(root, tmp_path):
    m = run_module(root, tmp_path, "q5_invariance")
    assert m["all_checks_passed"] is True
    assert m["max_abs_error"] < 1e-9 and m["min_plain_invariance_error"] > 1e-3


# ---------------------------------------------------------------- Q1: wrong formulas are caught
def test_q1_shrinkage_wrong_rhs():
    assert q1.check_shrinkage(2)["passed"]
    assert not q1.check_shrinkage(2, rhs=lambda H, mu: -(H + mu * sp.eye(2)).inv())["passed"]   # dropped mu


def test_q1_hint_trace_wrong_rhs():
    assert not q1.check_hint_trace(3, 2, rhs=lambda X, P: ((X * P * X.T).trace(),))["passed"]   # P, not P^2


def test_q1_expectation_wrong_rhs():
    wrong = lambda A, B, sw, se, d: sw * (A.T * A).trace() + se * (B.T * B).trace()             # dropped 1/d
    assert not q1.check_expectation(3, 2, rhs=wrong)["passed"]


def test_q1_eigen_wrong_rhs():
    wrong = lambda lams, mu, sw, se, d: sum((sw / d * mu + se * l) / (l + mu) ** 2 for l in lams)  # mu, not mu^2
    assert not q1.check_eigen_traces(2, rhs=wrong)["passed"]
    wrong_d = lambda lams, mu, sw, se, d: q1.eigen_sum_rhs(lams, mu, sw, se, 1)                  # dropped 1/d
    assert not q1.check_rotation_2x2(rhs=wrong_d)["passed"]


SMALL_MC = {"d": 20, "Ns": [60, 8], "mus": [0.1, 10.0], "sigma_w2": 2.0, "sigma_e2": 0.5,
            "draws": 40_000, "chunk": 40_000, "seed": 1, "rel_tol": 0.01}


@pytest.mark.parametrize("wrong", [
    lambda l, mu, sw, se, d: q1.closed_form(l, mu, sw, se, 1),                  # dropped 1/d
    lambda l, mu, sw, se, d: float(np.sum((sw / d * mu + se * np.asarray(l)) / (np.asarray(l) + mu) ** 2)),  # mu, not mu^2
    lambda l, mu, sw, se, d: q1.closed_form(l, mu, sw, 1.0, d),                 # dropped sigma_eps^2
])
def test_q1_monte_carlo_catches_wrong_closed_form(wrong):
    ok, _ = q1.check_monte_carlo(SMALL_MC)
    assert ok["passed"]
    bad, _ = q1.check_monte_carlo(SMALL_MC, formula=wrong)
    assert not bad["passed"]


# ---------------------------------------------------------------- Q2
def test_q2_enumeration_catches_wrong_exponent():
    cfg = q2.PROFILES["full"]["enumeration"][0]
    assert q2.enumerate_p_star(cfg)["passed"]
    # dropping the d1 output weights from the count claims p* >= q^{-d0 d1*}: false, and caught
    assert not q2.enumerate_p_star(cfg, exponent=lambda c: c["d0"] * c["d1s"])["passed"]


def test_q2_exact_match_agrees_with_random_directions():
    """Every weight vector the exact test calls equal to the teacher agrees on 2,000 random points,
    and the exact test's count of matches is never below what random points would allow."""
    cfg = q2.PROFILES["full"]["enumeration"][2]
    W1, w2 = q2.all_weights(cfg["d0"], cfg["d1"], cfg["q"])
    tW1, tw2 = q2.teacher(cfg)
    half = (cfg["q"] - 1) // 2
    Xd = q2.test_directions(cfg["d1"] * half * half)
    exact = np.all(q2.sign(q2.preactivation(W1, w2, Xd)) == q2.sign(q2.preactivation(tW1[None], tw2[None], Xd)), axis=1)
    Xr = np.random.default_rng(0).normal(size=(2_000, 2))
    rand = np.all(q2.sign(q2.preactivation(W1, w2, Xr)) == q2.sign(q2.preactivation(tW1[None], tw2[None], Xr)), axis=1)
    assert np.all(rand[exact])             # exact matches really match
    assert exact.sum() == q2.enumerate_p_star(cfg)["count"]


@pytest.mark.parametrize("wrong", [lambda p, T: (1 - p) ** T, lambda p, T: (1 - p) ** (math.floor(T) + 1)])
def test_q2_simulation_catches_wrong_tail(wrong):
    config = copy.deepcopy(q2.PROFILES["full"])
    config["simulation"]["runs"] = 10_000
    assert q2.check_simulation(config)[0]["passed"]
    assert not q2.check_simulation(config, tail=wrong)[0]["passed"]


def test_q2_theorem1_algebra_catches_wrong_rhs():
    assert q2.check_theorem1_algebra()["passed"]
    wrong = lambda d0, d1, d1s, q, N, delta, eta: ((d0 * d1s) * sp.log(q) + sp.log(1 / delta)
                                                   + sp.log(sp.log(1 / eta))) / N
    assert not q2.check_theorem1_algebra(rhs=wrong)["passed"]


# ---------------------------------------------------------------- Q5
def _q5_data(n=4):
    return q5.data(n, q5.PROFILES["full"], np.random.default_rng(3))


def test_q5_dropping_R_is_caught():
    X, y, Y, Xt = _q5_data()
    Gs = q5.group(4, "C4")
    good = q5.check_group(Gs, X, y, Y, Xt)
    assert max(good.values()) < 1e-9
    bad = q5.check_group(Gs, X, y, Y, Xt, w_formula=lambda X, y, Gs: np.linalg.solve(q5.K_of(X, Gs), X.T @ y))
    assert bad["c_gradient_at_w1"] > 1e-3 and bad["c_w1_vs_lstsq"] > 1e-3


def test_q5_wrong_equivariant_solution_is_caught():
    X, y, Y, Xt = _q5_data()
    Gs = q5.group(4, "D4")
    wrong = lambda X, Y, Gs: np.linalg.solve(q5.K_of(X, Gs), len(Gs) * X.T @ Y).T   # no conjugation by G
    bad = q5.check_group(Gs, X, y, Y, Xt, W_formula=wrong)
    assert bad["g_W2_vs_lstsq"] > 1e-3 and bad["g_W2_commutes"] > 1e-3


def test_q5_group_properties_detect_a_non_group():
    assert all(q5.group_properties(q5.group(5, "D4")).values())
    props = q5.group_properties(q5.group(5, "not_a_group"))
    assert not props["transpose_closed"] and not props["left_multiplication_bijective"]
