# %% [markdown]
# ---
# title: "Task 1 - The Importance of Activation and Initialization"
# jupyter: python3
# ---

# %% active="py"
#| include: false
# `python -m experiments.task1_init` hands this file to the project's runner, which executes it as a
# notebook in a fresh kernel and keeps the executed notebook, its results and its figures. In a
# kernel this cell does nothing; in a copy outside the project the file runs as a plain script.
import sys
if __name__ != "__main__":      # in a kernel too: importing a notebook must never run it
    raise ImportError(f"{__name__} is a notebook: run it (python -m {__name__}), do not import it")
if "ipykernel" not in sys.modules:
    try:
        from hw2.tasks import run_task
    except ImportError:
        pass
    else:
        sys.exit(run_task(__file__))

# %%
#| label: install
# Colab or a fresh Jupyter may lack a package this notebook imports: install only what is missing,
# at the versions of the run shown below. A package already there
# is left as it is, so our own runs install nothing.
import importlib.metadata
import importlib.util
import subprocess
import sys

REQUIREMENTS = {"torch": "torch==2.14.1", "numpy": "numpy==2.4.6", "matplotlib": "matplotlib==3.11.2"}  # module: pin


def install_missing(requirements, present, pip=lambda specs: subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "--quiet", *specs])):
    """Install (with pip) the pins of the modules in requirements that are not in present; return them."""
    missing = [spec for module, spec in requirements.items() if module not in present]
    if missing:
        pip(missing)
        importlib.invalidate_caches()
    return missing


present = {m for m in REQUIREMENTS if importlib.util.find_spec(m) is not None}
print("found:", ", ".join(f"{m} {importlib.metadata.version(REQUIREMENTS[m].split('==')[0])}"
                          for m in sorted(present)) or "none")
print("installed:", ", ".join(install_missing(REQUIREMENTS, present)) or "nothing (every package was there)")

# %% tags=["parameters"]
profile = "full"  # ["full" | "smoke"] "full": the run whose numbers the answers quote; "smoke": a quick check with fewer draws
out_dir = "."  # [str] the run saves its numbers and figures in folders under this one

# %% [markdown]
# The assignment's setting: $x\in\mathbb R^{512}$, 100 layers of 512 units, a fresh weight matrix
# `a` per layer, `x = a @ x` (then an activation, from part 4 on). Every part starts with
# `torch.manual_seed(seed)`, `seed = 211` as in the assignment's imports cell: right after that cell
# this changes nothing, and it makes each part's numbers independent of which cells ran before.
# All draws are on the CPU (CUDA's generator would give other numbers).

# %%
#| label: imports
# imports (the assignment's first cell, plus what this task uses)
import json
import math
import os
import platform

import matplotlib.pyplot as plt
import numpy as np
import torch

# %matplotlib inline
seed = 211
np.random.seed(seed)
torch.manual_seed(seed)

NAME = "task1_init"
PROFILES = {   # every setting of this task, in one place
    "smoke": {"width": 512, "layers": 100, "n_products": 200, "band_seeds": 2, "band_first_seed": 1000,
              "grad_seed": 0},
    "full": {"width": 512, "layers": 100, "n_products": 10_000, "band_seeds": 20, "band_first_seed": 1000,
             "grad_seed": 0},
}
if profile not in PROFILES:
    raise ValueError(f"profile must be one of {sorted(PROFILES)}, not {profile!r}")
CONFIG = {"profile": profile, "seed": seed, **PROFILES[profile]}
metrics = {}   # every number printed below, saved at the end for the answer PDF
print(f"seed = {seed}; settings of the {profile!r} profile: {PROFILES[profile]}")


def save_figure(fig, what):
    """Keep a figure as PNG (this notebook) and PDF (the answer PDF) under figures/."""
    os.makedirs(os.path.join(out_dir, "figures"), exist_ok=True)
    for ext in ("png", "pdf"):
        fig.savefig(os.path.join(out_dir, "figures", f"{NAME}_{what}.{ext}"), bbox_inches="tight", dpi=110)


