"""Task 3: the decoded-image cache is the assignment's pipeline exactly and is keyed by content, the
data is checked before anything runs, the network has no BatchNorm, noise is added before
Normalize; the smoke execution end to end, a kill and --resume that reproduce it exactly, and a
resume refused when the data changed."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from notebook_cells import printed_text, read_executed, run_cells

TASK = "task3_imagenette_cnn"


def data_dir():
    from hw2.data import imagenette_root
    return str(imagenette_root())


def cells(cache_dir, **params):
    """The notebook's definitions in a namespace of their own (its functions read their globals here).
    The model cell computes the whitening filters from x_train, MEAN and STD: random images here."""
    images = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = run_cells(TASK, ["imports", "config", "task3-data-functions", "task3-cache", "task3-model", "task3-train"],
                    **{"profile": "smoke", "device": "cpu", "data_dir": data_dir(), "cache_dir": str(cache_dir),
                       "x_train": images, "MEAN": torch.full((3,), 0.5), "STD": torch.full((3,), 0.25), **params})
    out["DATA_FINGERPRINT"] = "test"
    return out


@pytest.fixture(scope="module")
def ns(tmp_path_factory):
    return cells(tmp_path_factory.mktemp("cache"))


def tv_dataset(split, transform=None):
    import torchvision
    from torchvision import transforms
    return torchvision.datasets.Imagenette(root=data_dir(), split=split, size="160px", download=False,
                                           transform=transform or transforms.Compose([transforms.Resize((64, 64)),
                                                                                      transforms.ToTensor()]))


def test_cache_equals_the_assignments_pipeline(ns):
    """cache / 255 is bit for bit Resize((64, 64)) + ToTensor(), image by image, labels included."""
    x, y = ns["decoded"]("val", 20)
    ds = tv_dataset("val")
    labels = torch.tensor([label for _, label in ds._samples])
    idx = ns["stratified_subset"](labels, 20, 0)
    assert x.dtype == torch.uint8 and x.shape == (200, 3, 64, 64)
    for k in torch.randperm(200, generator=torch.Generator().manual_seed(7))[:12].tolist():
        image, label = ds[idx[k]]
        assert torch.equal(x[k].float() / 255, image) and y[k] == label
    x2, _ = ns["decoded"]("val", 20)                    # read back from the cache file
    assert torch.equal(x, x2)


def test_the_equality_check_can_fail():
    """Another resize (nearest neighbour) gives other pixels: the comparison above is not vacuous."""
    from torchvision import transforms
    ds = tv_dataset("val", transforms.Compose([transforms.Resize((64, 64), interpolation=transforms.InterpolationMode.NEAREST),
                                               transforms.PILToTensor()]))
    assert not torch.equal(ds[0][0].float() / 255, tv_dataset("val")[0][0])


def tiny_tree(tmp_path, ns, per_class=2):
    """imagenette2-160/{train,val}/<wnid>/ with per_class real JPEGs copied in."""
    from hw2.data import IMAGENETTE_DIR, _split_listing
    listing = _split_listing(__import__("pathlib").Path(data_dir()) / IMAGENETTE_DIR / "val")
    real = [(p, c) for c, wnid in enumerate(ns["WNIDS"]) for p in listing[wnid]]
    root = tmp_path / "imagenette2-160"
    for split in ("train", "val"):
        for c, wnid in enumerate(ns["WNIDS"]):
            (root / split / wnid).mkdir(parents=True)
            for k, (path, _) in enumerate([f for f in real if f[1] == c][:per_class]):
                shutil.copy(path, root / split / wnid / f"{split}_{k}.JPEG")
    return root, {"train": 10 * per_class, "val": 10 * per_class}


def test_the_layout_is_checked_and_named(tmp_path, ns):
    root, counts = tiny_tree(tmp_path, ns)
    files = ns["check_imagenette"](str(root), counts)
    assert len(files["train"]) == 20
    with pytest.raises(ValueError, match="expected 21"):
        ns["check_imagenette"](str(root), {**counts, "train": 21})
    (root / "val" / "n99999999").mkdir()
    with pytest.raises(ValueError, match=r"val/n99999999: unknown class folder"):
        ns["check_imagenette"](str(root), counts)
    (root / "val" / "n99999999").rmdir()
    for f in (root / "train" / "n03000684").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=r"train/n03000684: class folder is empty"):
        ns["check_imagenette"](str(root), counts)


def test_a_same_size_corruption_changes_the_key_or_is_refused_by_name(tmp_path, ns):
    root, counts = tiny_tree(tmp_path, ns)
    before = ns["fingerprint"](str(root), ns["check_imagenette"](str(root), counts))
    victim = sorted((root / "train" / "n01440764").iterdir())[0]
    blob = bytearray(victim.read_bytes())
    blob[len(blob) // 2:len(blob) // 2 + 200] = bytes(200)     # same size, scan data zeroed, header intact
    victim.write_bytes(bytes(blob))
    after = ns["fingerprint"](str(root), ns["check_imagenette"](str(root), counts))
    assert after != before                             # the cache and checkpoints are keyed by content
    blob[20:2000] = bytes(1980)                        # the header zeroed too: refused before any decode
    victim.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=f"^{victim}: image does not decode"):
        ns["check_imagenette"](str(root), counts)


def test_network_has_no_batchnorm_counts_its_weights_and_starts_residuals_as_identity(ns):
    net = ns["make_net"](ns["CONFIG"])
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    linear = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linear) == 1 and all(c.kernel_size == (3, 3) for c in convs[1:])
    stem = convs[0]                                     # the frozen 2x2 whitening stem, its bias trained
    assert stem.kernel_size == (2, 2) and not stem.weight.requires_grad and stem.bias.requires_grad
    assert torch.equal(stem.weight, ns["WHITEN"])
    by_layer = sum(p.numel() for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.GroupNorm))
                   for p in m.parameters(recurse=False))
    assert by_layer == sum(p.numel() for p in net.parameters())
    w = ns["CONFIG"]["widths"]
    assert linear[0].weight.shape == (10, w[-1])
    block = [m for m in net.modules() if isinstance(m, ns["Residual"])][0].eval()
    x = torch.randn(2, w[0], 8, 8)
    assert torch.allclose(block(x), x)


def test_whitening_filters_whiten_the_training_patches():
    """The 12 filters map the normalised training images' 2x2x3 patches to coordinates whose
    second-moment matrix is diag(lambda / (lambda + eps)): the identity up to eps; the other 12 are
    their negatives. A wrong reshape (the patch order of another layout) fails this."""
    g = torch.Generator().manual_seed(1)
    base = torch.rand(60, 3, 12, 12, generator=g)
    images = (255 * (0.6 * base + 0.4 * base.roll(1, 3))).round().to(torch.uint8)   # correlated neighbours
    mean, std = torch.tensor([0.45, 0.5, 0.55]), torch.tensor([0.2, 0.25, 0.3])
    ns = run_cells(TASK, ["imports", "config", "task3-model"], x_train=images, MEAN=mean, STD=std)
    w = ns["whitening_filters"](images, 0.0)
    assert w.shape == (24, 3, 2, 2) and torch.allclose(w[12:], -w[:12])
    x = (images.float() / 255 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    out = torch.nn.functional.conv2d(x.double(), w[:12].double())          # N, 12, 11, 11
    z = out.permute(0, 2, 3, 1).reshape(-1, 12)
    assert torch.allclose(z.T @ z / len(z), torch.eye(12, dtype=torch.float64), atol=1e-4)
    swapped = w[:12].transpose(2, 3)                                         # h and w swapped: not white
    z2 = torch.nn.functional.conv2d(x.double(), swapped.double()).permute(0, 2, 3, 1).reshape(-1, 12)
    assert not torch.allclose(z2.T @ z2 / len(z2), torch.eye(12, dtype=torch.float64), atol=1e-2)


def function_of_cell(label, name):
    """One function defined in a cell, without running the rest of the cell (the search cell trains)."""
    import ast
    from notebook_cells import code_cells
    tree = ast.parse(code_cells(TASK)[label])
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    env = {"torch": torch}
    exec(compile(ast.Module([node], []), f"<{label}:{name}>", "exec"), env)
    return env[name]


def test_paired_difference_is_the_mean_and_se_of_per_image_differences():
    paired_difference = function_of_cell("task3-search", "paired_difference")
    a = torch.tensor([1, 1, 0, 1, 0, 1, 1, 0], dtype=torch.bool)
    b = torch.tensor([1, 0, 0, 1, 1, 1, 0, 0], dtype=torch.bool)
    d, se = paired_difference(a, b)
    diffs = [0, 1, 0, 0, -1, 0, 1, 0]
    mean = sum(diffs) / 8
    assert d == pytest.approx(mean)
    assert se == pytest.approx((sum((v - mean) ** 2 for v in diffs) / 7 / 8) ** 0.5)


def test_install_cell_installs_only_what_is_missing():
    from notebook_cells import check_install_cell
    check_install_cell(TASK)
    assert {"kornia", "optuna"} <= set(run_cells(TASK, ["install"])["REQUIREMENTS"])


def test_noise_is_added_in_unit_range_before_normalize(tmp_path):
    """predict adds a * N(0, 1) to x / 255 before Normalize, from a fixed generator."""
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3])
    env = cells(tmp_path)
    env.update(MEAN_DEV=mean.view(1, 3, 1, 1), STD_DEV=std.view(1, 3, 1, 1), DEVICE="cpu",
               CONFIG={**env["CONFIG"], "bf16": False, "channels_last": False})

    class FirstPixel(torch.nn.Module):                  # logits = the three channels of pixel (0, 0)
        def forward(self, x):
            return x[:, :, 0, 0]

    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    a = 0.05
    noise = a * torch.randn(x.shape, generator=torch.Generator().manual_seed(env["CONFIG"]["noise_seed"]))
    expect = (((x.float() / 255 + noise) - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))[:, :, 0, 0].softmax(1)
    got = env["predict"](FirstPixel(), x, noise_std=a)
    assert torch.allclose(got, expect, atol=1e-5)
    assert torch.equal(got, env["predict"](FirstPixel(), x, noise_std=a))
    assert not torch.allclose(got, env["predict"](FirstPixel(), x))


def smoke(root, out, *extra):
    return subprocess.Popen([sys.executable, "-m", f"experiments.{TASK}", "--profile", "smoke", "--device", "cpu",
                             "--out", str(out), "--quiet", *extra], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def check_printed_equals_saved(nb, m):
    text = printed_text(nb)
    for stage, part in (("noaug", 3), ("aug", 5)):
        for seed, acc in m[stage]["test_accuracy_by_seed"].items():
            assert f"part {part} ({'no augmentation' if stage == 'noaug' else 'kornia augmentation'}), seed {seed}: " \
                   f"test accuracy {acc:.4f}" in text
        assert f"test accuracy {m[stage]['test_accuracy_mean']:.4f} (mean of" in text
    for a in ("0.05", "0.01"):
        if a in m["noaug"]["noise_mean"]:
            assert f"a = {a}: test accuracy {m['noaug']['noise_mean'][a]:.4f}" in text
    assert f"number of parameters (weights and biases): {m['params']:,}" in text
    assert f"model size: {m['size_mb']:.2f} MB" in text


@pytest.fixture(scope="module")
def uninterrupted(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("t3")
    p = smoke(root, out)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    return out


@pytest.mark.slow
def test_smoke_execution_end_to_end(uninterrupted):
    r = json.loads((uninterrupted / "results" / f"{TASK}.json").read_text())
    m = r["metrics"]
    assert m["all_checks_passed"] and m["seeds"] == [0, 1]
    for stage in ("noaug", "aug"):
        assert set(m[stage]["test_accuracy_by_seed"]) == {"0", "1"}
        assert 0 <= m[stage]["test_accuracy_mean"] <= 1
    assert len(m["search_trials"]) == 2 and set(m["best_hp"]) == {"lr", "weight_decay", "label_smoothing", "dropout", "drop_path"}
    nb = read_executed(uninterrupted / "results" / f"{TASK}.ipynb")
    check_printed_equals_saved(nb, m)
    assert "kornia" in "".join(c.source for c in nb.cells if c.cell_type == "code")
    for suffix in ("samples", "augment", "curves_noaug", "curves_aug", "noise", "confusion"):
        assert (uninterrupted / "figures" / f"{TASK}_{suffix}.png").exists()


@pytest.mark.slow
def test_killed_then_resumed_equals_uninterrupted(root, tmp_path, uninterrupted):
    """SIGKILL (the whole process group) once part 5's first checkpoint exists, then --resume."""
    p = smoke(root, tmp_path)
    ckpts = tmp_path / "work" / ".cache" / TASK
    try:
        for _ in range(6000):
            if list(ckpts.glob("part 5, seed 0_*.pt")) or p.poll() is not None:
                break
            time.sleep(0.05)
        assert p.poll() is None, "the run ended before it could be killed"
        os.killpg(p.pid, signal.SIGKILL)
    finally:
        p.communicate()
    assert not (tmp_path / "results" / f"{TASK}.json").exists()
    q = smoke(root, tmp_path, "--resume")
    out, err = q.communicate(timeout=600)
    assert q.returncode == 0, err[-3000:]
    a = json.loads((uninterrupted / "results" / f"{TASK}.json").read_text())
    b = json.loads((tmp_path / "results" / f"{TASK}.json").read_text())
    for key in ("noaug", "aug", "best_hp", "search_trials"):
        for sub in ("test_accuracy_by_seed", "noise", "per_class_accuracy", "confusion") if key in ("noaug", "aug") else [None]:
            assert (a["metrics"][key][sub] if sub else a["metrics"][key]) == (b["metrics"][key][sub] if sub else b["metrics"][key]), (key, sub)
    assert a["extra"]["aug"]["0"]["step_loss"] == b["extra"]["aug"]["0"]["step_loss"]
    assert "resumed after epoch" in printed_text(read_executed(tmp_path / "results" / f"{TASK}.ipynb"))


