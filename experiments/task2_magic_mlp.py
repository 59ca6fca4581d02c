"""Task 2: an MLP for the MAGIC gamma telescope data, tuned honestly on validation, beside two baselines.

Top to bottom:
  1. load magic04.data through the data layer (validated, the assignment's column names);
  2. split 70/10/20, stratified and seeded, over *groups* of identical rows: the file holds 115 exact
     duplicate pairs, and a pair split across train and test would leak; grouping keeps every row;
  3. fit the pre-processing on the training part only (standardise, quantile->normal, or Yeo-Johnson
     power transform; the choice is a tuned hyperparameter, so validation decides); labels g->0, h->1;
  4. logistic regression on train+val, test accuracy;
  5. TensorDatasets/DataLoaders (the training loop itself slices whole tensors with a shuffled index:
     a DataLoader's per-sample collation would cost more than the tiny MLP's arithmetic);
  6. Optuna (TPE sampler, median pruning on per-epoch validation accuracy) tunes the MLP's depth,
     width, activation, dropout, weight decay, optimizer, learning rate, schedule, batch size, epochs
     and input transform; the best configuration is retrained on train+val with 5 seeds and
     evaluated once on test;
  7. the same configuration retrained with two other torch.nn.init initializations;
  and a HistGradientBoostingClassifier tuned lightly on the same validation set.

The study lives in a SQLite file under the ignored .cache/ by default; `--storage URL` takes any
SQLAlchemy URL (e.g. postgresql://...), and `--worker` processes pointed at the same URL and study
add trials to it, which is how the search scales past one machine:

    python -m experiments.task2_magic_mlp --profile full                      # the committed result
    python -m experiments.task2_magic_mlp --worker --storage URL --trials 50  # extra workers
"""
import os
import socket
import sys
import time

NAME = "task2_magic_mlp"

# Search space shared by both profiles (lists are categorical choices, pairs are ranges).
SPACE = {
    "transform": ["standard", "quantile", "power"],
    "n_layers": [1, 4],
    "width": [64, 128, 256],
    "activation": ["relu", "silu", "gelu", "leaky_relu"],
    "dropout": [0.0, 0.3],
    "weight_decay": [1e-6, 1e-2],          # log scale
    "optimizer": ["adamw", "sgd"],
    "lr_adamw": [3e-4, 1e-2],              # log scale
    "lr_sgd": [1e-2, 3e-1],                # log scale, Nesterov momentum 0.9
    "schedule": ["onecycle", "cosine"],    # both anneal to ~0, so the last epoch is a settled model
    "batch_size": [256, 512, 1024],
    "epochs": [10, 40],
}
# A hand-made reference configuration, enqueued once per input transform as the first trials: a
# controlled comparison of the transforms on validation (part 3), and a good start for TPE.
REFERENCE_TRIAL = {"transform": "quantile", "n_layers": 3, "width": 128, "activation": "silu",
               "dropout": 0.1, "weight_decay": 1e-4, "optimizer": "adamw", "lr_adamw": 3e-3,
               "schedule": "onecycle", "batch_size": 512, "epochs": 30}

PROFILES = {
    "smoke": {
        "split": [0.7, 0.1, 0.2], "split_seed": 0, "threads": 1,
        "space": {**SPACE, "n_layers": [1, 2], "width": [16, 32], "epochs": [2, 3]},
        "reference_trial": {**REFERENCE_TRIAL, "n_layers": 1, "width": 16, "epochs": 2},
        "n_trials": 3, "objective_epochs": 2, "sampler_seed": 0, "tpe_startup_trials": 2,
        "pruner_startup_trials": 3, "pruner_warmup_epochs": 1,
        "final_seeds": [0, 1], "inits": ["default", "xavier_uniform", "kaiming_normal"],
        "init_seeds": [0],
        "hgb_grid": {"learning_rate": [0.1], "max_leaf_nodes": [15], "max_iter": [50],
                     "l2_regularization": [0.0]},
        "logreg_max_iter": 1000, "bar": 0.0,
    },
    "full": {
        "split": [0.7, 0.1, 0.2], "split_seed": 0, "threads": 1,
        "space": SPACE, "reference_trial": REFERENCE_TRIAL,
        "n_trials": 100, "objective_epochs": 3, "sampler_seed": 0, "tpe_startup_trials": 10,
        "pruner_startup_trials": 8, "pruner_warmup_epochs": 5,
        "final_seeds": [0, 1, 2, 3, 4], "inits": ["default", "xavier_uniform", "kaiming_normal"],
        "init_seeds": [0, 1, 2, 3, 4],
        "hgb_grid": {"learning_rate": [0.05, 0.1], "max_leaf_nodes": [15, 31, 63],
                     "max_iter": [300], "l2_regularization": [0.0, 1.0]},
        "logreg_max_iter": 1000, "bar": 0.88,
    },
}

