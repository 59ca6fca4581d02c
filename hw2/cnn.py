"""Task 3's network and training loop: a compact residual CNN without BatchNorm, trained from
uint8 image tensors held in memory, with a checkpoint after every epoch.

The network (input 3x64x64, output 10 logits):
  stem   4x4 conv, stride 2, 3 -> w0 channels, GELU                  64x64 -> 32x32
  stage  3x3 conv w0 -> w1, GroupNorm, GELU, 2x2 max-pool            32x32 -> 16x16
         residual block(w1): two (3x3 conv, GroupNorm, GELU) added to the input
  stage  3x3 conv w1 -> w2, 2x2 max-pool, GroupNorm, GELU, residual block(w2)   -> 8x8
  stage  3x3 conv w2 -> w3, 2x2 max-pool, GroupNorm, GELU, residual block(w3)   -> 4x4
  head   global average pool, dropout, one fully connected layer w3 -> 10
GroupNorm (never BatchNorm) normalises over channel groups of one image, so it behaves the same in
training and evaluation. The last GroupNorm of every residual branch starts with weight 0, so
each block is the identity at initialisation (a "scaled residual"): deep signal propagation
without BatchNorm's batch statistics.

Reproducibility and --resume: all randomness of epoch e (shuffling, dropout, augmentations) comes
from generators seeded with (seed, e), and a checkpoint (model, optimiser, history) is written
atomically after every epoch, so a run killed after epoch k and resumed from its checkpoint
computes exactly what an uninterrupted run computes.
"""
from __future__ import annotations

import io
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


# --- the model ---------------------------------------------------------------------------------
def conv_gn_gelu(c_in: int, c_out: int, groups: int, pool: bool) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))       # pool before the norm: 4x cheaper norm + activation
    layers += [nn.GroupNorm(groups, c_out), nn.GELU()]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, c: int, groups: int):
        super().__init__()
        self.f = nn.Sequential(conv_gn_gelu(c, c, groups, False), conv_gn_gelu(c, c, groups, False))
        nn.init.zeros_(self.f[1][1].weight)  # the branch starts at 0: the block starts as identity

    def forward(self, x):
        return x + self.f(x)


class Net(nn.Module):
    def __init__(self, widths=(32, 64, 128, 256), groups: int = 8, dropout: float = 0.2,
                 num_classes: int = 10, stem_stride: int = 2):
        super().__init__()
        w0, w1, w2, w3 = widths
        # stride 2: a 4x4 patch conv halves the resolution at once (4x cheaper everywhere after);
        # stride 1: a 3x3 conv keeps 64x64 for the first stage
        k = 4 if stem_stride == 2 else 3
        self.stem = nn.Sequential(nn.Conv2d(3, w0, k, stride=stem_stride, padding=1), nn.GELU())
        self.body = nn.Sequential(
            conv_gn_gelu(w0, w1, groups, True), Residual(w1, groups),
            conv_gn_gelu(w1, w2, groups, True), Residual(w2, groups),
            conv_gn_gelu(w2, w3, groups, True), Residual(w3, groups),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(w3, num_classes))

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def size_mb(model: nn.Module) -> float:
    """float32 weights, in MB = 10^6 bytes."""
    return count_params(model) * 4 / 1e6


def describe(model: nn.Module) -> list[dict]:
    """One row per conv / linear / norm layer: what it is and how many weights it has."""
    rows = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            kind = f"Conv2d {m.in_channels}->{m.out_channels}, {m.kernel_size[0]}x{m.kernel_size[1]}, stride {m.stride[0]}"
        elif isinstance(m, nn.Linear):
            kind = f"Linear {m.in_features}->{m.out_features}"
        elif isinstance(m, nn.GroupNorm):
            kind = f"GroupNorm {m.num_groups} groups, {m.num_channels} channels"
        else:
            continue
        rows.append({"layer": name, "kind": kind, "params": sum(p.numel() for p in m.parameters())})
    return rows


# --- data on the device ------------------------------------------------------------------------
class Normalizer:
    """uint8 images -> normalised float, optionally with Gaussian noise added in [0, 1] space first."""

    def __init__(self, mean, std, device, channels_last: bool):
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.channels_last = channels_last

    def __call__(self, x_uint8, noise=None):
        x = x_uint8.float().div_(255)           # == ToTensor() of the resized image
        if noise is not None:
            x = x + noise                       # noise in [0, 1] image space, no clamping
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def channel_stats(x_uint8) -> tuple[list[float], list[float]]:
    x = x_uint8.float().div_(255)
    return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).tolist()