# %% [markdown]
# ## 1. Unit-normal initialization
#
# The given cell:

# %%
#| label: task1-part1-given
torch.manual_seed(seed)
x = torch.randn(512)
for i in range(100):
    a = torch.randn(512, 512)
    x = a @ x
print(x.mean(), x.std())

# %% [markdown]
# Locating when it happens: the same draws again, checking every layer's output with
# `torch.isnan()` (and `torch.isinf()`, since the overflow to infinity comes first).

# %%
#| label: task1-part1-locate
torch.manual_seed(seed)
x = torch.randn(512)
first_inf = first_nan = None
largest = []                                  # largest finite |x| after each layer
for i in range(100):
    a = torch.randn(512, 512)
    x = a @ x
    if first_inf is None and torch.isinf(x).any():
        first_inf, inf_count = i, int(torch.isinf(x).sum())
    if first_nan is None and torch.isnan(x).any():
        first_nan, nan_count = i, int(torch.isnan(x).sum())
    finite = x[torch.isfinite(x)]
    largest.append(finite.abs().max().item() if len(finite) else float("nan"))
float32_max = torch.finfo(torch.float32).max
predicted = 2 * math.log(float32_max) / math.log(512)   # sqrt(512)^l reaches the float32 maximum
print(f"first NaN at loop index i = {first_nan}, i.e. in layer {first_nan + 1} of 100 "
      f"({nan_count} of 512 entries NaN)")
print(f"first inf at loop index i = {first_inf}, i.e. in layer {first_inf + 1} ({inf_count} entries inf)")
print(f"largest |x| entering that layer: {largest[first_inf - 1]:.3g}; float32 maximum: {float32_max:.3g}")
growth = (largest[first_inf - 1] / largest[0]) ** (1 / (first_inf - 1))   # geometric mean per layer
print(f"largest |x| grows {growth:.1f}-fold per layer before the overflow; sqrt(512) = {math.sqrt(512):.1f}")
print(f"predicted overflow: sqrt(512)^l = float32 max at l = {predicted:.1f}")
metrics.update(first_nan_loop_index=first_nan, first_nan_layer=first_nan + 1, nan_at_first_nan=nan_count,
               first_inf_loop_index=first_inf, first_inf_layer=first_inf + 1, inf_at_first_inf=inf_count,
               max_abs_before_overflow=largest[first_inf - 1], float32_max=float32_max,
               predicted_overflow_layer=predicted, max_abs_growth_per_layer=growth)

# %% [markdown]
# **What happens.** The output is NaN. Each layer multiplies the scale of $x$ by about
# $\sqrt{512}$ (the printed growth per layer; part 2 shows why), so after $l$ layers the entries are
# of order $512^{l/2}$. That passes the float32 maximum at the layer printed above as "predicted",
# and the printed first inf comes in that layer: some products $a_{ij}x_j$ become $\pm\infty$, and a
# row that sums
# a $+\infty$ and a $-\infty$ gives $\infty-\infty=$ NaN. From the next layer on every entry is NaN
# (any product with a NaN is NaN), which is what the given cell prints.

# %% [markdown]
# ## 2. The standard deviation of $ax$
#
# Each of the 10,000 draws takes a fresh $x\sim\mathcal N(0,I_{512})$ and a fresh unit-normal $a$,
# and accumulates the mean of $y=ax$ and $\frac1N\sum_j y_j^2$ with $N=512$ input connections:

# %%
#| label: task1-part2
torch.manual_seed(seed)
n_in, n_products = 512, CONFIG["n_products"]     # 10,000 in the full profile
mean, sq = 0.0, 0.0
for i in range(n_products):
    x = torch.randn(n_in)
    a = torch.randn(n_in, n_in)
    y = a @ x
    mean += y.mean().item()
    sq += y.pow(2).mean().item()      # (1/N) sum_j y_j^2
mean = mean / n_products
std = math.sqrt(sq / n_products)
print(f"over {n_products:,} draws: mean = {mean:.4f}, std = {std:.4f}, "
      f"sqrt(number of input connections) = sqrt(512) = {math.sqrt(n_in):.4f}")
