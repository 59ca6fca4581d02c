"""Task 2 (MAGIC MLP): split without duplicate leaks, train-only pre-processing, initializations,
the training loop, the smoke profile end to end, and two workers sharing one SQLite Optuna study."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import task2_magic_mlp as T


@pytest.fixture(scope="module")
def magic():
    from hw2.data import load_magic
    return load_magic()


@pytest.fixture(scope="module")
def parts(magic):
    return T.split_magic(magic, (0.7, 0.1, 0.2), seed=0)


def test_labels_are_int_g0_h1(magic):
    y = T.labels(magic)
    assert y.dtype.kind == "i"
    assert y[(magic["class"] == "g").to_numpy()].max() == 0
    assert y[(magic["class"] == "h").to_numpy()].min() == 1
    assert y.sum() == 6688


def test_split_sizes_stratified_and_complete(magic, parts):
    sizes = {k: len(v) for k, v in parts.items()}
    assert sum(sizes.values()) == len(magic) == 19020
    for k, frac in zip(("train", "val", "test"), (0.7, 0.1, 0.2)):
        assert abs(sizes[k] / len(magic) - frac) < 0.005, sizes
    share = T.labels(magic).mean()
    for k, idx in parts.items():
        assert abs(T.labels(magic)[idx].mean() - share) < 0.005, k
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(len(magic)))
    again = T.split_magic(magic, (0.7, 0.1, 0.2), seed=0)
    assert all((again[k] == parts[k]).all() for k in parts)          # seeded


def test_duplicates_never_cross_the_split_and_the_check_catches_a_naive_split(magic, parts):
    assert len(magic) - len(np.unique(T.duplicate_groups(magic))) == 115
    assert T.leaked_duplicates(magic, parts) == 0
    # a plain row-level split leaks some of the 115 pairs: the check must see it
    from sklearn.model_selection import train_test_split
    idx = np.arange(len(magic))
    tr, te = train_test_split(idx, test_size=0.3, stratify=T.labels(magic), random_state=0)
    assert T.leaked_duplicates(magic, {"train": tr, "test": te}) > 0


@pytest.mark.parametrize("kind", ["standard", "quantile", "power"])
def test_preprocessing_is_fitted_on_train_only(magic, parts, kind):
    d = T.prepare(magic, parts, ("train",), kind)
    # changing the test rows wildly must not change how train and val are transformed
    shaken = magic.copy()
    cols = shaken.columns[:10]
    shaken.loc[parts["test"], cols] = shaken.loc[parts["test"], cols] * 100 + 5
    d2 = T.prepare(shaken, parts, ("train",), kind)
    np.testing.assert_array_equal(d["fit"][0], d2["fit"][0])
    np.testing.assert_array_equal(d["val"][0], d2["val"][0])
    assert d["fit"][0].dtype == np.float32
    # a leaky transform fitted on every row would transform train differently (the check can fail)
    X = shaken[cols].to_numpy(np.float64)
    leaky = T.make_transform(kind).fit(X).transform(X[parts["train"]])
    assert not np.allclose(leaky, d["fit"][0], atol=1e-3)
    if kind == "standard":
        assert np.allclose(d["fit"][0].mean(0), 0, atol=1e-4)


def test_initializations_change_every_linear_layer():
    import torch
    torch.manual_seed(0)
    for init in ("xavier_uniform", "kaiming_normal"):
        torch.manual_seed(0)
        default = T.build_mlp(10, 3, 64, "relu", 0.1, "default")
        torch.manual_seed(0)
        other = T.build_mlp(10, 3, 64, "relu", 0.1, init)
        linears = [m for m in other.modules() if isinstance(m, torch.nn.Linear)]
        assert len(linears) == 4
        for a, b in zip([m for m in default.modules() if isinstance(m, torch.nn.Linear)], linears):
            assert not torch.equal(a.weight, b.weight)
            assert torch.count_nonzero(b.bias) == 0
    torch.manual_seed(0)
    he = T.build_mlp(10, 1, 4096, "relu", 0.0, "kaiming_normal")
    w = he[2].weight                                 # 1 x 4096 output layer, fan_in 4096
    assert abs(w.std().item() - (2 / 4096) ** 0.5) < 0.1 * (2 / 4096) ** 0.5


def _toy(n=2000, seed=0):
    import torch
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g)
    y = ((x[:, 0] * x[:, 1] + x[:, 2]) > 0).float()     # needs a hidden layer
    return x, y


HP = {"transform": "standard", "n_layers": 2, "width": 32, "activation": "relu", "dropout": 0.0,
      "weight_decay": 1e-4, "optimizer": "adamw", "lr": 3e-3, "schedule": "onecycle",
      "batch_size": 128, "epochs": 15}


def test_training_loop_learns_and_optimizer_owns_its_model():
    train, val = _toy(2000, 0), _toy(1000, 1)
    model, opt, hist = T.train_mlp(HP, train, {"val": val}, seed=0)
    assert hist["val_acc"][-1] > 0.9, hist["val_acc"]
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert len(hist["val_loss"]) == HP["epochs"]
    owned = {id(p) for g in opt.param_groups for p in g["params"]}
    assert owned == {id(p) for p in model.parameters()}
    # a second model with another init gets its own optimizer, not the first one's
    model2, opt2, _ = T.train_mlp({**HP, "epochs": 1}, train, seed=0, init="xavier_uniform")
    assert {id(p) for g in opt2.param_groups for p in g["params"]}.isdisjoint(owned)
    # same seed, same result
    _, _, hist2 = T.train_mlp(HP, train, {"val": val}, seed=0)
    assert hist2["val_acc"] == hist["val_acc"]


@pytest.mark.slow
def test_smoke_profile_end_to_end(tmp_path, root):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "experiments.task2_magic_mlp", "--profile", "smoke",
                           "--device", "cpu", "--out", str(tmp_path)], cwd=root,
                          capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads((tmp_path / "results" / "task2_magic_mlp.json").read_text())
    m = r["metrics"]
    for key in ("test_accuracy_mean", "test_accuracy_std", "test_accuracies", "logreg_test_accuracy",
                "hgb_test_accuracy", "init_test_accuracy", "split_sizes", "optuna_trials"):
        assert key in m, key
    assert len(m["test_accuracies"]) == len(T.PROFILES["smoke"]["final_seeds"])
    assert set(m["init_test_accuracy"]) == {"default", "xavier_uniform", "kaiming_normal"}
    assert sum(m["split_sizes"].values()) == 19020
    assert m["optuna_trials"] == T.PROFILES["smoke"]["n_trials"]
    # the reference configuration ran once with every transform (part 3's controlled comparison)
    assert set(m["reference_val_accuracy_by_transform"]) == {"standard", "quantile", "power"}
    assert m["all_checks_passed"]
    assert 0.7 < m["logreg_test_accuracy"] < 0.9 and 0.8 < m["hgb_test_accuracy"] < 0.95
    for suffix in ("curves", "optuna"):
        assert (tmp_path / "figures" / f"task2_magic_mlp_{suffix}.png").exists()
    assert r["wall_seconds"] < 30, f"smoke profile took {r['wall_seconds']:.1f} s (process {wall:.1f} s)"


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path, root):
    """Two processes pointed at one SQLite URL both add trials to the same study."""
    import optuna
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    cmd = [sys.executable, "-m", "experiments.task2_magic_mlp", "--worker", "--profile", "smoke",
           "--device", "cpu", "--storage", url, "--study-name", "shared", "--trials", "2"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    procs = [subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name="shared", storage=url)
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == 4
    workers = {t.user_attrs["worker"] for t in done}
    assert len(workers) == 2, workers
    assert {str(p.pid) for p in procs} == {w.rsplit(":", 1)[1] for w in workers}
    assert not (tmp_path / "results").exists()           # workers write no result file
