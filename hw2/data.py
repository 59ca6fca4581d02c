"""The data layer: find, validate and (only when allowed) download the three datasets.

Lookup order for every dataset: $HW2_DATA_DIR, ./data/, ../shared/data/. If none holds it, it is
downloaded into ./data/ and verified, unless HW2_NO_DOWNLOAD is set (the tests set it). A set
HW2_DATA_DIR that is not an existing folder is an error, never skipped for the next folder.
Every problem is a DataError whose message names the file and what is wrong with it.

Validation is complete and happens before any compute: `check_datasets(names)` checks the named
datasets ('magic', 'imagenette', 'figures') the same way `make check-data` does, and raises at the
first problem. Without decoding JPEGs (every entry and every image header is still checked) it
takes about a second, so runners call it before a task.

    python -m hw2.data [magic imagenette figures] [--no-decode]   # `make check-data`: one line per dataset
"""
from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import shutil
import stat
import sys
import tempfile
import urllib.request
import warnings
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
IMAGENETTE_SPLITS = ("train", "val")
IMAGENETTE_COUNTS = {"train": 9_469, "val": 3_925}
IMAGENETTE_WNIDS = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
                    "n03394916", "n03417042", "n03425413", "n03445777", "n03888257"]
IMAGENETTE_CLASS_COUNTS = {   # JPEGs per class folder of the real dataset (sums: IMAGENETTE_COUNTS)
    "train": dict(zip(IMAGENETTE_WNIDS, [963, 955, 993, 858, 941, 956, 961, 931, 951, 960])),
    "val": dict(zip(IMAGENETTE_WNIDS, [387, 395, 357, 386, 409, 394, 389, 419, 399, 390])),
}
IMAGE_SUFFIXES = (".jpeg", ".jpg")   # what Task 3's notebook counts as an image (case-insensitive)
TORCHVISION_SUFFIX = ".jpeg"         # what torchvision's Imagenette reads (make_dataset(extensions=".jpeg"))
IMAGE_MODES = ("L", "RGB", "CMYK")   # the 8-bit modes PIL gives a JPEG; the real files are RGB or L
JPEG_END = b"\xff\xd9"               # the end-of-image marker: every real file ends with it

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
    explicit = os.environ.get("HW2_DATA_DIR")
    if explicit:   # set on purpose: a typo must not silently fall back to the folders below
        if not os.path.isdir(explicit):
            what = "path, which is not a folder" if os.path.lexists(explicit) else "folder, which does not exist"
            raise DataError(f"{explicit}: HW2_DATA_DIR is set to this {what} (unset it to use "
                            f"./data/ or ../shared/data/)")
        dirs.append(Path(explicit))
    dirs += [ROOT / "data", ROOT.parent / "shared" / "data"]
    return dirs


def find(relpath: str) -> Path | None:
    """The first search directory holding relpath, or None.

    Anything at the path counts, a broken link or a folder included: it is reported, not skipped
    in favour of a later folder."""
    for d in search_dirs():
        if os.path.lexists(d / relpath):
            return d / relpath
    return None


def require_file(path: Path, expected: str | None = None) -> None:
    """A DataError naming path unless it is a readable regular file."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected the file {expected or path.name}")
    if not path.exists():
        if path.is_symlink():
            raise DataError(f"{path}: broken symbolic link (to {os.readlink(path)})")
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: cannot be read (permission denied)")


def read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None


def downloads_allowed() -> bool:
    return not os.environ.get("HW2_NO_DOWNLOAD")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
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


NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")   # how every value of the UCI file is written


def validate_magic(path: str | Path | None = None, verify_checksum: bool = True) -> dict:
    """Check magic04.data line by line, then its checksum; a summary dict, or a DataError naming
    the line and the problem. CRLF line endings (and a missing final newline) are accepted when the
    content is otherwise the UCI file: the checksum is taken of the LF-normalised bytes."""
    path = Path(path) if path else magic_path()
    rows, info = _parse_magic(path, verify_checksum)
    return {**info, "rows": len(rows), "g": sum(r[-1] == "g" for r in rows),
            "h": sum(r[-1] == "h" for r in rows)}


def load_magic(path: str | Path | None = None, verify_checksum: bool = True):
    """The MAGIC table with the assignment's column names, validated line by line."""
    import pandas as pd

    rows, _ = _parse_magic(Path(path) if path else magic_path(), verify_checksum)
    return pd.DataFrame(rows, columns=MAGIC_COLUMNS)


