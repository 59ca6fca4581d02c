"""Q1, Q2, Q4, Q5 derivation checks: each script's full run passes, and each check catches a wrong formula.

Every check in derivations/ takes the formula it tests as an argument; for each one a test below (or,
for Q6, in tests/test_q6.py) hands it a perturbed formula (times 1.01, a dropped term, a wrong
exponent) and asserts that the check then FAILS. The tests are named test_<q>_<check>_mutation*.
"""
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
    assert m["mc_max_abs_z"] < 4 and m["mc_detectable_rel_error"] < 0.005
    assert len(m["mc"]) == 6 and {r["N"] for r in m["mc"]} == {60, 8}   # N > d and N < d


def test_q2_full_run(root, tmp_path):
    m = run_module(root, tmp_path, "q2_guess_and_check")
    assert m["all_checks_passed"] is True
    for e in m["enumeration"]:
        assert e["p_star"] >= e["bound"] and e["event_all_match"]
    # the N = 64 training set pins the teacher down: (2) is tight there, so its check has no slack
    assert [s["N"] for s in m["simulations"]] == [4, 64]
    assert m["simulations"][1]["p_S"] == m["simulations"][1]["p_star"]
    assert all(m["simulations"][1]["wrong_bound2_rejected"].values())      # the report says so
    assert all(all(s["wrong_tails_rejected"].values()) for s in m["simulations"])


def test_q5_full_run(root, tmp_path):
    m = run_module(root, tmp_path, "q5_invariance")
    assert m["all_checks_passed"] is True
    assert m["max_abs_error"] < 1e-9 and m["min_plain_invariance_error"] > 1e-3


# ---------------------------------------------------------------- Q1: wrong formulas are caught
def test_q1_shrinkage_mutation():
    assert q1.check_shrinkage(2)["passed"]
    assert not q1.check_shrinkage(2, rhs=lambda H, mu: -(H + mu * sp.eye(2)).inv())["passed"]   # dropped mu


def test_q1_hint_trace_mutation():
    assert not q1.check_hint_trace(3, 2, rhs=lambda X, P: ((X * P * X.T).trace(),))["passed"]   # P, not P^2


def test_q1_expectation_mutation():
    wrong = lambda A, B, sw, se, d: sw * (A.T * A).trace() + se * (B.T * B).trace()             # dropped 1/d
    assert not q1.check_expectation(3, 2, rhs=wrong)["passed"]


def test_q1_eigen_traces_and_rotation_mutation():
    wrong = lambda lams, mu, sw, se, d: sum((sw / d * mu + se * l) / (l + mu) ** 2 for l in lams)  # mu, not mu^2
    assert not q1.check_eigen_traces(2, rhs=wrong)["passed"]
    wrong_d = lambda lams, mu, sw, se, d: q1.eigen_sum_rhs(lams, mu, sw, se, 1)                  # dropped 1/d
    assert not q1.check_rotation_2x2(rhs=wrong_d)["passed"]


X101 = sp.Rational(101, 100)


def test_q1_sympy_checks_mutation_x1_01():
    """Every symbolic check of Q1 passes for its formula and fails for the formula times 1.01."""
    assert q1.check_shrinkage(2)["passed"] and q1.check_hint_trace(2, 3)["passed"]
    assert q1.check_expectation(2, 3)["passed"] and q1.check_eigen_traces(2)["passed"]
    assert q1.check_rotation_2x2()["passed"]
    assert not q1.check_shrinkage(2, rhs=lambda H, mu: X101 * q1.shrinkage_rhs(H, mu))["passed"]
    assert not q1.check_hint_trace(2, 3, rhs=lambda X, P: tuple(X101 * r for r in q1.hint_trace_rhs(X, P)))["passed"]
    assert not q1.check_expectation(2, 3, rhs=lambda *a: X101 * q1.expectation_rhs(*a))["passed"]
    assert not q1.check_eigen_traces(2, rhs=lambda *a: X101 * q1.eigen_sum_rhs(*a))["passed"]
    assert not q1.check_rotation_2x2(rhs=lambda *a: X101 * q1.eigen_sum_rhs(*a))["passed"]


