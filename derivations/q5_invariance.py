"""Q5: invariance and equivariance of the symmetrised least-squares solutions, checked on real groups.

The groups: the four 90-degree rotations of an n x n image (C4) and, separately, the eight rotations
and flips (D4), each acting on the row-major vector x = vec(image) in R^d, d = n^2, as a permutation
matrix G (built by rotating/flipping the images of the basis vectors). For n in {4, 5} and random data
X (N x d), y (N), Y (N x d), top to bottom:

0. the three listed properties hold exactly: G^T in the set, G G^T = I, and G' -> G G' is a bijection;
(b) L1(G w) = L1(w) for random w and every G;
(c) w1* = K^{-1} R X^T y has zero gradient and equals an independent least-squares solve of the
    stacked system {X G^T w = y : G};
(d) G R = R;   (e) G K^{-1} G^T = K^{-1};
(f) the predictor x^T w1* is invariant, (G x)^T w1* = x^T w1* (and G w1* = w1*);
(g) L2(W) = 1/2 sum_G ||Y G^T - X G^T W^T||_F^2 (train on every transformed input with the label
    transformed the same way): L2(G W G^T) = L2(W); its minimiser W2* = C^T K^{-1},
    C = sum_G G X^T Y G^T, equals a stacked least-squares solve and commutes with every G, so
    W2* (G x) = G (W2* x).
The checks can fail: the plain least-squares w0 = argmin L0 and the plain multi-output W0 are
measured to be NOT invariant / equivariant; a set that is not a group ({I, rot90}) breaks (f); and
each check takes the closed form it tests as an argument (tests feed it a wrong one).
metrics.max_abs_error is the largest error over all identities (b)-(g), both groups, both n.
"""
import sys

import numpy as np

NAME = "q5_invariance"
PROFILES = {"full": {"ns": [4, 5], "groups": ["C4", "D4"], "N": 40, "n_test_points": 50,
                     "seed": 0, "tol": 1e-9, "not_invariant_min": 1e-3}}


# ---------------------------------------------------------------- the group as permutation matrices
def image_op_matrix(n: int, op) -> np.ndarray:
    """The d x d matrix G with G vec(img) = vec(op(img)), built column by column from the basis images."""
    d = n * n
    G = np.zeros((d, d))
    for i in range(d):
        e = np.zeros(d)
        e[i] = 1.0
        G[:, i] = op(e.reshape(n, n)).reshape(d)
    return G


def group(n: int, name: str) -> list[np.ndarray]:
    rotations = [lambda im, k=k: np.rot90(im, -k) for k in range(4)]     # clockwise by k * 90 degrees
    ops = rotations if name == "C4" else rotations + [lambda im, k=k: np.fliplr(np.rot90(im, -k)) for k in range(4)]
    if name == "not_a_group":                                            # {I, rot90}: no closure, no transposes
        ops = rotations[:2]
    return [image_op_matrix(n, op) for op in ops]


def index_of(G, Gs):
    hits = [i for i, H in enumerate(Gs) if np.array_equal(G, H)]
    return hits[0] if hits else None


def group_properties(Gs) -> dict:
    """The three properties of the assignment, tested exactly (entries are 0/1)."""
    I = np.eye(len(Gs[0]))
    p1 = all(index_of(G.T, Gs) is not None for G in Gs)
    p2 = all(np.array_equal(G @ G.T, I) and np.array_equal(G.T @ G, I) for G in Gs)
    p3 = all(sorted(index_of(G @ H, Gs) if index_of(G @ H, Gs) is not None else -1 for H in Gs)
             == list(range(len(Gs))) for G in Gs)
    return {"transpose_closed": p1, "orthogonal": p2, "left_multiplication_bijective": p3}


# ---------------------------------------------------------------- the closed forms under test
def K_of(X, Gs):
    return sum(G.T @ X.T @ X @ G for G in Gs)


def w1_formula(X, y, Gs):
    """(c): w1* = K^{-1} R X^T y, K = sum G^T X^T X G, R = sum G."""
    return np.linalg.solve(K_of(X, Gs), sum(Gs) @ X.T @ y)


