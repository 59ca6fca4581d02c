"""Task 1: unit-normal weights explode, 1/sqrt(fan_in) fixes a linear net, Xavier suits tanh, Kaiming suits ReLU.

The assignment's setting: x in R^512 ~ N(0, I), 100 layers of 512 units, a fresh weight matrix `a` per
layer, `x = act(a @ x)`, seed 211 set exactly as the assignment's first cell sets it. Every part
re-seeds (torch.manual_seed(211)) before drawing, here and in the report's cells, so each part's
numbers do not depend on which cells ran before: the report's notebook prints these same numbers.
All draws happen on the CPU (CUDA's generator gives other numbers), whatever --device says.

  part 1  unit-normal weights, no activation: where x first holds inf and NaN (torch.isnan/isinf)
  part 2  10,000 products y = a @ x: mean, sqrt(mean of mean(y^2)) (the assignment's std), sqrt(512)
  part 3  weights / sqrt(fan_in)                       part 4  unit-normal weights + tanh
  part 5  xavier_init (uniform) + tanh                 part 6  kaiming_init (normal, fan_in) + ReLU,
                                                               and xavier_init + ReLU
Going beyond: every layer's activation std and the std of the gradient flowing back
(L = <g, x_100>, g ~ N(0, I)), for seed 211 and a band over more seeds, against the mean-field
prediction of Q4's recursion  Var(u_l) = fan_in * sigma^2 * E[phi(u_{l-1})^2]  (u Gaussian by the CLT).
"""
import math
import sys
import warnings

NAME = "task1_init"
PROFILES = {
    "smoke": {"seed": 211, "width": 512, "layers": 100, "n_products": 150, "std_tolerance": 0.03,
              "band_seeds": 1, "band_first_seed": 1000, "grad_seed": 0},
    "full": {"seed": 211, "width": 512, "layers": 100, "n_products": 10_000, "std_tolerance": 0.01,
             "band_seeds": 20, "band_first_seed": 1000, "grad_seed": 0},
}


# ----- the initialisations (the same expressions as the report's cells, so the draws are identical)
def xavier_init(fan_in, fan_out):
    """Xavier (Glorot) uniform: U(-b, b) with b = sqrt(6 / (fan_in + fan_out)), shaped (fan_out, fan_in)."""
    import torch
    bound = math.sqrt(6 / (fan_in + fan_out))
    return torch.empty(fan_out, fan_in).uniform_(-bound, bound)


def kaiming_init(fan_in, fan_out):
    """Kaiming (He) normal, fan_in mode, for ReLU: N(0, 2 / fan_in), shaped (fan_out, fan_in)."""
    import torch
    std = math.sqrt(2 / fan_in)
    return torch.empty(fan_out, fan_in).normal_(0, std)


def normal_init(fan_in, fan_out):
    import torch
    return torch.randn(fan_out, fan_in)                       # part 1: torch.randn(512, 512)


def scaled_init(fan_in, fan_out):
    import torch
    return torch.randn(fan_out, fan_in) / math.sqrt(fan_in)   # part 3: torch.randn(512, 512) / math.sqrt(512)


# variant -> (init, activation name, weight variance times fan_in, the assignment part it answers)
VARIANTS = {
    "normal":       (normal_init, None, lambda n: n, "1"),
    "scaled":       (scaled_init, None, lambda n: 1.0, "3"),
    "normal_tanh":  (normal_init, "tanh", lambda n: n, "4"),
    "scaled_tanh":  (scaled_init, "tanh", lambda n: 1.0, "4 (scaled weights)"),
    "xavier_tanh":  (xavier_init, "tanh", lambda n: 2 * n / (n + n), "5"),
    "kaiming_relu": (kaiming_init, "relu", lambda n: 2.0, "6"),
    "xavier_relu":  (xavier_init, "relu", lambda n: 2 * n / (n + n), "6 (Xavier + ReLU)"),
}
LABELS = {"normal": "N(0,1), linear", "scaled": "N(0,1)/sqrt(512), linear", "normal_tanh": "N(0,1) + tanh",
          "scaled_tanh": "N(0,1)/sqrt(512) + tanh", "xavier_tanh": "Xavier + tanh",
          "kaiming_relu": "Kaiming + ReLU", "xavier_relu": "Xavier + ReLU"}


def activation_fn(name):
    import torch
    return {None: None, "tanh": torch.tanh, "relu": torch.relu}[name]


