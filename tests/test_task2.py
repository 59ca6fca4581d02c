"""Task 2 (MAGIC MLP): the split leaks no duplicate, pre-processing is fitted on training rows only,
initializations change every layer, the loop learns; the smoke execution end to end; workers share
one Optuna study; a search killed mid-trial resumes and reruns what it lost."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from notebook_cells import check_install_cell, printed_text, read_executed, run_cells

TASK = "task2_magic_mlp"


@pytest.fixture(scope="module")
def ns():
    from hw2.data import magic_path
    threads = torch.get_num_threads()
    out = run_cells(TASK, ["imports", "config", "task2-compare", "task2-load", "task2-split", "task2-preprocess",
                           "task2-tensors", "task2-model"], profile="smoke", device="cpu",
                    data_dir=str(magic_path().parent))
    torch.set_num_threads(threads)        # the imports cell pins one thread; the other tests want theirs
    return out


def test_labels_are_int_g0_h1(ns):
    y, data = ns["labels"](ns["data"]), ns["data"]
    assert y.dtype.kind == "i" and y.sum() == 6688
    assert y[(data["class"] == "g").to_numpy()].max() == 0 and y[(data["class"] == "h").to_numpy()].min() == 1


def test_split_sizes_stratified_complete_and_seeded(ns):
    data, parts = ns["data"], ns["parts"]
    sizes = {k: len(v) for k, v in parts.items()}
    assert sum(sizes.values()) == len(data) == 19020
    for k, frac in zip(("train", "val", "test"), (0.7, 0.1, 0.2)):
        assert abs(sizes[k] / len(data) - frac) < 0.005, sizes
        assert abs(ns["labels"](data)[parts[k]].mean() - ns["labels"](data).mean()) < 0.005
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(len(data)))
    again = ns["split_magic"](data, (0.7, 0.1, 0.2), seed=0)
    assert all((again[k] == parts[k]).all() for k in parts)


def test_duplicates_never_cross_the_split_and_a_naive_split_would_leak(ns):
    data = ns["data"]
    assert len(data) - len(np.unique(ns["duplicate_groups"](data))) == 115
    assert ns["leaked_duplicates"](data, ns["parts"]) == 0
    from sklearn.model_selection import train_test_split
    tr, te = train_test_split(np.arange(len(data)), test_size=0.3, stratify=ns["labels"](data), random_state=0)
    assert ns["leaked_duplicates"](data, {"train": tr, "test": te}) > 0     # the check can fail


@pytest.mark.parametrize("kind", ["standard", "quantile", "power"])
def test_preprocessing_is_fitted_on_train_only(ns, kind):
    data, parts = ns["data"], ns["parts"]
    d = ns["prepare"](data, parts, ("train",), kind)
    shaken = data.copy()
    cols = shaken.columns[:10]
    shaken.loc[parts["test"], cols] = shaken.loc[parts["test"], cols] * 100 + 5
    d2 = ns["prepare"](shaken, parts, ("train",), kind)
    np.testing.assert_array_equal(d["fit"][0], d2["fit"][0])
    np.testing.assert_array_equal(d["val"][0], d2["val"][0])
    X = shaken[cols].to_numpy(np.float64)           # a transform fitted on every row differs (can fail)
    assert not np.allclose(ns["make_transform"](kind).fit(X).transform(X[parts["train"]]), d["fit"][0], atol=1e-3)


def test_initializations_change_every_linear_layer(ns):
    for init in ("xavier_uniform", "kaiming_normal"):
        torch.manual_seed(0)
        default = ns["build_mlp"](10, 3, 64, "relu", 0.1, "default")
        torch.manual_seed(0)
        other = ns["build_mlp"](10, 3, 64, "relu", 0.1, init)
        pairs = list(zip([m for m in default.modules() if isinstance(m, torch.nn.Linear)],
                         [m for m in other.modules() if isinstance(m, torch.nn.Linear)]))
        assert len(pairs) == 4
        for a, b in pairs:
            assert not torch.equal(a.weight, b.weight) and torch.count_nonzero(b.bias) == 0
    torch.manual_seed(0)
    w = ns["build_mlp"](10, 1, 4096, "relu", 0.0, "kaiming_normal")[2].weight     # fan_in 4096
    assert abs(w.std().item() / (2 / 4096) ** 0.5 - 1) < 0.1


HP = {"transform": "standard", "n_layers": 2, "width": 32, "activation": "relu", "dropout": 0.0,
      "weight_decay": 1e-4, "optimizer": "adamw", "lr": 3e-3, "schedule": "onecycle", "batch_size": 128, "epochs": 15}


def _toy(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g)
    return x, ((x[:, 0] * x[:, 1] + x[:, 2]) > 0).float()      # needs a hidden layer


def test_training_loop_learns_and_is_seeded(ns):
    train, val = _toy(2000, 0), _toy(1000, 1)
    model, hist = ns["train_mlp"](HP, train, {"val": val}, seed=0)
    assert hist["val_acc"][-1] > 0.9 and hist["train_loss"][-1] < hist["train_loss"][0]
    assert len(hist["val_loss"]) == HP["epochs"]
    _, again = ns["train_mlp"](HP, train, {"val": val}, seed=0)
    assert again["val_acc"] == hist["val_acc"]


def test_install_cell_installs_only_what_is_missing():
    check_install_cell(TASK)
    assert "optuna" in run_cells(TASK, ["install"])["REQUIREMENTS"]          # what Colab lacks


@pytest.fixture(scope="module")
def gap():
    return run_cells(TASK, ["imports", "task2-compare"], profile="smoke")["accuracy_gap"]


def test_accuracy_gap_combines_seeds_and_binomial_error(gap):
    diff, se, verdict = gap(0.92, 0.8, 100)            # se = sqrt(0.92 * 0.08 / 100 + 0.8 * 0.2 / 100)
    assert abs(diff - 0.12) < 1e-12 and abs(se - (0.002336 ** 0.5)) < 1e-12 and verdict == "higher"
    assert gap(0.8, 0.92, 100)[2] == "lower" and gap(0.85, 0.8, 100)[2] == "within noise"
    diff, se, verdict = gap([0.8, 0.9], 0.85, 10 ** 12)   # seeds only: std 0.0707 / sqrt(2) = 0.05
    assert abs(diff) < 1e-12 and abs(se - 0.05) < 1e-6 and verdict == "within noise"
    torch.set_num_threads(os.cpu_count() or 1)


def test_settle_compares_the_last_epoch_with_the_best():
    settle = run_cells(TASK, ["imports", "task2-compare"], profile="smoke")
    torch.set_num_threads(os.cpu_count() or 1)
    rising = [[0.5, 0.3, 0.35], [0.5, 0.31, 0.36], [0.5, 0.29, 0.34]]
    epoch, d, se = settle["settle"](rising, lower_is_better=True)
    assert epoch == 2 and abs(d - 0.05) < 1e-12 and se < 0.01          # worse at the last epoch
    epoch, d, se = settle["settle"]([[0.8, 0.9, 0.89], [0.8, 0.88, 0.9]], lower_is_better=False)
    assert epoch == 3 and d == 0.0                                      # best at the last epoch


MARKDOWN_ROWS = {"n_layers": "hidden layers (n_layers)", "width": "width", "activation": "activation",
                 "transform": "input transform", "dropout": "dropout", "weight_decay": "weight decay",
                 "optimizer": "optimizer", "lr": "learning rate (peak)", "schedule": "schedule",
                 "batch_size": "batch size", "epochs": "epochs"}


def markdown_block():
    """{row name: (value, why)} of part 6's Markdown table (the cell after task2-evidence)."""
    import jupytext
    cells = jupytext.read(ROOT / "experiments" / f"{TASK}.py", fmt="py:percent").cells
    at = next(i for i, c in enumerate(cells) if "label: task2-evidence" in c.source)
    block = cells[at + 1]
    assert block.cell_type == "markdown" and "### The chosen architecture and hyperparameters" in block.source
    rows = [ln.strip().strip("|").split("|") for ln in block.source.splitlines() if ln.startswith("| ")]
    return {r[0].strip(): (r[1].strip(), r[2].strip()) for r in rows if len(r) == 3}


