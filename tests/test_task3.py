"""Task 3: the uint8 image cache, the no-BatchNorm CNN, the splits, noise, and checkpoint/resume."""
import json
import subprocess
import sys

import pytest
import torch

from hw2 import cnn, imagenette
from hw2.data import imagenette_files, imagenette_root
from hw2.errors import DataError

MOD = "experiments.task3_imagenette_cnn"


def tv_dataset(split):
    import torchvision
    from torchvision import transforms
    return torchvision.datasets.Imagenette(
        root=str(imagenette_root()), split=split, size="160px", download=False,
        transform=transforms.Compose([transforms.Resize((64, 64)), transforms.ToTensor()]))


@pytest.mark.parametrize("split", ["train", "val"])
def test_cache_equals_torchvision_pipeline(split, tmp_path):
    """cache / 255 is bit-for-bit the assignment's Resize((64, 64)) + ToTensor() output."""
    ds = tv_dataset(split)
    root = imagenette_root()
    # the project's file listing is torchvision's, in the same order with the same labels
    ours = imagenette_files(root, split)
    assert [(str(p), y) for p, y in ours] == [(str(p), y) for p, y in ds._samples]
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(7))[:12].tolist()
    files = [ours[i] for i in idx]
    x, y = imagenette.cached_tensors(files, root, 64, tag="t", cache_dir=tmp_path, verbose=False)
    assert x.dtype == torch.uint8 and x.shape == (12, 3, 64, 64)
    ref = torch.stack([ds[i][0] for i in idx])
    assert torch.equal(x.float() / 255, ref)
    assert y.tolist() == [ds[i][1] for i in idx]
    # loading back from the cache file gives the same tensors
    x2, _ = imagenette.cached_tensors(files, root, 64, tag="t", cache_dir=tmp_path, verbose=False)
    assert torch.equal(x, x2)


def test_lossless_check_can_fail(tmp_path):
    """A cache made with another resize (nearest neighbour) is caught by the same comparison."""
    from PIL import Image
    from torchvision import transforms
    ds = tv_dataset("val")
    path, _ = ds._samples[0]
    im = transforms.Resize((64, 64), interpolation=transforms.InterpolationMode.NEAREST)(Image.open(path).convert("RGB"))
    wrong = transforms.PILToTensor()(im)
    assert not torch.equal(wrong.float() / 255, ds[0][0])


def test_corrupt_jpeg_names_the_file(tmp_path):
    good = imagenette_files(imagenette_root(), "val")[0][0]
    bad = tmp_path / "broken.JPEG"
    bad.write_bytes(good.read_bytes()[:200])   # a truncated JPEG
    with pytest.raises(DataError, match="broken.JPEG"):
        imagenette.build_tensors([(bad, 0)], progress=False)
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="broken.JPEG"):
        imagenette.cached_tensors([(bad, 0)], tmp_path, 64, cache_dir=tmp_path / "c", verbose=False)


def test_cache_key_tracks_listing_and_size(tmp_path):
    a, b = tmp_path / "a.JPEG", tmp_path / "b.JPEG"
    a.write_bytes(b"1" * 10)
    b.write_bytes(b"2" * 10)
    h = imagenette.listing_hash([(a, 0), (b, 1)], tmp_path, 64)
    assert h == imagenette.listing_hash([(a, 0), (b, 1)], tmp_path, 64)
    assert h != imagenette.listing_hash([(a, 0), (b, 1)], tmp_path, 32)
    assert h != imagenette.listing_hash([(a, 0), (b, 2)], tmp_path, 64)
    b.write_bytes(b"2" * 11)
    assert h != imagenette.listing_hash([(a, 0), (b, 1)], tmp_path, 64)


def test_stratified_split_is_seeded_disjoint_and_stratified():
    y = torch.arange(10).repeat_interleave(torch.tensor([100, 90, 80, 70, 60, 50, 40, 30, 20, 10]))
    tr, va = imagenette.stratified_split(y, 0.1, seed=0)
    assert len(set(tr.tolist()) & set(va.tolist())) == 0 and len(tr) + len(va) == len(y)
    counts = torch.bincount(y[va], minlength=10)
    assert counts.tolist() == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    tr2, va2 = imagenette.stratified_split(y, 0.1, seed=0)
    assert torch.equal(va, va2)
    assert not torch.equal(va, imagenette.stratified_split(y, 0.1, seed=1)[1])


def test_model_has_no_batchnorm_and_counts_parameters():
    m = cnn.Net((8, 16, 32, 64), groups=4)
    assert not any(isinstance(x, torch.nn.modules.batchnorm._BatchNorm) for x in m.modules())
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    n = cnn.count_params(m)
    assert n == sum(r["params"] for r in cnn.describe(m))   # every weight sits in a listed layer
    # hand count: stem 4x4 conv 3->8 with bias, and the final 64->10 linear layer
    assert cnn.describe(m)[0]["params"] == 3 * 8 * 16 + 8
    assert cnn.describe(m)[-1]["params"] == 64 * 10 + 10
    assert cnn.size_mb(m) == pytest.approx(n * 4 / 1e6)
    # residual blocks start as the identity (zero-initialised last GroupNorm gain)
    r = m.body[1]
    x = torch.randn(2, 16, 16, 16)
    assert torch.allclose(r(x), x)


