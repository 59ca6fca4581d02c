"""Task 3: a CNN without BatchNorm for Imagenette at 64x64, without and with (kornia) augmentation.

    python -m experiments.task3_imagenette_cnn --profile full [--resume] [--device cpu|cuda]
    python -m experiments.task3_imagenette_cnn --profile smoke --out /tmp/t3      # what the tests run
    python -m experiments.task3_imagenette_cnn --profile full --benchmark         # pipeline speed only

Top to bottom:
 1. Data. Every JPEG of imagenette2-160 is decoded and resized to 64x64 once (hw2.imagenette) into
    a uint8 tensor cache that equals the assignment's Resize((64, 64)) + ToTensor() pipeline x 255.
    The official `val` split is the test set; a stratified, seeded validation set is carved out
    of `train`. Normalize uses the per-channel mean / std of the training part.
 2. Model: hw2.cnn.Net, a residual CNN with GroupNorm (no BatchNorm anywhere).
 3. Stage "noaug": train with no augmentation at all (only Normalize), evaluate on the test set.
 4. For each trained model: accuracy with image + a * N(0, 1) noise added in [0, 1] space before
    Normalize (not clamped, fixed noise seed) for a in NOISE_LEVELS.
 5. Stage "aug": the same model and schedule retrained with kornia augmentations applied to whole
    batches on the device (GPU when there is one), evaluated the same way.
 6. Per-class accuracy and confusion matrix for both models; the pipeline benchmark: the same
    training step fed by a plain torchvision DataLoader (decode + resize every epoch, 2 workers)
    against the in-memory uint8 cache, and the time ratio.
Each stage checkpoints every epoch under .cache/ (or --out DIR/work); `--resume` continues a killed
run from the last checkpoint and reaches the same final metrics as an uninterrupted run.
"""
from __future__ import annotations

import copy
import shutil
import statistics
import sys
import time

# --- every hyperparameter, in one place ---------------------------------------------------------
COMMON = {
    "image_size": 64,
    "val_fraction": 0.1,          # of every class of `train`, seeded: 947 validation images
    "split_seed": 0,
    "seed": 0,                    # model init, shuffling, dropout, augmentation draws
    "extra_seeds": [],            # both trainings again with these seeds, for a mean over seeds
    "widths": [48, 96, 192, 384],  # stem, then the three stages
    "stem_stride": 2,             # 4x4 stride-2 patch conv: 64x64 -> 32x32 at once (4x cheaper)
    "groups": 8,                  # GroupNorm groups
    "dropout": 0.2,               # before the one fully connected layer
    "batch_size": 128,
    "lr": 2e-3,                   # AdamW peak learning rate
    "betas": [0.9, 0.99],
    "weight_decay": 0.05,         # decoupled (AdamW), on conv / linear weights only
    "warmup_epochs": 1.0,         # linear warm-up, then linear decay ...
    "final_lr_frac": 0.0,         # ... to 0 at the last step
    "label_smoothing": 0.1,
    "bf16": True,                 # bf16 autocast: AMX on this CPU, tensor cores on a GPU
    "channels_last": True,
    "noise_levels": [0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2],
    "noise_seed": 1234,
    "augment": {                  # part 5 (kornia, on whole batches on the device)
        "flip_p": 0.5,
        "crop_scale": [0.35, 1.0],    # RandomResizedCrop area fraction
        "crop_ratio": [0.75, 1.3333],
        "crop_p": 1.0,
        "jitter": [0.2, 0.2, 0.2, 0.0],  # brightness, contrast, saturation, hue
        "jitter_p": 0.5,
    },
}
PROFILES = {
    "smoke": {**COMMON, "per_class_train": 30, "per_class_test": 20, "val_fraction": 0.2,
              "widths": [8, 16, 32, 64], "groups": 4, "batch_size": 32,
              "epochs_noaug": 2, "epochs_aug": 2, "extra_seeds": [1], "noise_levels": [0.0, 0.005, 0.01, 0.05, 0.2],
              "benchmark_batches": 2, "speed_steps": 1, "speed_rounds": 1, "speed_compile": False},
    "full": {**COMMON, "per_class_train": None, "per_class_test": None,
             "epochs_noaug": 24, "epochs_aug": 36,   # aug keeps learning where no-aug has memorised its data
             "extra_seeds": [1],
             "benchmark_batches": 20,   # batches per pipeline in the DataLoader-vs-cache benchmark
             "speed_steps": 8, "speed_rounds": 5,   # bf16 / channels_last / compile ablation
             "speed_compile": True},
}
NAME = "task3_imagenette_cnn"
REQUIRED_NOISE = ["0.05", "0.01", "0.005"]
# keys that do not change what the trainings compute (so changing them keeps the checkpoints)
NOT_TRAINING_KEYS = ("benchmark_batches", "noise_levels", "noise_seed", "speed_steps", "speed_rounds",
                     "speed_compile", "extra_seeds")

