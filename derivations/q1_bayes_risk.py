"""Q1: the Bayes risk of ridge regression in the teacher-student setup, checked symbolically and by Monte Carlo.

The claim (X fixed, H = X^T X = U diag(lambda) U^T, H_mu = H + mu I, mu > 0):

    E_{eps ~ N(0, s_e I), w_true ~ N(0, (s_w/d) I)} || w_mu - w_true ||^2
        = sum_i ((s_w/d) mu^2 + s_e lambda_i) / (lambda_i + mu)^2,      w_mu = H_mu^{-1} X^T (X w_true + eps)

(s_w = sigma_w^2, s_e = sigma_eps^2). The proof in report/_q1_bayes_risk.qmd uses four steps; each is
checked here, top to bottom:

1. sympy, general symmetric 2x2 and 3x3 H (one symbol per entry): H_mu^{-1} H - I = -mu H_mu^{-1}.
2. sympy, symbolic X (N x d, both N > d and N < d) and a general symmetric P standing for H_mu^{-1}:
   the hint sum_i (X P)_i (P X^T)_i = Tr[X P^2 X^T] = Tr[P^2 X^T X].
3. sympy, symbolic w (d) and eps (N), general A and B: the Gaussian second-moment rule gives
   E||A w + B eps||^2 = (s_w/d) Tr[A^T A] + s_e Tr[B^T B] (the cross term has expectation 0).
4. sympy, the trace -> eigenvalue step: with D(mu) = det(H + mu I) = prod_i (lambda_i + mu),
   Tr[H_mu^{-2}] = -(D'/D)' and Tr[H_mu^{-2} H] = D'/D + mu (D'/D)' for general symmetric 2x2/3x3 H,
   and -(D'/D)' = sum 1/(lambda_i+mu)^2, D'/D = sum 1/(lambda_i+mu) for symbolic lambdas;
   plus the whole closed form for H = U diag(l1, l2) U^T with U a symbolic 2x2 rotation.
5. Monte Carlo: fixed random X with N > d and with N < d, several mu; draw (w_true, eps), solve the
   ridge problem itself, average ||w_mu - w_true||^2; in every case the closed form must lie within
   z_tol = 4 standard errors of the estimate (|z| < 4). With 10^6 draws a standard error is below
   0.1% of the risk, so a closed form off by a factor 1.005 already fails; `detectable_rel_error`
   records the smallest constant-factor error that is certain to fail at the realised z-scores.

Every check takes the formula it tests as an argument, so tests can hand it a wrong one (a dropped
factor) and see it fail.
"""
import sys
import time

import numpy as np
import sympy as sp

NAME = "q1_bayes_risk"
PROFILES = {"full": {
    "sympy_sizes": [2, 3],                  # general symmetric H of these sizes
    "hint_shapes": [[3, 2], [2, 3]],        # (N, d) for the symbolic-X trace hint: N > d and N < d
    "mc": {"d": 20, "Ns": [60, 8], "mus": [0.1, 1.0, 10.0], "sigma_w2": 2.0, "sigma_e2": 0.5,
           "draws": 1_000_000, "chunk": 50_000, "seed": 0, "z_tol": 4.0},
}}


# ---------------------------------------------------------------- the formulas under test
def closed_form(lams, mu, sigma_w2, sigma_e2, d):
    """The assignment's right-hand side: sum_i ((s_w/d) mu^2 + s_e lambda_i) / (lambda_i + mu)^2."""
    lams = np.asarray(lams, dtype=float)
    return float(np.sum((sigma_w2 / d * mu**2 + sigma_e2 * lams) / (lams + mu) ** 2))


def shrinkage_rhs(H, mu):
    """Step 1's right-hand side: H_mu^{-1} H - I = -mu H_mu^{-1}."""
    return -mu * (H + mu * sp.eye(H.shape[0])).inv()


# ---------------------------------------------------------------- symbolic helpers
def symmetric_matrix(n: int, name: str = "h") -> sp.Matrix:
    """A general real symmetric n x n matrix, one symbol per free entry."""
    syms = {(i, j): sp.Symbol(f"{name}{i}{j}", real=True) for i in range(n) for j in range(i, n)}
    return sp.Matrix(n, n, lambda i, j: syms[(min(i, j), max(i, j))])


def is_zero(expr) -> bool:
    """A rational expression is identically zero iff its cancelled numerator expands to 0."""
    return sp.expand(sp.numer(sp.together(sp.cancel(expr)))) == 0


