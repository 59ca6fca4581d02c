"""Q4: the ReLU initialisation sigma_l = sqrt(2 / d_{l-1}), checked symbolically and by Monte Carlo.

The lecture's rule keeps the pre-activations at unit second moment, layer after layer:
    E[u_l[i]^2] = sigma_l^2 * sum_j E[phi^2(u_{l-1}[j])] = 1   =>   sigma_l = 1 / sqrt(sum_j E[phi^2(u_{l-1}[j])])
(W_l entries i.i.d., zero mean, variance sigma_l^2, independent of u_{l-1}; no bias). Applying it at
layer l presumes the previous layer was normalised the same way: E[u_{l-1}[j]^2] = 1. For ReLU the
one fact needed is E[max(0,u)^2] = E[u^2] / 2, which gives sum_j = d_{l-1} / 2 and sigma_l = sqrt(2/d_{l-1}).
  Part 1 (symmetric u): u and -u have the same law, so the positive and negative halves of E[u^2] are equal.
  Part 2 (CLT, u ~ N(0, s^2)): the integral int_0^inf u^2 N(u; 0, s^2) du = s^2 / 2.

How fast part 2's limit is reached (derived here, checked below). u = sum_{k<=d} W_k x_k with i.i.d.
zero-mean W_k (skewness g_W) and i.i.d. x_k = relu(v_k) >= 0, independent, is a sum of d i.i.d.
zero-mean terms; its skewness is g_u = g_W m3 / (m2^{3/2} sqrt(d)), m_k = E[x^k]. The Edgeworth
expansion of the law of z = u / sd(u),
    f(z) = phi(z) [1 + g_u/6 He3(z) + k4_u/24 He4(z) + g_u^2/72 He6(z) + O(d^{-3/2})],
gives E[relu(u)^2]/E[u^2] = E[z^2 1{z>0}] = 1/2 + (g_u/6) I3 + (k4_u/24) I4 + (g_u^2/72) I6 + O(d^{-3/2})
with I_k = int_0^inf z^2 He_k(z) phi(z) dz: I3 = 2/sqrt(2 pi), I4 = I6 = 0. So
    ratio = 1/2 + c / sqrt(d) + O(d^{-3/2}),   c = g_W m3 / (3 sqrt(2 pi) m2^{3/2}),
which is exactly 1/2 for symmetric W (g_W = 0, part 1) and for zero-mean asymmetric W approaches 1/2
like 1/sqrt(d). For centred-exponential W (g_W = 2) and v ~ N(0, 1) (m2 = 1/2, m3 = sqrt(2/pi)),
c = 8 / (3 pi sqrt(2)) ~ 0.600.

Checks, top to bottom (each takes what it tests as an argument, so tests can hand it a wrong one):
  1. sympy: the Gaussian integral equals the CLAIMED second moment (s^2/2); the normalisation
     int u^2 N(u; 0, s^2) = s^2; plugging s^2/2 into the lecture's formula gives the CLAIMED sigma.
  2. sympy: the part-1 identity for two non-Gaussian symmetric laws (uniform, Laplace), and a zero-mean
     asymmetric law (centred exponential) for which it is false: symmetry, not Gaussianity, is what counts.
  3. sympy: the Edgeworth integrals I3, I4, I6 and the constant c above.
  4. Monte Carlo, part 1: u = sum_j W_j relu(v_j) with FEW terms (u far from Gaussian, measured by its
     excess kurtosis) and uniform / Laplace / Rademacher weights: E[relu(u)^2] / E[u^2] is 1/2 within
     4 standard errors; centred-exponential weights are detectably not 1/2.
  5. Monte Carlo, part 2: zero-mean ASYMMETRIC (centred-exponential) weights at widths 2 ... 1024, so
     part 1's symmetry does not apply: at every width >= 128 the ratio equals 1/2 + c/sqrt(d) within
     4 standard errors; the log-log slope of ratio - 1/2 against d (widths >= 64) is -1/2 within 4
     standard errors; symmetric uniform weights on the same inputs give 1/2 at every width.
  6. Deep ReLU networks (uniform weights): for symmetric weights the second moment is a martingale,
     E[m_L | input] = (sigma^2 d / 2)^L * 2 a_0 EXACTLY at any width (m_l = mean u_l^2, a_0 = mean
     relu(u_0)^2: given the previous layer E[m_l] = sigma^2 d a_{l-1}, and part 1 gives E[a_l] = m_l / 2).
     Over R independent networks (fresh seeds), X = m_L / (2 a_0) must agree with the predicted
     overall factor (sigma^2 d/2)^L -- 1 for the claimed sigma, 2^-L for sigma = sqrt(1/d), each from
     its own networks -- on the log scale, within 4 standard errors derived from the spread of log X
     over the networks (see check_deep).
"""
import math
import sys

