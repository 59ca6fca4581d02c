# %% [markdown]
# ---
# title: "Task 3 - Design a CNN"
# jupyter: python3
# ---

# %% active="py"
#| include: false
# `python -m experiments.task3_imagenette_cnn` hands this file to the project's runner, which executes it as a
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

REQUIREMENTS = {   # module: pin (optuna brings sqlalchemy along)
    "torch": "torch==2.14.1", "torchvision": "torchvision==0.29.1", "numpy": "numpy==2.4.6", "pandas": "pandas==3.1.1",
    "matplotlib": "matplotlib==3.11.2", "PIL": "pillow==13.0.0", "kornia": "kornia==0.9.0", "optuna": "optuna==5.0.0",
}


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
profile = "full"  # ["full" | "smoke"] "full": the run whose numbers the answers quote; "smoke": a few images and epochs, for a quick check
device = "auto"  # ["auto" | "cpu" | "cuda"] "auto": CUDA when there is one
data_dir = "data"  # [str] the folder holding imagenette2-160/; downloaded by torchvision when it is not there
out_dir = "."  # [str] the run saves its numbers and figures in folders under this one
cache_dir = ".cache"  # [str] decoded images, checkpoints and the Optuna study live here
resume = False  # [bool] continue from the checkpoints and the study of an interrupted run of the same configuration
threads = 0  # [int >= 0] CPU threads for torch (0: torch's default)
torch_compile = "auto"  # ["auto" | "yes" | "no"] torch.compile the training step: "auto" means on CUDA only

# %%
#| label: imports
# imports for the practice (the assignment's first cell, plus what this task uses)
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")   # optuna's progress bars are off anyway
import copy
import errno
import hashlib
import io
import json
import math
import os
import platform
import stat
import statistics
import time

import kornia
import kornia.augmentation as K
import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from IPython.display import Markdown, display
from PIL import Image
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

# %matplotlib inline
seed = 211
np.random.seed(seed)
torch.manual_seed(seed)
optuna.logging.set_verbosity(optuna.logging.WARNING)
NAME = "task3_imagenette_cnn"
NOTEBOOK_START = time.perf_counter()
for name_, value, allowed in (("profile", profile, ("full", "smoke")), ("device", device, ("auto", "cpu", "cuda")),
                              ("torch_compile", torch_compile, ("auto", "yes", "no"))):
    if value not in allowed:   # the runner checks these before the kernel starts; a bare Jupyter checks here
        raise ValueError(f"{name_}: {value!r} is not one of {', '.join(map(repr, allowed))}")
if not (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 0):
    raise ValueError(f"threads: {threads!r} is not an int >= 0")
DEVICE = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
if threads:
    torch.set_num_threads(threads)
COMPILE = {"auto": DEVICE == "cuda", "yes": True, "no": False}[torch_compile]
print(f"device: {torch.cuda.get_device_name() if DEVICE == 'cuda' else 'cpu'}, torch {torch.__version__}, "
      f"{torch.get_num_threads()} CPU threads, torch.compile: {COMPILE}")

# %% [markdown]
# Every setting of this task in one place: the data, the network, the training recipe, the
# candidates of the tuning, part 5's augmentations, and the two profiles.

# %%
#| label: config
RECIPE = {
    "image_size": 64,
    "val_fraction": 0.1,          # of every class of `train`: the validation set
    "split_seed": 0,
    "whiten_eps": 5e-4,           # the frozen 2x2 patch-whitening stem: 1 / sqrt(eigenvalue + eps)
    "widths": [64, 128, 256],     # the three stages, after each 2x2 max-pool
    "groups": 8,                  # GroupNorm groups (no BatchNorm anywhere)
    "batch_size": 128,
    "epochs_noaug": 28,           # part 3, on the 64x64 images: ~19 min per training on a 2-core CPU
    "epochs_aug": 112,            # part 5, on 32x32 crops (4x cheaper per image): ~18 min per training
    "eval_every_aug": 4,          # part 5's validation curve every 4 epochs (part 3: every epoch)
    "warmup_epochs": 1.0,         # linear warm-up, then cosine decay to 0
    "betas": [0.9, 0.99],
    "ema_decay": 0.999,           # the evaluated model is an exponential moving average of the weights
    "bf16": True,                 # bf16 autocast: AMX / AVX-512 on a CPU, tensor cores on a GPU
    "channels_last": True,
    # the recipe's hyperparameters (trial 0 of the search below; it keeps them unless one beats them clearly)
    "lr": 2e-3, "weight_decay": 0.05, "label_smoothing": 0.2, "dropout": 0.2, "drop_path": 0.1,
    "seeds": [0, 1],              # every final training runs once per seed
    "noise_levels": [0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2],
    "noise_seed": 1234,
    "augment": {"flip_p": 0.5, "crop": 32, "pad": 2},   # part 5: a random 32x32 crop of the reflect-padded image, a flip
}
SEARCH = {   # the tuning: the recipe and three changes of it, trained in part 5's cheap setting, scored on validation
    "candidates": [{}, {"lr": 4e-3}, {"lr": 1e-3}, {"weight_decay": 0.1, "drop_path": 0.2}],
    "epochs": 12,
    "resolve_z": 2.0,             # a candidate replaces the recipe only if it is ahead by more than 2 paired SEs
}
PROFILES = {
    "smoke": {"per_class_train": 30, "per_class_test": 20, "val_fraction": 0.2, "widths": [8, 16, 32],
              "groups": 4, "batch_size": 32, "epochs_noaug": 2, "epochs_aug": 2, "eval_every_aug": 1,
              "noise_levels": [0.0, 0.005, 0.01, 0.05, 0.2],
              "search_trials": 2, "search_epochs": 1, "benchmark_batches": 2},
    "full": {"per_class_train": None, "per_class_test": None,
             "search_trials": len(SEARCH["candidates"]), "search_epochs": SEARCH["epochs"], "benchmark_batches": 20},
}
CONFIG = {"profile": profile, **RECIPE, "search": SEARCH, **PROFILES[profile]}
metrics = {}   # every number printed below, saved at the end for the answer PDF
CLASS_NAMES = ["tench", "English springer", "cassette player", "chain saw", "church", "French horn",
               "garbage truck", "gas pump", "golf ball", "parachute"]


def save_figure(fig, what):
    """Keep a figure as PNG (this notebook) and PDF (the answer PDF) under figures/."""
    os.makedirs(os.path.join(out_dir, "figures"), exist_ok=True)
    for ext in ("png", "pdf"):
        fig.savefig(os.path.join(out_dir, "figures", f"{NAME}_{what}.{ext}"), bbox_inches="tight", dpi=100)


# %% [markdown]
# ## 1. Loading Imagenette
#
# Both splits are loaded with `torchvision.datasets.Imagenette` exactly as the assignment asks
# (downloaded when they are not in `data_dir`). The official `val` split (3,925 images) is the
# **test set**, used once per final model. A stratified, seeded validation set is carved out of
# `train` for the tuning. Before anything is decoded, the folders are checked: every class folder
# present and non-empty, no unknown folder, every file a real 8-bit JPEG named `.JPEG` (its header
# and its end-of-image marker), then the expected counts; a problem is one line naming the file.