print(f"relative difference of the std from sqrt(512): {std / math.sqrt(n_in) - 1:+.2%}; |mean| / std = {abs(mean) / std:.1e}")
metrics.update(n_products=n_products, empirical_mean=mean, empirical_std=std, sqrt_fan_in=math.sqrt(n_in),
               empirical_std_rel_error=std / math.sqrt(n_in) - 1)

# %% [markdown]
# The empirical standard deviation is $\sqrt{512}$ up to the printed relative difference:
# $y_i=\sum_{j=1}^{512}a_{ij}x_j$ is a sum of
# 512 independent terms with mean 0 and variance $\mathbb E[a_{ij}^2]\,\mathbb E[x_j^2]=1$, so
# $\mathrm{Var}(y_i)=512$. (The assignment's estimator averages $y^2$ without subtracting the sample
# mean; that is right here because the true mean is 0, and the printed $|\text{mean}|/\text{std}$ is
# tiny.) Repeated over layers, this factor $\sqrt{512}$ per layer is what overflowed in part 1.

# %% [markdown]
# ## 3. Scaling by $1/\sqrt{n_\text{in}}$

# %%
#| label: task1-part3
torch.manual_seed(seed)
x = torch.randn(512)
for i in range(100):
    a = torch.randn(512, 512) / math.sqrt(512)
    x = a @ x
print(x.mean(), x.std())

# %% [markdown]
# Now $\mathrm{Var}(a_{ij})=1/512$, so $\mathrm{Var}(y_i)=\frac1{512}\sum_j x_j^2$: every layer
# keeps the scale of $x$ instead of multiplying it by $\sqrt{512}$. After 100 layers the output has
# a mean near 0 and a std of order 1, with no overflow. (The scale is kept only on average: the log
# of the std does a random walk of about $\sqrt{2/512}$ per layer; the table at the end prints the
# range of the final std over other seeds.)
# Without an activation, though, the 100 layers are one linear map.

# %% [markdown]
# ## 4. Adding tanh
#
# The code from part 1 (unit-normal weights) with `tanh` after every layer:

# %%
#| label: task1-part4
torch.manual_seed(seed)
x = torch.randn(512)
saturated = []                                   # fraction of units with |x| > 0.99, per layer
pre_std = []                                     # std of the pre-activation a @ x, per layer
for i in range(100):
    a = torch.randn(512, 512)
    u = a @ x
    x = torch.tanh(u)
    saturated.append((x.abs() > 0.99).float().mean().item())
    pre_std.append(u.std().item())
print(x.mean(), x.std())
print(f"saturated units (|x| > 0.99): {np.mean(saturated):.1%} on average over the 100 layers, "
      f"{saturated[-1]:.1%} in the last one")
print(f"std of the pre-activations a @ x: {np.mean(pre_std[1:]):.1f} on average over layers 2-100")

# %% [markdown]
# **Explanation.** Nothing overflows any more, because tanh maps everything into $(-1,1)$. The
# healthy-looking std is a symptom, not a cure: the pre-activations $ax$ still have a std of about
# $\sqrt{512\,\mathbb E[x^2]}$ (printed), so tanh is **saturated** (the printed fraction of units
# with $|x|>0.99$). Each layer's output is essentially a vector of signs $\pm1$, whose std is close
# to 1 only because $\mathbb E[\tanh^2]\approx 1$. For training this is bad: $\tanh'(u)\approx 0$ at
# a saturated unit, so no gradient passes through it, while the few unsaturated units multiply the
# gradient by weights of size 1, so what does flow back explodes (the backward table and figure at
# the end of this task print its growth per layer). Gradient descent cannot train this network.
#
# If "the code from 1" is read as part 3's scaled weights, tanh gives:

# %%
#| label: task1-part4-scaled
torch.manual_seed(seed)
x = torch.randn(512)
for i in range(100):
    a = torch.randn(512, 512) / math.sqrt(512)
    x = torch.tanh(a @ x)
print(x.mean(), x.std())
print(f"q_l = 1/(2l) predicts std 1/sqrt(2 * 100) = {1 / math.sqrt(200):.3f} after the 100 layers")