def _parse_magic(path: Path, verify_checksum: bool) -> tuple[list, dict]:
    require_file(path, MAGIC_FILE)
    raw = read_bytes(path)
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    if raw.startswith(b"\xef\xbb\xbf"):
        raise DataError(f"{path}: starts with a UTF-8 byte-order mark (saved by an editor?); the UCI file has none")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}: line {line} has a non-ASCII byte {raw[e.start]:#04x}: not the UCI text file") from None
    crlf = "\r\n" in text
    lines = text.replace("\r\n", "\n").split("\n")
    final_newline = lines[-1] == ""
    if final_newline:
        lines.pop()
    rows = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            trailing = all(not rest.strip() for rest in lines[i:])
            raise DataError(f"{path}: line {i} is blank" + (" (blank line at the end of the file)" if trailing
                                                             else f" (in the middle of the data, before line {i + 1})"))
        if "\r" in line:
            raise DataError(f"{path}: line {i} has a stray carriage return (\\r) not followed by a newline")
        fields = line.split(",")
        if len(fields) != len(MAGIC_COLUMNS):
            raise DataError(f"{path}: line {i} has {len(fields)} columns, expected {len(MAGIC_COLUMNS)}")
        values = []
        for name, v in zip(MAGIC_FEATURES, fields):
            if not NUMBER.fullmatch(v):
                try:
                    x = float(v)
                except ValueError:
                    raise DataError(f"{path}: line {i} has a non-numeric feature value {v!r} ({name})") from None
                if not math.isfinite(x):
                    raise DataError(f"{path}: line {i} has a non-finite feature value {v!r} ({name})")
                raise DataError(f"{path}: line {i} has feature value {v!r} ({name}) not written as a plain "
                                f"decimal like the UCI file's (e.g. 28.7967)")
            values.append(float(v))
        label = fields[-1]
        if label not in ("g", "h"):
            raise DataError(f"{path}: line {i} has unknown class label {label!r} (expected g or h)")
        rows.append(values + [label])
    if len(rows) != MAGIC_ROWS:
        raise DataError(f"{path}: {len(rows)} rows, expected {MAGIC_ROWS} (truncated?)")
    normalised = crlf or not final_newline
    if verify_checksum:
        digest = hashlib.sha256(("\n".join(lines) + "\n").encode()).hexdigest() if normalised else sha256(path)
        if digest != MAGIC_SHA256:
            raise DataError(f"{path}: sha256 does not match the UCI file" + (" (even with LF line endings)" if normalised else "")
                            + f"; every line is well-formed, so some value differs from the original")
    return rows, {"path": path, "crlf": crlf, "final_newline": final_newline, "checksum": verify_checksum}


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


def shown(path) -> str:
    """A path as one printable line: bytes that are not UTF-8 as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _check_entry(entry: os.DirEntry) -> None:
    """One entry of a class folder, without opening it: a UTF-8 name, a regular file (or a link to
    one), not a .jpg (torchvision's Imagenette skips those while Task 3's check counts them)."""
    path = Path(entry.path)
    if shown(entry.name) != entry.name:   # undecodable bytes: the kernel cannot print or store it
        raise DataError(f"{shown(path)}: file name is not valid UTF-8 (rename the file)")
    try:
        info = entry.stat()             # follows a link
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(f"{path}: symbolic link loop") from None
        if entry.is_symlink() and e.errno == errno.ENOENT:
            raise DataError(f"{path}: broken symbolic link (to {os.readlink(path)})") from None
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"{path}: folder inside a class folder (expected only JPEG files)")
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{path}: not a regular file")
    lower = entry.name.lower()
    if lower.endswith(IMAGE_SUFFIXES) and not lower.endswith(TORCHVISION_SUFFIX):
        raise DataError(f"{path}: a {Path(lower).suffix} file: torchvision's Imagenette reads only "
                        f"{TORCHVISION_SUFFIX} files, so Task 3 would count it but never train on it "
                        f"(Imagenette's own files are all .JPEG)")


def _split_listing(split_dir: Path) -> dict[str, list[Path]]:
    """wnid -> sorted JPEG paths of one split. The layout torchvision's Imagenette relies on:
    exactly the 10 wnid folders (an extra folder becomes an extra class there), none empty, no
    folders inside them (torchvision walks into those too); every entry checked by _check_entry."""
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: split folder missing" + (" (a file is there)" if split_dir.exists() else ""))
    try:
        present = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    except OSError as e:
        raise DataError(f"{split_dir}: cannot be listed ({e.strerror or e})") from None
    unknown = [name for name in present if name not in IMAGENETTE_WNIDS]
    if unknown:
        more = f"; {len(unknown) - 1} more unknown folder(s)" if len(unknown) > 1 else ""
        raise DataError(f"{split_dir / unknown[0]}: unknown folder in the {split_dir.name} split, not one of "
                        f"Imagenette's 10 class folders (torchvision would read it as an extra class{more})")
    missing = [w for w in IMAGENETTE_WNIDS if w not in present]
    if missing:
        raise DataError(f"{split_dir}: class folder {missing[0]} missing ({len(missing)} of 10 missing)")
    listing = {}
    for wnid in IMAGENETTE_WNIDS:
        class_dir = split_dir / wnid
        try:
            entries = list(os.scandir(class_dir))
        except OSError as e:
            raise DataError(f"{class_dir}: cannot be listed ({e.strerror or e})") from None
        for entry in sorted(entries, key=lambda e: e.name):
            _check_entry(entry)
        images = sorted(Path(e.path) for e in entries if e.name.lower().endswith(IMAGE_SUFFIXES))
        if not images:
            raise DataError(f"{class_dir}: class folder is empty" if not entries else
                            f"{class_dir}: class folder holds no .JPEG files ({len(entries)} other files)")
        listing[wnid] = images
    return listing


def validate_imagenette(root: Path | None = None, decode: bool = True,
                        expected_counts: dict | None = IMAGENETTE_CLASS_COUNTS) -> dict:
    """Check both splits completely: the layout of every split first (see _split_listing), then
    every image's header (check_jpeg_header: cheap, done with or without decode), then the image
    counts, then, with decode, that every JPEG decodes. expected_counts maps each split to
    its total or to {wnid: count} (the default: the real dataset's per class folder); None skips
    the counts. {'train': n, 'val': n}, or a DataError naming the folder or file."""
    from PIL import Image

    root = Path(root) if root else imagenette_root()
    base = root / IMAGENETTE_DIR
    if not base.is_dir():
        raise DataError(f"{base}: is not a folder, expected the Imagenette folder with train/ and val/")
    listing = {split: _split_listing(base / split) for split in IMAGENETTE_SPLITS}  # layout first
    with warnings.catch_warnings():   # PIL's DecompressionBombWarning becomes an error here
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for by_class in listing.values():
            for files in by_class.values():
                for path in files:
                    check_jpeg_header(path, Image)
    counts = {split: sum(map(len, by_class.values())) for split, by_class in listing.items()}
    for split, by_class in listing.items():
        expected = (expected_counts or {}).get(split)
        if expected is None:
            continue
        per_class = expected if isinstance(expected, dict) else None
        total = sum(per_class.values()) if per_class else expected
        wrong = [(w, len(by_class[w]), per_class[w]) for w in IMAGENETTE_WNIDS
                 if per_class and len(by_class[w]) != per_class[w]]
        if counts[split] != total:
            detail = ""
            if wrong:
                w, n, e = wrong[0]
                detail = f"; {w} has {n}, expected {e}" + (f" ({len(wrong) - 1} more class folders differ)"
                                                           if len(wrong) > 1 else "")
            raise DataError(f"{base / split}: {counts[split]} images, expected {total}{detail}")
        if wrong:
            w, n, e = wrong[0]
            raise DataError(f"{base / split / w}: {n} images, expected {e} (the split's total is right: "
                            f"images moved between class folders?)")
    if decode:
        for by_class in listing.values():
            for files in by_class.values():
                for path in files:
                    decode_image(path, Image)
    return counts


def check_jpeg_header(path: Path, Image=None) -> None:
    """What is cheap to know without decoding: PIL reads only the header (format, mode, size) and
    the file's last two bytes must be the end-of-image marker. A DataError naming the file."""
    if Image is None:
        from PIL import Image
    try:
        with open(path, "rb") as f, Image.open(f) as im:
            image_format, mode = im.format, im.mode
            size = f.seek(0, os.SEEK_END)
            f.seek(size - len(JPEG_END))
            end = f.read(len(JPEG_END))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path}: refused as a decompression bomb ({e})") from None
    except Image.UnidentifiedImageError:
        raise DataError(f"{path}: image does not decode (PIL cannot identify it as a JPEG or any other "
                        f"image)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: image does not decode ({e.strerror or e})") from None
    if image_format != "JPEG":
        raise DataError(f"{path}: not a JPEG but a {image_format} image (mode {mode}) under a JPEG name")
    if mode not in IMAGE_MODES:
        raise DataError(f"{path}: a JPEG of mode {mode}, expected 8-bit {', '.join(IMAGE_MODES)}")
    if end != JPEG_END:
        raise DataError(f"{path}: truncated JPEG: the file ({size} bytes) does not end with the "
                        f"end-of-image marker FF D9")


def decode_image(path: Path, Image=None):
    """Open and fully decode one JPEG as RGB; a corrupt file becomes a DataError naming it."""
    if Image is None:
        from PIL import Image
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path}: refused as a decompression bomb ({e})") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: image does not decode ({e})") from None