NAME = "q4_relu_init"
PROFILES = {"full": {
    "seed": 0,
    "mc_samples": 2_000_000,        # per distribution; standard error of the ratio ~ 1e-3
    "few_terms": 2,                 # terms in u for part 1: far from Gaussian on purpose
    "clt_widths": [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],   # part 2's widths
    "clt_samples": 200_000,         # per width; standard error of the ratio ~ 2e-3
    "clt_check_from": 128,          # widths where the O(d^-3/2) remainder is below a standard error
    "clt_slope_from": 64,           # widths used for the fitted rate
    "deep_width": 512, "deep_layers": 50, "deep_batch": 32,
    "deep_networks": 24,            # independent networks per sigma
    "z_sigmas": 4.0,                # Monte Carlo agreement: within this many standard errors
}}


def edgeworth_integrals():
    """I_k = int_0^inf z^2 He_k(z) phi(z) dz for k = 3, 4, 6 (probabilists' Hermite polynomials)."""
    import sympy as sp
    z = sp.Symbol("z", real=True)
    phi = sp.exp(-z**2 / 2) / sp.sqrt(2 * sp.pi)
    he = {3: z**3 - 3 * z, 4: z**4 - 6 * z**2 + 3, 6: z**6 - 15 * z**4 + 45 * z**2 - 15}
    return {k: sp.simplify(sp.integrate(z**2 * h * phi, (z, 0, sp.oo))) for k, h in he.items()}