# %% [markdown]
# Here the pre-activations stay small and tanh works in its near-linear range. But tanh contracts:
# $\tanh^2(u)\approx u^2-\tfrac23u^4$, so a layer maps the second moment $q$ to about $q-2q^2$ and
# $q_l\approx 1/(2l)$: after $l$ layers the std is about $1/\sqrt{2l}$ (the printed prediction; the
# table at the end says whether the measured std of other seeds spans it). The signal shrinks, but
# like $1/\sqrt l$, not exponentially.

# %% [markdown]
# ## 5. Xavier uniform with tanh

# %%
#| label: task1-part5
def xavier_init(fan_in, fan_out):
    """Xavier (Glorot) uniform: U(-b, b), b = sqrt(6 / (fan_in + fan_out)), shaped (fan_out, fan_in) like nn.Linear."""
    bound = math.sqrt(6 / (fan_in + fan_out))
    return torch.empty(fan_out, fan_in).uniform_(-bound, bound)


torch.manual_seed(seed)
x = torch.randn(512)
for i in range(100):
    a = xavier_init(512, 512)
    x = torch.tanh(a @ x)
print(x.mean(), x.std())

# %% [markdown]
# Uniform on $[-b,b]$ has variance $b^2/3=2/(n_\text{in}+n_\text{out})$, here $1/512$: the same
# variance as part 3's scaling, and Xavier's derivation assumes the regime tanh is in near 0 (slope
# 1). So the output keeps a mean near 0 and a std that decays only slowly (the $1/\sqrt{2l}$ of
# part 4's scaled variant), and tanh is not saturated. The gradient shrinks on its way back in the
# same way: $\tanh'(u)^2\approx 1-2u^2$ takes off about $2q_l\approx 1/l$ of its second moment per
# layer, so it too decays like a power of the depth, not exponentially. The backward table at the
# end prints its std at the input (next to its mean-field prediction): small, but many orders of
# magnitude above the exponential decay of Xavier with ReLU.

# %% [markdown]
# ## 6. Kaiming normal with ReLU

# %%
#| label: task1-part6-kaiming
def kaiming_init(fan_in, fan_out):
    """Kaiming (He) normal, fan_in mode, for ReLU: N(0, 2 / fan_in), shaped (fan_out, fan_in) like nn.Linear."""
    std = math.sqrt(2 / fan_in)
    return torch.empty(fan_out, fan_in).normal_(0, std)


torch.manual_seed(seed)
x = torch.randn(512)
for i in range(100):
    a = kaiming_init(512, 512)
    x = torch.relu(a @ x)
print(x.mean(), x.std())
print(f"zero units in the last layer: {(x == 0).float().mean().item():.1%}")

# %% [markdown]
# The signal neither explodes nor vanishes. This is Q4: ReLU zeroes half of each symmetric
# pre-activation's second moment ($\mathbb E[\mathrm{ReLU}(u)^2]=\mathbb E[u^2]/2$; about half of
# the units are 0), and $\sigma^2=2/n_\text{in}$ gives the factor 2 back. The mean is positive
# because ReLU's outputs are.
#
# **What happens with Xavier and ReLU:**

# %%
#| label: task1-part6-xavier
torch.manual_seed(seed)
x = torch.randn(512)
for i in range(100):
    a = xavier_init(512, 512)
    x = torch.relu(a @ x)
print(x.mean(), x.std())
print(f"halving E[x^2] in each of the 100 layers predicts a std 2^-50 = {2 ** -50:.1e} times the input's")

# %% [markdown]
# The output **vanishes**. Xavier's variance $1/512$ is right for an activation that keeps the whole
# second moment, but ReLU keeps half of it, so every layer halves $\mathbb E[x^2]$: after $l$ layers
# the std is about $2^{-l/2}$ times its start (printed: the prediction and the measured std). The
# gradient flowing back
# shrinks the same way, so the first layers would not learn.