# --- Q3 figures --------------------------------------------------------------------------------
def figure_file(name: str) -> Path:
    """The verified path of one of the assignment's Q3 figures (first folder of the lookup order)."""
    if name not in FIGURE_SHA256:
        raise UserError(f"{name}: not one of the assignment's figures {sorted(FIGURE_SHA256)}")
    path = find(f"{FIGURES_DIR}/{name}")
    if path is None:
        path = _download(FIGURE_URL.format(name), ROOT / "data" / FIGURES_DIR / name, FIGURE_SHA256[name])
    require_file(path, name)
    if sha256(path) != FIGURE_SHA256[name]:
        raise DataError(f"{path}: sha256 does not match the course's figure")
    return path


def figure_files() -> dict[str, Path]:
    """name -> verified path of every Q3 figure; each is looked up on its own, so they may come
    from different folders of the lookup order (check_datasets names each one's folder then)."""
    return {name: figure_file(name) for name in FIGURE_SHA256}


# --- validation before any compute, and `make check-data` ------------------------------------------
DATASETS = ("magic", "imagenette", "figures")


def _check_magic(decode: bool) -> str:
    info = validate_magic()
    how = "; CRLF line endings read as LF" if info["crlf"] else ""
    how += "; no final newline" if not info["final_newline"] else ""
    return (f"MAGIC       ok  {info['path']}  ({info['rows']} rows, {len(MAGIC_COLUMNS)} columns, "
            f"{info['g']} g / {info['h']} h, sha256 ok{how})")