def check_shrinkage(n: int, rhs=shrinkage_rhs) -> dict:
    mu = sp.Symbol("mu", positive=True)
    H = symmetric_matrix(n)
    lhs = (H + mu * sp.eye(n)).inv() * H - sp.eye(n)
    ok = all(is_zero(e) for e in (lhs - rhs(H, mu)))
    return {"check": f"sympy: `H_mu^-1 H - I = -mu H_mu^-1` for a general symmetric {n}x{n} `H`", "passed": ok}


def hint_trace_rhs(X, P):
    """The hint's right-hand side, then the cyclic form used next: Tr[X P^2 X^T] (and Tr[P^2 X^T X])."""
    return (X * P * P * X.T).trace(), (P * P * X.T * X).trace()


def check_hint_trace(N: int, d: int, rhs=hint_trace_rhs) -> dict:
    X = sp.Matrix(N, d, lambda i, j: sp.Symbol(f"x{i}{j}", real=True))
    P = symmetric_matrix(d, "p")                     # stands for the symmetric H_mu^{-1}
    XP, PXt = X * P, P * X.T
    lhs = sum((XP[i, :] * PXt[:, i])[0, 0] for i in range(N))   # sum_i row_i(X P) . col_i(P X^T)
    ok = all(sp.expand(lhs - r) == 0 for r in rhs(X, P))
    return {"check": f"sympy: `sum_i (X H_mu^-1)_i (H_mu^-1 X^T)_i = Tr[X H_mu^-2 X^T] = Tr[H_mu^-2 H]`, "
                     f"symbolic `X` {N}x{d}", "passed": ok}


def gaussian_expectation(expr, groups):
    """E[expr] for a polynomial of degree <= 2 in independent zero-mean groups of i.i.d. variables:
    groups = [(symbols, variance), ...]; E[z_a z_b] = var delta_ab within a group, 0 across groups."""
    poly = sp.Poly(sp.expand(expr), *[s for syms, _ in groups for s in syms])
    var_of = {s: v for syms, v in groups for s in syms}
    total = 0
    for monom, coeff in poly.terms():
        powers = [(s, k) for s, k in zip(poly.gens, monom) if k]
        if not powers:
            total += coeff
        elif len(powers) == 1 and powers[0][1] == 2:
            total += coeff * var_of[powers[0][0]]
        elif sum(k for _, k in powers) > 2:
            raise ValueError("degree > 2")
        # one variable to the first power, or two different variables: zero mean / independence -> 0
    return sp.expand(total)


def expectation_rhs(A, B, sw, se, d):
    """Step 3's right-hand side: (s_w/d) Tr[A^T A] + s_e Tr[B^T B]."""
    return sw / d * (A.T * A).trace() + se * (B.T * B).trace()


def check_expectation(N: int, d: int, rhs=expectation_rhs) -> dict:
    sw, se = sp.symbols("sigma_w2 sigma_e2", positive=True)
    w = sp.Matrix(sp.symbols(f"w0:{d}", real=True))
    e = sp.Matrix(sp.symbols(f"e0:{N}", real=True))
    A = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"a{i}{j}", real=True))
    B = sp.Matrix(d, N, lambda i, j: sp.Symbol(f"b{i}{j}", real=True))
    v = A * w + B * e
    risk = (v.T * v)[0, 0]
    lhs = gaussian_expectation(risk, [(list(w), sw / d), (list(e), se)])
    cross = gaussian_expectation(2 * ((A * w).T * (B * e))[0, 0], [(list(w), sw / d), (list(e), se)])
    ok = sp.expand(lhs - rhs(A, B, sw, se, d)) == 0 and cross == 0
    return {"check": f"sympy: `E norm(A w + B eps)^2 = (s_w/d) Tr[A^T A] + s_e Tr[B^T B]`, cross term 0 (d={d}, N={N})",
            "passed": ok}


def eigen_sum_rhs(lams, mu, sw, se, d):
    """The assignment's sum, symbolically."""
    return sum((sw / d * mu**2 + se * l) / (l + mu) ** 2 for l in lams)


