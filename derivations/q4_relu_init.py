"""Q4: the ReLU initialisation sigma_l = sqrt(2 / d_{l-1}), checked symbolically and by Monte Carlo.

The lecture's rule keeps the pre-activations at unit second moment, layer after layer:
    E[u_l[i]^2] = sigma_l^2 * sum_j E[phi^2(u_{l-1}[j])] = 1   =>   sigma_l = 1 / sqrt(sum_j E[phi^2(u_{l-1}[j])])
(W_l entries i.i.d., zero mean, variance sigma_l^2, independent of u_{l-1}; no bias). Applying it at
layer l presumes the previous layer was normalised the same way: E[u_{l-1}[j]^2] = 1. For ReLU the
one fact needed is E[max(0,u)^2] = E[u^2] / 2, which gives sum_j = d_{l-1} / 2 and sigma_l = sqrt(2/d_{l-1}).
  Part 1 (symmetric u): u and -u have the same law, so the positive and negative halves of E[u^2] are equal.
  Part 2 (CLT, u ~ N(0, s^2)): the integral int_0^inf u^2 N(u; 0, s^2) du = s^2 / 2.

Checks, top to bottom:
  1. sympy: the Gaussian integral equals the CLAIMED second moment (s^2/2), and plugging it into the
     lecture's formula gives the CLAIMED sigma (sqrt(2/d)).
  2. sympy: the part-1 identity for two non-Gaussian symmetric laws (uniform, Laplace), and a zero-mean
     asymmetric law (centred exponential) for which it is false: symmetry, not Gaussianity, is what counts.
  3. Monte Carlo, part 1: u = sum_j W_j relu(v_j) with FEW terms (u far from Gaussian, measured by its
     excess kurtosis) and uniform / Laplace / Rademacher weights: E[relu(u)^2] / E[u^2] is 1/2 within
     4 standard errors; centred-exponential weights are detectably not 1/2.
  4. Monte Carlo, part 2: at width 512 with uniform weights u is close to Gaussian (kurtosis ~ 0).
  5. A deep ReLU network (uniform, non-Gaussian weights) initialised with the CLAIMED sigma keeps the
     pre-activation second moment's per-layer gain at 1; sqrt(1/d) (no factor 2) halves it per layer.
A wrong claimed formula (run(config, claimed=...)) fails checks 1 and 5: tests/test_init.py shows it.
"""
import sys

NAME = "q4_relu_init"
PROFILES = {"full": {
    "seed": 0,
    "mc_samples": 2_000_000,        # per distribution; standard error of the ratio ~ 1e-3
    "few_terms": 2,                 # terms in u for part 1: far from Gaussian on purpose
    "clt_width": 512,               # part 2's "large width"
    "clt_samples": 40_000,
    "deep_width": 512, "deep_layers": 50, "deep_batch": 256,
    "deep_tolerance": 0.05,         # |geometric-mean per-layer gain of E[u^2] - 1| allowed
    "z_sigmas": 4.0,                # Monte Carlo agreement: within this many standard errors
}}


