"""The data layer: find, validate and (only when allowed) download the three datasets.

Lookup order for every dataset: $HW2_DATA_DIR, ./data/, ../shared/data/. If none holds it, it is
downloaded into ./data/ and verified, unless HW2_NO_DOWNLOAD is set (the tests set it).
Every problem is a DataError whose message names the file and what is wrong with it.

    python -m hw2.data        # `make check-data`: one line per dataset
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

from .errors import DataError, UserError
from .paths import ROOT

# --- what the data must be (from ../shared/README.md) -------------------------------------------
MAGIC_FILE = "magic04.data"
MAGIC_SHA256 = "e9314b7ebd4b4b59a3b3d65f7316663963777b16a46786877651dbbaa640b36a"
MAGIC_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/magic/magic04.data"
MAGIC_FEATURES = ["fLength", "fWidth", "fSize", "fConc", "fConc1", "fAsym", "fM3Long",
                  "fM3Trans", "fAlpha", "fDist"]
MAGIC_COLUMNS = MAGIC_FEATURES + ["class"]
MAGIC_ROWS = 19_020

IMAGENETTE_DIR = "imagenette2-160"
IMAGENETTE_COUNTS = {"train": 9_469, "val": 3_925}
IMAGENETTE_WNIDS = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
                    "n03394916", "n03417042", "n03425413", "n03445777", "n03888257"]

FIGURES_DIR = "hw2-figures"
FIGURE_SHA256 = {
    "double_descent_transformer.PNG": "059ca2055d5399c0cea19dcc0ba639fac6a84ff02381bf83114636eee450d3e7",
    "double_descent_resnet.PNG": "e187a88578e0a834e18b959123eb73ea656e20fc2e074e8e84d48b55da8c69bf",
    "double_descent_intermediate.PNG": "ddd96d498e23d93881f0f9d9abd1b79768a4d9654fa3543826a0a32188ae5f77",
}
FIGURE_URL = "https://raw.githubusercontent.com/taldatech/ee046211-deep-learning/main/assets/{}"


# --- lookup ------------------------------------------------------------------------------------
def search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("HW2_DATA_DIR"):
        dirs.append(Path(os.environ["HW2_DATA_DIR"]))
    dirs += [ROOT / "data", ROOT.parent / "shared" / "data"]
    return dirs


def find(relpath: str) -> Path | None:
    """The first search directory holding relpath, or None."""
    for d in search_dirs():
        if (d / relpath).exists():
            return d / relpath
    return None


def downloads_allowed() -> bool:
    return not os.environ.get("HW2_NO_DOWNLOAD")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, dest: Path, expected_sha256: str | None) -> Path:
    """Download to a temp file, verify, then move into place: a failed download leaves nothing."""
    if not downloads_allowed():
        raise DataError(f"{dest}: not found in {', '.join(map(str, search_dirs()))} and downloads are off (HW2_NO_DOWNLOAD)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    os.close(fd)
    try:
        print(f"downloading {url} -> {dest}", file=sys.stderr)
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
        if expected_sha256 and sha256(Path(tmp)) != expected_sha256:
            raise DataError(f"{url}: downloaded file fails its sha256 check")
        os.replace(tmp, dest)
    except OSError as e:
        raise DataError(f"{dest}: download from {url} failed ({e})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


# --- MAGIC -------------------------------------------------------------------------------------
def magic_path() -> Path:
    return find(MAGIC_FILE) or _download(MAGIC_URL, ROOT / "data" / MAGIC_FILE, MAGIC_SHA256)


def load_magic(path: str | Path | None = None, verify_checksum: bool = True):
    """The MAGIC table with the assignment's column names, validated line by line."""
    import pandas as pd

    path = Path(path) if path else magic_path()
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file") from None
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise DataError(f"{path}: file is empty")
    rows = []
    for i, line in enumerate(lines, start=1):
        fields = line.split(",")
        if len(fields) != len(MAGIC_COLUMNS):
            raise DataError(f"{path}: line {i} has {len(fields)} columns, expected {len(MAGIC_COLUMNS)}")
        try:
            values = [float(v) for v in fields[:-1]]
        except ValueError:
            bad = next(v for v in fields[:-1] if not _is_float(v))
            raise DataError(f"{path}: line {i} has a non-numeric feature value {bad!r}") from None
        label = fields[-1].strip()
        if label not in ("g", "h"):
            raise DataError(f"{path}: line {i} has unknown class label {label!r} (expected g or h)")
        rows.append(values + [label])
    if len(rows) != MAGIC_ROWS:
        raise DataError(f"{path}: {len(rows)} rows, expected {MAGIC_ROWS} (truncated?)")
    if verify_checksum and sha256(path) != MAGIC_SHA256:
        raise DataError(f"{path}: sha256 does not match the UCI file")
    return pd.DataFrame(rows, columns=MAGIC_COLUMNS)


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