def symbolic(claimed_second_moment=None, claimed_sigma=None, claimed_total=None, claimed_half=None,
             asymmetric_density=None, claimed_edgeworth=None):
    """sympy checks. claimed_*: sympy expressions in s (std of u) and d (width); defaults are the answer.
    claimed_half: the ratio claimed for the symmetric laws (1/2); asymmetric_density: the law (in u)
    whose ratio must NOT be 1/2 (default: centred exponential); claimed_edgeworth: the claimed
    coefficient of g_u in ratio - 1/2 (default 1/(3 sqrt(2 pi)))."""
    import sympy as sp

    u = sp.Symbol("u", real=True)
    s, b, c, d = sp.symbols("s b c d", positive=True)
    claimed_second_moment = s**2 / 2 if claimed_second_moment is None else claimed_second_moment
    claimed_sigma = sp.sqrt(2 / d) if claimed_sigma is None else claimed_sigma
    claimed_total = s**2 if claimed_total is None else claimed_total
    claimed_half = sp.Rational(1, 2) if claimed_half is None else claimed_half
    claimed_edgeworth = 1 / (3 * sp.sqrt(2 * sp.pi)) if claimed_edgeworth is None else claimed_edgeworth

    gauss = sp.exp(-u**2 / (2 * s**2)) / (sp.sqrt(2 * sp.pi) * s)
    relu2 = sp.simplify(sp.integrate(u**2 * gauss, (u, 0, sp.oo)))
    total = sp.simplify(sp.integrate(u**2 * gauss, (u, -sp.oo, sp.oo)))
    # The lecture's formula with the previous layer normalised (s = 1) and d_{l-1} = d identical units.
    sigma = 1 / sp.sqrt(d * relu2.subs(s, 1))

    def half_check(density, lo, hi):
        pos = sp.simplify(sp.integrate(u**2 * density, (u, 0, hi)))
        full = sp.simplify(sp.integrate(u**2 * density, (u, lo, hi)))
        return pos, full, sp.simplify(pos / full)

    laplace = half_check(sp.exp(-sp.Abs(u) / b) / (2 * b), -sp.oo, sp.oo)
    uniform = half_check(1 / (2 * c) + 0 * u, -c, c)
    # Centred exponential: mean 0, variance 1, but not symmetric.
    skewed = half_check(sp.exp(-(u + 1)), -1, sp.oo) if asymmetric_density is None else \
        half_check(*asymmetric_density(u))

    # Part 2's rate: the Edgeworth integrals and the constant c for centred-exponential weights and
    # x = relu(v), v ~ N(0, 1).
    I = edgeworth_integrals()
    v = sp.Symbol("v", real=True)
    phi_v = sp.exp(-v**2 / 2) / sp.sqrt(2 * sp.pi)
    m2, m3 = (sp.simplify(sp.integrate(v**k * phi_v, (v, 0, sp.oo))) for k in (2, 3))
    g_W = sp.simplify(sp.integrate((u - 1)**3 * sp.exp(-u), (u, 0, sp.oo)))     # E[(E - 1)^3], E ~ Exp(1)
    coef = sp.simplify(I[3] / 6)
    c_const = sp.simplify(g_W * m3 / m2**sp.Rational(3, 2) * claimed_edgeworth)

    checks = [
        {"check": "sympy: `int_0^inf u^2 N(u;0,s^2) du` equals the claimed `E[relu(u)^2]`",
         "passed": sp.simplify(relu2 - claimed_second_moment) == 0,
         "detail": [str(relu2), str(claimed_second_moment)]},
        {"check": "sympy: `int_R u^2 N(u;0,s^2) du = s^2` (the normalisation the half is taken of)",
         "passed": sp.simplify(total - claimed_total) == 0, "detail": str(total)},
        {"check": "sympy: `1/sqrt(d * E[relu(u)^2])` at `s=1` equals the claimed `sigma_l`",
         "passed": sp.simplify(sigma - claimed_sigma) == 0, "detail": [str(sigma), str(claimed_sigma)]},
        {"check": "sympy: Laplace(b) law: `E[u^2 1(u>0)] / E[u^2] = 1/2`",
         "passed": sp.simplify(laplace[2] - claimed_half) == 0, "detail": [str(x) for x in laplace]},
        {"check": "sympy: Uniform(-c,c) law: `E[u^2 1(u>0)] / E[u^2] = 1/2`",
         "passed": sp.simplify(uniform[2] - claimed_half) == 0, "detail": [str(x) for x in uniform]},
        {"check": "sympy: zero-mean ASYMMETRIC law (centred exponential): the ratio is not 1/2",
         "passed": sp.simplify(skewed[2] - sp.Rational(1, 2)) != 0, "detail": [str(x) for x in skewed]},
        {"check": "sympy: Edgeworth: `int_0^inf z^2 He3 phi / 6` equals the claimed coefficient of the skewness "
                  "in `ratio - 1/2`, and `int_0^inf z^2 He4 phi = int_0^inf z^2 He6 phi = 0` (no `1/d` term)",
         "passed": sp.simplify(coef - claimed_edgeworth) == 0 and I[4] == 0 and I[6] == 0,
         "detail": [str(I[3]), str(I[4]), str(I[6]), str(claimed_edgeworth)]},
    ]
    values = {"gaussian_relu_second_moment": str(relu2), "sigma_l": str(sigma),
              "centred_exponential_ratio": float(skewed[2]), "centred_exponential_ratio_exact": str(skewed[2]),
              "edgeworth": {"I3": str(I[3]), "I4": str(I[4]), "I6": str(I[6]), "m2": str(m2), "m3": str(m3),
                            "skewness_W": str(g_W), "c": str(c_const), "c_value": float(c_const)}}
    return checks, values


def weights(kind, shape, rng, std=1.0, dtype=None):
    """Zero-mean weights of a given standard deviation from several laws."""
    import numpy as np
    kw = {} if dtype is None else {"dtype": dtype}
    if kind == "uniform":
        if dtype is not None:
            return (rng.random(shape, **kw) * 2 - 1) * np.asarray(np.sqrt(3) * std, dtype=dtype)
        return rng.uniform(-np.sqrt(3), np.sqrt(3), shape) * std
    if kind == "laplace":
        return rng.laplace(0.0, 1 / np.sqrt(2), shape) * std
    if kind == "rademacher":
        return rng.choice([-1.0, 1.0], shape) * std
    if kind == "centred_exponential":                     # zero mean, unit variance, skewed
        return (rng.standard_exponential(shape, **kw) - 1) * np.asarray(std, dtype=dtype or float)
    if kind == "gaussian":
        return rng.standard_normal(shape, **kw) * std
    raise ValueError(kind)