import torch  # noqa: E402

from hw2 import cnn, imagenette  # noqa: E402
from hw2.errors import UserError  # noqa: E402


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def stage_config(cfg, stage):
    """The settings that decide what a stage's training computes."""
    other = "aug" if stage == "noaug" else "noaug"
    drop = set(NOT_TRAINING_KEYS) | {f"epochs_{other}"} | ({"augment"} if stage == "noaug" else set())
    return {k: v for k, v in cfg.items() if k not in drop}


# --- 1. data ------------------------------------------------------------------------------------
def load_data(cfg, device):
    x_all, y_all = imagenette.load_split("train", cfg["image_size"], cfg["per_class_train"],
                                         seed=cfg["split_seed"], workers=2)
    x_te, y_te = imagenette.load_split("val", cfg["image_size"], cfg["per_class_test"],
                                       seed=cfg["split_seed"], workers=2)
    tr, va = imagenette.stratified_split(y_all, cfg["val_fraction"], cfg["split_seed"])
    mean, std = cnn.channel_stats(x_all[tr])
    return {"x_train": x_all[tr], "y_train": y_all[tr], "x_val": x_all[va], "y_val": y_all[va],
            "x_test": x_te, "y_test": y_te, "train_idx": tr, "mean": mean, "std": std,
            "norm": cnn.Normalizer(mean, std, device, cfg["channels_last"])}


# --- 2. model -----------------------------------------------------------------------------------
def make_model(cfg, device):
    torch.manual_seed(cfg["seed"])
    model = cnn.Net(cfg["widths"], cfg["groups"], cfg["dropout"], stem_stride=cfg["stem_stride"]).to(device)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return model


# --- 5. kornia augmentations (batched, on the device) -----------------------------------------------
def make_augment(cfg):
    import kornia.augmentation as K
    a = cfg["augment"]
    return torch.nn.Sequential(
        K.RandomResizedCrop((cfg["image_size"],) * 2, scale=tuple(a["crop_scale"]),
                            ratio=tuple(a["crop_ratio"]), p=a["crop_p"]),
        K.RandomHorizontalFlip(p=a["flip_p"]),
        K.ColorJitter(*a["jitter"], p=a["jitter_p"]),
    )


def use_compile(ctx):
    """torch.compile the training step on CUDA (or on request); off on the CPU by default, where the
    trainings of the committed result ran without it."""
    return ctx.args.compile or (ctx.device.startswith("cuda") and not ctx.args.no_compile)