def W2_formula(X, Y, Gs):
    """(g): W2* = C^T K^{-1}, C = sum G X^T Y G^T (from the normal equations K W^T = C)."""
    C = sum(G @ X.T @ Y @ G.T for G in Gs)
    return np.linalg.solve(K_of(X, Gs), C).T


def L1(w, X, y, Gs):
    return 0.5 * sum(np.sum((y - X @ G.T @ w) ** 2) for G in Gs)


def L2(W, X, Y, Gs):
    return 0.5 * sum(np.sum((Y @ G.T - X @ G.T @ W.T) ** 2) for G in Gs)


def grad_L1(w, X, y, Gs):
    return -sum(G @ X.T @ (y - X @ G.T @ w) for G in Gs)


# ---------------------------------------------------------------- the checks for one group
def check_group(Gs, X, y, Y, Xtest, w_formula=w1_formula, W_formula=W2_formula, rng=None) -> dict:
    """Errors (max absolute) of every identity of parts (b)-(g) for one operator set."""
    rng = rng or np.random.default_rng(1)
    d = X.shape[1]
    err = {}
    w = rng.normal(size=d)
    err["b_L1_invariant"] = max(abs(L1(G @ w, X, y, Gs) - L1(w, X, y, Gs)) for G in Gs)
    w1 = w_formula(X, y, Gs)
    A = np.vstack([X @ G.T for G in Gs])                 # stacked system: an independent solve
    w_ls = np.linalg.lstsq(A, np.tile(y, len(Gs)), rcond=None)[0]
    err["c_gradient_at_w1"] = float(np.max(np.abs(grad_L1(w1, X, y, Gs))))
    err["c_w1_vs_lstsq"] = float(np.max(np.abs(w1 - w_ls)))
    R, K = sum(Gs), K_of(X, Gs)
    Kinv = np.linalg.inv(K)
    err["d_GR_eq_R"] = max(float(np.max(np.abs(G @ R - R))) for G in Gs)
    err["e_GKinvGT_eq_Kinv"] = max(float(np.max(np.abs(G @ Kinv @ G.T - Kinv))) for G in Gs)
    err["f_predictor_invariant"] = max(float(np.max(np.abs((Xtest @ G.T) @ w1 - Xtest @ w1))) for G in Gs)
    err["f_Gw1_eq_w1"] = max(float(np.max(np.abs(G @ w1 - w1))) for G in Gs)
    W = rng.normal(size=(d, d))
    err["g_L2_invariant"] = max(abs(L2(G @ W @ G.T, X, Y, Gs) - L2(W, X, Y, Gs)) for G in Gs)
    W2 = W_formula(X, Y, Gs)
    W_ls = np.linalg.lstsq(A, np.vstack([Y @ G.T for G in Gs]), rcond=None)[0].T
    err["g_W2_vs_lstsq"] = float(np.max(np.abs(W2 - W_ls)))
    err["g_W2_commutes"] = max(float(np.max(np.abs(W2 @ G - G @ W2))) for G in Gs)
    err["g_predictor_equivariant"] = max(float(np.max(np.abs(Xtest @ G.T @ W2.T - Xtest @ W2.T @ G.T)))
                                         for G in Gs)
    return err


def plain_solutions(X, y, Y, Gs):
    """The unsymmetrised least squares: argmin L0 and its multi-output twin (Gs is not used)."""
    return np.linalg.lstsq(X, y, rcond=None)[0], np.linalg.lstsq(X, Y, rcond=None)[0].T


def plain_solutions_error(Gs, X, y, Y, Xtest, solver=plain_solutions) -> dict:
    """How far the plain solutions are from invariant / equivariant (solver: what is measured)."""
    w0, W0 = solver(X, y, Y, Gs)
    return {"plain_w0_invariance_error": max(float(np.max(np.abs(Xtest @ G.T @ w0 - Xtest @ w0))) for G in Gs),
            "plain_W0_equivariance_error": max(float(np.max(np.abs(W0 @ G - G @ W0))) for G in Gs)}