# %% [markdown]
# ## Our initializations against `torch.nn.init`
#
# With the same seed, `xavier_init` and `kaiming_init` must draw exactly the weights of
# `torch.nn.init.xavier_uniform_` and `torch.nn.init.kaiming_normal_(mode="fan_in",
# nonlinearity="relu")`, on a non-square layer (300 inputs, 200 outputs) so that a swapped fan-in
# and fan-out would show.

# %%
#| label: task1-check-inits
fan_in, fan_out = 300, 200
torch.manual_seed(0)
ours_x = xavier_init(fan_in, fan_out)
torch.manual_seed(0)
ref_x = torch.nn.init.xavier_uniform_(torch.empty(fan_out, fan_in))
torch.manual_seed(0)
ours_k = kaiming_init(fan_in, fan_out)
torch.manual_seed(0)
ref_k = torch.nn.init.kaiming_normal_(torch.empty(fan_out, fan_in), mode="fan_in", nonlinearity="relu")
same_x = ours_x.shape == ref_x.shape and torch.equal(ours_x, ref_x)
same_k = ours_k.shape == ref_k.shape and torch.equal(ours_k, ref_k)
print(f"xavier_init(300, 200) == xavier_uniform_: {same_x}; max |w| {ours_x.abs().max():.5f} <= bound "
      f"{math.sqrt(6 / (fan_in + fan_out)):.5f}; variance {ours_x.var():.5f} vs 2/500 = {2 / 500:.5f}")
print(f"kaiming_init(300, 200) == kaiming_normal_(fan_in, relu): {same_k}; std {ours_k.std():.5f} vs "
      f"sqrt(2/300) = {math.sqrt(2 / 300):.5f}")
assert same_x and same_k, "our initializations differ from torch.nn.init's"
metrics.update(xavier_matches_torch=same_x, kaiming_matches_torch=same_k,
               xavier_bound_300_200=math.sqrt(6 / (fan_in + fan_out)),
               xavier_max_abs_300_200=ours_x.abs().max().item(), xavier_var_300_200=ours_x.var().item(),
               xavier_var_theory=2 / (fan_in + fan_out), kaiming_std_300=ours_k.std().item(),
               kaiming_std_theory=math.sqrt(2 / fan_in))

# %% [markdown]
# ## Going beyond: every layer, forward and backward
#
# The parts above print only the last layer. Below, every variant runs again with the std of each
# layer's output recorded, and the gradient of $L=\langle g, x_{100}\rangle$ ($g\sim\mathcal N(0,I)$,
# from its own generator) flowing back to the input: for seed 211 (the numbers printed above) and
# for other seeds (a band; the tables below print how many). Beside them, the mean-field prediction
# of Q4's recursion: the
# pre-activation $u_l$ is Gaussian by the central limit theorem, with variance
# $v_l=n_\text{in}\sigma^2\,\mathbb E[x_{l-1}^2]$, and backwards
# $\mathrm{Var}(\partial L/\partial x_{l-1})=n_\text{out}\sigma^2\,\mathbb E[\varphi'(u_l)^2]\,
# \mathrm{Var}(\partial L/\partial x_l)$.

# %%
#| label: task1-layers
def normal_init(fan_in, fan_out):
    return torch.randn(fan_out, fan_in)                        # part 1


def scaled_init(fan_in, fan_out):
    return torch.randn(fan_out, fan_in) / math.sqrt(fan_in)    # part 3


# variant -> (init, activation, fan_in * weight variance, label); in the order of the parts
VARIANTS = {
    "normal": (normal_init, None, 512.0, "N(0,1), linear"),
    "scaled": (scaled_init, None, 1.0, "N(0,1)/sqrt(512), linear"),
    "normal_tanh": (normal_init, torch.tanh, 512.0, "N(0,1) + tanh"),
    "scaled_tanh": (scaled_init, torch.tanh, 1.0, "N(0,1)/sqrt(512) + tanh"),
    "xavier_tanh": (xavier_init, torch.tanh, 1.0, "Xavier + tanh"),
    "kaiming_relu": (kaiming_init, torch.relu, 2.0, "Kaiming + ReLU"),
    "xavier_relu": (xavier_init, torch.relu, 1.0, "Xavier + ReLU"),
}