def network(variant, cfg, seed, grad_seed=None):
    """Part 1's loop with the variant's init and activation. Returns the output and per-layer stats;
    with grad_seed, also backpropagates L = <g, x_L> and returns each layer's gradient std."""
    import torch
    init, act, _, _ = VARIANTS[variant]
    act = activation_fn(act)
    n = cfg["width"]
    torch.manual_seed(seed)
    x = torch.randn(n)
    if grad_seed is not None:
        x.requires_grad_(True)
    xs = [x]
    for i in range(cfg["layers"]):
        a = init(n, n)
        x = a @ x
        if act is not None:
            x = act(x)
        if grad_seed is not None:
            x.retain_grad()
        xs.append(x)
    grad_std = None
    if grad_seed is not None:
        g = torch.randn(n, generator=torch.Generator().manual_seed(grad_seed))   # own generator: no effect on seed 211
        (x * g).sum().backward()
        grad_std = [finite(t.grad.std()) for t in xs]
    return x.detach(), [finite(t.detach().std()) for t in xs], grad_std


def finite(t):
    """A tensor scalar as a float, or None for inf/NaN (JSON has no NaN)."""
    v = float(t)
    return v if math.isfinite(v) else None


def locate_overflow(cfg, seed):
    """Part 1 again, checking every layer's output for inf and NaN."""
    import torch
    torch.manual_seed(seed)
    x = torch.randn(cfg["width"])
    first_inf = first_nan = None
    counts, max_abs = {}, []
    for i in range(cfg["layers"]):
        a = torch.randn(cfg["width"], cfg["width"])
        x = a @ x
        if first_inf is None and torch.isinf(x).any():
            first_inf, counts["inf_at_first_inf"] = i, int(torch.isinf(x).sum())
            counts["nan_at_first_inf"] = int(torch.isnan(x).sum())
        if first_nan is None and torch.isnan(x).any():
            first_nan, counts["nan_at_first_nan"] = i, int(torch.isnan(x).sum())
        max_abs.append(finite(x[torch.isfinite(x)].abs().max()) if torch.isfinite(x).any() else None)
    return first_inf, first_nan, counts, max_abs


def products(cfg, seed):
    """Part 2: n_products draws of (a, x), y = a @ x; the assignment's std is sqrt(mean over draws of mean(y^2))."""
    import torch
    torch.manual_seed(seed)
    n = cfg["width"]
    mean, sq = 0.0, 0.0
    for i in range(cfg["n_products"]):
        x = torch.randn(n)
        a = torch.randn(n, n)
        y = a @ x
        mean += y.mean().item()
        sq += y.pow(2).mean().item()
    return mean / cfg["n_products"], math.sqrt(sq / cfg["n_products"])


def predict(variant, cfg):
    """Mean-field prediction: u_l ~ N(0, v_l), v_l = fan_in sigma^2 E[x_{l-1}^2]; x_l = phi(u_l).
    Forward: std of x_l. Backward: Var(dL/dx_{l-1}) = fan_out sigma^2 E[phi'(u_l)^2] Var(dL/dx_l)."""
    import numpy as np
    _, act, gain, _ = VARIANTS[variant]
    n = cfg["width"]
    z = np.linspace(-12, 12, 96_001)
    w = np.exp(-z**2 / 2)
    w /= w.sum()
    phi = {None: lambda u: u, "tanh": np.tanh, "relu": lambda u: np.maximum(u, 0)}[act]
    dphi = {None: lambda u: np.ones_like(u), "tanh": lambda u: 1 / np.cosh(np.clip(u, -300, 300))**2,
            "relu": lambda u: (u > 0).astype(float)}[act]
    m2, std, v = 1.0, [1.0], []
    for _ in range(cfg["layers"]):
        v.append(gain(n) * m2)                 # fan_in * sigma^2 = gain
        u = np.sqrt(v[-1]) * z
        m1, m2 = float(w @ phi(u)), float(w @ phi(u)**2)
        std.append(math.sqrt(max(m2 - m1**2, 0.0)))
    g2, grad = 1.0, [1.0]
    for vl in reversed(v):
        g2 *= gain(n) * float(w @ dphi(np.sqrt(vl) * z)**2)   # square weights: fan_out = fan_in
        grad.append(math.sqrt(g2))
    return std, grad[::-1]