def check_eigen_traces(n: int, rhs=eigen_sum_rhs) -> dict:
    """Tr[H_mu^-2], Tr[H_mu^-2 H] in terms of D(mu) = det(H + mu I) = prod (lambda_i + mu), so that no
    symbolic eigenvalue has to be computed; then the same expressions of D in terms of the lambdas."""
    mu = sp.Symbol("mu", positive=True)
    sw, se = sp.symbols("sigma_w2 sigma_e2", positive=True)
    H = symmetric_matrix(n)
    Hmu = H + mu * sp.eye(n)
    D = Hmu.det()
    s1 = sp.diff(D, mu) / D                           # = sum 1/(lambda_i + mu)
    s2 = -sp.diff(s1, mu)                             # = sum 1/(lambda_i + mu)^2
    adj, det = Hmu.adjugate(), D                      # H_mu^{-1} = adj / det
    tr2 = (adj * adj).trace() / det**2                # Tr[H_mu^{-2}]
    tr2h = (adj * adj * H).trace() / det**2           # Tr[H_mu^{-2} H]
    ok_matrix = is_zero(tr2 - s2) and is_zero(tr2h - (s1 - mu * s2))
    lams = sp.symbols(f"lambda0:{n}", nonnegative=True)
    Dl = sp.prod([l + mu for l in lams])
    s1l = sp.diff(Dl, mu) / Dl
    s2l = -sp.diff(s1l, mu)
    ok_lams = (is_zero(s1l - sum(1 / (l + mu) for l in lams))
               and is_zero(s2l - sum(1 / (l + mu) ** 2 for l in lams)))
    # the assembled risk (s_w/d) mu^2 Tr[H_mu^-2] + s_e Tr[H_mu^-2 H] in eigenvalues, against rhs
    assembled = sw / n * mu**2 * s2l + se * (s1l - mu * s2l)
    ok_rhs = is_zero(assembled - rhs(lams, mu, sw, se, n))
    return {"check": f"sympy: `Tr[H_mu^-2] = sum 1/(l_i+mu)^2`, `Tr[H_mu^-2 H] = sum l_i/(l_i+mu)^2` via "
                     f"`det(H+mu I) = prod(l_i+mu)`, general symmetric {n}x{n} `H`; assembled sum = claimed sum",
            "passed": bool(ok_matrix and ok_lams and ok_rhs)}


def check_rotation_2x2(rhs=eigen_sum_rhs) -> dict:
    """The whole chain on H = U diag(l1, l2) U^T with a rotation U = [[c, -s], [s, c]], c^2 + s^2 = 1:
    H_mu^{-1} = adj(H_mu)/det(H_mu) keeps everything polynomial; the difference of numerators must be
    0 modulo c^2 + s^2 - 1 (the only fact used about the rotation)."""
    c, s = sp.symbols("c s", real=True)
    mu = sp.Symbol("mu", positive=True)
    sw, se = sp.symbols("sigma_w2 sigma_e2", positive=True)
    l1, l2 = sp.symbols("lambda1 lambda2", nonnegative=True)
    U = sp.Matrix([[c, -s], [s, c]])
    H = U * sp.diag(l1, l2) * U.T
    Hmu = H + mu * sp.eye(2)
    adj, det = Hmu.adjugate(), Hmu.det()
    A_num = adj * H - det * sp.eye(2)                          # det * (H_mu^{-1} H - I)
    # det^2 * risk = (s_w/2) Tr[A_num^T A_num] + s_e Tr[adj^2 H]   (the risk before the eigen step)
    risk_num = sw / 2 * (A_num.T * A_num).trace() + se * (adj * adj * H).trace()
    target = sp.together(rhs([l1, l2], mu, sw, se, 2))
    diff = sp.expand(risk_num * sp.denom(target) - sp.numer(target) * det**2)
    diff = sp.rem(sp.Poly(diff, s), sp.Poly(s**2 + c**2 - 1, s))     # use c^2 + s^2 = 1
    return {"check": "sympy: full risk `(s_w/d) Tr[A^T A] + s_e Tr[H_mu^-2 H]` for `H = U diag(l1,l2) U^T` "
                     "(`U` a 2x2 rotation) equals the claimed sum",
            "passed": sp.expand(diff.as_expr()) == 0}


# ---------------------------------------------------------------- Monte Carlo
def monte_carlo(X, mu, sigma_w2, sigma_e2, draws, chunk, rng):
    """Mean and standard error of ||w_mu - w_true||^2 over draws of (w_true, eps), X fixed,
    with w_mu computed by solving the ridge normal equations (not from the error formula)."""
    N, d = X.shape
    Hmu = X.T @ X + mu * np.eye(d)
    total, total_sq, done = 0.0, 0.0, 0
    while done < draws:
        m = min(chunk, draws - done)
        W = rng.normal(0.0, np.sqrt(sigma_w2 / d), size=(d, m))
        E = rng.normal(0.0, np.sqrt(sigma_e2), size=(N, m))
        Y = X @ W + E                                  # teacher labels with noise, one column per draw
        Wmu = np.linalg.solve(Hmu, X.T @ Y)            # ridge solution for every draw
        r = np.sum((Wmu - W) ** 2, axis=0)
        total, total_sq, done = total + r.sum(), total_sq + (r**2).sum(), done + m
    mean = total / draws
    var = total_sq / draws - mean**2
    return mean, float(np.sqrt(var / draws))