def finite(v):
    """A float, or None for inf/NaN (JSON has no NaN)."""
    v = float(v)
    return v if math.isfinite(v) else None


def layer_stats(variant, run_seed, grad_seed):
    """Part 1's loop with the variant's init and activation: the output, every layer's std, and the
    std of the gradient of L = <g, x_100> with respect to every layer's output."""
    init, act, _, _ = VARIANTS[variant]
    torch.manual_seed(run_seed)
    x = torch.randn(512, requires_grad=True)
    xs = [x]
    for i in range(CONFIG["layers"]):
        x = init(512, 512) @ x
        if act is not None:
            x = act(x)
        x.retain_grad()
        xs.append(x)
    g = torch.randn(512, generator=torch.Generator().manual_seed(grad_seed))
    (x * g).sum().backward()
    return x.detach(), [finite(t.detach().std()) for t in xs], [finite(t.grad.std()) for t in xs]


def mean_field(variant):
    """Q4's recursion for the std of x_l and of dL/dx_l (Gaussian u_l, expectations on a fine grid)."""
    _, act, gain, _ = VARIANTS[variant]
    z = np.linspace(-12, 12, 96_001)
    w = np.exp(-z ** 2 / 2)
    w /= w.sum()
    phi = {None: lambda u: u, torch.tanh: np.tanh, torch.relu: lambda u: np.maximum(u, 0)}[act]
    dphi = {None: np.ones_like, torch.tanh: lambda u: 1 / np.cosh(np.clip(u, -300, 300)) ** 2,
            torch.relu: lambda u: (u > 0).astype(float)}[act]
    m2, std, v = 1.0, [1.0], []
    for _ in range(CONFIG["layers"]):
        v.append(gain * m2)
        u = np.sqrt(v[-1]) * z
        m1, m2 = float(w @ phi(u)), float(w @ phi(u) ** 2)
        std.append(math.sqrt(max(m2 - m1 ** 2, 0.0)))
    g2, grad = 1.0, [1.0]
    for vl in reversed(v):
        g2 *= gain * float(w @ dphi(np.sqrt(vl) * z) ** 2)    # square layers: fan_out = fan_in
        grad.append(math.sqrt(g2))
    return std, grad[::-1]


# %%
#| label: task1-layers-run
band_seeds = range(CONFIG["band_first_seed"], CONFIG["band_first_seed"] + CONFIG["band_seeds"])
layers = {}
for v in VARIANTS:
    out, act_std, grad_std = layer_stats(v, seed, CONFIG["grad_seed"])
    band = [layer_stats(v, s, CONFIG["grad_seed"] + s) for s in band_seeds]
    predicted_act, predicted_grad = mean_field(v)
    layers[v] = {"act_std": act_std, "grad_std": grad_std, "predicted_act_std": predicted_act,
                 "predicted_grad_std": predicted_grad,
                 "band_act_std": [r[1] for r in band], "band_grad_std": [r[2] for r in band],
                 "band_mean_square": [finite(r[0].pow(2).mean()) for r in band],
                 "mean": finite(out.mean()), "std": finite(out.std()), "printed": f"{out.mean()} {out.std()}"}


def per_layer_factor(stds, lo):
    """Geometric-mean factor per layer by which a gradient's std changes on its way back from layer
    100 down to layer lo: (stds[lo] / stds[100]) ** (1 / (100 - lo))."""
    k = CONFIG["layers"] - lo
    return (stds[lo] / stds[-1]) ** (1 / k) if k > 0 and stds[lo] else None