# %%
#| label: task3-data-functions
WNIDS = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042",
         "n03425413", "n03445777", "n03888257"]
COUNTS = {"train": 9469, "val": 3925}


def check_image_entry(path):
    """One entry of a class folder, cheaply: a printable name, a regular file (or a link to one),
    a .JPEG (torchvision's Imagenette reads only those), whose header is an 8-bit JPEG of sane size
    and whose last bytes are the end-of-image marker. Returns True for an image, False for an
    entry that is not one (a file of another kind), raises naming the file otherwise."""
    name = os.path.basename(path)
    shown = os.fsencode(path).decode("utf-8", "backslashreplace")
    if os.fsencode(name).decode("utf-8", "backslashreplace") != name:
        raise ValueError(f"{shown}: file name is not valid UTF-8 (rename the file)")
    try:
        info = os.stat(path)                       # follows a link
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ValueError(f"{path}: symbolic link loop") from None
        if os.path.islink(path) and e.errno == errno.ENOENT:
            raise ValueError(f"{path}: broken symbolic link (to {os.readlink(path)})") from None
        raise ValueError(f"{path}: cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ValueError(f"{path}: folder inside a class folder (expected only JPEG files)")
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path}: not a regular file")
    lower = name.lower()
    if lower.endswith(".jpg"):
        raise ValueError(f"{path}: a .jpg file: torchvision's Imagenette reads only .jpeg files, so it would "
                         f"be counted here but never trained on (Imagenette's own files are all .JPEG)")
    if not name.lower().endswith((".jpeg", ".jpg")):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open(path, "rb") as f, Image.open(f) as im:
                image_format, mode = im.format, im.mode
                size = f.seek(0, os.SEEK_END)
                f.seek(size - 2)
                end = f.read(2)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"{path}: refused as a decompression bomb ({e})") from None
    except Image.UnidentifiedImageError:
        raise ValueError(f"{path}: image does not decode (PIL cannot identify it as a JPEG or any other image)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"{path}: image does not decode ({e.strerror or e})") from None
    if image_format != "JPEG":
        raise ValueError(f"{path}: not a JPEG but a {image_format} image (mode {mode}) under a JPEG name")
    if mode not in ("L", "RGB", "CMYK"):
        raise ValueError(f"{path}: a JPEG of mode {mode}, expected 8-bit L, RGB, CMYK")
    if end != b"\xff\xd9":
        raise ValueError(f"{path}: truncated JPEG: the file ({size} bytes) does not end with the "
                         f"end-of-image marker FF D9")
    return True


def check_imagenette(root, counts):
    """{split: sorted JPEG paths}, after checking the layout (every class folder present, no unknown
    folder), every entry of every class folder (check_image_entry), then the expected counts; each
    problem is one line naming the folder or the file, before anything is decoded."""
    files = {}
    for split in counts:
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder}: split folder missing")
        for entry in sorted(os.listdir(folder)):
            if os.path.isdir(os.path.join(folder, entry)) and entry not in WNIDS:
                raise ValueError(f"{os.path.join(folder, entry)}: unknown class folder (not one of Imagenette's 10)")
        files[split] = []
        for wnid in WNIDS:
            sub = os.path.join(folder, wnid)
            if not os.path.isdir(sub):
                raise FileNotFoundError(f"{sub}: class folder missing")
            jpegs = [f for f in sorted(os.listdir(sub)) if check_image_entry(os.path.join(sub, f))]
            if not jpegs:
                raise ValueError(f"{sub}: class folder is empty")
            files[split] += [os.path.join(sub, f) for f in jpegs]
    for split, expected in counts.items():
        if len(files[split]) != expected:
            raise ValueError(f"{os.path.join(root, split)}: {len(files[split])} images, expected {expected}")
    return files


def fingerprint(root, files):
    """A hash of every JPEG's name and content: it keys the decoded-image cache and every
    checkpoint, so a changed or corrupted file is never served from a cache or resumed from."""
    digest = hashlib.sha256()
    for split in sorted(files):
        for f in files[split]:
            with open(f, "rb") as fh:
                digest.update(os.path.relpath(f, root).encode() + b"\0" + fh.read())
    return digest.hexdigest()[:16]


# %%
#| label: task3-check-data
root = os.path.join(data_dir, "imagenette2-160")
if not os.path.isdir(root):
    torchvision.datasets.Imagenette(root=data_dir, split="train", size="160px", download=True)
files = check_imagenette(root, COUNTS)
DATA_FINGERPRINT = fingerprint(root, files)
# A resumed run continues trainings of the same data only: refuse one whose data changed.
marker = os.path.join(cache_dir, NAME, f"{profile}_data_fingerprint.txt")
if resume and os.path.exists(marker) and open(marker).read().strip() != DATA_FINGERPRINT:
    raise RuntimeError(f"{root}: the data changed since the interrupted run (fingerprint "
                       f"{open(marker).read().strip()} -> {DATA_FINGERPRINT}); run again without resume")
os.makedirs(os.path.dirname(marker), exist_ok=True)
with open(marker, "w") as f:
    f.write(DATA_FINGERPRINT)
print(f"{root}: 10 classes, {len(files['train'])} train and {len(files['val'])} val images, "
      f"content fingerprint {DATA_FINGERPRINT}")

# %%
#| label: task3-load
transform_train = transforms.Compose([transforms.Resize((64, 64)), transforms.ToTensor()])
transform_test = transforms.Compose([transforms.Resize((64, 64)), transforms.ToTensor()])
train_set = torchvision.datasets.Imagenette(root=data_dir, split="train", size="160px", download=False,
                                            transform=transform_train)
test_set = torchvision.datasets.Imagenette(root=data_dir, split="val", size="160px", download=False,
                                           transform=transform_test)
print(f"train: {len(train_set)} images, test: {len(test_set)} images, one image: {tuple(train_set[0][0].shape)}")

fig, axes = plt.subplots(1, 5, figsize=(11, 2.6))
for ax, i in zip(axes, torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed))[:5].tolist()):
    image, label = train_set[i]
    ax.imshow(image.permute(1, 2, 0).numpy())
    ax.set_title(CLASS_NAMES[label])
    ax.axis("off")
fig.tight_layout()
save_figure(fig, "samples")
plt.show()


# %% [markdown]
# **Decode once.** The pipeline above decodes and resizes a JPEG every time an image is read,
# every epoch. Instead, every image goes once through the *same* `Resize((64, 64))` and is kept as
# `uint8` (`PILToTensor`; `ToTensor` is exactly that divided by 255), on the training device. Each
# epoch then only indexes a tensor. The cache file is keyed by the content fingerprint above.

# %%
#| label: task3-cache
def stratified_subset(labels, per_class, seed):
    """Indices of per_class random examples of every class (seeded), sorted."""
    g = torch.Generator().manual_seed(seed)
    out = [idx[torch.randperm(len(idx), generator=g)[:per_class]]
           for c in range(10) for idx in [(labels == c).nonzero().flatten()]]
    return torch.cat(out).sort().values