# --- 3.-5. one stage: train, then test, noise robustness, confusion matrix ------------------------
def run_stage(stage, cfg, data, ctx, stage_dir):
    done = stage_dir / f"{stage}_done.pt"
    if ctx.args.resume and done.exists():
        log(f"stage {stage}: already finished, loading {done}")
        return torch.load(done, weights_only=False)
    model = make_model(cfg, ctx.device)
    augment = make_augment(cfg).to(ctx.device) if stage == "aug" else None
    kill = None
    if ctx.args.kill_at and ctx.args.kill_at.split(":")[0] == stage:
        kill = int(ctx.args.kill_at.split(":")[1])
    train_cfg = {**cfg, "epochs": cfg[f"epochs_{stage}"]}
    log(f"stage {stage}: {cfg[f'epochs_{stage}']} epochs on {len(data['x_train'])} images ({ctx.device})")
    history = cnn.train(model, data, train_cfg, device=ctx.device, ckpt_path=stage_dir / f"{stage}_ckpt.pt",
                        seed=cfg["seed"] + (1 if stage == "aug" else 0), augment=augment,
                        resume=ctx.args.resume, kill_after_epochs=kill,
                        compile_model=use_compile(ctx), log=log)
    t0 = time.perf_counter()
    noise = {}
    for a in cfg["noise_levels"]:
        logits = cnn.predict(model, data["x_test"], data["norm"], ctx.device, cfg["bf16"],
                             noise_std=a, noise_seed=cfg["noise_seed"])
        noise[f"{a:g}"] = cnn.accuracy(logits, data["y_test"])
        if a == 0:
            clean_logits = logits
    from sklearn.metrics import confusion_matrix
    pred = clean_logits.argmax(1)
    cm = confusion_matrix(data["y_test"].numpy(), pred.numpy(), labels=list(range(10)))
    result = {"history": history, "test_accuracy": noise["0"], "noise": noise,
              "confusion": cm.tolist(),
              "per_class": (cm.diagonal() / cm.sum(1).clip(min=1)).tolist(),
              "train_seconds": sum(history["epoch_seconds"]), "eval_seconds": time.perf_counter() - t0}
    cnn._save_atomic(result, done)
    log(f"stage {stage}: test accuracy {result['test_accuracy']:.4f}, noise {noise}")
    return result