SMALL_MC = {"d": 20, "Ns": [60, 8], "mus": [0.1, 10.0], "sigma_w2": 2.0, "sigma_e2": 0.5,
            "draws": 300_000, "chunk": 50_000, "seed": 1, "z_tol": 4.0}


@pytest.fixture(scope="module")
def q1_estimates():
    """One simulation (the Monte Carlo never looks at the formula), reused for every formula below."""
    return q1.mc_estimates(SMALL_MC)


def test_q1_monte_carlo_passes_for_the_closed_form(q1_estimates):
    ok, rows = q1.check_monte_carlo(SMALL_MC, estimates=q1_estimates)
    assert ok["passed"], ok
    assert max(r["mc_se"] / r["mc_mean"] for r in rows) < 0.0015     # 10^-3-level precision per case


@pytest.mark.parametrize("wrong", [
    lambda l, mu, sw, se, d: 1.01 * q1.closed_form(l, mu, sw, se, d),          # 1% too large
    lambda l, mu, sw, se, d: 0.99 * q1.closed_form(l, mu, sw, se, d),          # 1% too small
    lambda l, mu, sw, se, d: q1.closed_form(l, mu, sw, se, 1),                  # dropped 1/d
    lambda l, mu, sw, se, d: float(np.sum((sw / d * mu + se * np.asarray(l)) / (np.asarray(l) + mu) ** 2)),  # mu, not mu^2
    lambda l, mu, sw, se, d: q1.closed_form(l, mu, sw, 1.0, d),                 # dropped sigma_eps^2
    lambda l, mu, sw, se, d: q1.closed_form(l, mu, 0.0, se, d),                 # dropped the bias term
], ids=["x1.01", "x0.99", "no-1/d", "mu-not-mu2", "no-sigma_eps2", "no-bias-term"])
def test_q1_monte_carlo_mutation(q1_estimates, wrong):
    bad, _ = q1.check_monte_carlo(SMALL_MC, formula=wrong, estimates=q1_estimates)
    assert not bad["passed"]


def test_q1_detectable_error_is_what_the_z_test_rejects(q1_estimates):
    """A constant-factor error just above detectable_rel_error fails; the threshold is below 0.5%."""
    _, rows = q1.check_monte_carlo(SMALL_MC, estimates=q1_estimates)
    eps = q1.detectable_rel_error(rows, SMALL_MC["z_tol"]) * 1.001
    assert eps < 0.005
    for factor in (1 + eps, 1 - eps):
        bad, _ = q1.check_monte_carlo(SMALL_MC, formula=lambda *a, f=factor: f * q1.closed_form(*a),
                                      estimates=q1_estimates)
        assert not bad["passed"]


# ---------------------------------------------------------------- Q2
def test_q2_enumeration_mutation_wrong_exponent():
    cfg = q2.PROFILES["full"]["enumeration"][0]
    assert q2.enumerate_p_star(cfg)["passed"]
    # dropping the d1 output weights from the count claims p* >= q^{-d0 d1*}: false, and caught
    assert not q2.enumerate_p_star(cfg, exponent=lambda c: c["d0"] * c["d1s"])["passed"]


@pytest.mark.parametrize("size", range(len(q2.PROFILES["full"]["enumeration"])))
def test_q2_exact_match_agrees_with_random_points(size):
    """An independent count of p*: a weight vector is called equal to the teacher when it agrees on
    4,000 random Gaussian points (not the integer directions of the exact test). Agreeing everywhere
    implies agreeing on the points, so every exact match must be a random-point match; and two
    different functions of this kind differ on a cone of angle well above what 4,000 points leave
    uncovered, so every random-point match must be an exact match. Hence the two counts are equal."""
    cfg = q2.PROFILES["full"]["enumeration"][size]
    W1, w2 = q2.all_weights(cfg["d0"], cfg["d1"], cfg["q"])
    tW1, tw2 = q2.teacher(cfg)
    half = (cfg["q"] - 1) // 2
    Xd = q2.test_directions(cfg["d1"] * half * half)
    exact = np.all(q2.sign(q2.preactivation(W1, w2, Xd)) == q2.sign(q2.preactivation(tW1[None], tw2[None], Xd)), axis=1)
    rand = np.ones(len(W1), dtype=bool)
    rng = np.random.default_rng(0)
    for _ in range(10):                                    # 10 x 400 random points, in chunks
        Xr = rng.normal(size=(400, 2))
        rand &= np.all(q2.sign(q2.preactivation_fast(W1, w2, Xr))
                       == q2.sign(q2.preactivation(tW1[None], tw2[None], Xr)), axis=1)
    assert np.all(rand[exact])                             # exact matches really match
    assert np.all(exact[rand])                             # and nothing the points accept is rejected
    assert q2.enumerate_p_star(cfg)["count"] == int(rand.sum())