def symbolic(claimed_second_moment=None, claimed_sigma=None):
    """sympy checks. claimed_*: sympy expressions in s (std of u) and d (width); defaults are the answer."""
    import sympy as sp

    u = sp.Symbol("u", real=True)
    s, b, c, d = sp.symbols("s b c d", positive=True)
    claimed_second_moment = s**2 / 2 if claimed_second_moment is None else claimed_second_moment
    claimed_sigma = sp.sqrt(2 / d) if claimed_sigma is None else claimed_sigma

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
    skewed = half_check(sp.exp(-(u + 1)), -1, sp.oo)

    checks = [
        {"check": "sympy: int_0^inf u^2 N(u;0,s^2) du equals the claimed E[relu(u)^2]",
         "passed": sp.simplify(relu2 - claimed_second_moment) == 0,
         "detail": [str(relu2), str(claimed_second_moment)]},
        {"check": "sympy: int_R u^2 N(u;0,s^2) du = s^2 (the normalisation the half is taken of)",
         "passed": sp.simplify(total - s**2) == 0, "detail": str(total)},
        {"check": "sympy: 1/sqrt(d * E[relu(u)^2]) at s=1 equals the claimed sigma_l",
         "passed": sp.simplify(sigma - claimed_sigma) == 0, "detail": [str(sigma), str(claimed_sigma)]},
        {"check": "sympy: Laplace(b) law: E[u^2 1(u>0)] / E[u^2] = 1/2",
         "passed": laplace[2] == sp.Rational(1, 2), "detail": [str(x) for x in laplace]},
        {"check": "sympy: Uniform(-c,c) law: E[u^2 1(u>0)] / E[u^2] = 1/2",
         "passed": uniform[2] == sp.Rational(1, 2), "detail": [str(x) for x in uniform]},
        {"check": "sympy: zero-mean ASYMMETRIC law (centred exponential): the ratio is not 1/2",
         "passed": skewed[2] != sp.Rational(1, 2), "detail": [str(x) for x in skewed]},
    ]
    values = {"gaussian_relu_second_moment": str(relu2), "sigma_l": str(sigma),
              "centred_exponential_ratio": float(skewed[2]), "centred_exponential_ratio_exact": str(skewed[2])}
    return checks, values


def weights(kind, shape, rng, std=1.0):
    """Zero-mean weights of a given standard deviation from several laws."""
    import numpy as np
    if kind == "uniform":
        return rng.uniform(-np.sqrt(3), np.sqrt(3), shape) * std
    if kind == "laplace":
        return rng.laplace(0.0, 1 / np.sqrt(2), shape) * std
    if kind == "rademacher":
        return rng.choice([-1.0, 1.0], shape) * std
    if kind == "centred_exponential":                     # zero mean, unit variance, skewed
        return (rng.exponential(1.0, shape) - 1.0) * std
    if kind == "gaussian":
        return rng.standard_normal(shape) * std
    raise ValueError(kind)


def ratio_stats(u):
    """E[relu(u)^2] / E[u^2] with its standard error (delta method), and u's excess kurtosis."""
    import numpy as np
    a, t = np.maximum(u, 0) ** 2, u ** 2
    r = a.mean() / t.mean()
    se = np.sqrt(np.var(a - r * t) / len(u)) / t.mean()
    kurt = np.mean((u - u.mean()) ** 4) / np.var(u) ** 2 - 3
    return float(r), float(se), float(kurt)


