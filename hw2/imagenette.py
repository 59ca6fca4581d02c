"""Imagenette as uint8 tensors: decode and resize every JPEG once, then train from memory.

The assignment's pipeline is `Imagenette(..., transform=Compose([Resize((64, 64)), ToTensor()]))`,
which decodes a 160 px JPEG and resizes it on every access, every epoch. Here each image goes
through exactly the same PIL `Resize((64, 64))` once and is stored as uint8 (N x 3 x 64 x 64) under
the ignored .cache/. The cache is lossless with respect to that pipeline: `ToTensor()` of the
resized PIL image is its uint8 array / 255, so `cache.float() / 255` is bit-for-bit what the
torchvision pipeline yields (tests/test_task3.py checks this on a sample).

The cache file is keyed by a hash of the file listing (relative path and byte size of every JPEG,
plus the image size and the PIL version), so a changed dataset or a different resize never reuses
a stale cache. A corrupt JPEG stops the build with a DataError naming the file.

    python -m hw2.imagenette          # build (or verify) the train and val caches
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from .data import IMAGENETTE_DIR, decode_image, imagenette_files, imagenette_root
from .errors import DataError
from .paths import CACHE

CACHE_VERSION = 1
CLASS_NAMES = ["tench", "English springer", "cassette player", "chain saw", "church",
               "French horn", "garbage truck", "gas pump", "golf ball", "parachute"]


def listing_hash(files: list[tuple[Path, int]], root: Path, size: int) -> str:
    """Hash of (relative path, byte size, label) of every file, the resize size and PIL's version."""
    import PIL
    h = hashlib.sha256(f"v{CACHE_VERSION}|size={size}|PIL={PIL.__version__}\n".encode())
    for path, label in files:
        rel = Path(path).relative_to(root)
        h.update(f"{rel}|{os.path.getsize(path)}|{label}\n".encode())
    return h.hexdigest()[:16]


def load_resized(path: Path, size: int = 64):
    """One image exactly as the assignment's transform sees it before ToTensor: a PIL image."""
    from torchvision import transforms
    return transforms.Resize((size, size))(decode_image(path))


def _decode_one(args):
    import numpy as np
    path, size = args
    return np.asarray(load_resized(path, size), dtype=np.uint8).transpose(2, 0, 1).copy()


def build_tensors(files: list[tuple[Path, int]], size: int = 64, workers: int = 1, progress=True):
    """Decode + resize files into (uint8 N x 3 x size x size, int64 labels)."""
    import numpy as np
    import torch

    from .progress import bar
    jobs = [(p, size) for p, _ in files]
    if workers > 1:
        from multiprocessing import get_context
        with get_context("fork").Pool(workers) as pool:
            arrays = list(bar(pool.imap(_decode_one, jobs, chunksize=32), total=len(jobs),
                              desc="decode", disable=not progress or None))
    else:
        arrays = [_decode_one(j) for j in bar(jobs, desc="decode", disable=not progress or None)]
    x = torch.from_numpy(np.stack(arrays)) if arrays else torch.empty(0, 3, size, size, dtype=torch.uint8)
    y = torch.tensor([label for _, label in files], dtype=torch.int64)
    return x, y


def cached_tensors(files: list[tuple[Path, int]], root: Path, size: int = 64, tag: str = "imagenette",
                   cache_dir: Path | None = None, workers: int = 1, verbose: bool = True):
    """(x uint8, y int64) for files, from .cache/ when a cache with the same listing hash exists."""
    import torch

    from .results import atomic_write_bytes
    cache_dir = Path(cache_dir or CACHE / "imagenette")
    key = listing_hash(files, Path(root), size)
    path = cache_dir / f"{tag}_{size}px_{len(files)}_{key}.pt"
    if path.exists():
        try:
            blob = torch.load(path, weights_only=True)
            if blob["x"].shape == (len(files), 3, size, size) and blob["y"].shape == (len(files),):
                return blob["x"], blob["y"]
        except Exception:  # a damaged cache is rebuilt, never trusted
            pass
        if verbose:
            print(f"{path}: damaged cache, rebuilding", file=sys.stderr)
    if verbose:
        print(f"decoding {len(files)} JPEGs into {path} (once)", file=sys.stderr)
    x, y = build_tensors(files, size, workers=workers, progress=verbose)
    import io
    buf = io.BytesIO()
    torch.save({"x": x, "y": y, "files": [str(Path(p).relative_to(root)) for p, _ in files]}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return x, y


def split_files(split: str, root: Path | None = None) -> tuple[Path, list[tuple[Path, int]]]:
    root = Path(root) if root else imagenette_root()
    return root, imagenette_files(root, split)


def stratified_subset(labels, per_class: int, seed: int):
    """Indices of `per_class` random examples of every class (seeded), sorted."""
    import torch
    g = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(labels)
    out = []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        out.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(out).sort().values


def stratified_split(labels, val_fraction: float, seed: int):
    """(train indices, validation indices): val_fraction of every class, chosen with a seeded RNG."""
    import torch
    g = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(labels)
    tr, va = [], []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = int(round(val_fraction * len(idx)))
        va.append(idx[:n_val])
        tr.append(idx[n_val:])
    return torch.cat(tr).sort().values, torch.cat(va).sort().values


def load_split(split: str, size: int = 64, per_class: int | None = None, seed: int = 0,
               workers: int = 1, verbose: bool = True):
    """The uint8 images and labels of a split; per_class picks a seeded stratified subset (smoke)."""
    root, files = split_files(split)
    if per_class is not None:
        labels = [lab for _, lab in files]
        files = [files[i] for i in stratified_subset(labels, per_class, seed).tolist()]
        tag = f"{split}_sub{per_class}s{seed}"
    else:
        tag = split
    return cached_tensors(files, root, size, tag=tag, workers=workers, verbose=verbose)


def main(argv=None) -> int:
    import time
    t0 = time.perf_counter()
    try:
        for split in ("train", "val"):
            x, y = load_split(split, workers=min(2, os.cpu_count() or 1))
            print(f"{split}: {tuple(x.shape)} uint8, {len(y)} labels  ({IMAGENETTE_DIR})")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