# --- 1-3: data, split, pre-processing ------------------------------------------------------------


def labels(df):
    """g (gamma, signal) -> 0, h (hadron, background) -> 1, as plain int."""
    import numpy as np
    return (df["class"] == "h").to_numpy().astype(int)


def duplicate_groups(df):
    """One id per distinct row: the two copies of an exact duplicate share an id."""
    return df.groupby(list(df.columns), sort=False).ngroup().to_numpy()


def split_magic(df, fractions=(0.7, 0.1, 0.2), seed=0):
    """Row indices of train/val/test: stratified by class, seeded, whole duplicate groups per side.

    Splitting the distinct rows (groups) and then expanding each group to its rows keeps all 19,020
    rows while no duplicate sits on both sides. Each split's indices are shuffled (the file is sorted
    by class)."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    y, groups = labels(df), duplicate_groups(df)
    uniq, first = np.unique(groups, return_index=True)
    gy = y[first]                                     # exact duplicates share the class too
    train_g, rest = train_test_split(uniq, train_size=fractions[0], stratify=gy, random_state=seed)
    val_g, test_g = train_test_split(rest, train_size=fractions[1] / (fractions[1] + fractions[2]),
                                     stratify=gy[np.searchsorted(uniq, rest)], random_state=seed)
    rng = np.random.default_rng(seed)
    return {name: rng.permutation(np.flatnonzero(np.isin(groups, g)))
            for name, g in (("train", train_g), ("val", val_g), ("test", test_g))}


def leaked_duplicates(df, parts: dict) -> int:
    """How many distinct rows appear in more than one part (must be 0)."""
    import numpy as np
    groups = duplicate_groups(df)
    sets = [set(groups[idx]) for idx in parts.values()]
    return sum(len(a & b) for i, a in enumerate(sets) for b in sets[i + 1:])


def make_transform(kind: str):
    """The pre-processing candidates; each is fitted on the training part only."""
    from sklearn.preprocessing import PowerTransformer, QuantileTransformer, StandardScaler
    if kind == "standard":
        return StandardScaler()
    if kind == "quantile":   # ranks -> standard normal: kills the heavy tails of fLength, fSize, fAlpha
        return QuantileTransformer(n_quantiles=1000, output_distribution="normal", random_state=0)
    if kind == "power":      # Yeo-Johnson, then zero mean / unit variance
        return PowerTransformer(method="yeo-johnson", standardize=True)
    raise ValueError(f"unknown transform {kind!r}")


def prepare(df, parts, fit_on, kind):
    """Float32 arrays for every part, the transform fitted on the rows of `fit_on` (a tuple of parts)."""
    import numpy as np
    from hw2.data import MAGIC_FEATURES
    X = df[MAGIC_FEATURES].to_numpy(np.float64)
    y = labels(df)
    fit_idx = np.concatenate([parts[p] for p in fit_on])
    t = make_transform(kind).fit(X[fit_idx])
    out = {"fit": (t.transform(X[fit_idx]).astype(np.float32), y[fit_idx])}
    for p, idx in parts.items():
        if p not in fit_on:
            out[p] = (t.transform(X[idx]).astype(np.float32), y[idx])
    return out


# --- 6-7: the MLP, its training loop, and initializations ----------------------------------------


def build_mlp(n_in, n_layers, width, activation, dropout, init="default"):
    """[Linear -> activation -> Dropout] x n_layers -> Linear(1): one logit for BCEWithLogitsLoss."""
    import torch.nn as nn
    acts = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "leaky_relu": nn.LeakyReLU}
    layers, d = [], n_in
    for _ in range(n_layers):
        layers += [nn.Linear(d, width), acts[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        d = width
    layers.append(nn.Linear(d, 1))
    model = nn.Sequential(*layers)
    init_weights(model, init, activation)
    return model


def init_weights(model, init: str, activation: str = "relu"):
    """Re-initialize every nn.Linear; 'default' keeps PyTorch's (Kaiming-uniform, a=sqrt(5))."""
    import torch.nn as nn
    if init == "default":
        return model
    nonlin = "leaky_relu" if activation == "leaky_relu" else "relu"
    for m in model.modules():
        if isinstance(m, nn.Linear):
            if init == "xavier_uniform":       # Glorot: keeps variance for fan_in + fan_out
                nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain(nonlin))
            elif init == "kaiming_normal":     # He: variance 2/fan_in for ReLU-like units
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity=nonlin)
            else:
                raise ValueError(f"unknown init {init!r}")
            nn.init.zeros_(m.bias)
    return model