def mc_estimates(cfg: dict) -> list[dict]:
    """The Monte Carlo side alone (it never looks at the closed form): one fixed design per N, and
    for each mu the estimate, its standard error and the eigenvalues of X^T X."""
    rng = np.random.default_rng(cfg["seed"])
    d, sw, se = cfg["d"], cfg["sigma_w2"], cfg["sigma_e2"]
    out = []
    for N in cfg["Ns"]:
        X = rng.normal(size=(N, d))                   # one fixed design per N (the risk is given X)
        lams = np.clip(np.linalg.eigvalsh(X.T @ X), 0, None)
        for mu in cfg["mus"]:
            est, se_est = monte_carlo(X, mu, sw, se, cfg["draws"], cfg["chunk"], rng)
            out.append({"N": N, "d": d, "mu": mu, "lams": lams, "mc_mean": est, "mc_se": se_est})
    return out


def check_monte_carlo(cfg: dict, formula=closed_form, estimates=None) -> tuple[dict, list[dict]]:
    """The closed form against the Monte Carlo estimate: |z| < z_tol in every case.
    estimates: the output of mc_estimates(cfg), to reuse one simulation for several formulas."""
    d, sw, se = cfg["d"], cfg["sigma_w2"], cfg["sigma_e2"]
    rows = []
    for e in estimates if estimates is not None else mc_estimates(cfg):
        exact = formula(e["lams"], e["mu"], sw, se, d)
        rows.append({"N": e["N"], "d": d, "mu": e["mu"], "closed_form": exact, "mc_mean": e["mc_mean"],
                     "mc_se": e["mc_se"], "rel_error": abs(e["mc_mean"] - exact) / exact,
                     "z": (e["mc_mean"] - exact) / e["mc_se"]})
    worst = max(abs(r["z"]) for r in rows)
    return ({"check": f"Monte Carlo ({cfg['draws']} draws per case, N in {cfg['Ns']}, d={d}, mu in {cfg['mus']}): "
                      f"closed form within {cfg['z_tol']:g} standard errors of the estimate in every case",
             "passed": bool(worst < cfg["z_tol"]), "detail": f"max |z| {worst:.2f}"}, rows)


def detectable_rel_error(rows, z_tol) -> float:
    """The smallest eps such that the closed form times (1 + eps) or (1 - eps) is certain to fail:
    in case r its z-score moves by eps * closed_form / se, so it leaves (-z_tol, z_tol) once
    eps > (z_tol + |z_r|) * se_r / closed_form; the smallest such bound over the cases."""
    return min((z_tol + abs(r["z"])) * r["mc_se"] / r["closed_form"] for r in rows)


# ---------------------------------------------------------------- run
def run(config, ctx=None):
    from hw2.cli import Outcome

    checks, timings = [], {}
    t0 = time.perf_counter()
    for n in config["sympy_sizes"]:
        checks.append(check_shrinkage(n))
        checks.append(check_eigen_traces(n))
    for N, d in config["hint_shapes"]:
        checks.append(check_hint_trace(N, d))
        checks.append(check_expectation(N, d))
    checks.append(check_rotation_2x2())
    timings["sympy_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mc_check, rows = check_monte_carlo(config["mc"])
    checks.append(mc_check)
    timings["monte_carlo_s"] = time.perf_counter() - t0
    metrics = {
        "checks": checks,
        "mc": rows,
        "mc_max_rel_error": max(r["rel_error"] for r in rows),
        "mc_max_abs_z": max(abs(r["z"]) for r in rows),
        "mc_max_rel_se": max(r["mc_se"] / r["mc_mean"] for r in rows),
        "mc_detectable_rel_error": detectable_rel_error(rows, config["mc"]["z_tol"]),
        "timings": timings,
        "all_checks_passed": all(c["passed"] for c in checks),
    }
    return Outcome(metrics=metrics, seed=config["mc"]["seed"])


if __name__ == "__main__":
    from hw2.cli import main
    sys.exit(main(name=NAME, profiles=PROFILES, run=run, source=__file__, kind="derivation"))