def test_q2_enumeration_mutation_wrong_test_directions(monkeypatch):
    """The exact test with too few directions (no point inside the gaps) over-counts p*: caught above."""
    cfg = q2.PROFILES["full"]["enumeration"][2]
    good = q2.enumerate_p_star(cfg)["count"]
    monkeypatch.setattr(q2, "test_directions", lambda M: np.array([[1, 0], [0, 1], [-1, 0], [0, -1]]))
    assert q2.enumerate_p_star(cfg)["count"] != good


@pytest.mark.parametrize("wrong", [lambda p, T: (1 - p) ** T, lambda p, T: (1 - p) ** (math.floor(T) + 1),
                                   lambda p, T: 1.01 * (1 - p) ** math.floor(T)],
                         ids=["T", "floor+1", "x1.01"])
def test_q2_simulation_mutation(wrong):
    config = copy.deepcopy(q2.PROFILES["full"])
    config["simulation"]["runs"] = 10_000
    assert q2.check_simulation(config, 4)[0]["passed"]
    assert not q2.check_simulation(config, 4, tail=wrong)[0]["passed"]


@pytest.fixture(scope="module")
def q2_tight():
    """Guess-and-check on the N = 64 training set, where p_S = p* and (2) is tight."""
    config = q2.PROFILES["full"]
    size = config["enumeration"][config["simulation"]["size"]]
    p_S, _, t = q2.simulate(size, config["simulation"], 64)
    return q2.enumerate_p_star(size)["p_star"], p_S, t, config["simulation"]


def test_q2_bound_2_passes_on_the_simulated_tail(q2_tight):
    p_star, p_S, t, sim = q2_tight
    assert p_S == p_star
    check, rows = q2.check_bound_2(p_star, t, sim["T"], sim["z_tol"])
    assert check["passed"], rows


@pytest.mark.parametrize("lhs, p_factor", [
    (lambda T: T, 1.0),                                 # T for floor(T) (non-integer T)
    (lambda T: math.floor(T) + 1, 1.0),                 # one guess too many
    (lambda T: 1.01 * math.floor(T) + 0.3, 1.0),        # (2) times 1.01, plus a bit
    (math.floor, 1.05),                                 # p* 5% too large
], ids=["T", "floor+1", "x1.01+0.3", "p*x1.05"])
def test_q2_bound_2_mutation(q2_tight, lhs, p_factor):
    """A wrong (2) fails against the empirical tail -- at some T >= 1, not only trivially at T < 1."""
    p_star, _, t, sim = q2_tight
    Ts = [T for T in sim["T"] if T >= 1]
    check, rows = q2.check_bound_2(p_star * p_factor, t, Ts, sim["z_tol"], lhs=lhs)
    assert not check["passed"]


def test_q2_theorem1_algebra_mutation():
    assert q2.check_theorem1_algebra()["passed"]
    wrong = lambda d0, d1, d1s, q, N, delta, eta: ((d0 * d1s) * sp.log(q) + sp.log(1 / delta)
                                                   + sp.log(sp.log(1 / eta))) / N          # dropped d1
    assert not q2.check_theorem1_algebra(rhs=wrong)["passed"]
    times = lambda *a: sp.Rational(101, 100) * q2.theorem1_rhs(*a)                           # x1.01
    assert not q2.check_theorem1_algebra(rhs=times)["passed"]


def test_q2_bound_gap_mutation():
    assert q2.check_bound_gap()["passed"]
    no_w2 = lambda d0, d1, q, N, delta: (sp.log(q ** (d0 * d1)) + sp.log(1 / delta)) / N     # |F| without w2
    assert not q2.check_bound_gap(b4=no_w2)["passed"]
    student_width = lambda d0, d1, d1s, q, N, delta, eta: q2.theorem1_rhs(d0, d1, d1, q, N, delta, eta)
    assert not q2.check_bound_gap(b3=student_width)["passed"]                                 # d1 for d1*