def monte_carlo(config, claimed_ratio=0.5, claimed_sigma=None):
    """Part 1 with few non-Gaussian terms; part 2 at large width; a deep network."""
    import numpy as np
    rng = np.random.default_rng(config["seed"])
    n, k, z = config["mc_samples"], config["few_terms"], config["z_sigmas"]
    claimed_sigma = claimed_sigma or (lambda d: np.sqrt(2 / d))
    checks, values = [], {"part1": {}, "part2": {}, "deep": {}, "deep_gain": {}}

    # Part 1: previous pre-activations v of an arbitrary (here skewed) law, relu'd, times symmetric W.
    v = rng.exponential(1.0, (n, k)) - 0.5
    for kind in ("uniform", "laplace", "rademacher", "centred_exponential"):
        u = (weights(kind, (n, k), rng) * np.maximum(v, 0)).sum(axis=1)
        r, se, kurt = ratio_stats(u)
        values["part1"][kind] = {"ratio": r, "se": se, "excess_kurtosis": kurt}
        if kind == "centred_exponential":
            checks.append({"check": f"Monte Carlo: zero-mean asymmetric weights, {k} terms: ratio is NOT 1/2 "
                                    f"(> {z} s.e. away) -- symmetry is needed",
                           "passed": abs(r - claimed_ratio) > z * se, "detail": [r, se]})
        else:
            checks.append({"check": f"Monte Carlo: symmetric {kind} weights, {k} terms (non-Gaussian u): "
                                    f"E[relu(u)^2]/E[u^2] = claimed within {z} s.e.",
                           "passed": abs(r - claimed_ratio) < z * se and abs(kurt) > 0.5,
                           "detail": [r, se, kurt]})

    # Part 2: a width-512 sum of uniform-weighted relu'd inputs is close to Gaussian.
    d = config["clt_width"]
    x = np.maximum(rng.exponential(1.0, (config["clt_samples"], d)) - 0.5, 0)
    w = weights("uniform", (config["clt_samples"], d), rng, std=claimed_sigma(d))
    u = (w * x).sum(axis=1)
    r, se, kurt = ratio_stats(u)
    values["part2"] = {"ratio": r, "se": se, "excess_kurtosis": kurt, "width": d}
    checks.append({"check": f"Monte Carlo: width {d}, uniform weights: u nearly Gaussian (|excess kurtosis| < 0.15) "
                            f"and ratio = claimed within {z} s.e.",
                   "passed": abs(kurt) < 0.15 and abs(r - claimed_ratio) < z * se, "detail": [r, se, kurt]})

    # A deep ReLU network with uniform weights: claimed sigma vs sqrt(1/d).
    d, depth, batch = config["deep_width"], config["deep_layers"], config["deep_batch"]
    for label, sig in (("claimed", claimed_sigma(d)), ("sqrt(1/d)", np.sqrt(1 / d))):
        rng_deep = np.random.default_rng(config["seed"] + 1)
        u = rng_deep.standard_normal((batch, d))            # layer-0 pre-activations, unit second moment
        moments = [float(np.mean(u ** 2))]
        for _ in range(depth):
            u = np.maximum(u, 0) @ weights("uniform", (d, d), rng_deep, std=sig).T
            moments.append(float(np.mean(u ** 2)))
        values["deep"][label] = moments
    # One network's E[u_L^2] random-walks in log space (log-std ~ sqrt(5 L / d) for ReLU), so the
    # sharp statement is about the per-layer gain m_l / m_{l-1}, whose mean over layers is ~1 +- 0.02.
    for label, moments in values["deep"].items():
        m = np.array(moments)
        # geometric mean of the per-layer gains = (m_L / m_0)^(1/L): what the depth compounds
        values["deep_gain"][label] = float(np.exp(np.mean(np.log(m[1:] / m[:-1]))))
    gain = values["deep_gain"]["claimed"]
    checks.append({"check": f"deep ReLU net ({depth} layers, width {d}, uniform weights) with the claimed sigma: "
                            f"geometric-mean per-layer gain of E[u^2] within {config['deep_tolerance']} of 1",
                   "passed": abs(gain - 1) < config["deep_tolerance"], "detail": gain})
    halved = values["deep_gain"]["sqrt(1/d)"]
    checks.append({"check": "same net with sigma = sqrt(1/d): gain ~ 1/2 per layer (the factor 2 is needed)",
                   "passed": abs(halved - 0.5) < config["deep_tolerance"], "detail": halved})
    return checks, values


def run(config, ctx=None, claimed=None):
    """claimed: optional dict {second_moment, sigma (sympy), ratio (float), sigma_fn (numeric)}
    to check a DIFFERENT answer (the tests use it to show a wrong formula is caught)."""
    from hw2.cli import Outcome
    claimed = claimed or {}
    sym_checks, sym_values = symbolic(claimed.get("second_moment"), claimed.get("sigma"))
    mc_checks, mc_values = monte_carlo(config, claimed.get("ratio", 0.5), claimed.get("sigma_fn"))
    checks = [{**c, "passed": bool(c["passed"])} for c in sym_checks + mc_checks]
    metrics = {"symbolic": sym_values, "monte_carlo": mc_values, "checks": checks,
               "all_checks_passed": all(c["passed"] for c in checks)}
    return Outcome(metrics=metrics, seed=config["seed"])


if __name__ == "__main__":
    from hw2.cli import main
    sys.exit(main(name=NAME, profiles=PROFILES, run=run, source=__file__, kind="derivation"))