def test_markdown_block_describes_the_committed_best_trial(root):
    """Part 6's Markdown block repeats the full run's values: they must be the ones it printed."""
    m = json.loads((root / "results" / f"{TASK}.json").read_text())["metrics"]
    rows, hp = markdown_block(), m["best_hyperparameters"]
    for k, name in MARKDOWN_ROWS.items():
        shown = f"{hp[k]:.3g}" if isinstance(hp[k], float) else str(hp[k])
        assert rows[name][0].split(" ")[0] == shown, (k, rows[name][0], shown)
    arch = f"10 -> {' -> '.join([str(hp['width'])] * hp['n_layers'])} -> 1 logit, {m['n_parameters']:,} parameters"
    assert rows["architecture"][0].startswith(arch)
    assert all(why for _, why in rows.values())
    evidence = m.get("search_evidence")
    assert evidence is not None, "the committed run predates the search evidence cell: re-execute Task 2"
    for k, e in evidence.items():
        if "near_best_min" in e:
            assert f"{e['near_best_min']:.3g} to {e['near_best_max']:.3g}" in rows[MARKDOWN_ROWS[k]][1], k


def check_quoted_numbers_printed(nb, m):
    """Every number the report's Task 2 answer quotes is a printed line of the notebook."""
    text = printed_text(nb)
    pts = lambda g: f"{100 * g['diff']:+.2f} points, standard error {100 * g['se']:.2f} points"
    assert f"MLP - logistic regression: {pts(m['mlp_vs_logreg'])}" in text
    for kind, g in m["logreg_transform_gaps"].items():
        assert f"logistic regression, {m['logreg_transform']} - {kind}: {pts(g)}" in text and g["verdict"] in text
    assert f"MLP - gradient boosting: {pts(m['mlp_vs_hgb'])}" in text
    for init, g in m["init_vs_default"].items():
        assert f"{init} - default: {pts(g)}" in text
    assert f"n = {m['split_sizes']['test']}: {m['test_binomial_se']:.4f}" in text
    assert f"sample std {m['test_accuracy_std']:.4f}" in text
    assert f"{m['optuna_trials']} trials ({m['optuna_states']['PRUNED']} pruned)" in text
    assert f"near the best: {m['near_best_trials']} of {m['optuna_states']['COMPLETE']} completed trials" in text
    assert f"sqrt(p(1-p)/n) = {m['best_val_binomial_se']:.4f}" in text
    assert f"1 logit, {m['n_parameters']:,} parameters" in text
    for key, c in m["convergence"].items():
        assert f"{key.replace('_', ' ')}: best at epoch {c['best_epoch']} of" in text and c["verdict"] in text
    assert f"{m['convergence']['test_loss']['last_minus_best']:+.4f}, standard error {m['convergence']['test_loss']['se']:.4f}" in text
    assert f"{len(m['split_sizes']) and sum(m['split_sizes'].values()):,} rows" in text
    assert f"exact duplicate rows: {m['duplicate_rows']}" in text
    assert f"{m['hgb']['grid_size']} settings" in text and f"(validation {m['hgb']['val_accuracy']:.4f})" in text
    assert f"(mean logit): {m['ensemble_test_accuracy']:.4f}" in text
    assert f"{m['search_seconds']:.0f} s" in text