def test_q2_table_uses_both_formulas():
    """The table's (4) - (3 w/o loglog) is the identity's d0 (d1 - d1*) log q / N, row by row."""
    for r in q2.bounds_table(q2.PROFILES["full"]["table"]):
        gap = r["d0"] * (r["d1"] - r["d1_star"]) * math.log(r["q"]) / r["N"]
        assert r["bound4"] - r["bound3_no_loglog"] == pytest.approx(gap, rel=1e-9)


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


TOL, BIG = q5.PROFILES["full"]["tol"], q5.PROFILES["full"]["not_invariant_min"]


@pytest.mark.parametrize("kw", [
    {"w_formula": lambda X, y, Gs: np.linalg.solve(q5.K_of(X, Gs), X.T @ y)},              # dropped R
    {"w_formula": lambda X, y, Gs: 1.01 * q5.w1_formula(X, y, Gs)},                       # x1.01
    {"W_formula": lambda X, Y, Gs: 1.01 * q5.W2_formula(X, Y, Gs)},                       # x1.01
    {"W_formula": lambda X, Y, Gs: q5.W2_formula(X, Y, Gs).T},                            # C K^-1, not C^T K^-1
], ids=["w1-no-R", "w1-x1.01", "W2-x1.01", "W2-transposed"])
def test_q5_identities_mutation(kw):
    X, y, Y, Xt = _q5_data()
    Gs = q5.group(4, "D4")
    assert q5.check_identities(Gs, X, y, Y, Xt, TOL, "D4")[0]["passed"]
    assert not q5.check_identities(Gs, X, y, Y, Xt, TOL, "D4", **kw)[0]["passed"]


def test_q5_properties_mutation():
    assert q5.check_properties(q5.group(4, "C4"), "C4")[0]["passed"]
    assert not q5.check_properties(q5.group(4, "not_a_group"), "{I, rot90}")[0]["passed"]


def test_q5_plain_not_symmetric_mutation():
    """Measuring the symmetrised solutions instead of the plain ones: 'not invariant' must then fail."""
    X, y, Y, Xt = _q5_data()
    Gs = q5.group(4, "C4")
    assert q5.check_plain_not_symmetric(Gs, X, y, Y, Xt, BIG, "C4")[0]["passed"]
    symmetrised = lambda X, y, Y, Gs: (q5.w1_formula(X, y, Gs), q5.W2_formula(X, Y, Gs))
    assert not q5.check_plain_not_symmetric(Gs, X, y, Y, Xt, BIG, "C4", solver=symmetrised)[0]["passed"]


def test_q5_non_group_mutation():
    """Handing the 'not a group' check a real group: the predictor is then invariant and the check fails."""
    X, y, Y, Xt = _q5_data()
    assert q5.check_non_group(q5.group(4, "not_a_group"), X, y, Y, Xt, BIG, "{I, rot90}")[0]["passed"]
    assert not q5.check_non_group(q5.group(4, "C4"), X, y, Y, Xt, BIG, "C4")[0]["passed"]


# ---------------------------------------------------------------- Q4
from derivations import q4_relu_init as q4  # noqa: E402

Q4_TEST = dict(q4.PROFILES["full"], mc_samples=1_000_000, clt_widths=[16, 64, 128, 256, 512], clt_samples=100_000,
               deep_width=256, deep_layers=50, deep_batch=16, deep_networks=16)


def _failed(checks):
    return [c["check"] for c in checks if not c["passed"]]


def test_q4_symbolic_passes_and_each_check_has_a_mutation():
    """One call perturbs every symbolic claim at once (each check compares with its own claim only)
    and every symbolic check must fail; the unperturbed call passes."""
    s, d, u = sp.symbols("s d u", positive=True)
    good, _ = q4.symbolic()
    assert not _failed(good)
    bad, _ = q4.symbolic(claimed_second_moment=sp.Rational(101, 100) * s**2 / 2,          # x1.01
                         claimed_sigma=sp.sqrt(sp.Rational(101, 100) * 2 / d),              # x sqrt(1.01)
                         claimed_total=sp.Rational(101, 100) * s**2,                        # x1.01
                         claimed_half=sp.Rational(101, 200),                                # 1/2 x1.01
                         asymmetric_density=lambda u: (sp.exp(-sp.Abs(u)) / 2, -sp.oo, sp.oo),  # a symmetric law
                         claimed_edgeworth=1 / (2 * sp.sqrt(2 * sp.pi)))                    # 1/(2 sqrt(2 pi))
    assert len(_failed(bad)) == len(bad), [c["check"] for c in bad if c["passed"]]