# --- Imagenette --------------------------------------------------------------------------------
def imagenette_root() -> Path:
    """The folder that holds imagenette2-160/ (what torchvision.datasets.Imagenette calls root)."""
    found = find(IMAGENETTE_DIR)
    if found:
        return found.parent
    root = ROOT / "data"
    if not downloads_allowed():
        raise DataError(f"{IMAGENETTE_DIR}: not found in {', '.join(map(str, search_dirs()))} and downloads are off (HW2_NO_DOWNLOAD)")
    import torchvision
    try:
        torchvision.datasets.Imagenette(root=str(root), split="train", size="160px", download=True)
    except Exception as e:  # network errors come in many types
        raise DataError(f"{root / IMAGENETTE_DIR}: download failed ({e})") from None
    return root


def imagenette_files(root: Path, split: str) -> list[tuple[Path, int]]:
    """(path, class index) for every JPEG of a split, sorted; checks the folder layout and counts."""
    split_dir = Path(root) / IMAGENETTE_DIR / split
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: split folder missing")
    present = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    missing = [w for w in IMAGENETTE_WNIDS if w not in present]
    if missing:
        raise DataError(f"{split_dir}: class folder {missing[0]} missing ({len(missing)} of 10 missing)")
    files = []
    for idx, wnid in enumerate(IMAGENETTE_WNIDS):
        files += [(p, idx) for p in sorted((split_dir / wnid).iterdir())
                  if p.suffix.lower() in (".jpeg", ".jpg")]
    return files


def validate_imagenette(root: Path | None = None, decode: bool = True,
                        expected_counts: dict | None = IMAGENETTE_COUNTS) -> dict:
    from PIL import Image

    root = Path(root) if root else imagenette_root()
    listing = {split: imagenette_files(root, split) for split in ("train", "val")}  # layout first
    counts = {}
    for split, files in listing.items():
        counts[split] = len(files)
        if expected_counts and len(files) != expected_counts[split]:
            raise DataError(f"{root / IMAGENETTE_DIR / split}: {len(files)} images, expected {expected_counts[split]}")
        if decode:
            for path, _ in files:
                decode_image(path, Image)
    return counts


def decode_image(path: Path, Image=None):
    """Open and fully decode one JPEG as RGB; a corrupt file becomes a DataError naming it."""
    if Image is None:
        from PIL import Image
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: image does not decode ({e})") from None


# --- Q3 figures --------------------------------------------------------------------------------
def figure_file(name: str) -> Path:
    if name not in FIGURE_SHA256:
        raise UserError(f"{name}: not one of the assignment's figures {sorted(FIGURE_SHA256)}")
    path = find(f"{FIGURES_DIR}/{name}")
    if path is None:
        path = _download(FIGURE_URL.format(name), ROOT / "data" / FIGURES_DIR / name, FIGURE_SHA256[name])
    if sha256(path) != FIGURE_SHA256[name]:
        raise DataError(f"{path}: sha256 does not match the course's figure")
    return path


# --- make check-data ---------------------------------------------------------------------------
def check_all(decode: bool = True) -> list[str]:
    """One line per dataset; raises DataError at the first problem."""
    df = load_magic()
    lines = [f"MAGIC       ok  {magic_path()}  ({len(df)} rows, {df.shape[1]} columns, "
             f"{(df['class'] == 'g').sum()} g / {(df['class'] == 'h').sum()} h, sha256 ok)"]
    root = imagenette_root()
    counts = validate_imagenette(root, decode=decode)
    lines.append(f"Imagenette  ok  {root / IMAGENETTE_DIR}  (10 classes, {counts['train']} train, "
                 f"{counts['val']} val{', all decode' if decode else ''})")
    paths = [figure_file(n) for n in FIGURE_SHA256]
    lines.append(f"Q3 figures  ok  {paths[0].parent}  ({len(paths)} PNGs, sha256 ok)")
    return lines


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m hw2.data", description="Validate every dataset.")
    p.add_argument("--no-decode", action="store_true", help="skip decoding every JPEG")
    args = p.parse_args(argv)
    try:
        for line in check_all(decode=not args.no_decode):
            print(line)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