def ratio_stats(u):
    """E[relu(u)^2] / E[u^2] with its standard error (delta method), and u's excess kurtosis."""
    import numpy as np
    a, t = np.maximum(u, 0) ** 2, u ** 2
    r = a.mean() / t.mean()
    se = np.sqrt(np.var(a - r * t) / len(u)) / t.mean()
    kurt = np.mean((u - u.mean()) ** 4) / np.var(u) ** 2 - 3
    return float(r), float(se), float(kurt)


# ---------------------------------------------------------------- part 1
def part1(config, claimed_ratio=0.5, asymmetric_kind="centred_exponential"):
    """Few-term sums u = sum_k W_k relu(v_k) (far from Gaussian) for several weight laws."""
    import numpy as np
    rng = np.random.default_rng(config["seed"])
    n, k, z = config["mc_samples"], config["few_terms"], config["z_sigmas"]
    checks, values = [], {}
    # previous pre-activations v of an arbitrary (here skewed) law, relu'd, times the weights
    v = rng.exponential(1.0, (n, k)) - 0.5
    for kind in ("uniform", "laplace", "rademacher", "asymmetric"):
        law = asymmetric_kind if kind == "asymmetric" else kind
        u = (weights(law, (n, k), rng) * np.maximum(v, 0)).sum(axis=1)
        r, se, kurt = ratio_stats(u)
        values["centred_exponential" if kind == "asymmetric" else kind] = {"ratio": r, "se": se,
                                                                           "excess_kurtosis": kurt}
        if kind == "asymmetric":
            checks.append({"check": f"Monte Carlo: zero-mean asymmetric weights, {k} terms: ratio is NOT 1/2 "
                                    f"(> {z} s.e. away) -- symmetry is needed",
                           "passed": abs(r - 0.5) > z * se, "detail": [r, se]})
        else:
            checks.append({"check": f"Monte Carlo: symmetric {kind} weights, {k} terms (non-Gaussian u): "
                                    f"`E[relu(u)^2]/E[u^2]` = claimed within {z} s.e.",
                           "passed": abs(r - claimed_ratio) < z * se and abs(kurt) > 0.5,
                           "detail": [r, se, kurt]})
    return checks, values