@pytest.fixture(scope="module")
def q4_part1():
    return {k: q4.part1(Q4_TEST, **k_args)[0] for k, k_args in
            {"good": {}, "ratio": {"claimed_ratio": 0.5 * 1.05}, "sym": {"asymmetric_kind": "uniform"}}.items()}


def test_q4_part1_passes(q4_part1):
    assert not _failed(q4_part1["good"])


def test_q4_part1_mutation(q4_part1):
    """The claimed ratio times 1.05 fails every symmetric law; a symmetric law where the asymmetric
    one should be fails the 'NOT 1/2' check."""
    assert all("symmetric" in c for c in _failed(q4_part1["ratio"])) and len(_failed(q4_part1["ratio"])) == 3
    assert _failed(q4_part1["sym"]) == [c["check"] for c in q4_part1["sym"] if "asymmetric" in c["check"]]


@pytest.fixture(scope="module")
def q4_clt_rows():
    return q4.clt_simulation(Q4_TEST)


def test_q4_clt_passes(q4_clt_rows):
    c = q4.symbolic()[1]["edgeworth"]["c_value"]
    checks, fit = q4.check_clt(q4_clt_rows, Q4_TEST, c)
    assert not _failed(checks), checks
    assert abs(c - 8 / (3 * math.pi * math.sqrt(2))) < 1e-12


@pytest.mark.parametrize("kw, which", [
    ({"c": 1.5 * 0.6002108774380707}, ["1/2 + c/sqrt(d)"]),                       # 1/(2 sqrt(2 pi)) coefficient
    ({"c": 0.6002108774380707, "rate": 1.0}, ["1/2 + c/sqrt(d)", "fitted slope"]),   # 1/d, not 1/sqrt(d)
    ({"c": 0.6002108774380707, "limit": 0.5 * 1.05}, ["1/2 + c/sqrt(d)", "symmetric uniform"]),  # limit x1.05
], ids=["c-x1.5", "rate-1/d", "limit-x1.05"])
def test_q4_clt_mutation(q4_clt_rows, kw, which):
    checks, _ = q4.check_clt(q4_clt_rows, Q4_TEST, **kw)
    failed = _failed(checks)
    for w in which:
        assert any(w in f for f in failed), (w, failed)


@pytest.fixture(scope="module")
def q4_deep():
    d = Q4_TEST["deep_width"]
    return {"he": q4.deep_networks(Q4_TEST, math.sqrt(2 / d), 0),
            "he_x1.02": q4.deep_networks(Q4_TEST, 1.02 * math.sqrt(2 / d), 0),
            "half": q4.deep_networks(Q4_TEST, math.sqrt(1 / d), 1)}


def test_q4_deep_passes(q4_deep):
    L = Q4_TEST["deep_layers"]
    assert q4.check_deep(q4_deep["he"], 1.0, "claimed", Q4_TEST)[0]["passed"]
    assert q4.check_deep(q4_deep["half"], 0.5 ** L, "sqrt(1/d)", Q4_TEST)[0]["passed"]


def test_q4_deep_mutation(q4_deep):
    """sigma 2% too large (claimed gain still 1), and the sqrt(1/d) net's per-layer gain claimed
    as 0.5 x 1.04: both fail against the sampling error of the networks."""
    L = Q4_TEST["deep_layers"]
    assert not q4.check_deep(q4_deep["he_x1.02"], 1.0, "claimed x1.02", Q4_TEST)[0]["passed"]
    assert not q4.check_deep(q4_deep["half"], (0.5 * 1.04) ** L, "sqrt(1/d)", Q4_TEST)[0]["passed"]
    assert not q4.check_deep(q4_deep["he"], 1.04 ** L, "claimed", Q4_TEST)[0]["passed"]