def check_printed_equals_saved(nb, m):
    text = printed_text(nb)
    assert f"Logistic Regression Model accuracy = {m['logreg_test_accuracy']}" in text
    assert f"MLP test accuracy: {m['test_accuracy_mean']:.4f}" in text
    for a in m["test_accuracies"]:
        assert f"test accuracy {a:.4f}" in text
    for init, acc in m["init_test_accuracy"].items():
        assert f"{init:15s}: test accuracy {acc:.4f}" in text
    assert f"test accuracy {m['hgb_test_accuracy']:.4f}" in text
    assert f"validation accuracy {m['best_val_accuracy']:.4f}" in text


def smoke(root, out, *extra, timeout=300):
    return subprocess.run([sys.executable, "-m", f"experiments.{TASK}", "--profile", "smoke", "--device", "cpu",
                           "--out", str(out), "--quiet", *extra], cwd=root, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_smoke_execution_end_to_end(root, tmp_path):
    p = smoke(root, tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads((tmp_path / "results" / f"{TASK}.json").read_text())
    m = r["metrics"]
    assert m["all_checks_passed"] and sum(m["split_sizes"].values()) == 19020
    assert set(m["init_test_accuracy"]) == {"default", "xavier_uniform", "kaiming_normal"}
    assert set(m["reference_val_accuracy_by_transform"]) == {"standard", "quantile", "power"}
    assert 0.7 < m["logreg_test_accuracy"] < 0.9 and 0.8 < m["hgb_test_accuracy"] < 0.95
    nb = read_executed(tmp_path / "results" / f"{TASK}.ipynb")
    check_printed_equals_saved(nb, m)
    check_quoted_numbers_printed(nb, m)
    for suffix in ("curves", "optuna"):
        assert (tmp_path / "figures" / f"{TASK}_{suffix}.png").exists()
    assert r["wall_seconds"] < 60, f"the smoke execution took {r['wall_seconds']:.0f} s"


def test_committed_execution_prints_what_it_saves(root):
    record = json.loads((root / "results" / f"{TASK}.json").read_text())
    nb = read_executed(root / "results" / f"{TASK}.ipynb")
    assert nb.metadata["hw2"]["run_id"] == record["run_id"] and record["profile"] == "full"
    check_printed_equals_saved(nb, record["metrics"])
    check_quoted_numbers_printed(nb, record["metrics"])


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(root, tmp_path):
    """Two processes running only the search cells (--until) add trials to one shared study."""
    import optuna
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    cmd = [sys.executable, "-m", f"experiments.{TASK}", "--until", "task2-search", "--profile", "smoke",
           "--device", "cpu", "--storage", url, "--study-name", "shared", "--trials", "2", "--quiet"]
    procs = [subprocess.Popen(cmd + ["--out", str(tmp_path / f"w{i}")], cwd=root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    done = [t for t in optuna.load_study(study_name="shared", storage=url).trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == 4 and len({t.user_attrs["worker"] for t in done}) == 2
    assert not list(tmp_path.glob("w*/results/*.json"))              # workers write no result


@pytest.mark.slow
def test_a_search_killed_mid_trial_resumes_and_reruns_what_it_lost(root, tmp_path):
    """The state a SIGKILL during the first reference trial leaves: that trial RUNNING, the other two
    reference trials still queued. --resume fails the stale trial, queues its reference again and
    finishes with every transform measured."""
    import optuna
    cfg = run_cells(TASK, ["imports", "config"], profile="smoke")["CONFIG"]
    torch.set_num_threads(os.cpu_count() or 1)
    db = tmp_path / "work" / ".cache" / "optuna" / f"{TASK}.db"
    db.parent.mkdir(parents=True)
    study = optuna.create_study(storage=f"sqlite:///{db}", study_name=f"{TASK}-smoke", direction="maximize")
    for kind in ("standard", "quantile", "power"):
        study.enqueue_trial({**cfg["reference_trial"], "transform": kind}, user_attrs={"reference": kind})
    lost = study.ask()                                  # the trial the kill interrupted
    assert lost.user_attrs["reference"] == "standard"
    p = smoke(root, tmp_path, "--resume")
    assert p.returncode == 0, p.stderr[-2000:]
    trials = optuna.load_study(study_name=f"{TASK}-smoke", storage=f"sqlite:///{db}").trials
    assert trials[lost.number].state.name == "FAIL"
    assert not [t for t in trials if t.state.name == "RUNNING"]
    m = json.loads((tmp_path / "results" / f"{TASK}.json").read_text())["metrics"]
    assert all(v is not None for v in m["reference_val_accuracy_by_transform"].values())
    assert set(m["reference_val_accuracy_by_transform"]) == {"standard", "quantile", "power"}
    assert m["all_checks_passed"]