# ---------------------------------------------------------------- part 2
def clt_simulation(config):
    """For each width d: u = sum_{k<=d} W_k relu(v_k), v ~ N(0,1), with centred-exponential (zero-mean,
    skewed) weights and, on the same inputs, symmetric uniform weights. Ratio, s.e., skewness, kurtosis."""
    import numpy as np
    rng = np.random.default_rng([config["seed"], 2])
    n = config["clt_samples"]
    rows = []
    for d in config["clt_widths"]:
        chunk = max(1, 4_000_000 // d)
        us, ss = [], []
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            x = np.maximum(rng.standard_normal((m, d), dtype=np.float32), 0)
            w = weights("centred_exponential", (m, d), rng, dtype=np.float32)
            us.append(np.einsum("ij,ij->i", w, x, dtype=np.float64))
            w = weights("uniform", (m, d), rng, dtype=np.float32)
            ss.append(np.einsum("ij,ij->i", w, x, dtype=np.float64))
        u, us_ = np.concatenate(us), np.concatenate(ss)
        r, se, kurt = ratio_stats(u)
        r_sym, se_sym, _ = ratio_stats(us_)
        skew = float(np.mean((u - u.mean()) ** 3) / np.var(u) ** 1.5)
        rows.append({"width": d, "ratio": r, "se": se, "skewness": skew, "excess_kurtosis": kurt,
                     "ratio_symmetric": r_sym, "se_symmetric": se_sym})
    return rows


def predicted_ratio(d, c, limit=0.5, rate=0.5):
    """Part 2 with its Edgeworth correction: 1/2 + c d^-1/2 (the O(d^-3/2) remainder dropped)."""
    return limit + c * d ** (-rate)


def fitted_rate(rows, from_width):
    """Weighted least-squares slope of log(ratio - 1/2) against log d, and its standard error."""
    import numpy as np
    sel = [r for r in rows if r["width"] >= from_width]
    x = np.log([r["width"] for r in sel])
    dev = np.array([r["ratio"] - 0.5 for r in sel])
    if np.any(dev <= 0):
        return float("nan"), float("nan")
    y = np.log(dev)
    w = (dev / np.array([r["se"] for r in sel])) ** 2       # 1 / var(log dev), delta method
    A = np.vstack([np.ones_like(x), x]).T
    cov = np.linalg.inv(A.T @ (w[:, None] * A))
    beta = cov @ A.T @ (w * y)
    return float(beta[1]), float(np.sqrt(cov[1, 1]))


def check_clt(rows, config, c, limit=0.5, rate=0.5):
    """Part 2's checks on the simulated rows against the prediction limit + c d^-rate."""
    z = config["z_sigmas"]
    big = [r for r in rows if r["width"] >= config["clt_check_from"]]
    zs = [(r["ratio"] - predicted_ratio(r["width"], c, limit, rate)) / r["se"] for r in big]
    slope, slope_se = fitted_rate(rows, config["clt_slope_from"])
    zsym = [(r["ratio_symmetric"] - limit) / r["se_symmetric"] for r in rows]
    return [
        {"check": f"Monte Carlo, part 2: centred-exponential (zero-mean, asymmetric) weights, widths "
                  f">= {config['clt_check_from']}: `ratio = 1/2 + c/sqrt(d)` (Edgeworth, `c = {c:.4f}`) within {z} s.e.",
         "passed": bool(max(abs(x) for x in zs) < z), "detail": [round(x, 2) for x in zs]},
        {"check": f"Monte Carlo, part 2: fitted slope of `log(ratio - 1/2)` against `log d` (widths >= "
                  f"{config['clt_slope_from']}) equals -1/2 within {z} s.e.",
         "passed": bool(abs(slope + rate) < z * slope_se), "detail": [slope, slope_se]},
        {"check": f"Monte Carlo, part 2: symmetric uniform weights on the same inputs: ratio = 1/2 within "
                  f"{z} s.e. at every width",
         "passed": bool(max(abs(x) for x in zsym) < z), "detail": [round(x, 2) for x in zsym]},
    ], {"z": zs, "slope": slope, "slope_se": slope_se}


# ---------------------------------------------------------------- deep networks
def deep_networks(config, sigma, seed_tag):
    """m_L / (2 a_0) for R independent deep ReLU networks with uniform weights of std sigma (fresh
    seeds per network, and per seed_tag); its expectation is (sigma^2 d / 2)^L exactly."""
    import numpy as np
    d, depth, batch, R = config["deep_width"], config["deep_layers"], config["deep_batch"], config["deep_networks"]
    try:                                         # small matrix products: one thread is fastest
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(1)
    except ImportError:                          # pragma: no cover
        limit = None
    out = []
    try:
        for r in range(R):
            rng = np.random.default_rng([config["seed"], 3, seed_tag, r])
            u = rng.standard_normal((batch, d))          # layer-0 pre-activations, unit second moment
            a0 = float(np.mean(np.maximum(u, 0) ** 2))
            for _ in range(depth):
                u = np.maximum(u, 0) @ weights("uniform", (d, d), rng, std=sigma).T
            out.append(float(np.mean(u ** 2)) / (2 * a0))
    finally:
        if limit is not None:
            limit.unregister()
    return out


def check_deep(factors, predicted, label, config):
    """The networks' overall factors X_r = m_L/(2 a_0) against the predicted E[X] = (sigma^2 d/2)^L.
    log X is a sum of L per-layer log gains, hence close to normal (its spread is the sampling error
    of one network: about sqrt(L * 4/d) for these weights); a normal log X with E[X] = predicted has
    E[log X] = log(predicted) - Var(log X)/2. So mean(log X / predicted) + s^2/2 (s^2 the sample
    variance of log X over the R networks) must be 0 within z_sigmas of its standard error
    sqrt(s^2/R + s^4/(2(R-1)))."""
    import numpy as np
    logs = np.log(np.asarray(factors) / predicted)
    R = len(logs)
    s2 = float(logs.var(ddof=1))
    stat = float(logs.mean() + s2 / 2)
    se = float(np.sqrt(s2 / R + s2**2 / (2 * (R - 1))))
    z = config["z_sigmas"]
    return {"check": f"deep ReLU nets ({R} independent, {config['deep_layers']} layers, width {config['deep_width']}, "
                     f"uniform weights) with {label}: overall factor `m_L/(2 a_0)` = predicted {predicted:.3g} "
                     f"(log scale, within {z} s.e. of the sampling error over the networks)",
            "passed": bool(abs(stat) < z * se), "detail": [stat, se]}, \
        {"log_ratio_to_predicted": stat, "se": se, "log_sd_per_network": float(np.sqrt(s2))}


def monte_carlo(config, claimed_ratio=0.5, claimed_sigma=None, edgeworth_c=None, asymmetric_kind=None,
                clt_limit=0.5, clt_rate=0.5, halved_gain=0.5):
    """Part 1 with few non-Gaussian terms; part 2 over widths; deep networks."""
    import numpy as np
    claimed_sigma = claimed_sigma or (lambda d: np.sqrt(2 / d))
    checks, values = [], {}
    c1, values["part1"] = part1(config, claimed_ratio, asymmetric_kind or "centred_exponential")
    checks += c1

    rows = clt_simulation(config)
    c2, fit = check_clt(rows, config, edgeworth_c, clt_limit, clt_rate)
    checks += c2
    values["part2"] = {"rows": rows, "c": edgeworth_c, **fit,
                       "predicted": [predicted_ratio(r["width"], edgeworth_c) for r in rows]}

    d, L = config["deep_width"], config["deep_layers"]
    values["deep"] = {}
    for tag, (label, sig, gain) in enumerate((("the claimed sigma", claimed_sigma(d), 1.0),
                                              ("`sigma = sqrt(1/d)`", np.sqrt(1 / d), halved_gain))):
        factors = deep_networks(config, sig, tag)
        check, v = check_deep(factors, gain ** L, label, config)
        checks.append(check)
        geo = float(np.exp(np.mean(np.log(factors)) / L))
        values["deep"]["claimed" if tag == 0 else "sqrt(1/d)"] = {
            "factors": factors, "predicted": gain ** L, "mean_factor": float(np.mean(factors)),
            "per_layer_geometric": geo, **v}
    return checks, values


def run(config, ctx=None, claimed=None):
    """claimed: optional dict {second_moment, sigma (sympy), ratio (float), sigma_fn (numeric),
    edgeworth (sympy coefficient)} to check a DIFFERENT answer (the tests use it to show a wrong
    formula is caught)."""
    from hw2.cli import Outcome
    claimed = claimed or {}
    sym_checks, sym_values = symbolic(claimed.get("second_moment"), claimed.get("sigma"),
                                      claimed_edgeworth=claimed.get("edgeworth"))
    mc_checks, mc_values = monte_carlo(config, claimed.get("ratio", 0.5), claimed.get("sigma_fn"),
                                       edgeworth_c=sym_values["edgeworth"]["c_value"])
    checks = [{**c, "passed": bool(c["passed"])} for c in sym_checks + mc_checks]
    metrics = {"symbolic": sym_values, "monte_carlo": mc_values, "checks": checks,
               "all_checks_passed": all(c["passed"] for c in checks)}
    return Outcome(metrics=metrics, seed=config["seed"], figures=figures(mc_values))


def figures(mc_values):
    """Part 2: the ratio against the width, asymmetric and symmetric weights, with the prediction."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    p2 = mc_values["part2"]
    rows = p2["rows"]
    d = np.array([r["width"] for r in rows], dtype=float)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    dd = np.geomspace(d.min(), d.max(), 200)
    ax1.errorbar(d, [r["ratio"] for r in rows], yerr=[2 * r["se"] for r in rows], fmt="o", ms=4,
                 label="centred-exponential weights (zero mean, asymmetric)")
    ax1.errorbar(d, [r["ratio_symmetric"] for r in rows], yerr=[2 * r["se_symmetric"] for r in rows], fmt="s",
                 ms=4, label="uniform weights (symmetric)")
    ax1.plot(dd, predicted_ratio(dd, p2["c"]), "k--", lw=1, label=r"$1/2 + c/\sqrt{d}$")
    ax1.axhline(0.5, color="gray", lw=0.8)
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("width $d$ (terms in $u$)")
    ax1.set_ylabel(r"$\mathbb{E}[\mathrm{ReLU}(u)^2]\,/\,\mathbb{E}[u^2]$")
    ax1.legend(fontsize=8)
    dev = np.array([r["ratio"] - 0.5 for r in rows])
    ax2.errorbar(d, dev, yerr=[2 * r["se"] for r in rows], fmt="o", ms=4, label="simulated")
    ax2.plot(dd, p2["c"] / np.sqrt(dd), "k--", lw=1, label=r"$c/\sqrt{d}$ (Edgeworth)")
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("width $d$")
    ax2.set_ylabel(r"ratio $-\ 1/2$ (asymmetric weights)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return {"clt": fig}


if __name__ == "__main__":
    from hw2.cli import main
    sys.exit(main(name=NAME, profiles=PROFILES, run=run, source=__file__, kind="derivation"))