def summary(v):
    """What the tables below print, for one variant (band: the other seeds' final std)."""
    r = layers[v]
    finals = [b[-1] for b in r["band_act_std"] if b[-1] is not None]
    band = {"median": float(np.median(finals)), "min": min(finals), "max": max(finals), "n": len(finals)} if finals else None
    overflow = max((i for i, t in enumerate(r["grad_std"]) if t is None), default=None)
    lo = 0 if overflow is None else overflow + 1        # after an overflow: from the first finite layer
    return {"predicted_std": r["predicted_act_std"][-1], "band_final_std": band,
            "predicted_inside_band": band is not None and band["min"] <= r["predicted_act_std"][-1] <= band["max"],
            "grad_std_input": r["grad_std"][0], "predicted_grad_std_input": r["predicted_grad_std"][0],
            "grad_overflow_layer": overflow, "grad_factor_per_layer": per_layer_factor(r["grad_std"], lo),
            "predicted_grad_factor_per_layer": per_layer_factor(r["predicted_grad_std"], lo)}


summaries = {v: summary(v) for v in VARIANTS}
fmt = lambda t, w=10: f"{t:{w}.3g}" if t is not None else f"{'overflow':>{w}s}"
print(f"Forward: the std of x_100 (seed {seed}; the final std of {CONFIG['band_seeds']} other seeds: median, min, max)")
print(f"{'variant':26s} {'seed ' + str(seed):>10s} {'mean-field':>10s} {'median':>10s} {'min':>10s} {'max':>10s}  mean-field in [min, max]")
for v, q in summaries.items():
    b = q["band_final_std"] or {}
    print(f"{VARIANTS[v][3]:26s} {fmt(layers[v]['std'])} {fmt(q['predicted_std'])} {fmt(b.get('median'))} "
          f"{fmt(b.get('min'))} {fmt(b.get('max'))}  {'yes' if q['predicted_inside_band'] else 'no'}")
print(f"\nBackward: the std of dL/dx_0 at the input, and the factor it changes by per layer on the way back "
      f"(from layer 100 down to the input, or to the first layer after an overflow)")
print(f"{'variant':26s} {'at input':>10s} {'mean-field':>10s} {'per layer':>10s} {'mean-field':>10s}  overflow in layer")
for v, q in summaries.items():
    print(f"{VARIANTS[v][3]:26s} {fmt(q['grad_std_input'])} {fmt(q['predicted_grad_std_input'])} "
          f"{fmt(q['grad_factor_per_layer'])} {fmt(q['predicted_grad_factor_per_layer'])}  "
          f"{q['grad_overflow_layer'] if q['grad_overflow_layer'] is not None else '-'}")

# %% [markdown]
# The printed seed-211 outputs are those of parts 1 and 3-6 again (the same draws). The figures
# show every layer:

# %%
#| label: task1-figures
colors = dict(zip(VARIANTS, plt.get_cmap("tab10").colors))
depth = np.arange(CONFIG["layers"] + 1)
for key, title in (("act", "Forward: std of the activations $x_l$"),
                   ("grad", "Backward: std of the gradient $\\partial L/\\partial x_l$, $L=\\langle g, x_{100}\\rangle$")):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.25, 1]})
    for ax, ylim in zip(axes, ((1e-20, 1e45), (1e-2, 1e1))):
        for v, r in layers.items():
            y = np.array([np.nan if t is None else t for t in r[f"{key}_std"]], dtype=float)
            ax.plot(depth, y, color=colors[v], lw=1.8, label=VARIANTS[v][3])
            ax.plot(depth, r[f"predicted_{key}_std"], color=colors[v], lw=1.0, ls="--")
            band = np.array([[np.nan if t is None else t for t in b] for b in r[f"band_{key}_std"]], dtype=float)
            # a layer where every seed overflowed has no band (a quantile of only NaNs is undefined)
            seen = np.isfinite(band).any(axis=0)
            lo, hi = np.full(len(depth), np.nan), np.full(len(depth), np.nan)
            if seen.any():
                lo[seen], hi[seen] = np.nanquantile(band[:, seen], [0.1, 0.9], axis=0)
                ax.fill_between(depth, lo, hi, color=colors[v], alpha=0.15, lw=0)
        ax.set_yscale("log")
        ax.set_ylim(*ylim)
        ax.set_xlim(0, CONFIG["layers"])
        ax.set_xlabel("layer l (0 = input)" if key == "act" else "layer l (the gradient flows from 100 down to 0)")
        ax.grid(alpha=0.3)
    axes[0].axhline(np.finfo(np.float32).max, color="k", lw=0.8, ls=":")
    axes[0].text(1, 1e39, "float32 max", fontsize=8)
    axes[0].set_ylabel("std (log scale)")
    axes[0].legend(fontsize=8, ncol=2, loc="lower left")
    axes[1].set_title("zoom on 0.01 to 10", fontsize=10)
    fig.suptitle(f"{title}\nsolid: seed 211; band: 10-90% over {CONFIG['band_seeds']} other seeds; "
                 "dashed: mean-field prediction (Q4's recursion)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, "activations" if key == "act" else "gradients")
    plt.show()

# %% [markdown]
# Unit-normal weights overflow forwards and, with tanh, backwards through the few unsaturated units;
# Xavier with ReLU halves $\mathbb E[x^2]$ per layer (forward) and the gradient's second moment per
# layer (backward); Kaiming with ReLU and the scaled linear network keep both scales of order 1;
# Xavier with tanh (like the scaled weights with tanh) shrinks both slowly, like $1/\sqrt l$. For
# ReLU, $\mathbb E[\varphi'(u)^2]=1/2$, so Kaiming's $\sigma^2=2/n$ keeps the gradient's scale as
# well when $n_\text{in}=n_\text{out}$. The tables above print every one of these numbers.

# %%
#| label: task1-save
# Save every number printed above (and the per-layer curves) for the answer PDF.
parts = {"normal": "1", "scaled": "3", "normal_tanh": "4", "scaled_tanh": "4 (scaled weights)",
         "xavier_tanh": "5", "kaiming_relu": "6", "xavier_relu": "6 (Xavier + ReLU)"}
metrics["parts"] = {}
for v, r in layers.items():
    squares = [s for s in r["band_mean_square"] if s is not None]
    metrics["parts"][v] = {
        "part": parts[v], "label": VARIANTS[v][3], "mean": r["mean"], "std": r["std"], "printed": r["printed"],
        **summaries[v],
        "band_mean_of_mean_square": float(np.mean(squares)) if len(squares) == len(r["band_mean_square"]) else None,
    }
metrics["parts"]["normal_tanh"].update(mean_saturated_fraction=float(np.mean(saturated)),
                                       saturated_fraction=saturated[-1],
                                       mean_preactivation_std=float(np.mean(pre_std[1:])))
metrics["parts"]["scaled_tanh"].update(predicted_std_one_over_sqrt_2l=1 / math.sqrt(200))
metrics["parts"]["xavier_relu"].update(predicted_ratio_2_pow_minus_50=2 ** -50)
checks = [
    {"check": "part 1: the NaN is located", "passed": first_nan is not None},
    {"check": "part 1: it comes in the layer where sqrt(512)^l passes the float32 maximum",
     "passed": first_inf + 1 == math.ceil(predicted)},
    {"check": "part 2: the empirical std is within 1% of sqrt(512) (3% in smoke)",
     "passed": abs(std / math.sqrt(512) - 1) < (0.01 if profile == "full" else 0.03)},
    {"check": "xavier_init and kaiming_init draw torch.nn.init's weights", "passed": same_x and same_k},
    {"check": "Kaiming + ReLU keeps the scale, Xavier + ReLU vanishes",
     "passed": layers["kaiming_relu"]["std"] > 0.1 and layers["xavier_relu"]["std"] < 1e-6},
]
metrics["checks"] = checks
metrics["all_checks_passed"] = all(c["passed"] for c in checks)
for c in checks:
    print(("ok      " if c["passed"] else "FAILED  ") + c["check"])
os.makedirs(os.path.join(out_dir, "results"), exist_ok=True)
with open(os.path.join(out_dir, "results", f"{NAME}.json"), "w") as f:
    json.dump({"config": CONFIG, "metrics": metrics,
               "environment": {"torch": torch.__version__, "device": f"cpu ({platform.machine()})"},
               "extra": {v: {k: r[k] for k in ("act_std", "grad_std", "predicted_act_std", "predicted_grad_std")}
                         for v, r in layers.items()}}, f, indent=1)