# --- 6. pipeline benchmark ----------------------------------------------------------------------------
def benchmark(cfg, data, ctx):
    """Seconds for `benchmark_batches` training steps fed by each pipeline, same model and step."""
    import torchvision
    from torch.utils.data import DataLoader, Subset
    from torchvision import transforms

    from hw2.data import imagenette_root
    n_batches, bs = cfg["benchmark_batches"], cfg["batch_size"]
    base = make_model(cfg, ctx.device).to(memory_format=torch.channels_last if cfg["channels_last"] else torch.contiguous_format)
    tf = transforms.Compose([transforms.Resize((cfg["image_size"],) * 2), transforms.ToTensor(),
                             transforms.Normalize(data["mean"], data["std"])])
    ds = torchvision.datasets.Imagenette(root=str(imagenette_root()), split="train", size="160px",
                                         download=False, transform=tf)
    if cfg["per_class_train"] is not None:   # smoke: the same subset the cache holds
        y = torch.tensor([lab for _, lab in ds._samples])
        sub = imagenette.stratified_subset(y, cfg["per_class_train"], cfg["split_seed"])
        ds = Subset(ds, sub.tolist())
    ds = Subset(ds, data["train_idx"].tolist())

    def steps(batches):
        model = copy.deepcopy(base)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        t0 = time.perf_counter()
        for i, (xb, yb) in enumerate(batches):
            if i == n_batches:
                break
            xb, yb = xb.to(ctx.device, non_blocking=True), yb.to(ctx.device)
            if cfg["channels_last"]:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with cnn.autocast(ctx.device, cfg["bf16"]):
                loss = torch.nn.functional.cross_entropy(model(xb).float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if ctx.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0, i

    loader = DataLoader(ds, batch_size=bs, shuffle=True, num_workers=2, drop_last=True,
                        pin_memory=ctx.device.startswith("cuda"))
    plain, nb_plain = steps(loader)        # includes worker start-up, as a real epoch does

    x, y, norm = data["x_train"].to(ctx.device), data["y_train"].to(ctx.device), data["norm"]

    def cached_batches():
        perm = torch.randperm(len(x), device=ctx.device)
        for i in range(len(x) // bs):
            idx = perm[i * bs:(i + 1) * bs]
            yield norm(x[idx]), y[idx]
    cached, nb_cached = steps(cached_batches())
    out = {"plain_seconds": plain, "cached_seconds": cached, "batches": min(nb_plain, nb_cached),
           "batch_size": bs, "speedup": plain / cached}
    log(f"pipeline benchmark ({out['batches']} batches of {bs}): torchvision DataLoader "
        f"{plain:.2f} s, uint8 cache {cached:.2f} s, ratio {out['speedup']:.2f}x")
    return out


def speed_ablation(cfg, data, ctx):
    """ms per training image for fp32 / bf16 autocast x NCHW / channels_last (and torch.compile).

    Same model and batch for every variant; rounds are interleaved and the fastest round is kept,
    so a burst of load from other processes on a shared machine hurts no variant more than another.
    """
    bs, n = cfg["batch_size"], cfg["speed_steps"]
    xb = data["x_train"][:bs].float().div(255).sub(torch.tensor(data["mean"]).view(1, 3, 1, 1)) \
        .div(torch.tensor(data["std"]).view(1, 3, 1, 1)).to(ctx.device)
    yb = data["y_train"][:bs].to(ctx.device)
    variants = {"fp32": (False, False, False), "fp32_channels_last": (False, True, False),
                "bf16": (True, False, False), "bf16_channels_last": (True, True, False)}
    if cfg["speed_compile"]:
        variants["bf16_channels_last_compile"] = (True, True, True)
    steppers, compile_seconds, compile_error = {}, None, None
    for name, (bf16, cl, comp) in variants.items():
        model = make_model(cfg, ctx.device)
        x = xb.contiguous(memory_format=torch.channels_last) if cl else xb
        if cl:
            model = model.to(memory_format=torch.channels_last)
        f = torch.compile(model) if comp else model
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(f=f, x=x, opt=opt, bf16=bf16):
            with cnn.autocast(ctx.device, bf16):
                loss = torch.nn.functional.cross_entropy(f(x).float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ctx.device.startswith("cuda"):
                torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            step()
            step()                               # warm-up: kernel selection (and compilation)
        except Exception as e:                   # torch.compile needs a working C++ toolchain
            log(f"speed ablation: {name} failed ({type(e).__name__}: {e}); left out")
            compile_error = f"{type(e).__name__}: {str(e)[:200]}"
            continue
        if comp:
            compile_seconds = time.perf_counter() - t0
        steppers[name] = step
    best = {name: float("inf") for name in steppers}
    for _ in range(cfg["speed_rounds"]):
        for name, step in steppers.items():
            t0 = time.perf_counter()
            for _ in range(n):
                step()
            best[name] = min(best[name], (time.perf_counter() - t0) / (n * bs) * 1e3)
    out = {"ms_per_image": best, "speedup_vs_fp32": {k: best["fp32"] / v for k, v in best.items()},
           "compile_seconds": compile_seconds, "compile_error": compile_error, "steps": n, "rounds": cfg["speed_rounds"], "batch_size": bs}
    log(f"speed ablation (ms / training image): {', '.join(f'{k} {v:.2f}' for k, v in best.items())}")
    return out


# --- figures --------------------------------------------------------------------------------------
def fig_samples(data, n=5):
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.6))
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(data["x_train"]), generator=g)[:n]
    for ax, i in zip(axes, idx.tolist()):
        ax.imshow(data["x_train"][i].permute(1, 2, 0).numpy())
        ax.set_title(imagenette.CLASS_NAMES[data["y_train"][i]], fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    return fig


def fig_augment(cfg, data, n=6):
    import matplotlib.pyplot as plt
    torch.manual_seed(0)
    aug = make_augment(cfg)
    x = data["x_train"][:n].float() / 255
    rows = [x] + [aug(x) for _ in range(2)]
    fig, axes = plt.subplots(3, n, figsize=(1.8 * n, 5.6))
    for r, xs in enumerate(rows):
        for c in range(n):
            axes[r, c].imshow(xs[c].clamp(0, 1).permute(1, 2, 0).numpy())
            axes[r, c].axis("off")
        axes[r, 0].set_title("original" if r == 0 else f"augmented draw {r}", fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def fig_curves(h, title):
    import matplotlib.pyplot as plt
    import numpy as np
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    steps = np.arange(1, len(h["step_loss"]) + 1) / (len(h["step_loss"]) / len(h["epoch"]))
    ax1.plot(steps, h["step_loss"], color="0.75", lw=0.7, label="train loss (per step)")
    ax1.plot(h["epoch"], h["train_loss"], "o-", label="train loss (epoch mean)")
    ax1.plot(h["epoch"], h["val_loss"], "s-", label="validation loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.legend()
    ax2.plot(h["epoch"], h["train_acc"], "o-", label="train accuracy")
    ax2.plot(h["epoch"], h["val_acc"], "s-", label="validation accuracy")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def fig_noise(res):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for stage, label in (("noaug", "no augmentation (part 3)"), ("aug", "kornia augmentation (part 5)")):
        a = [float(k) for k in res[stage]["noise"]]
        ax.plot(a, list(res[stage]["noise"].values()), "o-", label=label)
    ax.set_xlabel("noise std a (image in [0, 1])")
    ax.set_ylabel("test accuracy")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def fig_confusion(res):
    import matplotlib.pyplot as plt
    import numpy as np
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6))
    for ax, stage, title in zip(axes, ("noaug", "aug"), ("no augmentation", "kornia augmentation")):
        cm = np.array(res[stage]["confusion"])
        ax.imshow(cm / cm.sum(1, keepdims=True).clip(min=1), cmap="Blues", vmin=0, vmax=1)
        for i in range(10):
            for j in range(10):
                ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > 0.5 * cm[i].sum() else "black")
        ax.set_xticks(range(10), imagenette.CLASS_NAMES, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(10), imagenette.CLASS_NAMES, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title}: test accuracy {res[stage]['test_accuracy']:.3f}")
    fig.tight_layout()
    return fig