def stratified_split(labels, fraction, seed):
    """(train, validation) indices: `fraction` of every class for validation, seeded."""
    g = torch.Generator().manual_seed(seed)
    tr, va = [], []
    for c in range(10):
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = int(round(fraction * len(idx)))
        va.append(idx[:n_val])
        tr.append(idx[n_val:])
    return torch.cat(tr).sort().values, torch.cat(va).sort().values


def decoded(split, per_class):
    """(uint8 N x 3 x 64 x 64, int64 labels) of a split, decoded once and cached by content."""
    key = f"{split}_{CONFIG['image_size']}px_{per_class or 'all'}_{DATA_FINGERPRINT}"
    path = os.path.join(cache_dir, "imagenette", key + ".pt")
    if os.path.exists(path):
        blob = torch.load(path, weights_only=True)
        return blob["x"], blob["y"]
    ds = torchvision.datasets.Imagenette(root=data_dir, split=split, size="160px", download=False,
                                         transform=transforms.Compose([transforms.Resize((64, 64)),
                                                                       transforms.PILToTensor()]))
    y = torch.tensor([label for _, label in ds._samples])
    if per_class is not None:
        ds = Subset(ds, stratified_subset(y, per_class, CONFIG["split_seed"]).tolist())
    xs, ys = [], []
    for xb, yb in DataLoader(ds, batch_size=256, num_workers=2):
        xs.append(xb)
        ys.append(yb)
    x, y = torch.cat(xs), torch.cat(ys)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    buf = io.BytesIO()
    torch.save({"x": x, "y": y}, buf)
    with open(path + ".tmp", "wb") as f:        # written whole, then renamed: never half a cache
        f.write(buf.getvalue())
    os.replace(path + ".tmp", path)
    return x, y


def normalize(x01):
    """An image batch in [0, 1] -> normalised, in the memory layout the network runs fastest in."""
    x = (x01 - MEAN_DEV) / STD_DEV
    return x.contiguous(memory_format=torch.channels_last) if CONFIG["channels_last"] else x


# %%
#| label: task3-decode
t0 = time.perf_counter()
x_all, y_all = decoded("train", CONFIG["per_class_train"])
x_test, y_test = decoded("val", CONFIG["per_class_test"])
tr_idx, va_idx = stratified_split(y_all, CONFIG["val_fraction"], CONFIG["split_seed"])
x_train, y_train, x_val, y_val = x_all[tr_idx], y_all[tr_idx], x_all[va_idx], y_all[va_idx]
# the cache is the assignment's pipeline exactly: uint8 / 255 == Resize((64, 64)) + ToTensor()
order = (torch.arange(len(train_set)) if CONFIG["per_class_train"] is None else
         stratified_subset(torch.tensor([label for _, label in train_set._samples]), CONFIG["per_class_train"], CONFIG["split_seed"]))
assert all(torch.equal(x_all[i].float() / 255, train_set[order[i]][0]) for i in (0, len(order) // 2, len(order) - 1))
MEAN = (x_train.float() / 255).mean((0, 2, 3))
STD = (x_train.float() / 255).std((0, 2, 3))
print(f"decoded in {time.perf_counter() - t0:.1f} s: {len(x_train)} training, {len(x_val)} validation and "
      f"{len(x_test)} test images, {x_all.dtype}")
print(f"Normalize with the training images' per-channel mean {MEAN.numpy().round(3)} and std {STD.numpy().round(3)}")
metrics.update(n_train=len(x_train), n_val=len(x_val), n_test=len(x_test), data_fingerprint=DATA_FINGERPRINT,
               normalize_mean=MEAN.tolist(), normalize_std=STD.tolist())
x_train_dev, y_train_dev = x_train.to(DEVICE), y_train.to(DEVICE)
MEAN_DEV, STD_DEV = MEAN.view(1, 3, 1, 1).to(DEVICE), STD.view(1, 3, 1, 1).to(DEVICE)



# %% [markdown]
# ## 2. The network
#
# A residual CNN in the style of ResNet-9, with GroupNorm in place of BatchNorm (GroupNorm
# normalises over groups of channels of one image, so it behaves the same in training and
# evaluation). GELU activations; every learned convolution is $3\times3$ with padding 1.
#
# - **stem: a frozen $2\times2$ patch-whitening convolution** ($3\to24$, no padding, so
#   $64\times64\to63\times63$) and GELU. Its 24 filters are fixed before training from the
#   training images: the 12 eigenvectors $v_k$ of the second-moment matrix of all $2\times2\times3$
#   patches of the normalised training images, each scaled by $1/\sqrt{\lambda_k+\varepsilon}$,
#   and their negatives (so the GELU after it loses no direction). It maps every patch to
#   decorrelated coordinates of unit variance: a fixed linear layer computed once from the data
#   (not a BatchNorm: no batch statistics, nothing updated in training); only its bias is learned.
#   This is the first layer of KellerJordan's cifar10-airbench.
# - three stages of widths $w_1, w_2, w_3$: a conv to the stage's width, $2\times2$ max-pool,
#   GroupNorm, GELU, then a residual block (two conv-GroupNorm-GELU, added to its input; the
#   block's last GroupNorm gain starts at 0, so each block starts as the identity, and during
#   training the whole branch is dropped per image with probability `drop_path`);
# - head: global average pooling, dropout, **one fully connected layer** from the last width to the
#   10 classes.
#
# Input: a $3\times64\times64$ image (spatial sizes $63\to31\to15\to7$). Output: 10 logits
# (softmax inside the cross-entropy loss). The network is fully convolutional with global pooling,
# so part 5 can train it on $32\times32$ crops and test it on the whole $64\times64$ image.

# %%
#| label: task3-model
class ConvGN(nn.Sequential):
    """3x3 conv (optionally followed by a 2x2 max-pool), GroupNorm, GELU."""

    def __init__(self, c_in, c_out, groups, pool=False):
        layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
        if pool:
            layers.append(nn.MaxPool2d(2))       # pool before the norm: a 4x cheaper norm
        super().__init__(*layers, nn.GroupNorm(groups, c_out), nn.GELU())


class Residual(nn.Module):
    def __init__(self, c, groups, drop_path):
        super().__init__()
        self.branch = nn.Sequential(ConvGN(c, c, groups), ConvGN(c, c, groups))
        nn.init.zeros_(self.branch[1][1].weight)   # the branch starts at 0: the block starts as identity
        self.drop_path = drop_path

    def forward(self, x):
        y = self.branch(x)
        if self.training and self.drop_path > 0:    # stochastic depth: drop the branch per image
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.drop_path
            y = y * keep / (1 - self.drop_path)
        return x + y


def whitening_filters(x_uint8, eps, chunk=500):
    """24 frozen 2x2 filters: the eigenvectors of the 2x2x3 patches' second-moment matrix (the
    normalised training images, every patch position), scaled by 1 / sqrt(eigenvalue + eps), and
    their negatives. Largest eigenvalue first."""
    moment, n = torch.zeros(12, 12, dtype=torch.float64), 0
    for i in range(0, len(x_uint8), chunk):
        x = (x_uint8[i:i + chunk].float() / 255 - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1)
        patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
        moment += patches.T @ patches                   # (c, h, w) order: a conv weight's
        n += len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(moment / n)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.flip(0)   # one filter per row
    w = (eigenvectors / torch.sqrt(eigenvalues + eps).unsqueeze(1)).reshape(12, 3, 2, 2).float()
    return torch.cat([w, -w])


class Net(nn.Module):
    def __init__(self, whiten, widths, groups, dropout, drop_path, num_classes=10):
        super().__init__()
        stem = nn.Conv2d(3, whiten.shape[0], 2, bias=True)
        stem.weight.data.copy_(whiten)
        stem.weight.requires_grad_(False)              # frozen: a fixed linear map computed from the data
        nn.init.zeros_(stem.bias)
        layers, c = [stem, nn.GELU()], whiten.shape[0]
        for w in widths:
            layers += [ConvGN(c, w, groups, pool=True), Residual(w, groups, drop_path)]
            c = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c, num_classes))

    def forward(self, x):
        return self.head(self.body(x))