def check_inits(xavier=None, kaiming=None):
    """Our inits (or the given ones) against torch.nn.init under the same seed, on a non-square layer."""
    import torch
    xavier, kaiming = xavier or xavier_init, kaiming or kaiming_init
    fan_in, fan_out = 300, 200
    torch.manual_seed(0)
    ours = xavier(fan_in, fan_out)
    torch.manual_seed(0)
    ref = torch.nn.init.xavier_uniform_(torch.empty(fan_out, fan_in))
    torch.manual_seed(0)
    ours_k = kaiming(fan_in, fan_out)
    torch.manual_seed(0)
    ref_k = torch.nn.init.kaiming_normal_(torch.empty(fan_out, fan_in), mode="fan_in", nonlinearity="relu")
    bound = math.sqrt(6 / (fan_in + fan_out))
    return [
        {"check": "xavier_init(300, 200) draws exactly torch.nn.init.xavier_uniform_'s weights (same seed)",
         "passed": ours.shape == ref.shape and bool(torch.equal(ours, ref)), "detail": [float(ours.abs().max()), bound]},
        {"check": "kaiming_init(300, 200) draws exactly torch.nn.init.kaiming_normal_(fan_in, relu)'s weights",
         "passed": ours_k.shape == ref_k.shape and bool(torch.equal(ours_k, ref_k)), "detail": [float(ours_k.std()), math.sqrt(2 / fan_in)]},
    ], {"xavier_bound_300_200": bound, "xavier_max_abs_300_200": float(ours.abs().max()),
        "xavier_var_300_200": float(ours.var()), "xavier_var_theory": 2 / (fan_in + fan_out),
        "kaiming_std_300": float(ours_k.std()), "kaiming_std_theory": math.sqrt(2 / fan_in)}


def run(config, ctx=None):
    import numpy as np
    import torch
    from hw2.cli import Outcome
    from hw2.progress import bar

    seed, n, L = config["seed"], config["width"], config["layers"]
    checks, init_values = check_inits()

    # Part 1: the given cell, then locating the overflow.
    first_inf, first_nan, counts, max_abs = locate_overflow(config, seed)
    f32max = float(torch.finfo(torch.float32).max)
    metrics = {
        "first_inf_loop_index": first_inf, "first_inf_layer": None if first_inf is None else first_inf + 1,
        "first_nan_loop_index": first_nan, "first_nan_layer": None if first_nan is None else first_nan + 1,
        **counts,
        "max_abs_before_overflow": max_abs[first_inf - 1] if first_inf else None,
        "float32_max": f32max,
        "predicted_overflow_layer": 2 * math.log(f32max) / math.log(n),   # sqrt(n)^l = float32 max
    }
    checks.append({"check": "part 1: the unit-normal network's output contains NaN and the layer is located",
                   "passed": first_nan is not None, "detail": first_nan})

    # Part 2.
    emp_mean, emp_std = products(config, seed)
    metrics.update({"n_products": config["n_products"], "empirical_mean": emp_mean, "empirical_std": emp_std,
                    "sqrt_fan_in": math.sqrt(n), "empirical_std_rel_error": emp_std / math.sqrt(n) - 1})
    checks.append({"check": f"part 2: empirical std within {config['std_tolerance']:.0%} of sqrt({n})",
                   "passed": abs(emp_std / math.sqrt(n) - 1) < config["std_tolerance"], "detail": emp_std})

    # Parts 1, 3-6 at seed 211 (with gradients), then a band over more seeds.
    parts, act_std, grad_std, pred, band = {}, {}, {}, {}, {}
    for v in bar(VARIANTS, desc="variants"):
        x, act_std[v], grad_std[v] = network(v, config, seed, grad_seed=config["grad_seed"])
        p_act, p_grad = predict(v, config)
        pred[v] = {"act_std": p_act, "grad_std": p_grad}
        parts[v] = {"part": VARIANTS[v][3], "label": LABELS[v],
                    "mean": finite(x.mean()), "std": finite(x.std()), "printed": f"{str(x.mean())} {str(x.std())}",
                    "predicted_std": p_act[-1], "grad_std_input": grad_std[v][0],
                    "predicted_grad_std_input": p_grad[0]}
        if VARIANTS[v][1] == "tanh":
            parts[v]["saturated_fraction"] = float((x.abs() > 0.99).float().mean())
            parts[v]["mean_saturated_fraction"] = None
        if VARIANTS[v][1] == "relu":
            parts[v]["zero_fraction"] = float((x == 0).float().mean())
        runs = [network(v, config, s, grad_seed=config["grad_seed"] + s)
                for s in range(config["band_first_seed"], config["band_first_seed"] + config["band_seeds"])]
        band[v] = {}
        for key, idx in (("act_std", 1), ("grad_std", 2)):
            arr = np.array([[np.nan if y is None else y for y in r[idx]] for r in runs], dtype=float)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                q = np.nanquantile(np.log10(arr), [0.1, 0.5, 0.9], axis=0) if np.isfinite(arr).any() else None
            band[v][key] = None if q is None else [[None if not np.isfinite(t) else float(t) for t in row] for row in q]
        finals = [r[1][-1] for r in runs if r[1][-1] is not None]
        squares = [float(r[0].pow(2).mean()) for r in runs]
        parts[v]["mean_square"] = finite(x.pow(2).mean())
        parts[v]["band_mean_of_mean_square"] = float(np.mean(squares)) if all(map(math.isfinite, squares)) else None
        if grad_std[v][0] is None:   # the layer (counting down from L) where the backward pass overflowed
            parts[v]["grad_overflow_layer"] = max(i for i, t in enumerate(grad_std[v]) if t is None)
        # Per-layer factor of the gradient's std going back, measured (over the finite stretch) and predicted.
        lo = parts[v].get("grad_overflow_layer", -1) + 1
        k = L - lo
        parts[v]["grad_factor_per_layer"] = ((grad_std[v][lo] / grad_std[v][L]) ** (1 / k)
                                             if k > 0 and grad_std[v][lo] else None)
        parts[v]["predicted_grad_factor_per_layer"] = (p_grad[lo] / p_grad[L]) ** (1 / k) if k > 0 else None
        parts[v]["band_final_std"] = ({"median": float(np.median(finals)), "min": float(min(finals)),
                                       "max": float(max(finals)), "n": len(finals)} if finals else None)
    # Saturation of the tanh layers (fraction of units with |x| > 0.99, over all 100 layers, seed 211).
    for v in ("normal_tanh", "scaled_tanh", "xavier_tanh"):
        torch.manual_seed(seed)
        x, sat = torch.randn(n), []
        for i in range(L):
            x = torch.tanh(VARIANTS[v][0](n, n) @ x)
            sat.append(float((x.abs() > 0.99).float().mean()))
        parts[v]["mean_saturated_fraction"] = float(np.mean(sat))

    metrics.update({"parts": parts, **init_values, "computed_on": "cpu"})
    metrics["checks"] = checks
    metrics["all_checks_passed"] = all(c["passed"] for c in checks)
    extra = {"act_std": act_std, "grad_std": grad_std, "predicted": pred, "band_log10": band,
             "overflow_max_abs": max_abs}
    return Outcome(metrics=metrics, figures=figures(act_std, grad_std, pred, band, config), extra=extra, seed=seed)