def test_noise_is_added_in_unit_range_before_normalize():
    norm = cnn.Normalizer([0.5, 0.4, 0.3], [0.2, 0.2, 0.2], "cpu", channels_last=False)
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    noise = 0.05 * torch.randn(2, 3, 4, 4)
    expect = (x.float() / 255 + noise - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / 0.2
    assert torch.allclose(norm(x, noise), expect, atol=1e-6)
    m = cnn.Net((8, 16, 32, 64), groups=4).eval()
    xs = torch.randint(0, 256, (6, 3, 64, 64), dtype=torch.uint8)
    a = cnn.predict(m, xs, norm, "cpu", bf16=False, noise_std=0.05, noise_seed=3)
    b = cnn.predict(m, xs, norm, "cpu", bf16=False, noise_std=0.05, noise_seed=3)
    c = cnn.predict(m, xs, norm, "cpu", bf16=False, noise_std=0.0)
    assert torch.equal(a, b) and not torch.equal(a, c)


def _run(out, *extra):
    return subprocess.run([sys.executable, "-m", MOD, "--profile", "smoke", "--device", "cpu",
                           "--out", str(out), *extra], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_smoke_run_and_resume_after_kill_match(tmp_path):
    """An uninterrupted smoke run and one killed mid-stage then resumed give identical metrics."""
    a = _run(tmp_path / "a")
    assert a.returncode == 0, a.stderr
    ra = json.loads((tmp_path / "a" / "results" / "task3_imagenette_cnn.json").read_text())
    m = ra["metrics"]
    for key in ("test_accuracy_noaug", "test_accuracy_aug", "noise_accuracy_noaug", "params",
                "size_mb", "train_seconds_noaug", "train_seconds_aug", "pipeline_speedup"):
        assert key in m, key
    assert set(m["noise_accuracy_noaug"]) == {"0.05", "0.01", "0.005"}
    assert 0 <= m["test_accuracy_noaug"] <= 1 and 0 <= m["test_accuracy_aug"] <= 1
    assert m["pipeline_speedup"] > 0 and m["all_checks_passed"]
    assert ra["environment"]["device"].startswith("cpu")
    assert m["seeds"] == [0, 1]                                  # the smoke profile has one extra seed
    for stage in ("noaug", "aug"):
        accs = m["test_accuracy_by_seed"][stage]
        assert set(accs) == {"0", "1"} and accs["0"] == m[f"test_accuracy_{stage}"]
        assert m["test_accuracy_mean"][stage] == pytest.approx(sum(accs.values()) / 2)
        assert m["train_seconds_by_seed"][stage]["1"] > 0
    for suffix in ("samples", "curves_noaug", "curves_aug", "noise", "confusion", "augment"):
        assert (tmp_path / "a" / "figures" / f"task3_imagenette_cnn_{suffix}.png").exists()

    killed = _run(tmp_path / "b", "--kill-at", "aug:1")      # killed after epoch 1 of stage 2
    assert killed.returncode != 0
    assert not (tmp_path / "b" / "results" / "task3_imagenette_cnn.json").exists()
    resumed = _run(tmp_path / "b", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    mb = json.loads((tmp_path / "b" / "results" / "task3_imagenette_cnn.json").read_text())["metrics"]
    for key in ("test_accuracy_noaug", "test_accuracy_aug", "noise_curve", "val_accuracy_final",
                "per_class_accuracy", "test_accuracy_by_seed"):
        assert m[key] == mb[key], key
    ha = ra["extra"]["aug"]["history"]
    hb = json.loads((tmp_path / "b" / "results" / "task3_imagenette_cnn.json").read_text())["extra"]["aug"]["history"]
    assert ha["step_loss"] == hb["step_loss"]


@pytest.mark.slow
def test_compiled_training_matches_eager_and_saves_plain_weights(tmp_path):
    """torch.compile (used on CUDA) computes the same training and checkpoints the plain module."""
    g = torch.Generator().manual_seed(0)
    data = {"x_train": torch.randint(0, 256, (64, 3, 64, 64), dtype=torch.uint8, generator=g),
            "y_train": torch.randint(0, 10, (64,), generator=g),
            "x_val": torch.randint(0, 256, (16, 3, 64, 64), dtype=torch.uint8, generator=g),
            "y_val": torch.randint(0, 10, (16,), generator=g),
            "norm": cnn.Normalizer([0.5] * 3, [0.25] * 3, "cpu", channels_last=False)}
    cfg = {"bf16": False, "channels_last": False, "weight_decay": 0.05, "lr": 1e-3, "betas": [0.9, 0.99],
           "batch_size": 16, "epochs": 1, "warmup_epochs": 1.0, "final_lr_frac": 0.0, "label_smoothing": 0.1}
    from torch._dynamo.utils import counters
    counters.clear()
    losses = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = cnn.Net((8, 16, 32, 64), groups=4, dropout=0.0)   # compiled dropout draws other masks
        h = cnn.train(model, data, cfg, device="cpu", ckpt_path=tmp_path / f"{compiled}.pt", seed=0,
                      compile_model=compiled, log=lambda _: None)
        losses[compiled] = h["step_loss"]
        assert (counters["stats"]["unique_graphs"] > 0) == compiled   # compiled only when asked
        saved = torch.load(tmp_path / f"{compiled}.pt", weights_only=False)["model"]
        assert set(saved) == set(model.state_dict()) and not any("_orig_mod" in k for k in saved)
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)