# --- the run --------------------------------------------------------------------------------------
def run(config, ctx):
    from hw2.cli import Outcome
    from hw2.results import config_hash
    cfg = config
    if ctx.args.threads:
        torch.set_num_threads(ctx.args.threads)  # results can differ in the last bits between thread counts
    data = load_data(cfg, ctx.device)
    # each stage's checkpoints are keyed by the hash of what that stage computes, so changing one
    # stage's settings (or the evaluation) never throws away the other stage's finished training
    seeds = [cfg["seed"], *cfg["extra_seeds"]]
    seed_cfgs = {seed: {**cfg, "seed": seed} for seed in seeds}
    stage_dirs = {(seed, stage): ctx.work_dir / NAME / f"{ctx.profile}_{stage}_{config_hash(stage_config(seed_cfgs[seed], stage))}"
                  for seed in seeds for stage in ("noaug", "aug")}
    if ctx.args.benchmark:
        out = benchmark(cfg, data, ctx)
        print(f"pipeline speedup: {out['speedup']:.2f}x ({out['batches']} batches)")
        raise SystemExit(0)                      # a measurement only: no result written
    stages = ("noaug", "aug") if ctx.args.stage == "all" else (ctx.args.stage,)
    for (_, stage), d in stage_dirs.items():
        if stage in stages:
            if not ctx.args.resume and d.exists():
                shutil.rmtree(d)                 # a fresh run never reuses old checkpoints
            d.mkdir(parents=True, exist_ok=True)
    if ctx.args.stage != "all":                  # one stage only (e.g. both in parallel); no result
        out = run_stage(ctx.args.stage, cfg, data, ctx, stage_dirs[cfg["seed"], ctx.args.stage])
        print(f"stage {ctx.args.stage} done: test accuracy {out['test_accuracy']:.4f}; "
              f"run --stage all --resume to write the result")
        raise SystemExit(0)

    model = make_model(cfg, ctx.device)
    params, mb = cnn.count_params(model), cnn.size_mb(model)
    log(f"model: {params:,} parameters, {mb:.3f} MB (float32, 1 MB = 10^6 bytes)")
    # the main seed first, then the same two trainings with the extra seeds (for a mean over seeds)
    by_seed = {seed: {stage: run_stage(stage, seed_cfgs[seed], data, ctx, stage_dirs[seed, stage])
                      for stage in ("noaug", "aug")} for seed in seeds}
    res = by_seed[cfg["seed"]]
    test_accs = {s: [by_seed[seed][s]["test_accuracy"] for seed in seeds] for s in res}
    bench = benchmark(cfg, data, ctx)
    speed = speed_ablation(cfg, data, ctx)

    noise = {s: {k: v for k, v in res[s]["noise"].items()} for s in res}
    checks = {
        "no_batchnorm": not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()),
        "noise_levels_present": all(k in noise["noaug"] for k in REQUIRED_NOISE),
        "test_set_is_official_val": cfg["per_class_test"] is not None or len(data["y_test"]) == 3925,
        "splits_disjoint_stratified": len(set(data["train_idx"].tolist())) == len(data["x_train"]),
    }
    metrics = {
        "test_accuracy_noaug": res["noaug"]["test_accuracy"],
        "test_accuracy_aug": res["aug"]["test_accuracy"],
        "seeds": seeds,
        "test_accuracy_by_seed": {s: dict(zip(map(str, seeds), test_accs[s])) for s in res},
        "test_accuracy_mean": {s: statistics.fmean(test_accs[s]) for s in res},
        "test_accuracy_std": {s: statistics.stdev(test_accs[s]) if len(seeds) > 1 else 0.0 for s in res},
        "noise_accuracy_mean": {s: {k: statistics.fmean(by_seed[seed][s]["noise"][k] for seed in seeds)
                                    for k in REQUIRED_NOISE} for s in res},
        "train_seconds_by_seed": {s: {str(seed): by_seed[seed][s]["train_seconds"] for seed in seeds} for s in res},
        "noise_accuracy_noaug": {k: noise["noaug"][k] for k in REQUIRED_NOISE},
        "noise_accuracy_aug": {k: noise["aug"][k] for k in REQUIRED_NOISE},
        "noise_curve": noise,
        "params": params,
        "size_mb": mb,
        "train_seconds_noaug": res["noaug"]["train_seconds"],
        "train_seconds_aug": res["aug"]["train_seconds"],
        "epoch_seconds_noaug": res["noaug"]["history"]["epoch_seconds"],
        "epoch_seconds_aug": res["aug"]["history"]["epoch_seconds"],
        "eval_seconds": {s: res[s]["eval_seconds"] for s in res},
        "val_accuracy_final": {s: res[s]["history"]["val_acc"][-1] for s in res},
        "per_class_accuracy": {s: dict(zip(imagenette.CLASS_NAMES, res[s]["per_class"])) for s in res},
        "pipeline_speedup": bench["speedup"],
        "pipeline_benchmark": bench,
        "speed_ablation": speed,
        "n_train": len(data["x_train"]), "n_val": len(data["x_val"]), "n_test": len(data["x_test"]),
        "normalize_mean": data["mean"], "normalize_std": data["std"],
        "layers": cnn.describe(model),
        "threads": torch.get_num_threads(),
        "checks": checks,
        "all_checks_passed": all(checks.values()),
    }
    figures = {"samples": fig_samples(data), "augment": fig_augment(cfg, data),
               "curves_noaug": fig_curves(res["noaug"]["history"], "Part 3: no augmentation"),
               "curves_aug": fig_curves(res["aug"]["history"], "Part 5: kornia augmentation"),
               "noise": fig_noise(res), "confusion": fig_confusion(res)}
    extra = {s: {"history": res[s]["history"], "confusion": res[s]["confusion"]} for s in res}
    return Outcome(metrics=metrics, figures=figures, extra=extra, seed=cfg["seed"])


def add_arguments(p):
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoints of an interrupted run of the same config")
    p.add_argument("--benchmark", action="store_true",
                   help="only time the torchvision DataLoader pipeline against the uint8 cache")
    p.add_argument("--stage", choices=["noaug", "aug", "all"], default="all",
                   help="train and evaluate one stage only (checkpointed; no result is written)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step on any device")
    p.add_argument("--no-compile", action="store_true", help="never torch.compile (default on CUDA: compile)")
    p.add_argument("--kill-at", default=None, metavar="STAGE:EPOCH",
                   help=argparse_suppress())


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS   # tests only: stop as if killed after that epoch of that stage


if __name__ == "__main__":
    from hw2.cli import main
    sys.exit(main(name=NAME, profiles=PROFILES, run=run, source=__file__, kind="experiment",
                  add_arguments=add_arguments))