def figures(act_std, grad_std, pred, band, cfg):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    colors = dict(zip(VARIANTS, plt.get_cmap("tab10").colors))
    layers = np.arange(cfg["layers"] + 1)
    out = {}
    for key, title, ylabel in (("act_std", "Forward: std of the activations x_l", "std of x_l (log scale)"),
                               ("grad_std", "Backward: std of the gradient dL/dx_l, L = <g, x_100>",
                                "std of dL/dx_l (log scale)")):
        fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1.25, 1]})
        series = act_std if key == "act_std" else grad_std
        for ax, ylim in zip(axes, ((1e-20, 1e45), (1e-2, 1e1))):
            for v in VARIANTS:
                y = np.array([np.nan if t is None else t for t in series[v]], dtype=float)
                ax.plot(layers, y, color=colors[v], lw=1.8, label=LABELS[v])
                ax.plot(layers, pred[v][key], color=colors[v], lw=1.0, ls="--")
                b = band[v][key]
                if b is not None:
                    lo, hi = (np.array([np.nan if t is None else 10**t for t in row]) for row in (b[0], b[2]))
                    ax.fill_between(layers, lo, hi, color=colors[v], alpha=0.15, lw=0)
            ax.set_yscale("log")
            ax.set_ylim(*ylim)
            ax.set_xlim(0, cfg["layers"])
            ax.set_xlabel("layer l (0 = input)" if key == "act_std" else "layer l (gradient flows from l = 100 down to 0)")
            ax.grid(alpha=0.3, which="major")
        axes[0].axhline(np.finfo(np.float32).max, color="k", lw=0.8, ls=":")
        axes[0].text(1, 1e39, "float32 max", fontsize=8)
        axes[0].set_ylabel(ylabel)
        axes[0].legend(fontsize=8, ncol=2, loc="lower left")
        axes[1].set_title("zoom on 0.01 to 10", fontsize=10)
        fig.suptitle(title + "\nsolid: seed 211; band: 10-90% over "
                     f"{cfg['band_seeds']} other seeds; dashed: mean-field prediction (Q4's recursion)", fontsize=10)
        fig.tight_layout()
        out["activations" if key == "act_std" else "gradients"] = fig
    return out


if __name__ == "__main__":
    from hw2.cli import main
    sys.exit(main(name=NAME, profiles=PROFILES, run=run, source=__file__, kind="experiment"))