@pytest.mark.slow
def test_resume_refused_when_the_data_changed(root, uninterrupted):
    marker = uninterrupted / "work" / ".cache" / TASK / "smoke_data_fingerprint.txt"
    marker.write_text("0123456789abcdef")               # as if the interrupted run had other data
    p = smoke(root, uninterrupted, "--resume")
    _, err = p.communicate(timeout=600)
    assert p.returncode == 2
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert "imagenette2-160: the data changed since the interrupted run" in errors[0]


@pytest.mark.slow
def test_compiled_training_equals_eager(tmp_path):
    """torch.compile (used on CUDA) computes the same training step by step as eager mode."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 64, 64), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    hp = {"lr": 1e-3, "weight_decay": 0.05, "label_smoothing": 0.1, "dropout": 0.0, "drop_path": 0.0}
    losses = {}
    for compiled in (False, True):
        env = cells(tmp_path / str(compiled))
        env.update(x_train=x[:48], y_train=y[:48], x_val=x[48:], y_val=y[48:], x_train_dev=x[:48], y_train_dev=y[:48],
                   MEAN_DEV=torch.full((1, 3, 1, 1), 0.5), STD_DEV=torch.full((1, 3, 1, 1), 0.25), COMPILE=compiled,
                   CONFIG={**env["CONFIG"], "bf16": False, "channels_last": False, "batch_size": 16})
        from torch._dynamo.utils import counters
        counters.clear()
        _, h = env["train"](hp, seed=0, epochs=1, tag="t", verbose=False)
        assert (counters["stats"]["unique_graphs"] > 0) == compiled        # compiled only when asked
        losses[compiled] = h["step_loss"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)


def test_committed_execution_prints_what_it_saves(root):
    record = json.loads((root / "results" / f"{TASK}.json").read_text())
    nb = read_executed(root / "results" / f"{TASK}.ipynb")
    assert nb.metadata["hw2"]["run_id"] == record["run_id"] and record["profile"] == "full"
    check_printed_equals_saved(nb, record["metrics"])