def make_optimizer(params, hp):
    import torch
    if hp["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
    return torch.optim.SGD(params, lr=hp["lr"], momentum=0.9, nesterov=True,
                           weight_decay=hp["weight_decay"])


def make_scheduler(opt, hp, steps_per_epoch):
    import torch
    total = hp["epochs"] * steps_per_epoch
    if hp["schedule"] == "onecycle":   # warm-up then cosine anneal to ~0: large steps early, fine at the end
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp["lr"], total_steps=total)
    if hp["schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    raise ValueError(f"unknown schedule {hp['schedule']!r}")


def evaluate(model, x, y, loss_fn):
    """(mean loss, accuracy) of a model on whole tensors, in eval mode."""
    import torch
    model.eval()
    with torch.no_grad():
        logits = model(x).squeeze(1)
        return loss_fn(logits, y).item(), ((logits > 0).float() == y).float().mean().item()


def train_mlp(hp, train, evals=None, seed=0, init="default", device="cpu", trial=None,
              monitor="val", desc="epochs"):
    """Train one MLP with hyperparameters hp on train=(x, y) tensors; evaluate on evals each epoch.

    The optimizer is built from this model's own parameters. With an Optuna trial, the accuracy on
    evals[monitor] is reported every epoch and the trial is pruned when the pruner says so.
    Returns (model, optimizer, history) with per-epoch losses and accuracies."""
    import torch
    from hw2.progress import bar

    evals = evals or {}
    torch.manual_seed(seed)
    model = build_mlp(train[0].shape[1], hp["n_layers"], hp["width"], hp["activation"],
                      hp["dropout"], init).to(device)
    opt = make_optimizer(model.parameters(), hp)
    n, bs = len(train[0]), hp["batch_size"]
    steps = (n + bs - 1) // bs
    sched = make_scheduler(opt, hp, steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(seed)
    x, y = train
    history = {"train_loss": [], "train_acc": []} | {f"{k}_{m}": [] for k in evals for m in ("loss", "acc")}
    for epoch in bar(range(hp["epochs"]), desc=desc):
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        total_loss, correct = 0.0, 0.0
        for i in range(0, n, bs):             # whole-tensor slicing: no per-sample collation
            idx = perm[i:i + bs]
            xb, yb = x[idx], y[idx]
            logits = model(xb).squeeze(1)
            loss = loss_fn(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
            correct += ((logits.detach() > 0).float() == yb).sum().item()
        history["train_loss"].append(total_loss / n)
        history["train_acc"].append(correct / n)
        for k, (xe, ye) in evals.items():
            l, a = evaluate(model, xe, ye, loss_fn)
            history[f"{k}_loss"].append(l)
            history[f"{k}_acc"].append(a)
        if trial is not None:
            import optuna
            trial.report(history[f"{monitor}_acc"][-1], epoch)
            if trial.should_prune():
                trial.set_user_attr("history", history)
                raise optuna.TrialPruned()
    return model, opt, history


def tensors(arrays, device="cpu"):
    import torch
    x, y = arrays
    return torch.from_numpy(x).to(device), torch.from_numpy(y.astype("float32")).to(device)


# --- the Optuna study ----------------------------------------------------------------------------


def suggest(trial, space):
    """One point of the search space (the learning-rate range depends on the optimizer)."""
    hp = {
        "transform": trial.suggest_categorical("transform", space["transform"]),
        "n_layers": trial.suggest_int("n_layers", *space["n_layers"]),
        "width": trial.suggest_categorical("width", space["width"]),
        "activation": trial.suggest_categorical("activation", space["activation"]),
        "dropout": trial.suggest_float("dropout", *space["dropout"]),
        "weight_decay": trial.suggest_float("weight_decay", *space["weight_decay"], log=True),
        "optimizer": trial.suggest_categorical("optimizer", space["optimizer"]),
        "schedule": trial.suggest_categorical("schedule", space["schedule"]),
        "batch_size": trial.suggest_categorical("batch_size", space["batch_size"]),
        "epochs": trial.suggest_int("epochs", *space["epochs"]),
    }
    key = f"lr_{hp['optimizer']}"
    hp["lr"] = trial.suggest_float(key, *space[key], log=True)
    return hp


def hp_from_params(params):
    hp = {k: v for k, v in params.items() if not k.startswith("lr_")}
    hp["lr"] = params[f"lr_{params['optimizer']}"]
    return hp


class Objective:
    """Validation accuracy of a model trained on the training part, averaged over its last epochs.

    The mean over the last `objective_epochs` epochs (2 in smoke, 3 in full) damps the epoch-to-epoch
    jitter, so TPE chases a little less noise; the kept model is still the last epoch's."""

    def __init__(self, df, parts, config, device):
        self.df, self.parts, self.config, self.device = df, parts, config, device
        self.data = {}                        # transform -> tensors, fitted on train only

    def tensors_for(self, kind):
        if kind not in self.data:
            d = prepare(self.df, {k: self.parts[k] for k in ("train", "val")}, ("train",), kind)
            self.data[kind] = (tensors(d["fit"], self.device), tensors(d["val"], self.device))
        return self.data[kind]

    def __call__(self, trial):
        hp = suggest(trial, self.config["space"])
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        train, val = self.tensors_for(hp["transform"])
        _, _, history = train_mlp(hp, train, {"val": val}, seed=0, device=self.device, trial=trial,
                                  desc=f"trial {trial.number}")
        trial.set_user_attr("history", history)
        return sum(history["val_acc"][-self.config["objective_epochs"]:]) / self.config["objective_epochs"]


def open_study(config, storage_url, study_name, fresh):
    """Create (or join) the study. SQLite waits up to a minute for a lock held by another worker."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kwargs = {"connect_args": {"timeout": 60}} if storage_url.startswith("sqlite") else {}
    if storage_url.startswith("sqlite:///"):
        from pathlib import Path
        Path(storage_url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    from sqlalchemy.exc import DBAPIError
    for attempt in range(10):
        try:   # two workers creating the tables of a fresh database at once: one loses, retries
            storage = optuna.storages.RDBStorage(storage_url, engine_kwargs=kwargs)
            break
        except DBAPIError:         # OperationalError or IntegrityError from the race
            if attempt == 9:
                raise
            time.sleep(0.2 + 0.3 * attempt)
    if fresh:
        try:
            optuna.delete_study(study_name=study_name, storage=storage)
        except KeyError:
            pass
    sampler = optuna.samplers.TPESampler(seed=config["sampler_seed"], multivariate=True,
                                         n_startup_trials=config["tpe_startup_trials"])
    pruner = optuna.pruners.MedianPruner(n_startup_trials=config["pruner_startup_trials"],
                                         n_warmup_steps=config["pruner_warmup_epochs"])
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize",
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    return study


def default_storage(work_dir) -> str:
    return f"sqlite:///{(work_dir / 'optuna' / (NAME + '.db')).resolve()}"


def default_study_name(profile, config) -> str:
    from hw2.results import config_hash
    return f"{NAME}-{profile}-{config_hash(config)[:8]}"


def optimize(study, objective, n_trials):
    from hw2.progress import bar
    pbar = bar(total=n_trials, desc="optuna trials")

    def tick(study, trial):
        pbar.update(1)
        try:
            pbar.set_postfix(best=f"{study.best_value:.4f}")
        except ValueError:
            pass
    study.optimize(objective, n_trials=n_trials, callbacks=[tick], gc_after_trial=False)
    pbar.close()


# --- the baselines -------------------------------------------------------------------------------


def logistic_regression(df, parts, kind, max_iter):
    """Trained on train+val (the assignment's one exception), scored on test."""
    from sklearn.linear_model import LogisticRegression
    d = prepare(df, parts, ("train", "val"), kind)
    model = LogisticRegression(solver="lbfgs", max_iter=max_iter).fit(*d["fit"])
    return model.score(*d["test"])


def hist_gradient_boosting(df, parts, grid):
    """Grid over a few settings, chosen by validation accuracy, refitted on train+val, scored on test.

    Trees need no scaling (monotone transforms leave their splits unchanged), so raw features go in.
    No early stopping: every fit is deterministic."""
    import itertools
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from hw2.data import MAGIC_FEATURES
    X, y = df[MAGIC_FEATURES].to_numpy(np.float64), labels(df)
    tr, va, te = parts["train"], parts["val"], parts["test"]
    keys = sorted(grid)
    rows = []
    for values in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values))
        m = HistGradientBoostingClassifier(early_stopping=False, random_state=0, **params)
        rows.append({"params": params, "val_accuracy": m.fit(X[tr], y[tr]).score(X[va], y[va])})
    best = max(rows, key=lambda r: r["val_accuracy"])
    trva = np.concatenate([tr, va])
    m = HistGradientBoostingClassifier(early_stopping=False, random_state=0, **best["params"])
    test_acc = m.fit(X[trva], y[trva]).score(X[te], y[te])
    return {"best_params": best["params"], "val_accuracy": best["val_accuracy"],
            "test_accuracy": test_acc, "grid_size": len(rows)}


# --- the run -------------------------------------------------------------------------------------


def run(config, ctx):
    import numpy as np
    import optuna
    import torch
    from hw2.cli import Outcome
    from hw2.data import load_magic

    torch.set_num_threads(config["threads"])   # tiny matrices: one thread wastes least on a shared CPU
    load_start = os.getloadavg()[0]
    timings = {}
    t0 = time.perf_counter()

    # 1-2: data and split
    df = load_magic()
    parts = split_magic(df, config["split"], config["split_seed"])
    y = labels(df)
    checks = [
        {"check": "no duplicate row on two sides of the split",
         "passed": leaked_duplicates(df, parts) == 0, "detail": leaked_duplicates(df, parts)},
        {"check": "the three parts hold every row exactly once",
         "passed": sorted(np.concatenate(list(parts.values())).tolist()) == list(range(len(df)))},
    ]
    split_sizes = {k: int(len(v)) for k, v in parts.items()}
    split_h_share = {k: float(y[v].mean()) for k, v in parts.items()}

    # 3 (part): logistic regression on validation for each transform, as a linear-model view
    from sklearn.linear_model import LogisticRegression
    logreg_val = {}
    for kind in config["space"]["transform"]:
        d = prepare(df, {k: parts[k] for k in ("train", "val")}, ("train",), kind)
        logreg_val[kind] = LogisticRegression(max_iter=config["logreg_max_iter"]).fit(*d["fit"]).score(*d["val"])

    # 6: the study
    t = time.perf_counter()
    storage_url = ctx.args.storage or default_storage(ctx.work_dir)
    study_name = ctx.args.study_name or default_study_name(ctx.profile, config)
    study = open_study(config, storage_url, study_name, fresh=not (ctx.args.storage or ctx.args.resume))
    if not study.trials:                                 # parameter names as suggest() uses them
        for kind in config["space"]["transform"]:
            study.enqueue_trial({**config["reference_trial"], "transform": kind},
                                user_attrs={"reference": True})
    n_trials = ctx.args.trials if ctx.args.trials is not None else config["n_trials"]
    optimize(study, Objective(df, parts, config, ctx.device), n_trials)
    timings["optuna_s"] = time.perf_counter() - t
    states = [tr.state.name for tr in study.trials]
    best = study.best_trial
    hp = hp_from_params(best.params)
    trials = [{"number": tr.number, "state": tr.state.name, "value": tr.value,
               "epochs_run": len(tr.intermediate_values), "params": tr.params,
               "reference": bool(tr.user_attrs.get("reference")),
               "worker": tr.user_attrs.get("worker")} for tr in study.trials]
    reference = {tr["params"]["transform"]: tr["value"] for tr in trials
                 if tr["reference"] and tr["state"] == "COMPLETE"}
    per_transform = {k: max([tr["value"] for tr in trials if tr["state"] == "COMPLETE"
                             and tr["params"]["transform"] == k] or [None])   # None: never completed
                     for k in config["space"]["transform"]}

    # 4: logistic regression on train+val with the transform validation chose
    logreg_test = logistic_regression(df, parts, hp["transform"], config["logreg_max_iter"])

    # 6: retrain the best configuration on train+val, test once per seed
    t = time.perf_counter()
    d = prepare(df, parts, ("train", "val"), hp["transform"])
    trainval, test = tensors(d["fit"], ctx.device), tensors(d["test"], ctx.device)
    finals, logits = [], []
    for seed in config["final_seeds"]:
        model, _, hist = train_mlp(hp, trainval, {"test": test}, seed=seed, device=ctx.device,
                                   desc=f"final seed {seed}")
        finals.append({"seed": seed, "test_accuracy": hist["test_acc"][-1], "history": hist})
        with torch.no_grad():
            logits.append(model.eval()(test[0]).squeeze(1))
    ensemble = ((torch.stack(logits).mean(0) > 0).float() == test[1]).float().mean().item()
    accs = [f["test_accuracy"] for f in finals]
    timings["final_s"] = time.perf_counter() - t

    # 7: two other initializations, same hyperparameters, same seeds
    t = time.perf_counter()
    init_accs = {}
    for init in config["inits"]:
        init_accs[init] = []
        for seed in config["init_seeds"]:
            if init == "default" and seed in config["final_seeds"]:
                init_accs[init].append(accs[config["final_seeds"].index(seed)])
                continue
            _, _, hist = train_mlp(hp, trainval, {"test": test}, seed=seed, init=init,
                                   device=ctx.device, desc=f"{init} seed {seed}")
            init_accs[init].append(hist["test_acc"][-1])
    timings["inits_s"] = time.perf_counter() - t

    # the gradient-boosting baseline
    t = time.perf_counter()
    hgb = hist_gradient_boosting(df, parts, config["hgb_grid"])
    timings["hgb_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0

    mean, std = float(np.mean(accs)), float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0
    if ctx.profile == "full":
        checks.append({"check": f"MLP test accuracy mean >= {config['bar']}", "passed": mean >= config["bar"],
                       "detail": mean})
    metrics = {
        "split_sizes": split_sizes,
        "split_h_share": split_h_share,
        "duplicate_rows": int(len(df) - len(np.unique(duplicate_groups(df)))),
        "duplicate_handling": "grouped",
        "logreg_val_accuracy_by_transform": logreg_val,
        "mlp_val_accuracy_by_transform": per_transform,
        "reference_val_accuracy_by_transform": reference,
        "reference_hyperparameters": hp_from_params(config["reference_trial"]),
        "chosen_transform": hp["transform"],
        "logreg_test_accuracy": logreg_test,
        "optuna_trials": len(study.trials),
        "optuna_states": {s: states.count(s) for s in sorted(set(states))},
        "optuna_workers": len({tr["worker"] for tr in trials}),
        "study_name": study_name,
        "storage": "sqlite (default, under .cache/)" if not ctx.args.storage else storage_url.split(":")[0],
        "best_trial": best.number,
        "best_val_accuracy": best.value,
        "best_hyperparameters": hp,
        "n_parameters": sum(p.numel() for p in build_mlp(10, hp["n_layers"], hp["width"],
                                                           hp["activation"], hp["dropout"]).parameters()),
        "test_accuracies": accs,
        "test_accuracy_mean": mean,
        "test_accuracy_std": std,
        "ensemble_test_accuracy": ensemble,
        "init_test_accuracy": {k: float(np.mean(v)) for k, v in init_accs.items()},
        "init_test_accuracies": init_accs,
        "hgb_test_accuracy": hgb["test_accuracy"],
        "hgb": hgb,
        "mlp_beats_hgb": mean > hgb["test_accuracy"],
        "timings_s": timings,
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "torch_threads": config["threads"],
        "checks": checks,
        "all_checks_passed": all(c["passed"] for c in checks),
    }
    extra = {"trials": trials, "best_trial_history": best.user_attrs.get("history"),
             "final_histories": [{"seed": f["seed"], **f["history"]} for f in finals]}
    return Outcome(metrics=metrics, figures=figures(extra, trials), extra=extra,
                   seed=config["final_seeds"][0])


def figures(extra, trials):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figs = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    best = extra["best_trial_history"]
    finals = extra["final_histories"]
    for ax, metric, label in ((axes[0], "loss", "BCE loss"), (axes[1], "acc", "accuracy")):
        if best:
            ep = np.arange(1, len(best["train_loss"]) + 1)
            ax.plot(ep, best[f"train_{metric}"], "C0--", label="tuning: train (train part)")
            ax.plot(ep, best[f"val_{metric}"], "C0-", label="tuning: validation")
        tr = np.array([f[f"train_{metric}"] for f in finals])
        te = np.array([f[f"test_{metric}"] for f in finals])
        ep = np.arange(1, tr.shape[1] + 1)
        ax.plot(ep, tr.mean(0), "C1--", label=f"final: train+val (mean of {len(finals)} seeds)")
        ax.plot(ep, te.mean(0), "C1-", label=f"final: test (mean of {len(finals)} seeds)")
        if len(finals) > 1:
            ax.fill_between(ep, te.min(0), te.max(0), color="C1", alpha=0.2)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    axes[0].set_title("loss per epoch")
    axes[1].set_title("accuracy per epoch")
    fig.tight_layout()
    figs["curves"] = fig

    fig, ax = plt.subplots(figsize=(6, 3.4))
    for state, style in (("COMPLETE", dict(c="C0", marker="o")), ("PRUNED", dict(c="C3", marker="x"))):
        pts = [(t["number"], t["value"]) for t in trials if t["state"] == state and t["value"] is not None]
        if pts:
            ax.scatter(*zip(*pts), s=18, label=state.lower(), **style)
    done = [(t["number"], t["value"]) for t in trials if t["state"] == "COMPLETE"]
    if done:
        n, v = zip(*done)
        ax.plot(n, np.maximum.accumulate(v), "k-", lw=1, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    shown = [t["value"] for t in trials if t["value"] is not None]
    ax.set_ylim(max(min(shown or [0.8]) - 0.005, 0.8), None)   # a few diverged trials would squash the rest
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    figs["optuna"] = fig
    return figs


# --- command line --------------------------------------------------------------------------------


def add_arguments(parser):
    parser.add_argument("--storage", default=None,
                        help="SQLAlchemy URL of the Optuna storage (default: SQLite under .cache/optuna/); "
                             "with a URL the study is joined, never wiped")
    parser.add_argument("--study-name", default=None, help="default: task2_magic_mlp-<profile>-<config hash>")
    parser.add_argument("--trials", type=int, default=None, help="trials this process runs (default: the profile's)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the default SQLite study's earlier trials instead of starting afresh")


def worker_main(argv=None) -> int:
    """`--worker`: only run trials in a shared study (no final training, no result file)."""
    import argparse
    from pathlib import Path
    from hw2.errors import UserError
    from hw2.paths import CACHE
    p = argparse.ArgumentParser(prog=f"python -m experiments.{NAME} --worker",
                                description="Add Optuna trials to a shared study.")
    p.add_argument("--worker", action="store_true")
    p.add_argument("--profile", choices=sorted(PROFILES), default="full")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--out", type=Path, default=None, help="only decides the default storage folder")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        import torch
        from hw2.cli import resolve_device
        from hw2.data import load_magic
        config = PROFILES[args.profile]
        torch.set_num_threads(config["threads"])
        storage = args.storage or default_storage((args.out / "work") if args.out else CACHE)
        name = args.study_name or default_study_name(args.profile, config)
        study = open_study(config, storage, name, fresh=False)
        df = load_magic()
        parts = split_magic(df, config["split"], config["split_seed"])
        n = args.trials if args.trials is not None else config["n_trials"]
        optimize(study, Objective(df, parts, config, resolve_device(args.device)), n)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{NAME} worker {socket.gethostname()}:{os.getpid()}: study {name} now has {len(study.trials)} trials")
    return 0


if __name__ == "__main__":
    if "--worker" in sys.argv[1:]:
        sys.exit(worker_main(sys.argv[1:]))
    from hw2.cli import main
    sys.exit(main(name=NAME, profiles=PROFILES, run=run, source=__file__, kind="experiment",
                  add_arguments=add_arguments))