# --- training ----------------------------------------------------------------------------------
def lr_at(step: int, total: int, warmup: int, peak: float, final_frac: float) -> float:
    """Linear warm-up to peak, then linear decay to peak * final_frac (one-cycle shape)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (1 - t * (1 - final_frac))


def autocast(device: str, enabled: bool):
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu",
                          dtype=torch.bfloat16, enabled=enabled)


@torch.inference_mode()
def predict(model, x_uint8, norm: Normalizer, device: str, bf16: bool, batch_size: int = 500,
            noise_std: float = 0.0, noise_seed: int = 0):
    """Logits for every image; with noise_std > 0 each image gets noise_std * N(0, 1) from a fixed seed."""
    model.eval()
    g = torch.Generator(device="cpu").manual_seed(noise_seed)
    out = []
    for i in range(0, len(x_uint8), batch_size):
        xb = x_uint8[i:i + batch_size].to(device)
        noise = None
        if noise_std > 0:   # drawn on the CPU from one generator: identical on every device
            noise = (noise_std * torch.randn(xb.shape, generator=g)).to(device)
        with autocast(device, bf16):
            out.append(model(norm(xb, noise)).float().cpu())
    return torch.cat(out)


def accuracy(logits, y) -> float:
    return (logits.argmax(1) == y).float().mean().item()


def _save_atomic(obj, path: Path):
    from .results import atomic_write_bytes
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def train(model, data: dict, cfg: dict, *, device: str, ckpt_path: Path, seed: int, augment=None,
          resume: bool = False, kill_after_epochs: int | None = None, compile_model: bool = False,
          log=print) -> dict:
    """Train for cfg['epochs'] epochs with AdamW and a one-cycle learning rate; returns the history.

    data: x_train, y_train, x_val, y_val (uint8 / int64 tensors), norm (Normalizer).
    augment: None, or a callable on a float [0, 1] batch (kornia), applied before Normalize.
    Writes ckpt_path after every epoch; with resume=True continues from it.
    compile_model: run the training forward pass through torch.compile (shares the weights, so
    checkpoints and evaluation are unchanged; the experiment turns it on for CUDA).
    """
    x_tr, y_tr, x_va, y_va, norm = (data[k] for k in ("x_train", "y_train", "x_val", "y_val", "norm"))
    bf16, cl = cfg["bf16"], cfg["channels_last"]
    if cl:
        model = model.to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]        # conv / linear weights
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]    # biases, norm gains
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg["lr"], betas=tuple(cfg["betas"]))
    bs, n = cfg["batch_size"], len(x_tr)
    steps_per_epoch = n // bs                   # drop the last partial batch: equal-size steps
    total = steps_per_epoch * cfg["epochs"]
    warmup = max(1, int(cfg["warmup_epochs"] * steps_per_epoch))
    history = {"epoch": [], "train_loss": [], "train_acc": [], "val_loss": [], "val_acc": [],
               "epoch_seconds": [], "step_loss": []}
    start = 0
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        history, start = ck["history"], ck["epoch"]
        log(f"resumed from {ckpt_path} after epoch {start}")
    x_tr_dev, y_tr_dev = x_tr.to(device), y_tr.to(device)
    forward = torch.compile(model) if compile_model else model
    for epoch in range(start, cfg["epochs"]):
        t0 = time.perf_counter()
        model.train()
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        torch.manual_seed(seed * 100_003 + epoch)             # dropout and kornia draw from here
        perm = torch.randperm(n, generator=g)[:steps_per_epoch * bs].to(device)
        tot_loss = tot_correct = 0.0
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, warmup, cfg["lr"], cfg["final_lr_frac"])
            idx = perm[i * bs:(i + 1) * bs]
            xb, yb = x_tr_dev[idx], y_tr_dev[idx]
            if augment is not None:
                xf = augment(xb.float().div_(255))
                xin = (xf - norm.mean) / norm.std
                xin = xin.contiguous(memory_format=torch.channels_last) if cl else xin
            else:
                xin = norm(xb)
            with autocast(device, bf16):
                logits = forward(xin)
                loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot_loss += loss.item() * bs
            tot_correct += (logits.argmax(1) == yb).sum().item()
            history["step_loss"].append(round(loss.item(), 5))
        val_logits = predict(model, x_va, norm, device, bf16)
        history["epoch"].append(epoch + 1)
        history["train_loss"].append(tot_loss / (steps_per_epoch * bs))
        history["train_acc"].append(tot_correct / (steps_per_epoch * bs))
        history["val_loss"].append(F.cross_entropy(val_logits, y_va).item())
        history["val_acc"].append(accuracy(val_logits, y_va))
        history["epoch_seconds"].append(time.perf_counter() - t0)
        _save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "history": history,
                      "epoch": epoch + 1}, ckpt_path)
        log(f"epoch {epoch + 1}/{cfg['epochs']}: train loss {history['train_loss'][-1]:.3f} "
            f"acc {history['train_acc'][-1]:.3f} | val loss {history['val_loss'][-1]:.3f} "
            f"acc {history['val_acc'][-1]:.3f} | {history['epoch_seconds'][-1]:.1f} s")
        if kill_after_epochs is not None and epoch + 1 >= kill_after_epochs:
            raise KeyboardInterrupt(f"--kill-after-epochs {kill_after_epochs}")   # tests: a kill
    return history