WHITEN = whitening_filters(x_train, CONFIG["whiten_eps"])


def make_net(hp):
    return Net(WHITEN, CONFIG["widths"], CONFIG["groups"], hp["dropout"], hp["drop_path"])


# %%
#| label: task3-model-summary
net = make_net(CONFIG)
assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()), "no BatchNorm allowed"
rows = []
for name_, m in net.named_modules():
    if isinstance(m, (nn.Conv2d, nn.Linear, nn.GroupNorm)):
        kind = (f"Conv2d {m.in_channels}->{m.out_channels}, {m.kernel_size[0]}x{m.kernel_size[1]}" if isinstance(m, nn.Conv2d)
                else f"Linear {m.in_features}->{m.out_features}" if isinstance(m, nn.Linear)
                else f"GroupNorm {m.num_groups} groups x {m.num_channels} channels")
        rows.append({"layer": name_, "kind": kind, "weights": sum(p.numel() for p in m.parameters()),
                     "trained": sum(p.numel() for p in m.parameters() if p.requires_grad)})
n_params = sum(p.numel() for p in net.parameters())
n_frozen = sum(p.numel() for p in net.parameters() if not p.requires_grad)
size_mb = n_params * 4 / 2**20            # MB as the course's convolution tutorial counts it
layer_table = pd.DataFrame(rows)
out_shape = tuple(net(torch.zeros(1, 3, 64, 64)).shape)
print(f"input 1 x 3 x 64 x 64 -> output {out_shape}")
print(f"{sum(isinstance(m, nn.Conv2d) for m in net.modules())} convolutions and "
      f"{sum(isinstance(m, nn.Linear) for m in net.modules())} fully connected layer")
print(f"number of parameters (weights and biases): {n_params:,}, of which {n_frozen:,} frozen (the whitening filters)")
print(f"model size: {size_mb:.2f} MB (float32, 4 bytes per parameter, 1 MB = 2^20 bytes; {n_params * 4 / 1e6:.2f} MB "
      f"at 10^6 bytes)")
assert n_params == layer_table["weights"].sum()     # every weight sits in a listed layer
metrics.update(params=n_params, frozen_params=n_frozen, size_mb=size_mb, layers=rows, n_conv=sum(isinstance(m, nn.Conv2d) for m in net.modules()))
layer_table

# %% [markdown]
# ## 3. Training without augmentation
#
# The training loop: AdamW (weight decay on the conv and linear weights only), a linear warm-up
# then a cosine decay of the learning rate to 0, label-smoothed cross-entropy, bf16 autocast. The
# evaluated model is an exponential moving average (EMA) of the weights, which averages away the
# noise of the last steps. No augmentation: the only input operation is `Normalize`. Every epoch
# is checkpointed (weights, EMA, optimizer, history), keyed by the configuration and the data's
# fingerprint, so an interrupted run resumes exactly where it stopped; all randomness of epoch $e$
# comes from generators seeded with (seed, $e$).

# %%
#| label: task3-train
def autocast():
    return torch.autocast(device_type="cuda" if DEVICE == "cuda" else "cpu", dtype=torch.bfloat16,
                          enabled=CONFIG["bf16"])


@torch.inference_mode()
def predict(model, x_uint8, noise_std=0.0, flip_tta=False, batch_size=500):
    """Softmax probabilities for every image; with noise_std > 0, each image gets noise_std * N(0, 1)
    added in [0, 1] space before Normalize (not clamped) from a fixed seed; flip_tta averages the
    image and its mirror."""
    model.eval()
    g = torch.Generator().manual_seed(CONFIG["noise_seed"])
    out = []
    for i in range(0, len(x_uint8), batch_size):
        x = x_uint8[i:i + batch_size].to(DEVICE).float() / 255
        if noise_std > 0:   # drawn on the CPU from one generator: the same noise on every device
            x = x + (noise_std * torch.randn(x.shape, generator=g)).to(DEVICE)
        with autocast():
            p = model(normalize(x)).float().softmax(1)
            if flip_tta:
                p = (p + model(normalize(x.flip(3))).float().softmax(1)) / 2
        out.append(p.cpu())
    return torch.cat(out)


def accuracy(probs, y):
    return (probs.argmax(1) == y).float().mean().item()


def checkpoint_path(tag, hp, seed, epochs, augment):
    what = {"recipe": {k: CONFIG[k] for k in ("image_size", "widths", "whiten_eps", "groups", "batch_size",
                                              "warmup_epochs", "betas", "ema_decay", "bf16", "channels_last",
                                              "val_fraction", "split_seed", "per_class_train")},
            "hp": hp, "seed": seed, "epochs": epochs, "augment": augment and CONFIG["augment"], "data": DATA_FINGERPRINT}
    key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(cache_dir, NAME, f"{tag}_{key}.pt")


def save_atomic(obj, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)


