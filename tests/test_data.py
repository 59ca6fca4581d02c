"""The data layer: the real datasets validate, and every kind of bad input is one clear error."""
import os
import shutil
import stat
import subprocess
import sys

import pytest

from hw2 import data
from hw2.errors import DataError

MAGIC_LINE = "28.7967,16.0021,2.6449,0.3918,0.1982,27.7004,22.011,-8.2027,40.092,81.8828,g\n"


def run_check_data(env_dir, *args):
    env = {**os.environ, "HW2_DATA_DIR": str(env_dir), "HW2_NO_DOWNLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "hw2.data", *args], capture_output=True, text=True,
                          env=env, cwd=data.ROOT)


def test_real_magic_validates():
    df = data.load_magic()
    assert df.shape == (19_020, 11)
    assert list(df.columns) == data.MAGIC_COLUMNS
    assert (df["class"] == "g").sum() == 12_332 and (df["class"] == "h").sum() == 6_688
    assert df.duplicated().sum() == 115          # as NOTES.md says


def test_check_data_prints_one_line_per_dataset():
    proc = subprocess.run([sys.executable, "-m", "hw2.data", "--no-decode"], capture_output=True,
                          text=True, cwd=data.ROOT, env={**os.environ, "HW2_NO_DOWNLOAD": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3 and all(" ok " in ln for ln in lines)
    assert "19020 rows" in lines[0] and "9469 train" in lines[1] and "3925 val" in lines[1]


@pytest.mark.parametrize("content, problem", [
    ("", "file is empty"),
    (MAGIC_LINE * 10, "10 rows, expected 19020"),
    (MAGIC_LINE + "1.0,2.0,g\n", "line 2 has 3 columns, expected 11"),
    (MAGIC_LINE.replace("2.6449", "abc"), "non-numeric feature value 'abc'"),
    (MAGIC_LINE.replace(",g", ",x"), "unknown class label 'x'"),
])
def test_bad_magic_is_one_line_error(tmp_path, content, problem):
    (tmp_path / "magic04.data").write_text(content)
    with pytest.raises(DataError, match=problem) as e:
        data.load_magic(tmp_path / "magic04.data")
    assert str(tmp_path / "magic04.data") in str(e.value)
    proc = run_check_data(tmp_path)
    assert proc.returncode != 0
    assert proc.stdout == ""                       # nothing printed as if it were fine
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and problem in err[0]
    assert "Traceback" not in proc.stderr


def test_missing_magic_file_named(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        data.load_magic(tmp_path / "nope.data")


def test_modified_magic_fails_checksum(tmp_path):
    lines = data.magic_path().read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace("28.7967", "28.7968")
    (tmp_path / "magic04.data").write_text("".join(lines))
    with pytest.raises(DataError, match="sha256"):
        data.load_magic(tmp_path / "magic04.data")


def make_imagenette(root, per_class=2):
    from PIL import Image
    for split in ("train", "val"):
        for wnid in data.IMAGENETTE_WNIDS:
            d = root / data.IMAGENETTE_DIR / split / wnid
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (20, 16), (i * 40, 80, 120)).save(d / f"img{i}.JPEG")
    return root


def test_small_imagenette_validates(tmp_path):
    root = make_imagenette(tmp_path)
    counts = data.validate_imagenette(root, expected_counts=None)
    assert counts == {"train": 20, "val": 20}
    with pytest.raises(DataError, match="20 images, expected 9469"):
        data.validate_imagenette(root)


def test_corrupt_jpeg_is_named(tmp_path):
    root = make_imagenette(tmp_path)
    bad = root / data.IMAGENETTE_DIR / "val" / data.IMAGENETTE_WNIDS[3] / "img1.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(DataError, match="does not decode") as e:
        data.validate_imagenette(root, expected_counts=None)
    assert str(bad) in str(e.value)


def test_missing_class_folder_is_named(tmp_path):
    root = make_imagenette(tmp_path)
    shutil.rmtree(root / data.IMAGENETTE_DIR / "train" / data.IMAGENETTE_WNIDS[5])
    with pytest.raises(DataError, match=f"class folder {data.IMAGENETTE_WNIDS[5]} missing"):
        data.validate_imagenette(root, expected_counts=None)


def test_check_data_reports_broken_imagenette_in_one_line(tmp_path):
    shutil.copy(data.magic_path(), tmp_path / "magic04.data")
    root = make_imagenette(tmp_path)
    shutil.rmtree(root / data.IMAGENETTE_DIR / "val" / data.IMAGENETTE_WNIDS[0])
    proc = run_check_data(tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "class folder" in proc.stderr


def test_read_only_data_dir_works(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    shutil.copy(data.magic_path(), ro / "magic04.data")
    os.chmod(ro / "magic04.data", stat.S_IRUSR)
    os.chmod(ro, stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert len(data.load_magic(ro / "magic04.data")) == 19_020
    finally:
        os.chmod(ro, stat.S_IRWXU)


def test_lookup_order_prefers_env_dir(tmp_path, monkeypatch):
    (tmp_path / "magic04.data").write_text("x")
    monkeypatch.setenv("HW2_DATA_DIR", str(tmp_path))
    assert data.find("magic04.data") == tmp_path / "magic04.data"
    monkeypatch.delenv("HW2_DATA_DIR")
    assert data.find("magic04.data") != tmp_path / "magic04.data"


def test_no_download_when_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("HW2_NO_DOWNLOAD", "1")
    with pytest.raises(DataError, match="downloads are off"):
        data._download("https://example.invalid/x", tmp_path / "x", None)
    assert not list(tmp_path.iterdir())


def test_q3_figures_verified():
    for name in data.FIGURE_SHA256:
        assert data.figure_file(name).exists()


# --- issue 14: every bad input is named up front, before any compute ----------------------------
# Each case builds its files in tmp_path, runs `python -m hw2.data` (what `make check-data` and the
# runners call) with HW2_DATA_DIR there, and checks: non-zero exit, exactly one stderr line
# `error: <file or folder>: <problem>`, no traceback, nothing written (tmp_path and ./data).
SHARED = data.ROOT.parent / "shared" / "data"
REAL_IMAGENETTE = SHARED / data.IMAGENETTE_DIR


def snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.is_dir() or os.lstat(p).st_size) for p in folder.rglob("*"))


def run_case(tmp_path, *args, timeout=60):
    """`python -m hw2.data ARGS` on HW2_DATA_DIR=tmp_path; asserts it wrote nothing anywhere."""
    before, had_data = snapshot(tmp_path), (data.ROOT / "data").exists()
    proc = run_check_data(tmp_path, *args)
    assert snapshot(tmp_path) == before
    assert (data.ROOT / "data").exists() == had_data
    return proc


def assert_one_line_error(proc, where, problem):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    assert err[0].startswith(f"error: {where}: "), err[0]
    assert problem in err[0], err[0]
    return err[0]


@pytest.fixture(scope="module")
def magic_bytes():
    return (SHARED / "magic04.data").read_bytes()


def set_field(raw: bytes, line: int, column: int, value: bytes) -> bytes:
    """The file with field `column` (0-based) of line `line` (1-based) replaced."""
    lines = raw.split(b"\n")
    fields = lines[line - 1].split(b",")
    fields[column] = value
    lines[line - 1] = b",".join(fields)
    return b"\n".join(lines)


def insert_line(raw: bytes, line: int, content: bytes) -> bytes:
    lines = raw.split(b"\n")
    return b"\n".join(lines[:line - 1] + [content] + lines[line - 1:])


# case 10: MAGIC -- the line and the problem, before the checksum; CRLF accepted
@pytest.mark.parametrize("edit, problem", [
    (lambda r: r + b"\n", "line 19021 is blank (blank line at the end of the file)"),
    (lambda r: r.replace(b"\n", b"\r\n") + b"\r\n", "line 19021 is blank (blank line at the end of the file)"),
    (lambda r: insert_line(r, 5, b""), "line 5 is blank (in the middle of the data, before line 6)"),
    (lambda r: set_field(r, 3, 2, b"NaN"), "line 3 has a non-finite feature value 'NaN' (fSize)"),
    (lambda r: set_field(r, 2, 0, b"inf"), "line 2 has a non-finite feature value 'inf' (fLength)"),
    (lambda r: set_field(r, 2, 0, b"3.16036e1"), "line 2 has feature value '3.16036e1' (fLength) not written as a plain decimal"),
    (lambda r: set_field(r, 7, 9, b""), "line 7 has a non-numeric feature value '' (fDist)"),
    (lambda r: set_field(r, 10, 10, b"g,1.0"), "line 10 has 12 columns, expected 11"),
    (lambda r: set_field(r, 10, 10, b"G"), "line 10 has unknown class label 'G'"),
    (lambda r: set_field(r, 4, 1, b"\xe9"), "line 4 has a non-ASCII byte 0xe9"),
    (lambda r: set_field(r, 9, 1, b"1.0\r2.0"), "line 9 has a stray carriage return"),
    (lambda r: set_field(r.replace(b"\n", b"\r\n"), 1, 0, b"28.7968"), "sha256 does not match the UCI file (even with LF line endings)"),
    (lambda r: set_field(r, 1, 0, b"28.7968"), "sha256 does not match the UCI file; every line is well-formed"),
])
def test_bad_magic_names_line_and_problem(tmp_path, magic_bytes, edit, problem):
    (tmp_path / "magic04.data").write_bytes(edit(magic_bytes))
    proc = run_case(tmp_path, "magic")
    assert_one_line_error(proc, tmp_path / "magic04.data", problem)
    assert proc.stdout == ""


@pytest.mark.parametrize("edit, note", [
    (lambda r: r.replace(b"\n", b"\r\n"), "sha256 ok; CRLF line endings read as LF"),
    (lambda r: r[:-1], "sha256 ok; no final newline"),
])
def test_magic_with_crlf_or_no_final_newline_is_the_uci_file(tmp_path, magic_bytes, edit, note):
    (tmp_path / "magic04.data").write_bytes(edit(magic_bytes))
    assert data.load_magic(tmp_path / "magic04.data").equals(data.load_magic())
    proc = run_case(tmp_path, "magic")
    assert proc.returncode == 0, proc.stderr
    assert str(tmp_path / "magic04.data") in proc.stdout and note in proc.stdout and "sha256 ok" in proc.stdout


def test_directory_at_magic_path_is_named(tmp_path):
    (tmp_path / "magic04.data").mkdir()
    assert_one_line_error(run_case(tmp_path, "magic"), tmp_path / "magic04.data",
                          "is a directory, expected the file magic04.data")


def test_broken_link_at_magic_path_is_named_not_skipped(tmp_path):
    (tmp_path / "magic04.data").symlink_to(tmp_path / "gone.data")
    assert_one_line_error(run_case(tmp_path, "magic"), tmp_path / "magic04.data", "broken symbolic link")


# cases 2, 5, 12: Imagenette -- every class folder, unknown folders and the counts, without decoding
def fake_imagenette(root, per_class=2):
    """imagenette2-160/{train,val}/<wnid>/ with links to a few real JPEGs of that class."""
    for split in data.IMAGENETTE_SPLITS:
        for wnid in data.IMAGENETTE_WNIDS:
            d = root / data.IMAGENETTE_DIR / split / wnid
            d.mkdir(parents=True)
            for src in sorted((REAL_IMAGENETTE / split / wnid).iterdir())[:per_class]:
                (d / src.name).symlink_to(src)
    return root / data.IMAGENETTE_DIR


@pytest.mark.parametrize("split", ["val", "train"])
def test_empty_class_folder_is_named_before_compute(tmp_path, split):
    base = fake_imagenette(tmp_path)
    empty = base / split / "n03000684"
    shutil.rmtree(empty)
    empty.mkdir()
    err = assert_one_line_error(run_case(tmp_path, "imagenette", "--no-decode"), empty, "class folder is empty")
    assert "images, expected" not in err              # named, not reported as a count
    with pytest.raises(DataError, match="class folder is empty"):
        data._split_listing(base / split)             # what every listing goes through


def test_unknown_extra_class_folder_is_named(tmp_path):
    base = fake_imagenette(tmp_path)
    extra = base / "val" / "n99999999"
    shutil.copytree(base / "val" / "n01440764", extra, symlinks=True)
    assert_one_line_error(run_case(tmp_path, "imagenette", "--no-decode"), extra,
                          "unknown folder in the val split, not one of Imagenette's 10 class folders")


def test_class_folder_with_no_jpegs_or_a_subfolder_is_named(tmp_path):
    base = fake_imagenette(tmp_path)
    d = base / "train" / "n02102040"
    shutil.rmtree(d)
    d.mkdir()
    (d / "notes.txt").write_text("x")
    assert_one_line_error(run_case(tmp_path, "imagenette", "--no-decode"), d, "class folder holds no .JPEG files")
    (d / "img.JPEG").symlink_to(next((REAL_IMAGENETTE / "train" / "n02102040").iterdir()))
    (d / "more").mkdir()
    assert_one_line_error(run_case(tmp_path, "imagenette", "--no-decode"), d / "more", "folder inside a class folder")


def test_missing_split_is_named(tmp_path):
    base = fake_imagenette(tmp_path)
    shutil.rmtree(base / "val")
    assert_one_line_error(run_case(tmp_path, "imagenette", "--no-decode"), base / "val", "split folder missing")


def test_wrong_count_names_the_split_and_the_class_folder(tmp_path):
    base = fake_imagenette(tmp_path)                  # 2 per class: every class folder is short
    err = assert_one_line_error(run_case(tmp_path, "imagenette", "--no-decode"), base / "train",
                                "20 images, expected 9469; n01440764 has 2, expected 963 (9 more class folders differ)")
    two = {split: dict.fromkeys(data.IMAGENETTE_WNIDS, 2) for split in data.IMAGENETTE_SPLITS}
    assert data.validate_imagenette(tmp_path, decode=False, expected_counts=two) == {"train": 20, "val": 20}
    sorted((base / "val" / "n03000684").iterdir())[0].unlink()
    with pytest.raises(DataError) as e:
        data.validate_imagenette(tmp_path, decode=False, expected_counts=two)
    assert str(e.value) == f"{base / 'val'}: 19 images, expected 20; n03000684 has 1, expected 2"


def test_image_moved_between_classes_is_named(tmp_path):
    base = fake_imagenette(tmp_path)
    two = {split: dict.fromkeys(data.IMAGENETTE_WNIDS, 2) for split in data.IMAGENETTE_SPLITS}
    victim = sorted((base / "train" / "n01440764").iterdir())[0]
    victim.rename(base / "train" / "n02102040" / victim.name)
    with pytest.raises(DataError) as e:
        data.validate_imagenette(tmp_path, decode=False, expected_counts=two)
    assert str(e.value).startswith(f"{base / 'train' / 'n01440764'}: 1 images, expected 2 (the split's total is right")


def test_real_imagenette_validates_in_about_a_second_without_decoding(tmp_path):
    import time
    t0 = time.perf_counter()
    assert data.validate_imagenette(SHARED, decode=False) == data.IMAGENETTE_COUNTS
    assert time.perf_counter() - t0 < 3                     # 13,394 files listed, headers read, none decoded
    base = fake_imagenette(tmp_path)
    bad = sorted((base / "val" / "n01440764").iterdir())[0]
    bad.unlink()
    bad.write_bytes(b"\xff\xd8 not a jpeg")                # the header check notices, without decoding
    with pytest.raises(DataError, match="does not decode") as e:
        data.validate_imagenette(tmp_path, decode=False, expected_counts=None)
    assert str(e.value).startswith(f"{bad}: ")


def test_check_data_says_where_magic_came_from_then_names_the_imagenette_problem(tmp_path):
    base = fake_imagenette(tmp_path)
    proc = run_case(tmp_path, "--no-decode")   # magic and figures come from later in the lookup order
    lines = proc.stdout.splitlines()
    assert str(SHARED / "magic04.data") in lines[0]
    assert_one_line_error(proc, base / "train", "20 images, expected 9469")


# case 11: Q3 figures -- each figure's folder named; a bad one caught before any render
def test_figures_from_two_folders_are_each_named(tmp_path):
    local = tmp_path / data.FIGURES_DIR
    local.mkdir()
    names = list(data.FIGURE_SHA256)
    for name in names[:2]:
        (local / name).symlink_to(SHARED / data.FIGURES_DIR / name)
    proc = run_case(tmp_path, "figures")
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert "from 2 folders" in line and f"first folder {local} lacks some" in line
    assert f"{names[0]} from {local};" in line and f"{names[1]} from {local};" in line
    assert f"{names[2]} from {SHARED / data.FIGURES_DIR}" in line


def test_bad_figure_is_named(tmp_path):
    local = tmp_path / data.FIGURES_DIR
    local.mkdir()
    name = list(data.FIGURE_SHA256)[1]
    (local / name).write_bytes((SHARED / data.FIGURES_DIR / name).read_bytes()[:-10])
    assert_one_line_error(run_case(tmp_path, "figures"), local / name, "sha256 does not match the course's figure")
    (local / name).unlink()
    (local / name).mkdir()
    assert_one_line_error(run_case(tmp_path, "figures"), local / name, f"is a directory, expected the file {name}")


def test_render_validates_data_before_any_cell(tmp_path):
    """`python -m hw2.render` (make report's last step, also run on its own) stops at a bad figure
    before executing a cell or writing anything."""
    local = tmp_path / data.FIGURES_DIR
    local.mkdir()
    name = list(data.FIGURE_SHA256)[2]
    (local / name).write_bytes(b"not the figure")
    before = snapshot(tmp_path)
    env = {**os.environ, "HW2_DATA_DIR": str(tmp_path), "HW2_NO_DOWNLOAD": "1"}
    proc = subprocess.run([sys.executable, "-m", "hw2.render", "--engine", "fallback", "--out-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, cwd=data.ROOT, timeout=120)
    assert snapshot(tmp_path) == before
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "render: executed" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]   # (+ students warnings)
    assert errors == [f"error: {local / name}: sha256 does not match the course's figure"]


def test_check_datasets_is_what_runners_call():
    lines = data.check_datasets(["magic", "imagenette", "figures"])
    assert [ln.split()[0] for ln in lines] == ["MAGIC", "Imagenette", "Q3"]
    assert data.check_datasets("figures")[0].startswith("Q3 figures  ok")
    with pytest.raises(data.UserError, match="unknown dataset 'mnist'"):
        data.check_datasets(["magic", "mnist"])


def test_make_report_validates_data_before_anything_else():
    recipe = (data.ROOT / "Makefile").read_text().split("\nreport:")[1].split("\n\n")[0].splitlines()[1:]
    assert "-m hw2.data figures" in recipe[0]          # the only data the report reads
    assert any("-m hw2.render" in ln for ln in recipe[1:])


# --- issue 19: images that only pose as JPEGs, and folders that lie -----------------------------
# Each case plants one bad entry into a full-size tree of links to the real dataset (right counts,
# so the planted entry is the only problem) and runs `python -m hw2.data imagenette --no-decode`:
# what `make check-data --no-decode` and the task runner (hw2.tasks.check_data) run. Every entry
# and every image header is checked without decoding, before the counts.
def real_jpeg(split="val", wnid="n01440764", k=0):
    return sorted((REAL_IMAGENETTE / split / wnid).iterdir())[k]


def full_imagenette(root):
    """imagenette2-160/ with a link to every real JPEG: 13,394 links, the real counts."""
    for split in data.IMAGENETTE_SPLITS:
        for wnid in data.IMAGENETTE_WNIDS:
            d = root / data.IMAGENETTE_DIR / split / wnid
            d.mkdir(parents=True)
            for e in os.scandir(REAL_IMAGENETTE / split / wnid):
                os.symlink(e.path, d / e.name)
    return root / data.IMAGENETTE_DIR


@pytest.fixture(scope="module")
def full_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    return root, full_imagenette(root)


@pytest.fixture
def full(full_tree):
    """(root, imagenette2-160/) of the module's full-size tree, put back after each test: 13,394
    links are made once, not per test."""
    root, base = full_tree
    yield root, base
    for split in data.IMAGENETTE_SPLITS:
        for wnid in data.IMAGENETTE_WNIDS:
            folder, real = os.fsencode(base / split / wnid), os.fsencode(REAL_IMAGENETTE / split / wnid)
            names = set(os.listdir(real))
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if name not in names or not os.path.islink(path) or os.readlink(path) != os.path.join(real, name):
                    os.unlink(path)
            for name in names - set(os.listdir(folder)):
                os.symlink(os.path.join(real, name), os.path.join(folder, name))


def jpeg_with_size(raw: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOFn) claims width x height: what PIL reads first."""
    i = 2
    while raw[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + int.from_bytes(raw[i + 2:i + 4], "big")
    return raw[:i + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + raw[i + 9:]


def sixteen_bit_png():
    import io

    import numpy as np
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 20), 60_000, np.uint16)).save(buf, format="PNG")   # mode I;16
    return buf.getvalue()


BAD_IMAGES = {   # case -> (bytes of the planted file, the problem its line states)
    "16-bit PNG named .JPEG": (sixteen_bit_png, "not a JPEG but a PNG image (mode I;16)"),
    "15000x15000 JPEG": (lambda: jpeg_with_size(real_jpeg().read_bytes(), 15_000, 15_000),
                         "refused as a decompression bomb (Image size (225000000 pixels) exceeds limit"),
    "10000x10000 JPEG": (lambda: jpeg_with_size(real_jpeg().read_bytes(), 10_000, 10_000),
                         "refused as a decompression bomb (Image size (100000000 pixels) exceeds limit"),
    "truncated JPEG": (lambda: real_jpeg().read_bytes()[:3000],
                       "truncated JPEG: the file (3000 bytes) does not end with the end-of-image marker FF D9"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_image_that_only_poses_as_a_jpeg_is_named(full, case):
    make, problem = BAD_IMAGES[case]
    root, base = full
    bad = sorted((base / "train" / "n03000684").iterdir())[1]
    bad.unlink()
    bad.write_bytes(make())
    assert_one_line_error(run_case(root, "imagenette", "--no-decode"), bad, problem)


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_decoding_check_refuses_the_same_images(tmp_path, case):
    """With decode (`make check-data`), the header checks come first: the same line."""
    make, problem = BAD_IMAGES[case]
    bad = sorted((fake_imagenette(tmp_path) / "val" / "n03888257").iterdir())[0]
    bad.unlink()
    bad.write_bytes(make())
    with pytest.raises(DataError) as e:
        data.validate_imagenette(tmp_path, decode=True, expected_counts=None)
    assert str(e.value).startswith(f"{bad}: {problem}")


def plant(base, name: str | bytes, target=None):
    """A link named `name` (str or undecodable bytes) in train/n01440764 to target (default: a real JPEG)."""
    folder = base / "train" / "n01440764"
    path = os.path.join(os.fsencode(folder), os.fsencode(name))
    os.symlink(os.fsencode(target or real_jpeg("train")), path)
    return folder


FOLDER_LIES = {   # case -> (how to plant it, the name the line gives, the problem)
    "symlink loop": (lambda b: plant(b, "loop.JPEG", b / "train" / "n01440764" / "loop.JPEG"),
                     "loop.JPEG", "symbolic link loop"),
    "dangling symlink": (lambda b: plant(b, "n01440764_99999.JPEG", b / "gone.JPEG"),
                         "n01440764_99999.JPEG", "broken symbolic link (to "),
    "extra .jpg": (lambda b: plant(b, "extra.jpg"),
                   "extra.jpg", "a .jpg file: torchvision's Imagenette reads only .jpeg files"),
    "non-UTF-8 name": (lambda b: plant(b, b"n01440764_\xff.JPEG"),
                       r"n01440764_\xff.JPEG", "file name is not valid UTF-8"),
}


@pytest.mark.parametrize("case", list(FOLDER_LIES))
def test_folder_that_lies_is_named(full, case):
    how, name, problem = FOLDER_LIES[case]
    root, base = full
    folder = how(base)
    assert_one_line_error(run_case(root, "imagenette", "--no-decode"), f"{folder}/{name}", problem)


@pytest.mark.parametrize("case", ["symlink loop", "non-UTF-8 name", "extra .jpg"])
def test_folder_that_lies_is_one_line_through_the_task_runner(tmp_path, full, case):
    """`python experiments/task3_imagenette_cnn.py` checks the data (hw2.tasks.check_data, JPEGs
    not decoded) before any kernel starts: one line, nothing written in --out."""
    how, name, problem = FOLDER_LIES[case]
    root, base = full
    folder = how(base)
    env = {**os.environ, "HW2_DATA_DIR": str(root), "HW2_NO_DOWNLOAD": "1", "PYTHONPATH": str(data.ROOT)}
    proc = subprocess.run([sys.executable, "experiments/task3_imagenette_cnn.py", "--profile", "smoke",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env,
                          cwd=data.ROOT, timeout=120)
    assert_one_line_error(proc, f"{folder}/{name}", problem)
    assert not (tmp_path / "out").exists()


def test_check_datasets_names_a_header_problem_for_the_runner(full, monkeypatch):
    """What hw2.tasks.check_data calls: a DataError (one line), never a PIL or OS exception."""
    root, base = full
    bad = sorted((base / "val" / "n03888257").iterdir())[0]
    bad.unlink()
    bad.write_bytes(real_jpeg().read_bytes()[:-2])
    monkeypatch.setenv("HW2_DATA_DIR", str(root))
    monkeypatch.setenv("HW2_NO_DOWNLOAD", "1")
    with pytest.raises(DataError) as e:
        data.check_datasets(["imagenette"], decode=False)
    assert str(e.value).startswith(f"{bad}: truncated JPEG")


def test_decoding_finds_what_the_header_check_cannot(tmp_path):
    """A JPEG whose scan names a component the frame lacks: header, mode and FF D9 all fine."""
    raw = real_jpeg().read_bytes()
    sos = raw.index(b"\xff\xda")
    base = fake_imagenette(tmp_path)
    bad = sorted((base / "val" / "n01440764").iterdir())[0]
    bad.unlink()
    bad.write_bytes(raw[:sos + 5] + b"\x09" + raw[sos + 6:])
    assert data.validate_imagenette(tmp_path, decode=False, expected_counts=None) == {"train": 20, "val": 20}
    with pytest.raises(DataError, match="does not decode"):
        data.validate_imagenette(tmp_path, decode=True, expected_counts=None)


# case 8: an explicitly set data folder must exist
@pytest.mark.parametrize("args", [["--no-decode"], ["magic"], ["figures"]])
def test_data_dir_that_does_not_exist_is_an_error_not_a_fallback(tmp_path, args):
    typo = tmp_path / "typo"
    before = snapshot(tmp_path)
    proc = run_check_data(typo, *args)
    assert snapshot(tmp_path) == before
    assert proc.stdout == ""                      # not "ok" from ../shared/data
    assert_one_line_error(proc, typo, "HW2_DATA_DIR is set to this folder, which does not exist")


def test_data_dir_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "data.txt").write_text("x")
    proc = run_check_data(tmp_path / "data.txt", "magic")
    assert_one_line_error(proc, tmp_path / "data.txt", "HW2_DATA_DIR is set to this path, which is not a folder")


def test_data_dir_typo_stops_the_task_runner_before_any_kernel(tmp_path):
    env = {**os.environ, "HW2_DATA_DIR": str(tmp_path / "typo"), "HW2_NO_DOWNLOAD": "1", "PYTHONPATH": str(data.ROOT)}
    proc = subprocess.run([sys.executable, "experiments/task2_magic_mlp.py", "--profile", "smoke",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env,
                          cwd=data.ROOT, timeout=120)
    assert_one_line_error(proc, tmp_path / "typo", "HW2_DATA_DIR is set to this folder, which does not exist")
    assert not (tmp_path / "out").exists()


def test_data_dir_typo_stops_the_render_before_any_cell(tmp_path):
    """`python -m hw2.render` checks the Q3 figures first: a typo in HW2_DATA_DIR is that one line."""
    typo = tmp_path / "typo"
    env = {**os.environ, "HW2_DATA_DIR": str(typo), "HW2_NO_DOWNLOAD": "1"}
    proc = subprocess.run([sys.executable, "-m", "hw2.render", "--engine", "fallback", "--out-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, cwd=data.ROOT, timeout=120)
    assert list(tmp_path.iterdir()) == []
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "render: executed" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]   # (+ students warnings)
    assert errors == [f"error: {typo}: HW2_DATA_DIR is set to this folder, which does not exist "
                      f"(unset it to use ./data/ or ../shared/data/)"]


# Task 3's notebook checks the layout again on its own (it stands alone, without the runner): it
# refuses the same files with the same first words.
@pytest.fixture(scope="module")
def notebook_check():
    from notebook_cells import run_cells
    from PIL import Image
    return run_cells("task3_imagenette_cnn", ["task3-data-functions"], os=os, hashlib=__import__("hashlib"),
                     errno=__import__("errno"), stat=__import__("stat"), warnings=__import__("warnings"),
                     Image=Image)["check_imagenette"]


@pytest.mark.parametrize("case", list(BAD_IMAGES) + list(FOLDER_LIES))
def test_the_notebooks_own_check_names_the_same_file(tmp_path, notebook_check, case):
    base = fake_imagenette(tmp_path)
    if case in BAD_IMAGES:
        make, _ = BAD_IMAGES[case]
        where = sorted((base / "train" / "n03000684").iterdir())[1]
        where.unlink()
        where.write_bytes(make())
    else:
        how, name, _ = FOLDER_LIES[case]
        where = f"{how(base)}/{name}"
    with pytest.raises(Exception) as e:
        notebook_check(str(base), {"train": 20, "val": 20})
    assert str(e.value).startswith(f"{where}: "), str(e.value)   # the file named, as hw2.data does