def _check_imagenette(decode: bool) -> str:
    root = imagenette_root()
    counts = validate_imagenette(root, decode=decode)
    return (f"Imagenette  ok  {root / IMAGENETTE_DIR}  (10 classes, {counts['train']} train, "
            f"{counts['val']} val{', all decode' if decode else ', JPEGs not decoded'})")


def _check_figures(decode: bool) -> str:
    paths = figure_files()
    folders = list(dict.fromkeys(p.parent for p in paths.values()))
    if len(folders) == 1:
        return f"Q3 figures  ok  {folders[0]}  ({len(paths)} PNGs, sha256 ok)"
    where = "; ".join(f"{name} from {p.parent}" for name, p in paths.items())
    return (f"Q3 figures  ok  from {len(folders)} folders, first folder {folders[0]} lacks some  "
            f"({len(paths)} PNGs, sha256 ok: {where})")


CHECKS = {"magic": _check_magic, "imagenette": _check_imagenette, "figures": _check_figures}


def check_datasets(names=DATASETS, decode: bool = False) -> list[str]:
    """Validate the named datasets completely, in order, before any compute: 'magic' (every line,
    then the checksum), 'imagenette' (both splits: every class folder, no unknown folder, every
    entry and every JPEG's header, the counts; with decode=True also every JPEG decoded), 'figures'
    (the three Q3 PNGs and their checksums).
    One 'ok' line per dataset saying where it was found; raises DataError at the first problem."""
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise UserError(f"unknown dataset {unknown[0]!r}: expected one of {', '.join(DATASETS)}")
    return [CHECKS[name](decode) for name in names]


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m hw2.data", description="Validate every dataset.")
    p.add_argument("datasets", nargs="*", metavar="DATASET",
                   help=f"which to check ({', '.join(DATASETS)}); all by default")
    p.add_argument("--no-decode", action="store_true", help="skip decoding every JPEG")
    args = p.parse_args(argv)
    try:
        for name in args.datasets or DATASETS:
            for line in check_datasets([name], decode=not args.no_decode):
                print(line, flush=True)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:   # anything the checks above did not name themselves
        print(f"error: {e.filename or '?'}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