def train(hp, seed, epochs, augment=None, eval_every=1, tag="run", trial=None, verbose=True):
    """Train a fresh network; returns (EMA model, history). The EMA model is scored on the
    validation set every eval_every epochs and at the last. Checkpoints every epoch unless tuning."""
    torch.manual_seed(seed)
    model = make_net(hp).to(DEVICE)
    if CONFIG["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for p in trainable if p.ndim > 1], "weight_decay": hp["weight_decay"]},
                             {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0}],
                            lr=hp["lr"], betas=tuple(CONFIG["betas"]))
    bs, n = CONFIG["batch_size"], len(x_train)
    steps = n // bs                                      # equal-size steps: the last partial batch is dropped
    total, warmup = steps * epochs, max(1, int(CONFIG["warmup_epochs"] * steps))
    history = {k: [] for k in ("epoch", "train_loss", "train_acc", "seconds", "step_loss",
                               "val_epoch", "val_loss", "val_acc")}
    start, ckpt = 0, None if trial is not None else checkpoint_path(tag, hp, seed, epochs, augment is not None)
    if ckpt and os.path.exists(ckpt):
        if resume:
            state = torch.load(ckpt, weights_only=False)
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            opt.load_state_dict(state["opt"])
            history, start = state["history"], state["epoch"]
            print(f"{tag}: resumed after epoch {start}")
        else:
            os.remove(ckpt)                                 # a fresh run never reuses a checkpoint
    forward = torch.compile(model) if COMPILE else model
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        model.train()
        torch.manual_seed(seed * 100_003 + epoch)          # dropout, drop-path and kornia draw from here
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))[:steps * bs].to(DEVICE)
        loss_sum = correct = 0.0
        for i in range(steps):
            step = epoch * steps + i
            lr = hp["lr"] * ((step + 1) / warmup if step < warmup
                             else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))
            for group in opt.param_groups:
                group["lr"] = lr
            idx = perm[i * bs:(i + 1) * bs]
            x = x_train_dev[idx].float() / 255
            if augment is not None:
                x = augment(x)
            with autocast():
                logits = forward(normalize(x))
            loss = F.cross_entropy(logits.float(), y_train_dev[idx], label_smoothing=hp["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():                           # EMA, with a short warm-up of its own
                d = min(CONFIG["ema_decay"], (1 + step) / (10 + step))
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - d)
            loss_sum += loss.item()
            correct += (logits.argmax(1) == y_train_dev[idx]).float().mean().item()
            history["step_loss"].append(round(loss.item(), 5))
        history["epoch"].append(epoch + 1)
        history["train_loss"].append(loss_sum / steps)
        history["train_acc"].append(correct / steps)
        line = (f"{tag} epoch {epoch + 1:2d}/{epochs}: train loss {history['train_loss'][-1]:.3f} "
                f"acc {history['train_acc'][-1]:.3f}")
        if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
            probs = predict(ema, x_val)
            history["val_epoch"].append(epoch + 1)
            history["val_loss"].append(F.nll_loss(probs.clamp_min(1e-12).log(), y_val).item())
            history["val_acc"].append(accuracy(probs, y_val))
            line += f" | validation loss {history['val_loss'][-1]:.3f} acc {history['val_acc'][-1]:.3f}"
            if trial is not None:
                trial.report(history["val_acc"][-1], epoch)
        history["seconds"].append(time.perf_counter() - t0)
        if verbose:
            print(line + f" | {history['seconds'][-1]:.0f} s", flush=True)
        if ckpt:
            save_atomic({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                         "history": history, "epoch": epoch + 1}, ckpt)
    return ema, history


# %% [markdown]
# **Tuning on validation.** Each candidate below is the recipe with one change (trial 0 is the
# recipe itself), trained for `search_epochs` epochs in part 5's setting (32x32 crops: a quarter
# of the compute of a 64x64 epoch, so the search costs about one part-3 training) on the training
# part and scored by the EMA model on the validation set; Optuna stores the trials. A candidate
# replaces the recipe only if it is ahead of it by more than `resolve_z` standard errors of the
# paired difference (the same validation images: the SE comes from the images the two get
# differently). The test set is not touched.

# %%
#| label: task3-search
def make_augment():
    """Part 5's augmentation, on whole batches on the device: a horizontal flip, then a random
    crop x crop window of the image reflect-padded by pad pixels."""
    a = CONFIG["augment"]
    return nn.Sequential(
        K.RandomHorizontalFlip(p=a["flip_p"]),
        K.RandomCrop((a["crop"], a["crop"]), padding=a["pad"], padding_mode="reflect"),
    ).to(DEVICE)


def paired_difference(correct_a, correct_b):
    """(mean of a - b, its standard error) over the same images: the SE of the mean of the
    per-image differences (each -1, 0 or 1)."""
    d = correct_a.float() - correct_b.float()
    return d.mean().item(), (d.var(unbiased=True) / len(d)).sqrt().item()


augment = make_augment()
url = f"sqlite:///{os.path.abspath(os.path.join(cache_dir, 'optuna', NAME + '.db'))}"
os.makedirs(os.path.dirname(url[len("sqlite:///"):]), exist_ok=True)
study_key = hashlib.sha256(json.dumps([CONFIG, DATA_FINGERPRINT], sort_keys=True).encode()).hexdigest()[:8]
study_name = f"{NAME}-{profile}-{study_key}"
if not resume:
    try:
        optuna.delete_study(study_name=study_name, storage=url)
    except KeyError:
        pass
HP_KEYS = ("lr", "weight_decay", "label_smoothing", "dropout", "drop_path")
candidates = [{k: CONFIG[k] for k in HP_KEYS} | c for c in SEARCH["candidates"]][:CONFIG["search_trials"]]
study = optuna.create_study(storage=url, study_name=study_name, direction="maximize", load_if_exists=True)
for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
    study.tell(t.number, state=optuna.trial.TrialState.FAIL)    # left RUNNING by a killed run
if not study.get_trials(deepcopy=False):
    for c in candidates:
        study.enqueue_trial(c)


def objective(trial):
    hp = {k: trial.suggest_float(k, *((1e-6, 1.0) if k in ("lr", "weight_decay") else (0.0, 1.0)),
                                 log=k in ("lr", "weight_decay")) for k in HP_KEYS}
    model, h = train(hp, seed=0, epochs=CONFIG["search_epochs"], augment=augment, eval_every=CONFIG["search_epochs"],
                     tag=f"trial {trial.number}", trial=trial, verbose=False)
    correct = predict(model, x_val).argmax(1) == y_val
    trial.set_user_attr("val_correct", "".join("01"[int(c)] for c in correct))
    changed = {k: v for k, v in hp.items() if v != CONFIG[k]}
    print(f"trial {trial.number} ({', '.join(f'{k} {v:g}' for k, v in changed.items()) or 'the recipe'}): "
          f"validation accuracy {h['val_acc'][-1]:.4f} after {CONFIG['search_epochs']} epoch{'s' * (CONFIG['search_epochs'] > 1)} "
          f"({sum(h['seconds']):.0f} s)", flush=True)
    return h["val_acc"][-1]


t0 = time.perf_counter()
finished = (optuna.trial.TrialState.COMPLETE,)
study.optimize(objective, n_trials=max(0, len(candidates) - len(study.get_trials(states=finished))))
done = sorted(study.get_trials(states=finished), key=lambda t: t.number)
correct_of = {t.number: torch.tensor([c == "1" for c in t.user_attrs["val_correct"]]) for t in done}
recipe_trial = done[0]                                   # trial 0: the recipe
search_rows = []
for t in done:
    diff, se = paired_difference(correct_of[t.number], correct_of[recipe_trial.number])
    search_rows.append({"trial": t.number, "val acc": t.value, "vs recipe": diff, "paired SE": se,
                        "z": diff / se if se > 0 else 0.0, **t.params})
ahead = [r for r in search_rows if r["trial"] != recipe_trial.number and r["z"] > SEARCH["resolve_z"]]
chosen = max(ahead, key=lambda r: r["val acc"]) if ahead else search_rows[0]
best_hp = {k: float(chosen[k]) for k in HP_KEYS}
se_val = (recipe_trial.value * (1 - recipe_trial.value) / len(y_val)) ** 0.5
print(f"{len(done)} trials of {CONFIG['search_epochs']} epoch{'s' * (CONFIG['search_epochs'] > 1)} in {time.perf_counter() - t0:.0f} s; the binomial SE "
      f"of one validation accuracy is {se_val:.4f}")
print(f"chosen: trial {chosen['trial']} " + (f"(ahead of the recipe by {chosen['vs recipe']:+.4f}, "
      f"{chosen['z']:.1f} paired SEs)" if ahead else f"(the recipe: no candidate is ahead of it by more than "
      f"{SEARCH['resolve_z']:g} paired SEs; the largest lead is {max(r['z'] for r in search_rows[1:]) if len(search_rows) > 1 else 0:.1f})"))
print("hyperparameters:", {k: f"{v:.3g}" for k, v in best_hp.items()})
metrics.update(search_trials=[{"number": r["trial"], "value": r["val acc"], "vs_recipe": r["vs recipe"],
                               "paired_se": r["paired SE"], "z": r["z"], "params": {k: r[k] for k in HP_KEYS}}
                              for r in search_rows],
               search_chosen=chosen["trial"], search_resolved=bool(ahead), search_val_se=se_val,
               best_hp=best_hp, search_seconds=time.perf_counter() - t0)
pd.DataFrame(search_rows).round(4)

# %% [markdown]
# **The hyperparameters of parts 3 and 5** (this Markdown table is generated from the values in
# use, the searched ones included):

# %%
#| label: task3-hyperparameters
searched = "searched" if metrics["search_resolved"] else "the recipe's; the search kept it"
rows_ = [("batch size", CONFIG["batch_size"]),
         ("epochs", f"part 3: {CONFIG['epochs_noaug']} on the 64x64 images; part 5: {CONFIG['epochs_aug']} on "
                    f"{CONFIG['augment']['crop']}x{CONFIG['augment']['crop']} crops (about the same compute)"),
         ("optimizer", f"AdamW, betas {tuple(CONFIG['betas'])}, weight decay on conv and linear weights only"),
         ("learning rate", f"{best_hp['lr']:.3g} peak ({searched})"),
         ("schedule", f"linear warm-up for {CONFIG['warmup_epochs']:g} epoch, then cosine decay to 0 (per step)"),
         ("weight decay", f"{best_hp['weight_decay']:.3g} ({searched})"),
         ("label smoothing", f"{best_hp['label_smoothing']:.3g}"),
         ("dropout before the linear layer", f"{best_hp['dropout']:.3g}"),
         ("drop-path (stochastic depth) per residual branch", f"{best_hp['drop_path']:.3g} ({searched})"),
         ("weight averaging", f"EMA, decay {CONFIG['ema_decay']}: the evaluated model"),
         ("precision and layout", "bf16 autocast, channels-last"),
         ("tuning", f"{len(done)} candidates of {CONFIG['search_epochs']} epochs (part 5's setting), trained on "
                    f"{len(x_train):,} images, scored on the {len(x_val):,}-image validation set")]
display(Markdown("| | value |\n|:--|:--|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows_)))

# %% [markdown]
# **Final training.** The chosen hyperparameters, the full schedule, once per seed, on the
# training part (the validation curve is the honest learning curve); then the test set, once per
# model. Beside each test accuracy, its binomial standard error on the test images,
# $\sqrt{p(1-p)/n}$.

# %%
#| label: task3-noaug
def binomial_se(p, n):
    return (p * (1 - p) / n) ** 0.5


final = {"noaug": {}, "aug": {}}
for s in CONFIG["seeds"]:
    model, hist = train(best_hp, seed=s, epochs=CONFIG["epochs_noaug"], tag=f"part 3, seed {s}")
    probs = predict(model, x_test)
    final["noaug"][s] = {"model": model, "history": hist, "test_accuracy": accuracy(probs, y_test), "probs": probs}
    print(f"part 3 (no augmentation), seed {s}: test accuracy {final['noaug'][s]['test_accuracy']:.4f} "
          f"(SE {binomial_se(final['noaug'][s]['test_accuracy'], len(y_test)):.4f}; training "
          f"{sum(hist['seconds']) / 60:.1f} min)")
accs = [r["test_accuracy"] for r in final["noaug"].values()]
print(f"part 3 test accuracy: {statistics.fmean(accs):.4f} (mean of {len(accs)} seeds"
      + (f", sample std {statistics.stdev(accs):.4f})" if len(accs) > 1 else ")"))
ensemble_noaug = accuracy(sum(r["probs"] for r in final["noaug"].values()) / len(accs), y_test)
print(f"beside it, the {len(accs)} seeds' ensemble (mean of their probabilities): {ensemble_noaug:.4f}")


def plot_curves(runs, title, what):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for k, (s, r) in enumerate(runs.items()):
        h = r["history"]
        steps = np.arange(1, len(h["step_loss"]) + 1) / (len(h["step_loss"]) / len(h["epoch"]))
        if k == 0:
            ax1.plot(steps, h["step_loss"], color="0.8", lw=0.6, label=f"train loss per step (seed {s})")
        ax1.plot(h["epoch"], h["train_loss"], "o-", ms=2, color=f"C{2 * k}", label=f"train, seed {s}")
        ax1.plot(h["val_epoch"], h["val_loss"], "s-", ms=3, color=f"C{2 * k + 1}", label=f"validation, seed {s}")
        ax2.plot(h["epoch"], h["train_acc"], "o-", ms=2, color=f"C{2 * k}", label=f"train, seed {s}")
        ax2.plot(h["val_epoch"], h["val_acc"], "s-", ms=3, color=f"C{2 * k + 1}", label=f"validation (EMA), seed {s}")
    ax1.set_ylabel("cross-entropy (train: label-smoothed)")
    ax2.set_ylabel("accuracy")
    for ax in (ax1, ax2):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, what)
    plt.show()


plot_curves(final["noaug"], "Part 3: no augmentation (64x64 images)", "curves_noaug")

# %% [markdown]
# ## 4. Robustness to noise
#
# Each test image gets $a\times\mathcal N(0,1)$ added to its pixels in $[0,1]$, before
# `Normalize`, not clipped, from a fixed noise seed; the part 3 models (both seeds):

# %%
#| label: task3-noise
noise = {stage: {} for stage in ("noaug", "aug")}


def noise_curve(stage):
    for s, r in final[stage].items():
        noise[stage][s] = {f"{a:g}": accuracy(predict(r["model"], x_test, noise_std=a), y_test)
                           for a in CONFIG["noise_levels"]}


noise_curve("noaug")
for a in (0.0, 0.05, 0.01, 0.005):
    if f"{a:g}" in noise["noaug"][CONFIG["seeds"][0]]:
        values = [noise["noaug"][s][f"{a:g}"] for s in CONFIG["seeds"]]
        print(f"a = {a}: test accuracy {statistics.fmean(values):.4f} (SE {binomial_se(statistics.fmean(values), len(y_test)):.4f}; seeds: "
              + ", ".join(f"{v:.4f}" for v in values) + ")")

# %% [markdown]
# ## 5. Training with augmentation (kornia)
#
# The same network and hyperparameters as part 3, now with [kornia](https://kornia.readthedocs.io)
# augmentations (`make_augment` above) applied to whole batches on the training device:
#
# - `RandomHorizontalFlip` (p = 0.5): Imagenette's classes look the same mirrored;
# - `RandomCrop` of a **32x32 window** of the image reflect-padded by 2 pixels: every step sees a
#   random quarter of each image, at the image's own scale (no resizing). The network is fully
#   convolutional with global pooling, so it is tested on the whole 64x64 image. A 32x32 step costs
#   about a quarter of a 64x64 one, so part 5 runs four times the epochs of part 3 in about the
#   same time.
#
# Evaluated on the plain test images; beside it, flip test-time augmentation (the mean of the
# image's and its mirror's predictions).

# %%
#| label: task3-augment
torch.manual_seed(0)
one_per_class = torch.stack([(y_train == c).nonzero()[0, 0] for c in range(10)])[:6]   # six classes
x = x_train[one_per_class].float() / 255
rows_ = [x] + [augment(x.to(DEVICE)).cpu() for _ in range(2)]
fig, axes = plt.subplots(3, 6, figsize=(10, 5.4))
for r, xs in enumerate(rows_):
    for c in range(6):
        axes[r, c].imshow(xs[c].clamp(0, 1).permute(1, 2, 0).numpy())
        axes[r, c].axis("off")
        if r == 0:
            axes[r, c].set_title(CLASS_NAMES[int(y_train[one_per_class[c]])], fontsize=8)
    axes[r, 0].text(-0.1, 0.5, "original 64x64" if r == 0 else f"32x32 crop,\ndraw {r}", fontsize=8,
                    transform=axes[r, 0].transAxes, ha="right", va="center")
fig.tight_layout()
save_figure(fig, "augment")
plt.show()

# %%
#| label: task3-aug
for s in CONFIG["seeds"]:
    model, hist = train(best_hp, seed=s, epochs=CONFIG["epochs_aug"], augment=augment,
                        eval_every=CONFIG["eval_every_aug"], tag=f"part 5, seed {s}")
    probs = predict(model, x_test)
    final["aug"][s] = {"model": model, "history": hist, "test_accuracy": accuracy(probs, y_test), "probs": probs,
                       "test_accuracy_flip_tta": accuracy(predict(model, x_test, flip_tta=True), y_test)}
    print(f"part 5 (kornia augmentation), seed {s}: test accuracy {final['aug'][s]['test_accuracy']:.4f} "
          f"(SE {binomial_se(final['aug'][s]['test_accuracy'], len(y_test)):.4f}; with flip TTA "
          f"{final['aug'][s]['test_accuracy_flip_tta']:.4f}; training {sum(hist['seconds']) / 60:.1f} min)")
for stage, label in (("noaug", "part 3, no augmentation"), ("aug", "part 5, kornia augmentation")):
    a_ = [r["test_accuracy"] for r in final[stage].values()]
    print(f"{label}: test accuracy {statistics.fmean(a_):.4f} (mean of {len(a_)} seeds: "
          + ", ".join(f"{v:.4f}" for v in a_) + ")")
tta = [r["test_accuracy_flip_tta"] for r in final["aug"].values()]
print(f"part 5 with flip TTA: {statistics.fmean(tta):.4f} (mean of {len(tta)} seeds)")
# Did augmentation help? Per seed, the two models are compared on the same test images (paired SE),
# and the mean over seeds is set against the spread of the seeds.
gain = statistics.fmean(r["test_accuracy"] for r in final["aug"].values()) - statistics.fmean(accs)
paired = {s: paired_difference(final["aug"][s]["probs"].argmax(1) == y_test, final["noaug"][s]["probs"].argmax(1) == y_test)
          for s in CONFIG["seeds"]}
gain_se = (sum(se ** 2 for _, se in paired.values()) ** 0.5) / len(paired)   # SE of the mean of the per-seed differences
for s, (d, se) in paired.items():
    print(f"seed {s}: augmentation changed the test accuracy by {d:+.4f} (paired SE {se:.4f}, z = {d / se:.1f})")
gain_verdict = ("improved the test accuracy" if gain > 2 * gain_se else "lowered the test accuracy" if gain < -2 * gain_se
                else "changed the test accuracy by less than 2 SEs")
print(f"mean over seeds: {gain:+.4f} (paired SE {gain_se:.4f}, z = {gain / gain_se:.1f}): augmentation {gain_verdict} "
      f"(same network and hyperparameters)")
plot_curves(final["aug"], "Part 5: kornia augmentation (trained on 32x32 crops, validated on 64x64 images)", "curves_aug")

# %% [markdown]
# ## Going beyond
#
# **Noise, both models**, over a wider range of $a$:

# %%
#| label: task3-noise-curve
noise_curve("aug")
fig, ax = plt.subplots(figsize=(6, 3.6))
for stage, label in (("noaug", "no augmentation (part 3)"), ("aug", "kornia augmentation (part 5)")):
    curve = np.array([[noise[stage][s][f"{a:g}"] for a in CONFIG["noise_levels"]] for s in CONFIG["seeds"]])
    ax.plot(CONFIG["noise_levels"], curve.mean(0), "o-", label=label)
    ax.fill_between(CONFIG["noise_levels"], curve.min(0), curve.max(0), alpha=0.2)
    print(f"{label}: " + ", ".join(f"a={a:g}: {v:.4f}" for a, v in zip(CONFIG["noise_levels"], curve.mean(0))))
ax.set_xlabel("noise std a (image in [0, 1])")
ax.set_ylabel(f"test accuracy (mean of {len(CONFIG['seeds'])} seeds)")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
save_figure(fig, "noise")
plt.show()

# %% [markdown]
# **Per-class accuracy and confusions** (seed 0 of each model):

# %%
#| label: task3-confusion
confusion, per_class, confused_with = {}, {}, {}
fig, axes = plt.subplots(1, 2, figsize=(13, 5.6))
for ax, stage, title in zip(axes, ("noaug", "aug"), ("no augmentation", "kornia augmentation")):
    r = final[stage][CONFIG["seeds"][0]]
    cm = torch.zeros(10, 10, dtype=torch.long)
    cm.index_put_((y_test, r["probs"].argmax(1)), torch.ones(len(y_test), dtype=torch.long), accumulate=True)
    confusion[stage] = cm.tolist()
    per_class[stage] = {CLASS_NAMES[c]: (cm[c, c] / cm[c].sum().clamp_min(1)).item() for c in range(10)}
    off = cm.clone().fill_diagonal_(0)
    confused_with[stage] = {CLASS_NAMES[c]: {"class": CLASS_NAMES[int(off[c].argmax())], "count": int(off[c].max())}
                            for c in range(10)}
    ax.imshow(cm / cm.sum(1, keepdim=True).clamp_min(1), cmap="Blues", vmin=0, vmax=1)
    for i in range(10):
        for j in range(10):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > 0.5 * cm[i].sum() else "black")
    ax.set_xticks(range(10), CLASS_NAMES, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(10), CLASS_NAMES, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: test accuracy {r['test_accuracy']:.3f}")
fig.tight_layout()
save_figure(fig, "confusion")
plt.show()
for c in CLASS_NAMES:
    w = confused_with["aug"][c]
    print(f"{c:17s} no aug {per_class['noaug'][c]:6.1%}  aug {per_class['aug'][c]:6.1%}   "
          f"most often taken for: {w['class']} ({w['count']} images, augmented model)")

# %% [markdown]
# **Why decode once: the input pipeline, timed.** The same training step fed by the assignment's
# pipeline (a `DataLoader` over the `Imagenette` dataset, which decodes and resizes every JPEG on
# every read, 2 worker processes) and by the `uint8` tensor held on the device:

# %%
#| label: task3-benchmark
def timed_steps(batches, n):
    model = make_net(CONFIG).to(DEVICE).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    t0, done_ = time.perf_counter(), 0
    for xb, yb in batches:
        if done_ == n:
            break
        with autocast():
            loss = F.cross_entropy(model(normalize(xb.to(DEVICE, non_blocking=True))).float(), yb.to(DEVICE))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done_ += 1
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, done_


n_batches, bs = CONFIG["benchmark_batches"], CONFIG["batch_size"]
plain_set = torchvision.datasets.Imagenette(root=data_dir, split="train", size="160px", download=False,
                                            transform=transforms.Compose([transforms.Resize((64, 64)), transforms.ToTensor()]))
if CONFIG["per_class_train"] is not None:
    plain_set = Subset(plain_set, stratified_subset(torch.tensor([l for _, l in plain_set._samples]),
                                                    CONFIG["per_class_train"], CONFIG["split_seed"]).tolist())
plain_set = Subset(plain_set, tr_idx.tolist())
loader = DataLoader(plain_set, batch_size=bs, shuffle=True, num_workers=2, drop_last=True, pin_memory=DEVICE == "cuda")
plain_s, plain_n = timed_steps(((x, y) for x, y in loader), n_batches)


def cached_batches():
    perm = torch.randperm(len(x_train_dev), device=DEVICE)
    for i in range(len(perm) // bs):
        idx = perm[i * bs:(i + 1) * bs]
        yield x_train_dev[idx].float() / 255, y_train_dev[idx]


cached_s, cached_n = timed_steps(cached_batches(), n_batches)
speedup = (plain_s / plain_n) / (cached_s / cached_n)
print(f"{min(plain_n, cached_n)} training steps of {bs} images: DataLoader {plain_s:.2f} s, uint8 tensor cache "
      f"{cached_s:.2f} s: {speedup:.2f}x faster")
metrics["pipeline_benchmark"] = {"plain_seconds": plain_s, "cached_seconds": cached_s, "batches": min(plain_n, cached_n),
                                 "batch_size": bs, "speedup": speedup, "device": DEVICE}

# %%
#| label: task3-save
# Save every number printed above for the answer PDF; a number missing where one belongs fails a check.
def summary(stage):
    runs = final[stage]
    a_ = [r["test_accuracy"] for r in runs.values()]
    out = {"test_accuracy_by_seed": {str(s): r["test_accuracy"] for s, r in runs.items()},
           "test_se_by_seed": {str(s): binomial_se(r["test_accuracy"], len(y_test)) for s, r in runs.items()},
           "test_accuracy_mean": statistics.fmean(a_),
           "test_accuracy_std": statistics.stdev(a_) if len(a_) > 1 else 0.0,
           "train_seconds_by_seed": {str(s): sum(r["history"]["seconds"]) for s, r in runs.items()},
           "epoch_seconds": {str(s): r["history"]["seconds"] for s, r in runs.items()},
           "val_accuracy_final": {str(s): r["history"]["val_acc"][-1] for s, r in runs.items()},
           "train_accuracy_final": {str(s): r["history"]["train_acc"][-1] for s, r in runs.items()},
           "noise": {str(s): noise[stage][s] for s in runs},
           "noise_mean": {k: statistics.fmean(noise[stage][s][k] for s in runs) for k in noise[stage][CONFIG["seeds"][0]]},
           "per_class_accuracy": per_class[stage], "confusion": confusion[stage],
           "most_confused_with": confused_with[stage]}
    if stage == "aug":
        t_ = [r["test_accuracy_flip_tta"] for r in runs.values()]
        out.update(test_accuracy_flip_tta_by_seed={str(s): r["test_accuracy_flip_tta"] for s, r in runs.items()},
                   test_accuracy_flip_tta_mean=statistics.fmean(t_))
    return out


metrics.update(noaug=summary("noaug"), aug=summary("aug"), seeds=CONFIG["seeds"],
               epochs_noaug=CONFIG["epochs_noaug"], epochs_aug=CONFIG["epochs_aug"], ensemble_noaug=ensemble_noaug,
               augmentation_gain=gain, augmentation_gain_se=gain_se, augmentation_verdict=gain_verdict,
               augmentation_gain_by_seed={str(s): {"difference": d, "paired_se": se} for s, (d, se) in paired.items()},
               device=DEVICE, compiled=COMPILE, threads=torch.get_num_threads(),
               notebook_seconds=time.perf_counter() - NOTEBOOK_START)
checks = [
    {"check": "no BatchNorm in the network", "passed": not any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                                             for m in make_net(CONFIG).modules())},
    {"check": "the test set is the official val split (3,925 images)",
     "passed": CONFIG["per_class_test"] is not None or len(y_test) == 3925},
    {"check": "training and validation images are disjoint",
     "passed": not set(tr_idx.tolist()) & set(va_idx.tolist())},
    {"check": "every class is in the test set", "passed": torch.bincount(y_test, minlength=10).min().item() > 0},
    {"check": "the noise levels 0.05, 0.01 and 0.005 were evaluated (full profile)",
     "passed": profile != "full" or all(f"{a:g}" in metrics["noaug"]["noise_mean"] for a in (0.05, 0.01, 0.005))},
    {"check": "the search finished its trials", "passed": len(done) >= CONFIG["search_trials"]},
    {"check": "the whitening stem stayed as computed (frozen)",
     "passed": all(torch.equal(r["model"].body[0].weight.cpu(), WHITEN) for st in final.values() for r in st.values())},
]
metrics["checks"] = checks
metrics["all_checks_passed"] = all(c["passed"] for c in checks)
for c in checks:
    print(("ok      " if c["passed"] else "FAILED  ") + c["check"])
os.makedirs(os.path.join(out_dir, "results"), exist_ok=True)
with open(os.path.join(out_dir, "results", f"{NAME}.json"), "w") as f:
    json.dump({"config": CONFIG, "metrics": metrics,
               "environment": {"torch": torch.__version__, "kornia": kornia.__version__,
                               "device": torch.cuda.get_device_name() if DEVICE == "cuda" else f"cpu ({platform.machine()}, {os.cpu_count()} cores)"},
               "extra": {stage: {str(s): r["history"] for s, r in final[stage].items()} for stage in final}}, f, indent=1)