# ---------------------------------------------------------------- the checks (each can be fed a wrong input)
def check_properties(Gs, label) -> tuple[dict, dict]:
    props = group_properties(Gs)
    return {"check": f"{label}: the three properties hold", "passed": all(props.values())}, props


def check_identities(Gs, X, y, Y, Xtest, tol, label, w_formula=w1_formula, W_formula=W2_formula):
    errs = check_group(Gs, X, y, Y, Xtest, w_formula=w_formula, W_formula=W_formula)
    return {"check": f"{label}: identities (b)-(g) hold to {tol:g}", "passed": max(errs.values()) < tol,
            "detail": f"max error {max(errs.values()):.2e}"}, errs


def check_plain_not_symmetric(Gs, X, y, Y, Xtest, big, label, solver=plain_solutions):
    plain = plain_solutions_error(Gs, X, y, Y, Xtest, solver)
    return {"check": f"{label}: plain least squares is NOT invariant/equivariant (> {big:g})",
            "passed": min(plain.values()) > big,
            "detail": f"{plain['plain_w0_invariance_error']:.3f}, {plain['plain_W0_equivariance_error']:.3f}"}, plain


def check_non_group(Gs, X, y, Y, Xtest, big, label):
    """A set that violates (P1) and (P3): the symmetrised predictor must then NOT be invariant."""
    props = group_properties(Gs)
    errs = check_group(Gs, X, y, Y, Xtest)
    return {"check": f"{label} (properties 1 and 3 fail): the `w1*` predictor is NOT invariant",
            "passed": (not props["transpose_closed"]) and errs["f_predictor_invariant"] > big,
            "detail": f"{errs['f_predictor_invariant']:.3f}"}, props, errs


def data(n, cfg, rng):
    d = n * n
    X = rng.normal(size=(cfg["N"], d)) / np.sqrt(d)
    return X, rng.normal(size=cfg["N"]), rng.normal(size=(cfg["N"], d)), rng.normal(size=(cfg["n_test_points"], d))


# ---------------------------------------------------------------- run
def run(config, ctx=None):
    from hw2.cli import Outcome

    rng = np.random.default_rng(config["seed"])
    tol, big = config["tol"], config["not_invariant_min"]
    cases, checks = [], []
    for n in config["ns"]:
        X, y, Y, Xtest = data(n, config, rng)
        for name in config["groups"]:
            Gs = group(n, name)
            label = f"{name}, n={n}"
            c_props, props = check_properties(Gs, label)
            c_ids, errs = check_identities(Gs, X, y, Y, Xtest, tol, label)
            c_plain, plain = check_plain_not_symmetric(Gs, X, y, Y, Xtest, big, label)
            cases.append({"n": n, "d": n * n, "group": name, "size": len(Gs), "properties": props,
                          "errors": errs, "max_error": max(errs.values()), **plain})
            checks += [c_props, c_ids, c_plain]
        # without the group properties the symmetrised solution need not be invariant
        Gs = group(n, "not_a_group")
        c_ng, props, errs = check_non_group(Gs, X, y, Y, Xtest, big, f"{{I, rot90}}, n={n}")
        cases.append({"n": n, "d": n * n, "group": "not_a_group {I, rot90}", "size": len(Gs),
                      "properties": props, "errors": errs, "max_error": max(errs.values())})
        checks.append(c_ng)
    group_cases = [c for c in cases if c["group"] in config["groups"]]
    metrics = {
        "checks": checks,
        "cases": cases,
        "max_abs_error": max(c["max_error"] for c in group_cases),
        "min_plain_invariance_error": min(c["plain_w0_invariance_error"] for c in group_cases),
        "min_plain_equivariance_error": min(c["plain_W0_equivariance_error"] for c in group_cases),
        "non_group_invariance_error": min(c["errors"]["f_predictor_invariant"] for c in cases
                                          if c["group"].startswith("not")),
        "all_checks_passed": all(c["passed"] for c in checks),
    }
    return Outcome(metrics=metrics, seed=config["seed"])


if __name__ == "__main__":
    from hw2.cli import main
    sys.exit(main(name=NAME, profiles=PROFILES, run=run, source=__file__, kind="derivation"))
